// Tests for common/kernels/quant_matmul.h: the QUANT.md worked examples bit for bit (AWQ nibble
// interleave, MLX streams of 3/4/5/6 bits), then both product kernels (decode, prefill) against
// QuantMatMulReference on random packed matrices for every width, group size, scale dtype, token
// count, row range and Highway target.
#include "common/kernels/quant_matmul.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/kernels/matmul.h"
#include "common/kernels/quant_tile.h"
#include "common/kernels/thread_pool.h"
#include "common/kernels/tile_matmul.h"
#include "gtest/gtest.h"
#include "tests/common/kernels/kernel_test_util.h"

namespace afd::kernels {
namespace {

using testing::ForEachTarget;

constexpr internal::QuantKernel kKernels[] = {internal::QuantKernel::kDecode,
                                              internal::QuantKernel::kDecodeFp32,
                                              internal::QuantKernel::kPrefill};

std::string KernelName(internal::QuantKernel k) {
  return k == internal::QuantKernel::kDecode       ? " decode"
         : k == internal::QuantKernel::kDecodeFp32 ? " decode-fp32"
         : k == internal::QuantKernel::kPrefill    ? " prefill"
                                                   : " tiles";
}

// kKernels, and the int8 tiles where this CPU and `m`'s shape take them.
std::vector<internal::QuantKernel> KernelsFor(const QuantMatrix& m) {
  std::vector<internal::QuantKernel> kernels(std::begin(kKernels), std::end(kKernels));
  if (QuantTilesTake(m)) kernels.push_back(internal::QuantKernel::kTiles);
  return kernels;
}

// Owns the bytes behind a QuantMatrix.
struct TestQuant {
  std::vector<uint32_t> data, zeros;
  std::vector<uint8_t> scales, biases;
  QuantMatrix m;
};

void PutScale(std::vector<uint8_t>& out, size_t i, float v, WeightType type) {
  if (type == WeightType::kF32) {
    memcpy(&out[4 * i], &v, 4);
    return;
  }
  uint16_t h;
  if (type == WeightType::kBF16) {
    h = FloatToBf16(v);
  } else {
    // Exact for the values used here (multiples of 2^-12 well inside the normal range).
    const float a = std::fabs(v);
    int e;
    const float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
    const uint16_t mant = static_cast<uint16_t>(std::lround((m * 2 - 1) * 1024));
    h = static_cast<uint16_t>((v < 0 ? 0x8000 : 0) | ((e - 1 + 15) << 10) | mant);
    if (a == 0) h = 0;
  }
  memcpy(&out[2 * i], &h, 2);
}

// Random codes (every bit pattern of the packed words is valid), scales of both signs.
TestQuant MakeMlx(int64_t rows, int64_t cols, int bits, int group, WeightType scale_type,
                  std::mt19937& rng) {
  TestQuant tq;
  const int64_t words = cols * bits / 32;
  tq.data.resize(rows * words);
  for (uint32_t& w : tq.data) w = static_cast<uint32_t>(rng());
  const int64_t groups = cols / group;
  const size_t sz = scale_type == WeightType::kF32 ? 4 : 2;
  tq.scales.resize(rows * groups * sz);
  tq.biases.resize(rows * groups * sz);
  std::uniform_int_distribution<int> pick(-64, 64);
  for (int64_t i = 0; i < rows * groups; ++i) {
    PutScale(tq.scales, i, pick(rng) / 4096.0f, scale_type);
    PutScale(tq.biases, i, pick(rng) / 512.0f, scale_type);
  }
  tq.m.format = QuantFormat::kMlxAffine;
  tq.m.rows = rows;
  tq.m.cols = cols;
  tq.m.bits = bits;
  tq.m.group_size = group;
  tq.m.data = tq.data.data();
  tq.m.scales = tq.scales.data();
  tq.m.biases = tq.biases.data();
  tq.m.scale_type = scale_type;
  return tq;
}

TestQuant MakeAwq(int64_t rows, int64_t cols, int group, WeightType scale_type, bool with_zeros,
                  std::mt19937& rng) {
  TestQuant tq;
  tq.data.resize(cols * rows / 8);
  for (uint32_t& w : tq.data) w = static_cast<uint32_t>(rng());
  const int64_t groups = cols / group;
  if (with_zeros) {
    tq.zeros.resize(groups * rows / 8);
    for (uint32_t& w : tq.zeros) w = static_cast<uint32_t>(rng());
  }
  const size_t sz = scale_type == WeightType::kF32 ? 4 : 2;
  tq.scales.resize(groups * rows * sz);
  std::uniform_int_distribution<int> pick(-64, 64);
  for (int64_t i = 0; i < groups * rows; ++i)
    PutScale(tq.scales, i, pick(rng) / 4096.0f, scale_type);
  tq.m.format = QuantFormat::kAwqInt4;
  tq.m.rows = rows;
  tq.m.cols = cols;
  tq.m.bits = 4;
  tq.m.group_size = group;
  tq.m.data = tq.data.data();
  tq.m.zeros = with_zeros ? tq.zeros.data() : nullptr;
  tq.m.scales = tq.scales.data();
  tq.m.scale_type = scale_type;
  return tq;
}

std::vector<float> RandomX(int64_t n, std::mt19937& rng) {
  return testing::RandomVector(static_cast<size_t>(n), rng);
}

// Per output: sum |x| |w| over the row, the scale of two fp32 summation orders' difference.
std::vector<double> Magnitudes(const std::vector<float>& x, int64_t n, const QuantMatrix& m) {
  std::vector<float> wrow(m.cols);
  std::vector<double> mag(n * m.rows, 0.0);
  for (int64_t r = 0; r < m.rows; ++r) {
    QuantDequantizeRow(m, r, wrow.data());
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t c = 0; c < m.cols; ++c) {
        mag[t * m.rows + r] += std::fabs(x[t * m.cols + c] * wrow[c]);
      }
    }
  }
  return mag;
}

