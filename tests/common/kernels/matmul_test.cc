// Tests for common/kernels/matmul.h: the scalar conversion helpers bit for bit, and every
// product kernel (decode, prefill, sgemm, threaded) against MatMulReference on random data,
// for every Highway target this machine supports.
#include "common/kernels/matmul.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/kernels/matmul_internal.h"
#include "common/kernels/thread_pool.h"
#include "gtest/gtest.h"
#include "hwy/targets.h"

namespace afd::kernels {
namespace {

uint32_t FloatBits(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  return b;
}

float BitsFloat(uint32_t b) {
  float f;
  memcpy(&f, &b, 4);
  return f;
}

// Owns the bytes behind a WeightView.
struct TestWeight {
  std::vector<uint8_t> data;
  std::vector<float> scales;
  WeightView view;
};

// Random weights of `type` [rows, cols]; values around +-1 (FP8: the whole finite range times
// random scales of a few binades).
TestWeight MakeWeight(WeightType type, int64_t rows, int64_t cols, std::mt19937& rng,
                      int block_rows = 128, int block_cols = 128) {
  TestWeight tw;
  tw.view.type = type;
  tw.view.rows = rows;
  tw.view.cols = cols;
  tw.view.block_rows = block_rows;
  tw.view.block_cols = block_cols;
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  const size_t count = static_cast<size_t>(rows * cols);
  tw.data.resize(count * tw.view.ElementBytes());
  for (size_t i = 0; i < count; ++i) {
    switch (type) {
      case WeightType::kF32: {
        const float v = uni(rng);
        memcpy(&tw.data[4 * i], &v, 4);
        break;
      }
      case WeightType::kBF16: {
        const uint16_t v = FloatToBf16(uni(rng));
        memcpy(&tw.data[2 * i], &v, 2);
        break;
      }
      case WeightType::kF16: {
        // Any finite half: random sign, exponent 0..30, mantissa.
        uint16_t v = static_cast<uint16_t>(rng() & 0xFFFF);
        if (((v >> 10) & 0x1F) == 31) v &= 0xBFFF;
        memcpy(&tw.data[2 * i], &v, 2);
        break;
      }
      case WeightType::kFp8E4M3: {
        uint8_t v = static_cast<uint8_t>(rng() & 0xFF);
        if ((v & 0x7F) == 0x7F) v &= 0xFE;  // no NaN
        tw.data[i] = v;
        break;
      }
      case WeightType::kAwqInt4:
      case WeightType::kMlxAffine:
        break;  // packed types: quant_matmul_test
    }
  }
  if (type == WeightType::kFp8E4M3) {
    const int64_t nrb = (rows + block_rows - 1) / block_rows;
    const int64_t ncb = (cols + block_cols - 1) / block_cols;
    std::uniform_real_distribution<float> mant(1.0f, 2.0f);
    tw.scales.resize(static_cast<size_t>(nrb * ncb));
    for (float& s : tw.scales) s = std::ldexp(mant(rng), static_cast<int>(rng() % 5) - 10);
    tw.view.scales = tw.scales.data();
  }
  tw.view.data = tw.data.data();
  return tw;
}

std::vector<float> RandomVector(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& f : v) f = uni(rng);
  return v;
}

// Per-output bound: 1e-5 * sum_c |x||w| (plus a tiny absolute floor for all-zero rows).
std::vector<float> ErrorBounds(const std::vector<float>& x, int64_t n, const WeightView& w) {
  std::vector<float> ax(x.size());
  for (size_t i = 0; i < x.size(); ++i) ax[i] = std::fabs(x[i]);
  // |W| as a view: the reference on |x| and a copy of W with the sign bits cleared.
  const size_t eb = w.ElementBytes();
  const uint8_t* bytes = static_cast<const uint8_t*>(w.data);
  std::vector<uint8_t> abs_data(bytes, bytes + w.rows * w.cols * eb);
  for (size_t i = eb - 1; i < abs_data.size(); i += eb) abs_data[i] &= 0x7F;
  WeightView aw = w;
  aw.data = abs_data.data();
  std::vector<float> bound(static_cast<size_t>(n * w.rows));
  MatMulReference(ax.data(), n, aw, bound.data());
  for (float& b : bound) b = 1e-5f * b + 1e-30f;
  return bound;
}

void ExpectClose(const std::vector<float>& got, const std::vector<float>& want,
                 const std::vector<float>& bound, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  int bad = 0;
  for (size_t i = 0; i < got.size() && bad < 5; ++i) {
    if (!(std::fabs(got[i] - want[i]) <= bound[i])) {
      ADD_FAILURE() << what << " index " << i << ": got " << got[i] << " want " << want[i]
                    << " bound " << bound[i];
      ++bad;
    }
  }
}

std::string TypeName(WeightType t) {
  switch (t) {
    case WeightType::kF32: return "f32";
    case WeightType::kBF16: return "bf16";
    case WeightType::kF16: return "f16";
    case WeightType::kFp8E4M3: return "fp8";
    case WeightType::kAwqInt4: return "awq";
    case WeightType::kMlxAffine: return "mlx";
  }
  return "?";
}

// Runs `body` once per Highway target compiled in and supported here, then restores dispatch.
template <class Body>
void ForEachTarget(const Body& body) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    body(std::string(hwy::TargetName(target)));
  }
  hwy::SetSupportedTargetsForTest(0);
}