// |got - want| <= 1e-5 * mag + 1e-6 for rows [row_begin, row_end).
void ExpectMatches(const std::vector<double>& mag, int64_t n, const QuantMatrix& m,
                   const std::vector<float>& got, const std::vector<float>& want,
                   const std::string& what, int64_t row_begin = 0, int64_t row_end = -1) {
  if (row_end < 0) row_end = m.rows;
  int bad = 0;
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t r = row_begin; r < row_end && bad < 5; ++r) {
      const float g = got[t * m.rows + r], w = want[t * m.rows + r];
      if (!(std::fabs(g - w) <= 1e-5 * mag[t * m.rows + r] + 1e-6)) {
        ADD_FAILURE() << what << " token " << t << " row " << r << ": got " << g << " want " << w;
        ++bad;
      }
    }
  }
}

// Every kernel and QuantMatMul, on every target, against the reference for n tokens.
void ExpectKernelsMatchReference(const QuantMatrix& m, int64_t n, std::mt19937& rng,
                                 const std::string& what) {
  const std::vector<float> x = RandomX(n * m.cols, rng);
  std::vector<float> want(n * m.rows);
  QuantMatMulReference(x.data(), n, m, want.data());
  const std::vector<double> mag = Magnitudes(x, n, m);
  ForEachTarget([&](const std::string& target) {
    const std::string label = target + " " + what + " n " + std::to_string(n);
    for (internal::QuantKernel kernel : KernelsFor(m)) {
      std::vector<float> got(n * m.rows, -7.0f);
      internal::QuantMatMulRowsKernel(x.data(), n, m, 0, m.rows, got.data(), kernel);
      ExpectMatches(mag, n, m, got, want, label + KernelName(kernel));
    }
    std::vector<float> got(n * m.rows);
    QuantMatMul(x.data(), n, m, got.data());
    ExpectMatches(mag, n, m, got, want, label + " QuantMatMul");
  });
}

TEST(QuantCodesTest, AwqWorkedExamples) {
  // QUANT.md §1.3/§1.4: qweight[5][2] = 0x75316420 holds columns 16..23 = 0..7; with zeros
  // 0x88888888 and scales 0.01: W[16 + j][5] = (j - 8) * 0.01.
  const int64_t rows = 32, cols = 8;
  std::vector<uint32_t> qweight(cols * rows / 8, 0), qzeros(rows / 8, 0x88888888u);
  qweight[5 * (rows / 8) + 2] = 0x75316420u;
  qweight[1 * (rows / 8) + 0] = 0x76543210u;
  qweight[2 * (rows / 8) + 0] = 0xF0000000u;
  std::vector<float> scales(rows, 0.01f);
  QuantMatrix m;
  m.format = QuantFormat::kAwqInt4;
  m.rows = rows;
  m.cols = cols;
  m.bits = 4;
  m.group_size = cols;
  m.data = qweight.data();
  m.zeros = qzeros.data();
  m.scales = scales.data();
  m.scale_type = WeightType::kF32;
  ASSERT_EQ(QuantMatrixProblem(m), nullptr);
  for (int j = 0; j < 8; ++j) {
    EXPECT_EQ(QuantCodeAt(m, 16 + j, 5), static_cast<uint32_t>(j));
    EXPECT_EQ(AwqZeroAt(m, 16 + j, 5), 8u);
    EXPECT_FLOAT_EQ(QuantWeightAt(m, 16 + j, 5), (j - 8.0f) * 0.01f);
  }
  // 0x76543210 unpacks to columns [0, 4, 1, 5, 2, 6, 3, 7].
  const uint32_t expect[8] = {0, 4, 1, 5, 2, 6, 3, 7};
  for (int j = 0; j < 8; ++j) EXPECT_EQ(QuantCodeAt(m, j, 1), expect[j]) << j;
  // 0xF0000000 (negative as int32): column 7 = 15, the others 0.
  for (int j = 0; j < 8; ++j) EXPECT_EQ(QuantCodeAt(m, j, 2), j == 7 ? 15u : 0u) << j;
  // Without qzeros every zero point is 8.
  m.zeros = nullptr;
  EXPECT_EQ(AwqZeroAt(m, 3, 3), 8u);
}