// ------------------------------------------------------------------------------------------
// Conversion helpers.

TEST(ConversionTest, Fp8E4M3AllValues) {
  for (int v = 0; v < 256; ++v) {
    const float got = Fp8E4M3ToFloat(static_cast<uint8_t>(v));
    const int sign = v >> 7, exp = (v >> 3) & 15, mant = v & 7;
    if (exp == 15 && mant == 7) {
      EXPECT_TRUE(std::isnan(got)) << v;
      continue;
    }
    // OCP e4m3fn: exponent bias 7, subnormals at exponent 0, no infinities.
    const double mag = exp == 0 ? std::pow(2.0, -6) * mant / 8.0
                                : std::pow(2.0, exp - 7) * (1.0 + mant / 8.0);
    const double want = sign ? -mag : mag;
    EXPECT_EQ(static_cast<double>(got), want) << "fp8 0x" << std::hex << v;
    EXPECT_EQ(std::signbit(got), sign == 1) << v;
  }
  EXPECT_EQ(Fp8E4M3ToFloat(0x7E), 448.0f);
  EXPECT_EQ(Fp8E4M3ToFloat(0xFE), -448.0f);
  EXPECT_EQ(Fp8E4M3ToFloat(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(Fp8E4M3ToFloat(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_TRUE(std::isnan(Fp8E4M3ToFloat(0xFF)));
}

TEST(ConversionTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3F80);
  EXPECT_EQ(FloatToBf16(-2.0f), 0xC000);
  // Exactly halfway: ties go to the even mantissa.
  EXPECT_EQ(FloatToBf16(BitsFloat(0x3F808000u)), 0x3F80);
  EXPECT_EQ(FloatToBf16(BitsFloat(0x3F818000u)), 0x3F82);
  // Just above / below halfway.
  EXPECT_EQ(FloatToBf16(BitsFloat(0x3F808001u)), 0x3F81);
  EXPECT_EQ(FloatToBf16(BitsFloat(0x3F807FFFu)), 0x3F80);
  // Largest finite rounds up to infinity; infinities and zeros keep their sign.
  EXPECT_EQ(FloatToBf16(BitsFloat(0x7F7FFFFFu)), 0x7F80);
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(FloatToBf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  EXPECT_EQ(FloatToBf16(-0.0f), 0x8000);
  // Subnormals round like any other value.
  EXPECT_EQ(FloatToBf16(BitsFloat(0x00008000u)), 0x0000);
  EXPECT_EQ(FloatToBf16(BitsFloat(0x00018000u)), 0x0002);
  // NaN becomes the canonical quiet NaN (as c10::BFloat16).
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::quiet_NaN()), 0x7FC0);
  EXPECT_EQ(FloatToBf16(BitsFloat(0xFF800001u)), 0x7FC0);
}

TEST(ConversionTest, Bf16RoundTripsEveryValue) {
  for (uint32_t v = 0; v < 65536; ++v) {
    const float f = Bf16ToFloat(static_cast<uint16_t>(v));
    ASSERT_EQ(FloatBits(f), v << 16);
    if (!std::isnan(f)) {
      ASSERT_EQ(FloatToBf16(f), v);
    }
  }
}

TEST(ConversionTest, Bf16MatchesDoubleRounding) {
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) {
    const float f = BitsFloat(rng());
    if (std::isnan(f) || std::isinf(f)) continue;
    const uint16_t b = FloatToBf16(f);
    // The result is one of the two neighbours and no farther than the other one.
    const uint16_t lo = static_cast<uint16_t>(FloatBits(f) >> 16);
    const uint16_t hi = static_cast<uint16_t>(lo + 1);
    if (std::isinf(Bf16ToFloat(hi))) continue;  // overflow is checked above
    ASSERT_TRUE(b == lo || b == hi) << f;
    const double d = f;
    const double dl = std::fabs(d - Bf16ToFloat(lo));
    const double dh = std::fabs(d - Bf16ToFloat(hi));
    if (dl < dh) {
      ASSERT_EQ(b, lo) << f;
    } else if (dh < dl) {
      ASSERT_EQ(b, hi) << f;
    } else {
      ASSERT_EQ(b & 1, 0) << f;
    }
  }
}

TEST(ConversionTest, F16AllValues) {
  for (uint32_t v = 0; v < 65536; ++v) {
    const float got = F16ToFloat(static_cast<uint16_t>(v));
    const int sign = v >> 15, exp = (v >> 10) & 31, mant = v & 1023;
    if (exp == 31) {
      if (mant == 0) {
        ASSERT_TRUE(std::isinf(got)) << v;
        ASSERT_EQ(std::signbit(got), sign == 1);
      } else {
        ASSERT_TRUE(std::isnan(got)) << v;
      }
      continue;
    }
    const double mag = exp == 0 ? std::ldexp(static_cast<double>(mant), -24)
                                : std::ldexp(1024.0 + mant, exp - 25);
    ASSERT_EQ(static_cast<double>(got), sign ? -mag : mag) << "f16 0x" << std::hex << v;
    ASSERT_EQ(std::signbit(got), sign == 1) << v;
  }
}

// ------------------------------------------------------------------------------------------
// Products.

struct Shape {
  int64_t rows, cols;
};

constexpr WeightType kAllTypes[] = {WeightType::kF32, WeightType::kBF16, WeightType::kF16,
                                    WeightType::kFp8E4M3};

TEST(MatMulTest, MatchesReferenceForEveryTypeShapeAndTarget) {
  const Shape shapes[] = {{1, 1}, {7, 13}, {33, 100}, {64, 256}, {192, 200}, {130, 515}};
  const int64_t token_counts[] = {1, 2, 3, 4, 5, 6, 7, 8, 11, 23, 33};
  std::mt19937 rng(1);
  for (WeightType type : kAllTypes) {
    for (const Shape& s : shapes) {
      TestWeight tw = MakeWeight(type, s.rows, s.cols, rng);
      for (int64_t n : token_counts) {
        const std::vector<float> x = RandomVector(n * s.cols, rng);
        std::vector<float> want(n * s.rows);
        MatMulReference(x.data(), n, tw.view, want.data());
        const std::vector<float> bound = ErrorBounds(x, n, tw.view);
        ForEachTarget([&](const std::string& target) {
          std::vector<float> got(n * s.rows, -1.0f);
          MatMul(x.data(), n, tw.view, got.data());
          ExpectClose(got, want, bound,
                      target + " " + TypeName(type) + " " + std::to_string(s.rows) + "x" +
                          std::to_string(s.cols) + " n=" + std::to_string(n));
        });
      }
    }
  }
}

TEST(MatMulTest, BothKernelsMatchReferenceAtAnyTokenCount) {
  std::mt19937 rng(2);
  for (WeightType type : kAllTypes) {
    TestWeight tw = MakeWeight(type, 45, 300, rng);
    for (int64_t n : {1, 5, 16, 20, 70}) {
      const std::vector<float> x = RandomVector(n * 300, rng);
      std::vector<float> want(n * 45);
      MatMulReference(x.data(), n, tw.view, want.data());
      const std::vector<float> bound = ErrorBounds(x, n, tw.view);
      ForEachTarget([&](const std::string& target) {
        for (bool prefill : {false, true}) {
          std::vector<float> got(n * 45, -1.0f);
          internal::MatMulRowsKernel(x.data(), n, tw.view, 0, 45, got.data(), prefill);
          ExpectClose(got, want, bound,
                      target + " " + TypeName(type) + (prefill ? " prefill" : " decode") +
                          " n=" + std::to_string(n));
        }
      });
    }
  }
}

TEST(MatMulTest, LongRowsTakeTheColumnBlockedDecodePath) {
  // Several tokens over long rows: the decode kernel splits the columns into blocks (partial
  // sums kept between blocks), including a ragged last block and rows left over after tiles.
  std::mt19937 rng(9);
  for (WeightType type : kAllTypes) {
    for (const Shape& s : {Shape{101, 1100}, Shape{29, 2000}}) {
      TestWeight tw = MakeWeight(type, s.rows, s.cols, rng);
      for (int64_t n : {2, 5, 8, 13}) {
        const std::vector<float> x = RandomVector(n * s.cols, rng);
        std::vector<float> want(n * s.rows);
        MatMulReference(x.data(), n, tw.view, want.data());
        const std::vector<float> bound = ErrorBounds(x, n, tw.view);
        ForEachTarget([&](const std::string& target) {
          std::vector<float> got(n * s.rows, -1.0f);
          internal::MatMulRowsKernel(x.data(), n, tw.view, 0, s.rows, got.data(), false);
          ExpectClose(got, want, bound,
                      target + " " + TypeName(type) + " " + std::to_string(s.rows) + "x" +
                          std::to_string(s.cols) + " n=" + std::to_string(n));
        });
      }
    }
  }
}

TEST(MatMulTest, Fp8RaggedAndOddBlockSizes) {
  // Edge blocks narrower than the block, and blocks that are not a multiple of any vector.
  struct Case {
    int64_t rows, cols;
    int block_rows, block_cols;
  };
  const Case cases[] = {{192, 200, 128, 128}, {200, 192, 128, 128}, {50, 70, 16, 48},
                        {37, 129, 5, 40},     {64, 64, 128, 128},   {130, 260, 64, 256}};
  std::mt19937 rng(3);
  for (const Case& c : cases) {
    TestWeight tw =
        MakeWeight(WeightType::kFp8E4M3, c.rows, c.cols, rng, c.block_rows, c.block_cols);
    for (int64_t n : {1, 3, 8, 24}) {
      const std::vector<float> x = RandomVector(n * c.cols, rng);
      std::vector<float> want(n * c.rows);
      MatMulReference(x.data(), n, tw.view, want.data());
      const std::vector<float> bound = ErrorBounds(x, n, tw.view);
      ForEachTarget([&](const std::string& target) {
        std::vector<float> got(n * c.rows, -1.0f);
        MatMul(x.data(), n, tw.view, got.data());
        ExpectClose(got, want, bound,
                    target + " fp8 " + std::to_string(c.rows) + "x" + std::to_string(c.cols) +
                        " block " + std::to_string(c.block_rows) + "x" +
                        std::to_string(c.block_cols) + " n=" + std::to_string(n));
      });
    }
  }
}

TEST(MatMulTest, Fp8ScaleIsAMultiplierPerBlock) {
  // All weights 1.0 (0x38); scale block (i, j) = 2^i * 3^j. y[r] = sum_c x[c] * scale.
  WeightView w;
  w.type = WeightType::kFp8E4M3;
  w.rows = 192;
  w.cols = 200;
  std::vector<uint8_t> data(192 * 200, 0x38);
  std::vector<float> scales = {1.0f, 3.0f, 2.0f, 6.0f};
  w.data = data.data();
  w.scales = scales.data();
  std::vector<float> x(200, 1.0f), y(192);
  MatMul(x.data(), 1, w, y.data());
  EXPECT_EQ(y[0], 128.0f * 1 + 72.0f * 3);
  EXPECT_EQ(y[127], 128.0f * 1 + 72.0f * 3);
  EXPECT_EQ(y[128], 128.0f * 2 + 72.0f * 6);
  EXPECT_EQ(y[191], 128.0f * 2 + 72.0f * 6);
}

TEST(MatMulTest, Fp8NanWeightPropagates) {
  std::mt19937 rng(4);
  ForEachTarget([&](const std::string& target) {
    TestWeight tw = MakeWeight(WeightType::kFp8E4M3, 16, 256, rng);
    tw.data[3 * 256 + 77] = 0x7F;   // +NaN in row 3
    tw.data[9 * 256 + 200] = 0xFF;  // -NaN in row 9
    for (int64_t n : {1, 20}) {
      const std::vector<float> x = RandomVector(n * 256, rng);
      std::vector<float> y(n * 16);
      MatMul(x.data(), n, tw.view, y.data());
      for (int64_t t = 0; t < n; ++t) {
        for (int r = 0; r < 16; ++r) {
          EXPECT_EQ(std::isnan(y[t * 16 + r]), r == 3 || r == 9)
              << target << " n=" << n << " row " << r;
        }
      }
    }
  });
}

TEST(MatMulTest, RowRangesWriteOnlyTheirRows) {
  std::mt19937 rng(5);
  for (WeightType type : kAllTypes) {
    TestWeight tw = MakeWeight(type, 100, 64, rng);
    for (int64_t n : {1, 6, 40}) {
      const std::vector<float> x = RandomVector(n * 64, rng);
      std::vector<float> want(n * 100);
      MatMulReference(x.data(), n, tw.view, want.data());
      const std::vector<float> bound = ErrorBounds(x, n, tw.view);
      std::vector<float> got(n * 100, 12345.0f);
      MatMulRows(x.data(), n, tw.view, 13, 71, got.data());
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t r = 0; r < 100; ++r) {
          const size_t i = t * 100 + r;
          if (r >= 13 && r < 71) {
            EXPECT_LE(std::fabs(got[i] - want[i]), bound[i]) << TypeName(type) << " " << i;
          } else {
            EXPECT_EQ(got[i], 12345.0f) << TypeName(type) << " " << i;
          }
        }
      }
    }
  }
}