TEST(QuantCodesTest, MlxWorkedExamples) {
  struct Case {
    int bits;
    std::vector<uint32_t> words;
    int period;  // codes are j % period for j < 32
  };
  const Case cases[] = {
      {4, {0x76543210u, 0xFEDCBA98u, 0x76543210u, 0xFEDCBA98u}, 16},
      {3, {0x88fac688u, 0xc688fac6u, 0xfac688fau}, 8},
      {5, {0x8a418820u, 0xc5a92839u, 0xca307b9au, 0x38bdab49u, 0xffbbcdebu}, 32},
      {6, {0x440c2040u, 0xa2481c61u, 0x3ce34c2cu, 0x544d2450u, 0xa6585d65u, 0x7de75c6du}, 32},
  };
  for (const Case& c : cases) {
    std::vector<uint16_t> ones(1, FloatToBf16(1.0f)), zero(1, 0);
    QuantMatrix m;
    m.format = QuantFormat::kMlxAffine;
    m.rows = 1;
    m.cols = 32;
    m.bits = c.bits;
    m.group_size = 32;
    m.data = c.words.data();
    m.scales = ones.data();
    m.biases = zero.data();
    ASSERT_EQ(QuantMatrixProblem(m), nullptr);
    for (int j = 0; j < 32; ++j) {
      EXPECT_EQ(QuantCodeAt(m, 0, j), static_cast<uint32_t>(j % c.period))
          << c.bits << "-bit element " << j;
    }
    // The kernels decode the same codes: x = e_j picks W[0][j].
    std::vector<float> x(32 * 32, 0.0f), y(32, 0.0f);
    for (int j = 0; j < 32; ++j) x[j * 32 + j] = 1.0f;
    ForEachTarget([&](const std::string& target) {
      for (internal::QuantKernel kernel : kKernels) {
        internal::QuantMatMulRowsKernel(x.data(), 32, m, 0, 1, y.data(), kernel);
        for (int j = 0; j < 32; ++j) {
          EXPECT_EQ(y[j], static_cast<float>(j % c.period))
              << target << " " << c.bits << "-bit " << KernelName(kernel) << " element " << j;
        }
      }
    });
  }
}

TEST(QuantCodesTest, MlxScaleTimesCodePlusBias) {
  // w = s * q + b with a negative scale: q = 0 maps to the group maximum.
  const uint32_t word = 0x0000000Fu;  // codes 15, 0, 0, ...
  std::vector<uint32_t> words(4, 0);
  words[0] = word;
  std::vector<uint16_t> s(1, FloatToBf16(-0.5f)), b(1, FloatToBf16(3.0f));
  QuantMatrix m;
  m.format = QuantFormat::kMlxAffine;
  m.rows = 1;
  m.cols = 32;
  m.bits = 4;
  m.group_size = 32;
  m.data = words.data();
  m.scales = s.data();
  m.biases = b.data();
  EXPECT_FLOAT_EQ(QuantWeightAt(m, 0, 0), -4.5f);
  EXPECT_FLOAT_EQ(QuantWeightAt(m, 0, 1), 3.0f);
  std::vector<float> row(32);
  QuantDequantizeRow(m, 0, row.data());
  EXPECT_FLOAT_EQ(row[0], -4.5f);
  EXPECT_FLOAT_EQ(row[31], 3.0f);
}

TEST(QuantMatrixProblemTest, NamesWhatIsWrong) {
  std::mt19937 rng(1);
  TestQuant ok = MakeMlx(4, 64, 4, 32, WeightType::kBF16, rng);
  EXPECT_EQ(QuantMatrixProblem(ok.m), nullptr);
  QuantMatrix m = ok.m;
  m.bits = 7;
  EXPECT_NE(QuantMatrixProblem(m), nullptr);
  m = ok.m;
  m.group_size = 48;
  EXPECT_NE(QuantMatrixProblem(m), nullptr);
  m = ok.m;
  m.biases = nullptr;
  EXPECT_NE(QuantMatrixProblem(m), nullptr);
  TestQuant awq = MakeAwq(16, 64, 32, WeightType::kF16, true, rng);
  EXPECT_EQ(QuantMatrixProblem(awq.m), nullptr);
  m = awq.m;
  m.rows = 12;
  EXPECT_NE(QuantMatrixProblem(m), nullptr);
  m = awq.m;
  m.bits = 8;
  EXPECT_NE(QuantMatrixProblem(m), nullptr);
}

TEST(QuantMatMulTest, MlxBothKernelsMatchReference) {
  std::mt19937 rng(7);
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    for (int group : {32, 64, 128}) {
      const WeightType st = bits == 5   ? WeightType::kF16
                            : bits == 6 ? WeightType::kF32
                                        : WeightType::kBF16;
      TestQuant tq = MakeMlx(37, 256, bits, group, st, rng);
      for (int64_t n : {1, 3, 8, 11, 17, 70}) {
        ExpectKernelsMatchReference(
            tq.m, n, rng, "mlx bits " + std::to_string(bits) + " group " + std::to_string(group));
      }
    }
  }
}

TEST(QuantMatMulTest, AwqBothKernelsMatchReference) {
  std::mt19937 rng(11);
  for (int group : {32, 64, 128, 256}) {
    for (bool zeros : {true, false}) {
      const WeightType st = group == 64    ? WeightType::kBF16
                            : group == 128 ? WeightType::kF32
                                           : WeightType::kF16;
      // 200 outputs: full tiles, single chunks and an 8-column tail on every target.
      TestQuant tq = MakeAwq(200, 256, group, st, zeros, rng);
      for (int64_t n : {1, 2, 4, 7, 9, 19}) {
        ExpectKernelsMatchReference(
            tq.m, n, rng, "awq group " + std::to_string(group) + " zeros " + std::to_string(zeros));
      }
    }
  }
}

TEST(QuantMatMulTest, AwqWideMatrixSpansColumnPanels) {
  // 2120 outputs: more than one panel of output tiles in the decode kernel, an 8-column tail.
  std::mt19937 rng(13);
  TestQuant tq = MakeAwq(2120, 64, 32, WeightType::kF16, true, rng);
  for (int64_t n : {1, 3}) ExpectKernelsMatchReference(tq.m, n, rng, "wide awq");
}

TEST(QuantMatMulTest, RowRangesWriteOnlyTheirRows) {
  std::mt19937 rng(3);
  TestQuant mlx = MakeMlx(50, 128, 4, 64, WeightType::kBF16, rng);
  TestQuant awq = MakeAwq(96, 128, 64, WeightType::kF16, true, rng);
  for (const QuantMatrix* m : {&mlx.m, &awq.m}) {
    for (int64_t n : {1, 4, 17}) {
      const std::vector<float> x = RandomX(n * m->cols, rng);
      std::vector<float> want(n * m->rows);
      QuantMatMulReference(x.data(), n, *m, want.data());
      const std::vector<double> mag = Magnitudes(x, n, *m);
      ForEachTarget([&](const std::string& target) {
        for (internal::QuantKernel kernel : KernelsFor(*m)) {
          // Ranges that start and end off every tile and word boundary.
          for (auto [b, e] : {std::pair<int64_t, int64_t>{3, 29}, {16, 48}, {40, 41}, {0, 8}}) {
            std::vector<float> got(n * m->rows, -7.0f);
            internal::QuantMatMulRowsKernel(x.data(), n, *m, b, e, got.data(), kernel);
            ExpectMatches(mag, n, *m, got, want, target + " range", b, e);
            for (int64_t t = 0; t < n; ++t) {
              for (int64_t r = 0; r < m->rows; ++r) {
                if (r < b || r >= e) {
                  ASSERT_EQ(got[t * m->rows + r], -7.0f) << target << " wrote row " << r;
                }
              }
            }
          }
        }
      });
    }
  }
}