TEST(MatMulTest, ThreadPoolProductMatchesReference) {
  std::mt19937 rng(6);
  for (int threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads);
    for (WeightType type : kAllTypes) {
      for (const Shape& s : {Shape{7, 9}, Shape{100, 130}, Shape{257, 64}}) {
        TestWeight tw = MakeWeight(type, s.rows, s.cols, rng);
        for (int64_t n : {1, 8, 21}) {
          const std::vector<float> x = RandomVector(n * s.cols, rng);
          std::vector<float> want(n * s.rows), got(n * s.rows, -1.0f);
          MatMulReference(x.data(), n, tw.view, want.data());
          MatMul(x.data(), n, tw.view, got.data(), &pool);
          ExpectClose(got, want, ErrorBounds(x, n, tw.view),
                      "threads=" + std::to_string(threads) + " " + TypeName(type) +
                          " n=" + std::to_string(n));
        }
      }
    }
  }
  // A null pool runs on the caller.
  TestWeight tw = MakeWeight(WeightType::kBF16, 40, 40, rng);
  const std::vector<float> x = RandomVector(40, rng);
  std::vector<float> want(40), got(40);
  MatMulReference(x.data(), 1, tw.view, want.data());
  MatMul(x.data(), 1, tw.view, got.data(), nullptr);
  ExpectClose(got, want, ErrorBounds(x, 1, tw.view), "null pool");
}