TEST(QuantMatMulTest, HowRowsAreSplitNeverChangesARow) {
  // Threads split a product by rows; a row's result must be bitwise the same whichever range
  // it falls in (attention and expert nodes must reproduce the in-process engine exactly).
  std::mt19937 rng(9);
  TestQuant mlx = MakeMlx(72, 256, 4, 64, WeightType::kBF16, rng);
  TestQuant mlx5 = MakeMlx(72, 256, 5, 32, WeightType::kBF16, rng);
  TestQuant awq = MakeAwq(200, 256, 64, WeightType::kF16, true, rng);
  TestQuant wide = MakeAwq(2120, 64, 32, WeightType::kF16, true, rng);
  for (const QuantMatrix* m : {&mlx.m, &mlx5.m, &awq.m, &wide.m}) {
    for (int64_t n : {1, 3, 17}) {
      const std::vector<float> x = RandomX(n * m->cols, rng);
      ForEachTarget([&](const std::string& target) {
        for (internal::QuantKernel kernel : KernelsFor(*m)) {
          std::vector<float> whole(n * m->rows), split(n * m->rows);
          internal::QuantMatMulRowsKernel(x.data(), n, *m, 0, m->rows, whole.data(), kernel);
          for (int64_t b = 0; b < m->rows;) {
            const int64_t e = std::min<int64_t>(m->rows, b + 8 + (b * 7) % 40);
            internal::QuantMatMulRowsKernel(x.data(), n, *m, b, e, split.data(), kernel);
            b = e;
          }
          for (size_t i = 0; i < whole.size(); ++i) {
            ASSERT_EQ(whole[i], split[i])
                << target << KernelName(kernel) << " n " << n << " index " << i;
          }
        }
      });
    }
  }
}

TEST(QuantMatMulTest, AwqSplitInputGivesTheBitsOfTheRowSplit) {
  // Decode products split along the input axis (whole groups per thread, then one finish pass)
  // must give every output bitwise what QuantMatMulRows gives: the attention node and the
  // expert nodes use it with pools of any size, the in-process engine without one.
  if (!__builtin_cpu_supports("avx512vnni")) GTEST_SKIP() << "no VNNI kernel on this CPU";
  std::mt19937 rng(21);
  struct Case {
    TestQuant a, b;  // same input size and group size, different outputs
  };
  std::vector<Case> cases;
  cases.push_back({MakeAwq(256, 1536, 128, WeightType::kF16, true, rng),
                   MakeAwq(1536, 1536, 128, WeightType::kF16, true, rng)});
  cases.push_back({MakeAwq(72, 256, 64, WeightType::kBF16, false, rng),  // a partial tile
                   MakeAwq(200, 256, 64, WeightType::kF32, true, rng)});
  cases.push_back({MakeAwq(2120, 64, 32, WeightType::kF16, true, rng),  // spans column panels
                   MakeAwq(8, 64, 32, WeightType::kF16, true, rng)});
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    for (const Case& c : cases) {
      for (int64_t n = 1; n <= internal::kAwqSplitMaxTokens; ++n) {
        const std::vector<float> x = RandomX(n * c.a.m.cols, rng);
        std::vector<float> want_a(n * c.a.m.rows), want_b(n * c.b.m.rows);
        QuantMatMulRows(x.data(), n, c.a.m, 0, c.a.m.rows, want_a.data());
        QuantMatMulRows(x.data(), n, c.b.m, 0, c.b.m.rows, want_b.data());
        std::vector<float> got_a(want_a.size(), -7.0f), got_b(want_b.size(), -7.0f);
        const QuantMatrix* ws[2] = {&c.a.m, &c.b.m};
        float* ys[2] = {got_a.data(), got_b.data()};
        ASSERT_TRUE(AwqMatMulSplitInput(x.data(), n, ws, ys, 2, &pool));
        const std::string what = "threads " + std::to_string(threads) + " rows " +
                                 std::to_string(c.a.m.rows) + " n " + std::to_string(n);
        ASSERT_EQ(0, std::memcmp(got_a.data(), want_a.data(), sizeof(float) * want_a.size()))
            << what;
        ASSERT_EQ(0, std::memcmp(got_b.data(), want_b.data(), sizeof(float) * want_b.size()))
            << what;
        // One product through kernels::MatMul, which takes the same path with a pool.
        std::vector<float> via_matmul(want_b.size(), -7.0f);
        MatMul(x.data(), n, AsWeightView(c.b.m), via_matmul.data(), &pool);
        ASSERT_EQ(0, std::memcmp(via_matmul.data(), want_b.data(), sizeof(float) * want_b.size()))
            << what;
      }
    }
  }
}