// ------------------------------------------------------------------------------------------
// Determinism: every output's bits depend only on its token's activations and its weight row,
// never on how the rows are split (MatMulRows ranges, threads), on n, or on the token's place in
// the batch. The distributed and in-process expert paths rely on it.

constexpr int64_t kDeterminismTokenCounts[] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                               13, 15, 16, 23, 24, 25, 33, 64, 70, 131};

// Index of the first element whose bits differ, or -1.
int64_t FirstBitDifference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return 0;
  if (memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0) return -1;
  for (size_t i = 0; i < a.size(); ++i) {
    if (FloatBits(a[i]) != FloatBits(b[i])) return static_cast<int64_t>(i);
  }
  return -1;
}

void ExpectSameBits(const std::vector<float>& got, const std::vector<float>& want,
                    const std::string& what) {
  const int64_t i = FirstBitDifference(got, want);
  if (i >= 0) {
    ADD_FAILURE() << what << ": first difference at index " << i << " (got " << got[i]
                  << ", want " << want[i] << ")";
  }
}

// Row boundaries 0 = b[0] < b[1] < ... < b.back() = rows: `cuts` random ones.
std::vector<int64_t> RandomSplit(int64_t rows, int cuts, std::mt19937& rng) {
  std::vector<int64_t> b = {0, rows};
  for (int i = 0; i < cuts && rows > 1; ++i) {
    b.push_back(1 + static_cast<int64_t>(rng() % static_cast<uint32_t>(rows - 1)));
  }
  std::sort(b.begin(), b.end());
  b.erase(std::unique(b.begin(), b.end()), b.end());
  return b;
}

TEST(MatMulDeterminismTest, RowSplitsAndThreadCountsGiveIdenticalBits) {
  // 150 rows: several pool units of 48 and two FP8 row blocks; 600 columns: a column tail
  // after the vector chunks.
  constexpr int64_t kRows = 150, kCols = 600;
  std::mt19937 rng(11);
  std::vector<std::unique_ptr<ThreadPool>> pools;
  for (int threads : {1, 2, 3, 8}) pools.push_back(std::make_unique<ThreadPool>(threads));
  for (WeightType type : kAllTypes) {
    TestWeight tw = MakeWeight(type, kRows, kCols, rng);
    for (int64_t n : kDeterminismTokenCounts) {
      const std::vector<float> x = RandomVector(n * kCols, rng);
      std::vector<std::vector<int64_t>> splits(1);
      for (int64_t b = 0; b < kRows; b += 32) splits[0].push_back(b);  // ExpertFfn's row tiles
      splits[0].push_back(kRows);
      for (int cuts : {1, 2, 5, 17}) splits.push_back(RandomSplit(kRows, cuts, rng));
      ForEachTarget([&](const std::string& target) {
        const std::string what = target + " " + TypeName(type) + " n=" + std::to_string(n);
        std::vector<float> full(n * kRows, -1.0f);
        MatMul(x.data(), n, tw.view, full.data());
        for (const std::vector<int64_t>& b : splits) {
          std::vector<float> got(n * kRows, -2.0f);
          std::string ranges;
          for (size_t i = 0; i + 1 < b.size(); ++i) {
            MatMulRows(x.data(), n, tw.view, b[i], b[i + 1], got.data());
            ranges += " [" + std::to_string(b[i]) + "," + std::to_string(b[i + 1]) + ")";
          }
          ExpectSameBits(got, full, what + " MatMulRows" + ranges);
        }
        for (const auto& pool : pools) {
          std::vector<float> got(n * kRows, -3.0f);
          MatMul(x.data(), n, tw.view, got.data(), pool.get());
          ExpectSameBits(got, full,
                         what + " pool of " + std::to_string(pool->num_threads()) + " threads");
        }
      });
    }
  }
}