TEST(QuantMatMulTest, AwqSplitInputDeclinesWhatItDoesNotTake) {
  std::mt19937 rng(22);
  const TestQuant awq = MakeAwq(256, 256, 64, WeightType::kF16, true, rng);
  const TestQuant other_group = MakeAwq(256, 256, 128, WeightType::kF16, true, rng);
  const TestQuant mlx = MakeMlx(256, 256, 4, 64, WeightType::kBF16, rng);
  const TestQuant wide = MakeAwq(internal::kAwqSplitMaxRows + 8, 256, 64, WeightType::kF16, true, rng);
  const std::vector<float> x = RandomX(8 * 256, rng);
  std::vector<float> y0(8 * 256, -7.0f), y1(8 * 256, -7.0f);
  float* ys[2] = {y0.data(), y1.data()};
  ThreadPool pool(2), single(1);
  const QuantMatrix* just_awq[1] = {&awq.m};
  const QuantMatrix* mixed_groups[2] = {&awq.m, &other_group.m};
  const QuantMatrix* with_mlx[2] = {&awq.m, &mlx.m};
  const QuantMatrix* with_wide[2] = {&awq.m, &wide.m};
  EXPECT_FALSE(
      AwqMatMulSplitInput(x.data(), internal::kAwqSplitMaxTokens + 1, just_awq, ys, 1, &pool));
  EXPECT_FALSE(AwqMatMulSplitInput(x.data(), 1, just_awq, ys, 1, &single));
  EXPECT_FALSE(AwqMatMulSplitInput(x.data(), 1, just_awq, ys, 1, nullptr));
  EXPECT_FALSE(AwqMatMulSplitInput(x.data(), 1, mixed_groups, ys, 2, &pool));
  EXPECT_FALSE(AwqMatMulSplitInput(x.data(), 1, with_mlx, ys, 2, &pool));
  EXPECT_FALSE(AwqMatMulSplitInput(x.data(), 1, with_wide, ys, 2, &pool));
  // Declining computes nothing.
  EXPECT_EQ(y0[0], -7.0f);
  EXPECT_EQ(y1[0], -7.0f);
}

TEST(QuantMatMulTest, PrefillTokenBitsDoNotDependOnTheBatch) {
  // The prefill kernel sizes its token tiles to the batch (a 16-token expert group is not
  // padded to 64); a token's outputs must still be the bits it gets alone, in any batch.
  std::mt19937 rng(21);
  TestQuant mlx = MakeMlx(40, 256, 4, 64, WeightType::kBF16, rng);
  TestQuant mlx3 = MakeMlx(40, 256, 3, 32, WeightType::kBF16, rng);
  TestQuant awq = MakeAwq(200, 256, 64, WeightType::kF16, true, rng);
  for (const QuantMatrix* m : {&mlx.m, &mlx3.m, &awq.m}) {
    const int64_t n = 83;  // one full 64-token tile, then a 19-token one
    const std::vector<float> x = RandomX(n * m->cols, rng);
    ForEachTarget([&](const std::string& target) {
      std::vector<float> batch(n * m->rows);
      internal::QuantMatMulRowsKernel(x.data(), n, *m, 0, m->rows, batch.data(),
                                      internal::QuantKernel::kPrefill);
      for (int64_t t = 0; t < n; t += 5) {
        for (int64_t size : {int64_t{1}, int64_t{16}, int64_t{33}}) {
          const int64_t count = std::min(size, n - t);
          std::vector<float> part(count * m->rows);
          internal::QuantMatMulRowsKernel(x.data() + t * m->cols, count, *m, 0, m->rows,
                                          part.data(), internal::QuantKernel::kPrefill);
          for (int64_t i = 0; i < count * m->rows; ++i) {
            ASSERT_EQ(part[i], batch[t * m->rows + i])
                << target << " token " << t + i / m->rows << " in a batch of " << count;
          }
        }
      }
    });
  }
}

// n tokens through `kernel` against the reference.
void ExpectKernelMatches(const QuantMatrix& m, int64_t n, internal::QuantKernel kernel,
                         std::mt19937& rng, const std::string& what) {
  const std::vector<float> x = RandomX(n * m.cols, rng);
  std::vector<float> want(n * m.rows), got(n * m.rows, -7.0f);  // -7: a row left unwritten
  QuantMatMulReference(x.data(), n, m, want.data());
  internal::QuantMatMulRowsKernel(x.data(), n, m, 0, m.rows, got.data(), kernel);
  ExpectMatches(Magnitudes(x, n, m), n, m, got, want, what);
}