// x transposed once (WithPackedPrefillX) and shared by row ranges gives the bits of ranges
// that transpose their own: token counts with 4- and 2-vector chunks and several groups, a
// column tail, every type; a weight of another type, or another x, ignores it.
TEST(MatMulDeterminismTest, SharedTransposedActivationsKeepTheBits) {
  constexpr int64_t kRows = 100, kCols = 600;
  std::mt19937 rng(17);
  for (WeightType type : kAllTypes) {
    TestWeight tw = MakeWeight(type, kRows, kCols, rng);
    const WeightType other_type = type == WeightType::kBF16 ? WeightType::kF32 : WeightType::kBF16;
    TestWeight other = MakeWeight(other_type, kRows, kCols, rng);
    for (int64_t n : {24, 25, 33, 70, 97, 300, 901}) {
      const std::vector<float> x = RandomVector(n * kCols, rng);
      const std::vector<int64_t> split = RandomSplit(kRows, 3, rng);
      ForEachTarget([&](const std::string& target) {
        const std::string what = target + " " + TypeName(type) + " n=" + std::to_string(n);
        PrefillPackedX packed;
        std::vector<float> storage;
        const MatMulOptions options =
            WithPackedPrefillX(x.data(), n, tw.view, MatMulOptions{}, &packed, &storage);
        ASSERT_EQ(options.prefill_x, &packed) << what;
        std::vector<float> want(n * kRows, -1.0f), got(n * kRows, -2.0f);
        MatMul(x.data(), n, tw.view, want.data());
        for (size_t i = 0; i + 1 < split.size(); ++i) {
          MatMulRows(x.data(), n, tw.view, split[i], split[i + 1], got.data(), options);
        }
        ExpectSameBits(got, want, what + " shared transpose");
        std::vector<float> other_want(n * kRows, -3.0f), other_got(n * kRows, -4.0f);
        MatMul(x.data(), n, other.view, other_want.data());
        MatMulRows(x.data(), n, other.view, 0, kRows, other_got.data(), options);
        ExpectSameBits(other_got, other_want, what + " weight of another type");
        const std::vector<float> x2 = RandomVector(n * kCols, rng);
        std::vector<float> x2_want(n * kRows, -5.0f), x2_got(n * kRows, -6.0f);
        MatMul(x2.data(), n, tw.view, x2_want.data());
        MatMulRows(x2.data(), n, tw.view, 0, kRows, x2_got.data(), options);
        ExpectSameBits(x2_got, x2_want, what + " another x");
      });
    }
  }
  // Below the prompt kernel's token count nothing is packed.
  TestWeight tw = MakeWeight(WeightType::kBF16, kRows, kCols, rng);
  const std::vector<float> x = RandomVector(23 * kCols, rng);
  PrefillPackedX packed;
  std::vector<float> storage;
  EXPECT_EQ(WithPackedPrefillX(x.data(), 23, tw.view, MatMulOptions{}, &packed, &storage).prefill_x,
            nullptr);
}

TEST(MatMulDeterminismTest, TokenBitsDoNotDependOnTheBatch) {
  // Each token of a batch gets the bits it gets alone (n = 1), whichever kernel the batch size
  // picks (decode below kPrefillMinTokens, prefill from it) and when either kernel is forced.
  constexpr int64_t kRows = 150, kCols = 600;
  std::mt19937 rng(12);
  for (WeightType type : kAllTypes) {
    TestWeight tw = MakeWeight(type, kRows, kCols, rng);
    for (int64_t n : kDeterminismTokenCounts) {
      const std::vector<float> x = RandomVector(n * kCols, rng);
      ForEachTarget([&](const std::string& target) {
        const std::string what = target + " " + TypeName(type) + " n=" + std::to_string(n);
        std::vector<float> alone(n * kRows, -1.0f);
        for (int64_t t = 0; t < n; ++t) {
          MatMul(x.data() + t * kCols, 1, tw.view, alone.data() + t * kRows);
        }
        std::vector<float> batch(n * kRows, -2.0f);
        MatMul(x.data(), n, tw.view, batch.data());
        ExpectSameBits(batch, alone, what + " batch vs tokens alone");
        for (bool prefill : {false, true}) {
          std::vector<float> forced(n * kRows, -3.0f);
          internal::MatMulRowsKernel(x.data(), n, tw.view, 0, kRows, forced.data(), prefill);
          ExpectSameBits(forced, alone,
                         what + (prefill ? " prefill" : " decode") + " kernel vs tokens alone");
        }
      });
    }
  }
}