TEST(QuantMatMulTest, MlxTilesTakeBatchesAndMatchReference) {
  // The int8 tiles: every MLX width with groups of 64 and 128, row counts that leave partial
  // row tiles, token counts that leave partial 5-token chunks, activations whose groups span
  // very different magnitudes (the per-group exponent) and an all-zero group.
  std::mt19937 rng(21);
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    for (int group : {64, 128}) {
      TestQuant tq = MakeMlx(45, 384, bits, group, WeightType::kBF16, rng);
      if (!QuantTileProductsAvailable()) {
        EXPECT_FALSE(UsesQuantTiles(tq.m, 8));
        GTEST_SKIP() << "no AMX-INT8 on this CPU";
      }
      EXPECT_FALSE(UsesQuantTiles(tq.m, kQuantTileMinTokens - 1)) << "few tokens: VNNI kernel";
      EXPECT_TRUE(UsesQuantTiles(tq.m, kQuantTileMinTokens));
      EXPECT_TRUE(UsesQuantTiles(tq.m, 128));
      for (int64_t n : {1, 2, 5, 6, 16, 33}) {
        std::vector<float> x = RandomX(n * tq.m.cols, rng);
        for (int64_t t = 0; t < n; ++t) {
          for (int64_t c = 0; c < 64; ++c) x[t * tq.m.cols + c] *= 1e4f;
          for (int64_t c = 128; c < 256; ++c) x[t * tq.m.cols + c] = 0.0f;
        }
        std::vector<float> want(n * tq.m.rows), got(n * tq.m.rows, -7.0f);
        QuantMatMulReference(x.data(), n, tq.m, want.data());
        const std::vector<double> mag = Magnitudes(x, n, tq.m);
        internal::QuantMatMulRowsKernel(x.data(), n, tq.m, 0, tq.m.rows, got.data(),
                                        internal::QuantKernel::kTiles);
        ExpectMatches(mag, n, tq.m, got, want,
                      "tiles bits " + std::to_string(bits) + " group " + std::to_string(group) +
                          " n " + std::to_string(n));
      }
    }
  }
}

TEST(QuantMatMulTest, AwqTilesTakeBatchesAndMatchReference) {
  // AWQ on the int8 tiles: a 128-column block, a partial block (40 + 8 of 168 columns, a last
  // half tile), zero points stored and absent, groups of 64 and 128, partial token chunks.
  if (!QuantTileProductsAvailable()) GTEST_SKIP() << "no AMX-INT8 on this CPU";
  std::mt19937 rng(25);
  for (int group : {64, 128}) {
    for (bool zeros : {true, false}) {
      TestQuant tq = MakeAwq(168, 256, group, WeightType::kF16, zeros, rng);
      EXPECT_FALSE(UsesQuantTiles(tq.m, kAwqTileMinTokens - 1));
      ASSERT_TRUE(UsesQuantTiles(tq.m, kAwqTileMinTokens));
      for (int64_t n : {1, 4, 6, 16}) {
        ExpectKernelMatches(tq.m, n, internal::QuantKernel::kTiles, rng,
                            "awq tiles group " + std::to_string(group) + " n " + std::to_string(n));
      }
    }
  }
}

TEST(QuantMatMulTest, MlxTilesCarryNaNLikeTheReference) {
  // A NaN activation makes its token's outputs NaN (as the reference's sums), not a finite value.
  if (!QuantTileProductsAvailable()) GTEST_SKIP() << "no AMX-INT8 on this CPU";
  std::mt19937 rng(27);
  TestQuant tq = MakeMlx(32, 256, 4, 64, WeightType::kBF16, rng);
  const int64_t n = 4;
  std::vector<float> x = RandomX(n * tq.m.cols, rng);
  x[70] = std::numeric_limits<float>::quiet_NaN();  // token 0, second group
  std::vector<float> y(n * tq.m.rows);
  internal::QuantMatMulRowsKernel(x.data(), n, tq.m, 0, tq.m.rows, y.data(),
                                  internal::QuantKernel::kTiles);
  for (int64_t r = 0; r < tq.m.rows; ++r) {
    EXPECT_TRUE(std::isnan(y[r])) << "row " << r;
    EXPECT_FALSE(std::isnan(y[tq.m.rows + r])) << "token 1 row " << r;
  }
}