TEST(MatMulDeterminismTest, LongRowsAndOddBlocksKeepTheBits) {
  // Long rows (the decode kernel's column blocks, several prefill column blocks) and FP8
  // blocks that are not multiples of any tile or vector: forced kernels, odd row ranges and
  // tokens alone all agree.
  struct Case {
    WeightType type;
    int64_t rows, cols;
    int block_rows, block_cols;
  };
  const Case cases[] = {{WeightType::kBF16, 61, 2100, 128, 128},
                        {WeightType::kFp8E4M3, 61, 2100, 128, 128},
                        {WeightType::kFp8E4M3, 50, 270, 7, 40},
                        {WeightType::kF32, 29, 1500, 128, 128}};
  std::mt19937 rng(13);
  for (const Case& c : cases) {
    TestWeight tw = MakeWeight(c.type, c.rows, c.cols, rng, c.block_rows, c.block_cols);
    for (int64_t n : {2, 5, 8, 13, 30}) {
      const std::vector<float> x = RandomVector(n * c.cols, rng);
      ForEachTarget([&](const std::string& target) {
        const std::string what = target + " " + TypeName(c.type) + " " + std::to_string(c.rows) +
                                 "x" + std::to_string(c.cols) + " n=" + std::to_string(n);
        std::vector<float> alone(n * c.rows, -1.0f);
        for (int64_t t = 0; t < n; ++t) {
          MatMul(x.data() + t * c.cols, 1, tw.view, alone.data() + t * c.rows);
        }
        for (bool prefill : {false, true}) {
          std::vector<float> got(n * c.rows, -2.0f);
          const std::vector<int64_t> b = RandomSplit(c.rows, 3, rng);
          for (size_t i = 0; i + 1 < b.size(); ++i) {
            internal::MatMulRowsKernel(x.data(), n, tw.view, b[i], b[i + 1], got.data(), prefill);
          }
          ExpectSameBits(got, alone, what + (prefill ? " prefill" : " decode"));
        }
      });
    }
  }
}

// ------------------------------------------------------------------------------------------
// bf16-activation mode (MatMulOptions): against its reference twin, with the same determinism.

constexpr MatMulOptions kBf16Act{Activations::kBF16};
constexpr WeightType kBf16ActTypes[] = {WeightType::kBF16, WeightType::kFp8E4M3};

TEST(MatMulBf16ActivationsTest, MatchesItsReferenceForEveryShapeAndTarget) {
  struct Case {
    int64_t rows, cols;
    int block_rows, block_cols;
  };
  const Case cases[] = {{1, 1, 128, 128},    {7, 13, 128, 128},  {33, 100, 128, 128},
                        {64, 256, 128, 128}, {130, 515, 128, 128}, {50, 270, 7, 40},
                        {29, 2000, 128, 128}};
  std::mt19937 rng(21);
  for (WeightType type : kBf16ActTypes) {
    for (const Case& c : cases) {
      TestWeight tw = MakeWeight(type, c.rows, c.cols, rng, c.block_rows, c.block_cols);
      for (int64_t n : {1, 2, 3, 5, 8, 9, 20}) {
        const std::vector<float> x = RandomVector(n * c.cols, rng);
        std::vector<float> want(n * c.rows), exact(n * c.rows);
        MatMulReference(x.data(), n, tw.view, want.data(), kBf16Act);
        MatMulReference(x.data(), n, tw.view, exact.data());
        const std::vector<float> bound = ErrorBounds(x, n, tw.view);
        // bf16 activations: within 2^-8 relative of the fp32 product.
        std::vector<float> loose(bound.size());
        for (size_t i = 0; i < bound.size(); ++i) loose[i] = bound[i] * 400.0f;
        ExpectClose(want, exact, loose, "reference vs fp32 " + TypeName(type));
        ForEachTarget([&](const std::string& target) {
          std::vector<float> got(n * c.rows, -1.0f);
          MatMul(x.data(), n, tw.view, got.data(), nullptr, kBf16Act);
          ExpectClose(got, want, bound,
                      target + " " + TypeName(type) + " " + std::to_string(c.rows) + "x" +
                          std::to_string(c.cols) + " n=" + std::to_string(n));
        });
      }
    }
  }
}