TEST(QuantMatMulTest, MlxTilesPackedOnceGiveTheSameBits) {
  // MatMul over a pool packs x once for every row share (WithPackedTileX); each share then
  // reads the packed x. The bits must equal one unsplit call that packs its own.
  if (!QuantTileProductsAvailable()) GTEST_SKIP() << "no AMX-INT8 on this CPU";
  std::mt19937 rng(23);
  TestQuant tq = MakeMlx(200, 256, 4, 64, WeightType::kBF16, rng);
  ThreadPool pool(3);
  for (int64_t n : {kQuantTileMinTokens, int64_t{11}, int64_t{33}}) {
    ASSERT_TRUE(UsesQuantTiles(tq.m, n));
    const std::vector<float> x = RandomX(n * tq.m.cols, rng);
    std::vector<float> whole(n * tq.m.rows), shared(n * tq.m.rows, -7.0f);
    QuantMatMul(x.data(), n, tq.m, whole.data());
    const WeightView w = AsWeightView(tq.m);
    TilePackedX packed;
    std::vector<uint16_t> storage;
    const MatMulOptions options =
        WithPackedTileX(x.data(), n, w, MatMulOptions{}, &packed, &storage);
    ASSERT_EQ(options.tile_x, &packed);
    MatMul(x.data(), n, w, shared.data(), &pool, options);
    for (size_t i = 0; i < whole.size(); ++i)
      ASSERT_EQ(whole[i], shared[i]) << "n " << n << " " << i;
  }
}

// `bytes` of writable memory that end exactly where an unreadable page begins.
class BytesAtPageEnd {
 public:
  explicit BytesAtPageEnd(size_t bytes) : page_(static_cast<size_t>(sysconf(_SC_PAGESIZE))) {
    void* p = mmap(nullptr, 2 * page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    region_ = static_cast<uint8_t*>(p);
    if (mprotect(region_ + page_, page_, PROT_NONE) != 0) return;
    data_ = region_ + page_ - bytes;
  }
  ~BytesAtPageEnd() {
    if (region_ != nullptr) munmap(region_, 2 * page_);
  }
  BytesAtPageEnd(const BytesAtPageEnd&) = delete;
  BytesAtPageEnd& operator=(const BytesAtPageEnd&) = delete;
  uint8_t* data() const { return data_; }  // null if the mapping failed

 private:
  size_t page_;
  uint8_t* region_ = nullptr;
  uint8_t* data_ = nullptr;
};

TEST(QuantMatMulTest, LastRowOfATensorIsReadWithoutOverrun) {
  // The packed data ends exactly at a page boundary followed by an unreadable page: the
  // kernels must not touch a byte past the last row (3/5/6-bit rows end mid-window).
  for (int bits : {3, 5, 6}) {
    const int64_t rows = 2, cols = 64;
    const size_t bytes = rows * cols * bits / 8;
    BytesAtPageEnd at_end(bytes);
    ASSERT_NE(at_end.data(), nullptr);
    std::mt19937 rng(bits);
    for (size_t i = 0; i < bytes; ++i) at_end.data()[i] = static_cast<uint8_t>(rng());
    TestQuant tq = MakeMlx(rows, cols, bits, 32, WeightType::kBF16, rng);
    tq.m.data = at_end.data();
    ForEachTarget([&](const std::string& target) {
      for (internal::QuantKernel kernel : kKernels) {
        ExpectKernelMatches(tq.m, 1, kernel, rng, target + " edge " + std::to_string(bits));
      }
    });
  }
  // The int8 tiles stage whole steps of 64 codes: the same with their shapes (4 tokens, rows
  // of 128 codes, groups of 64), every MLX width and AWQ (whose last input row's words end at
  // the page; 24 output columns: a partial block).
  if (!QuantTileProductsAvailable()) return;
  for (int bits : {2, 3, 4, 5, 6, 8, 0}) {
    std::mt19937 rng(bits + 1);
    TestQuant tq = bits == 0 ? MakeAwq(24, 128, 64, WeightType::kF16, true, rng)
                             : MakeMlx(3, 128, bits, 64, WeightType::kBF16, rng);
    const size_t bytes = tq.m.PackedBytes();
    BytesAtPageEnd at_end(bytes);
    ASSERT_NE(at_end.data(), nullptr);
    memcpy(at_end.data(), tq.m.data, bytes);
    tq.m.data = at_end.data();
    ExpectKernelMatches(tq.m, 4, internal::QuantKernel::kTiles, rng,
                        "tiles edge " + (bits == 0 ? std::string("awq") : std::to_string(bits)));
  }
}

}  // namespace
}  // namespace afd::kernels