TEST(MatMulBf16ActivationsTest, RoundsTheActivationsToBf16) {
  // One bf16 weight of 1.0: y = bf16(x) exactly, for values that need rounding.
  WeightView w;
  w.type = WeightType::kBF16;
  w.rows = 1;
  w.cols = 1;
  const uint16_t one = 0x3F80;
  w.data = &one;
  const float x[3] = {BitsFloat(0x3F808000u), BitsFloat(0x3F818000u), BitsFloat(0x3F808001u)};
  const float want[3] = {BitsFloat(0x3F800000u), BitsFloat(0x3F820000u), BitsFloat(0x3F810000u)};
  ForEachTarget([&](const std::string& target) {
    for (int i = 0; i < 3; ++i) {
      float y = 0;
      MatMul(x + i, 1, w, &y, nullptr, kBf16Act);
      EXPECT_EQ(FloatBits(y), FloatBits(want[i])) << target << " " << i;
    }
  });
}

TEST(MatMulBf16ActivationsTest, OtherWeightTypesIgnoreTheOption) {
  std::mt19937 rng(22);
  for (WeightType type : {WeightType::kF32, WeightType::kF16}) {
    TestWeight tw = MakeWeight(type, 40, 70, rng);
    const std::vector<float> x = RandomVector(3 * 70, rng);
    std::vector<float> plain(3 * 40), with(3 * 40, -1.0f);
    MatMul(x.data(), 3, tw.view, plain.data());
    MatMul(x.data(), 3, tw.view, with.data(), nullptr, kBf16Act);
    EXPECT_EQ(memcmp(plain.data(), with.data(), plain.size() * sizeof(float)), 0)
        << TypeName(type);
  }
}

TEST(MatMulBf16ActivationsTest, Fp8NanWeightPropagates) {
  std::mt19937 rng(23);
  ForEachTarget([&](const std::string& target) {
    TestWeight tw = MakeWeight(WeightType::kFp8E4M3, 16, 256, rng);
    tw.data[3 * 256 + 77] = 0x7F;
    tw.data[9 * 256 + 200] = 0xFF;
    for (int64_t n : {1, 20}) {
      const std::vector<float> x = RandomVector(n * 256, rng);
      std::vector<float> y(n * 16);
      MatMul(x.data(), n, tw.view, y.data(), nullptr, kBf16Act);
      for (int64_t t = 0; t < n; ++t) {
        for (int r = 0; r < 16; ++r) {
          EXPECT_EQ(std::isnan(y[t * 16 + r]), r == 3 || r == 9)
              << target << " n=" << n << " row " << r;
        }
      }
    }
  });
}

TEST(MatMulBf16ActivationsTest, BitsDependOnlyOnTheTokenAndTheRow) {
  constexpr int64_t kRows = 150, kCols = 600;
  std::mt19937 rng(24);
  std::vector<std::unique_ptr<ThreadPool>> pools;
  for (int threads : {2, 3}) pools.push_back(std::make_unique<ThreadPool>(threads));
  for (WeightType type : kBf16ActTypes) {
    TestWeight tw = MakeWeight(type, kRows, kCols, rng);
    for (int64_t n : kDeterminismTokenCounts) {
      const std::vector<float> x = RandomVector(n * kCols, rng);
      const std::vector<int64_t> split = RandomSplit(kRows, 5, rng);
      ForEachTarget([&](const std::string& target) {
        const std::string what = target + " " + TypeName(type) + " n=" + std::to_string(n);
        std::vector<float> alone(n * kRows, -1.0f);
        for (int64_t t = 0; t < n; ++t) {
          MatMul(x.data() + t * kCols, 1, tw.view, alone.data() + t * kRows, nullptr, kBf16Act);
        }
        std::vector<float> batch(n * kRows, -2.0f);
        MatMul(x.data(), n, tw.view, batch.data(), nullptr, kBf16Act);
        ExpectSameBits(batch, alone, what + " batch vs tokens alone");
        std::vector<float> rows(n * kRows, -3.0f);
        for (size_t i = 0; i + 1 < split.size(); ++i) {
          MatMulRows(x.data(), n, tw.view, split[i], split[i + 1], rows.data(), kBf16Act);
        }
        ExpectSameBits(rows, alone, what + " row split");
        for (const auto& pool : pools) {
          std::vector<float> got(n * kRows, -4.0f);
          MatMul(x.data(), n, tw.view, got.data(), pool.get(), kBf16Act);
          ExpectSameBits(got, alone, what + " pool of " + std::to_string(pool->num_threads()));
        }
      });
    }
  }
}

TEST(MatMulTest, ZeroTokensWritesNothing) {
  std::mt19937 rng(8);
  TestWeight tw = MakeWeight(WeightType::kBF16, 8, 8, rng);
  float y = 7.0f;
  MatMul(nullptr, 0, tw.view, &y);
  EXPECT_EQ(y, 7.0f);
}

}  // namespace
}  // namespace afd::kernels
