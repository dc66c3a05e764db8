// Tests for common/kernels/tile_matmul.h: the exact three-part split of fp32 activations, the AMX
// tile products against their scalar twin and the fp32 reference, and the rule that a token's
// bits depend only on its activations and the weight row (not on n, the batch, the row split
// or the thread count). Skipped where the CPU has no AMX-BF16 (the split test always runs).
#include "common/kernels/tile_matmul.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "common/kernels/matmul.h"
#include "common/kernels/thread_pool.h"
#include "gtest/gtest.h"

namespace afd::kernels {
namespace {

struct Bf16Matrix {
  std::vector<uint16_t> data;
  WeightView view;
};

struct Fp8Matrix {
  std::vector<uint8_t> data;
  std::vector<float> scales;
  WeightView view;
};

// Random e4m3 codes (NaN codes excluded), scales of a few binades, blocks of the given size.
Fp8Matrix RandomFp8Matrix(int64_t rows, int64_t cols, int block_rows, int block_cols,
                          std::mt19937& rng) {
  Fp8Matrix m;
  m.data.resize(rows * cols);
  for (uint8_t& v : m.data) {
    v = static_cast<uint8_t>(rng() & 0xFF);
    if ((v & 0x7F) == 0x7F) v &= 0xFE;
  }
  const int64_t nrb = (rows + block_rows - 1) / block_rows;
  const int64_t ncb = (cols + block_cols - 1) / block_cols;
  m.scales.resize(nrb * ncb);
  for (float& sc : m.scales) sc = std::exp2(static_cast<float>(rng() % 7) - 9.0f);
  m.view.type = WeightType::kFp8E4M3;
  m.view.rows = rows;
  m.view.cols = cols;
  m.view.data = m.data.data();
  m.view.scales = m.scales.data();
  m.view.block_rows = block_rows;
  m.view.block_cols = block_cols;
  return m;
}

// |W[r][c]| as the reference sees it.
float WeightMagnitude(const WeightView& w, int64_t r, int64_t c) {
  if (w.type == WeightType::kBF16) {
    return std::fabs(Bf16ToFloat(static_cast<const uint16_t*>(w.data)[r * w.cols + c]));
  }
  const int64_t ncb = (w.cols + w.block_cols - 1) / w.block_cols;
  const float scale = w.scales[(r / w.block_rows) * ncb + c / w.block_cols];
  return std::fabs(Fp8E4M3ToFloat(static_cast<const uint8_t*>(w.data)[r * w.cols + c]) * scale);
}

Bf16Matrix RandomMatrix(int64_t rows, int64_t cols, std::mt19937& rng) {
  Bf16Matrix m;
  std::normal_distribution<float> normal(0.0f, 0.05f);
  m.data.resize(rows * cols);
  for (uint16_t& v : m.data) v = FloatToBf16(normal(rng));
  m.view.type = WeightType::kBF16;
  m.view.rows = rows;
  m.view.cols = cols;
  m.view.data = m.data.data();
  return m;
}

std::vector<float> RandomActivations(int64_t n, int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n * cols);
  for (float& v : x) v = normal(rng) * std::exp2(static_cast<float>(rng() % 9) - 4.0f);
  return x;
}

// Bound on fp32 accumulation error: cols * eps * sum |x w| per output.
std::vector<float> ErrorBound(const std::vector<float>& x, int64_t n, const WeightView& w) {
  std::vector<float> bound(n * w.rows);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t r = 0; r < w.rows; ++r) {
      double s = 0;
      for (int64_t c = 0; c < w.cols; ++c) {
        s += std::fabs(x[t * w.cols + c]) * WeightMagnitude(w, r, c);
      }
      bound[t * w.rows + r] = static_cast<float>(s * 4e-7 * std::sqrt(w.cols) + 1e-30);
    }
  }
  return bound;
}

bool SameBits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

// The tile product of x [n, w.cols] against its scalar twin and the fp32 reference (within the
// accumulation bound), and the same bits when the rows are done in uneven ranges (tiles then
// start at rows that are not multiples of 16, and FP8 tiles straddle scale blocks).
void ExpectMatchesTwinAndReference(const WeightView& w, const std::vector<float>& x, int64_t n) {
  std::vector<float> y(n * w.rows, NAN), split(n * w.rows, NAN), twin(n * w.rows),
      ref(n * w.rows);
  TileMatMulRows(x.data(), n, w, 0, w.rows, y.data());
  for (int64_t begin = 0, len = 7; begin < w.rows; begin += len, len = len == 7 ? 41 : 7) {
    TileMatMulRows(x.data(), n, w, begin, std::min<int64_t>(w.rows, begin + len), split.data());
  }
  TileMatMulReference(x.data(), n, w, twin.data());
  MatMulReference(x.data(), n, w, ref.data());
  const std::vector<float> bound = ErrorBound(x, n, w);
  for (size_t i = 0; i < y.size(); ++i) {
    ASSERT_NEAR(y[i], twin[i], bound[i]) << "output " << i;
    ASSERT_NEAR(y[i], ref[i], bound[i]) << "output " << i;
    ASSERT_TRUE(SameBits(y[i], split[i])) << "output " << i;
  }
}

TEST(SplitToBf16x3Test, PartsAddUpExactly) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits(0, 0xFFFFFFFFu);
  int checked = 0;
  for (int i = 0; i < 200000; ++i) {
    uint32_t b = bits(rng);
    const uint32_t exponent = (b >> 23) & 0xFF;
    if (exponent < 60 || exponent > 220) continue;  // far from bf16's subnormal and overflow range
    float v;
    std::memcpy(&v, &b, 4);
    uint16_t hi, mid, lo;
    SplitToBf16x3(v, &hi, &mid, &lo);
    const double sum = static_cast<double>(Bf16ToFloat(hi)) + Bf16ToFloat(mid) + Bf16ToFloat(lo);
    ASSERT_EQ(sum, static_cast<double>(v)) << "bits 0x" << std::hex << b;
    ++checked;
  }
  EXPECT_GT(checked, 50000);
}

class TileMatMulTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TileProductsAvailable()) GTEST_SKIP() << "no AMX-BF16 tiles on this CPU";
  }
};

TEST_F(TileMatMulTest, MatchesTwinAndReferenceForShapes) {
  std::mt19937 rng(11);
  struct Shape {
    int64_t rows, cols, n;
  };
  for (const Shape& s : {Shape{16, 32, 1}, Shape{40, 64, 3}, Shape{96, 256, 6},
                         Shape{33, 160, 17}, Shape{128, 512, 40}, Shape{7, 96, 2}}) {
    SCOPED_TRACE(testing::Message() << s.rows << "x" << s.cols << " n" << s.n);
    const Bf16Matrix m = RandomMatrix(s.rows, s.cols, rng);
    ASSERT_TRUE(TileProductsSupport(m.view));
    ExpectMatchesTwinAndReference(m.view, RandomActivations(s.n, s.cols, rng), s.n);
  }
}

TEST_F(TileMatMulTest, TokenBitsDependOnlyOnTheTokenAndTheRow) {
  std::mt19937 rng(5);
  const int64_t rows = 200, cols = 384, n = 23;
  const Bf16Matrix m = RandomMatrix(rows, cols, rng);
  const std::vector<float> x = RandomActivations(n, cols, rng);
  std::vector<float> all(n * rows);
  TileMatMulRows(x.data(), n, m.view, 0, rows, all.data());
  // Each token alone, and the rows in uneven ranges.
  for (int64_t t = 0; t < n; ++t) {
    std::vector<float> one(rows);
    for (int64_t begin = 0; begin < rows;) {
      const int64_t end = std::min<int64_t>(rows, begin + 7 + (begin % 29));
      TileMatMulRows(x.data() + t * cols, 1, m.view, begin, end, one.data());
      begin = end;
    }
    for (int64_t r = 0; r < rows; ++r) {
      ASSERT_TRUE(SameBits(one[r], all[t * rows + r])) << "token " << t << " row " << r;
    }
  }
  // The same token at another position of another batch.
  std::vector<float> shuffled(x.size());
  for (int64_t t = 0; t < n; ++t) {
    std::memcpy(&shuffled[t * cols], &x[((t * 5) % n) * cols], cols * sizeof(float));
  }
  std::vector<float> y(n * rows);
  TileMatMulRows(shuffled.data(), n, m.view, 0, rows, y.data());
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      ASSERT_TRUE(SameBits(y[t * rows + r], all[((t * 5) % n) * rows + r]));
    }
  }
}

// Checkpoint tensors need not start on a 64-byte boundary; the tiles then stage the weights in
// an aligned buffer. The bits are the same wherever the weights lie, over several k blocks.
TEST_F(TileMatMulTest, WeightAlignmentDoesNotChangeTheBits) {
  std::mt19937 rng(17);
  const int64_t rows = 72, cols = 640, n = 19;
  const Bf16Matrix m = RandomMatrix(rows, cols, rng);
  const std::vector<float> x = RandomActivations(n, cols, rng);
  std::vector<uint16_t> storage(rows * cols + 64);
  const auto address = reinterpret_cast<uintptr_t>(storage.data());
  uint16_t* aligned = storage.data() + ((64 - address % 64) % 64) / 2;
  std::vector<float> want;
  for (int64_t offset : {0, 1, 8, 24}) {
    SCOPED_TRACE(testing::Message() << "offset " << 2 * offset << " bytes");
    std::memcpy(aligned + offset, m.data.data(), m.data.size() * sizeof(uint16_t));
    WeightView view = m.view;
    view.data = aligned + offset;
    std::vector<float> y(n * rows);
    TileMatMulRows(x.data(), n, view, 0, rows, y.data());
    if (want.empty()) {
      want = y;
      continue;
    }
    for (size_t i = 0; i < y.size(); ++i) ASSERT_TRUE(SameBits(y[i], want[i])) << "output " << i;
  }
  ExpectMatchesTwinAndReference(m.view, x, n);
}
TEST_F(TileMatMulTest, MatMulOptionsRouteToTilesOnlyWhereSupported) {
  std::mt19937 rng(3);
  ThreadPool pool(2);
  MatMulOptions tiles;
  tiles.kernel = Kernel::kTiles;
  // bf16 with whole steps: the pool-split product is the tile product bit for bit.
  const Bf16Matrix m = RandomMatrix(300, 256, rng);
  const std::vector<float> x = RandomActivations(9, 256, rng);
  std::vector<float> direct(9 * 300), pooled(9 * 300, NAN);
  TileMatMulRows(x.data(), 9, m.view, 0, 300, direct.data());
  MatMul(x.data(), 9, m.view, pooled.data(), &pool, tiles);
  for (size_t i = 0; i < direct.size(); ++i) ASSERT_TRUE(SameBits(direct[i], pooled[i])) << i;
  // 48 columns are not whole steps: the vector kernels, bit for bit.
  const Bf16Matrix odd = RandomMatrix(64, 48, rng);
  ASSERT_FALSE(TileProductsSupport(odd.view));
  const std::vector<float> xo = RandomActivations(5, 48, rng);
  std::vector<float> vec(5 * 64), routed(5 * 64, NAN);
  MatMul(xo.data(), 5, odd.view, vec.data(), &pool, MatMulOptions{});
  MatMul(xo.data(), 5, odd.view, routed.data(), &pool, tiles);
  for (size_t i = 0; i < vec.size(); ++i) ASSERT_TRUE(SameBits(vec[i], routed[i])) << i;
}

// Activations packed once (PackTileActivations / MatMulOptions::tile_x) give every row range of
// every matrix of that x the bits of packing per call; a pack of another n is not used.
TEST_F(TileMatMulTest, PackedOnceEqualsPackedPerCall) {
  std::mt19937 rng(17);
  const int64_t cols = 256, n = 37;
  const Bf16Matrix a = RandomMatrix(130, cols, rng);
  const Fp8Matrix b = RandomFp8Matrix(96, cols, 16, 128, rng);
  const std::vector<float> x = RandomActivations(n, cols, rng);
  for (TileActivations act : {TileActivations::kExact, TileActivations::kBf16}) {
    std::vector<uint16_t> storage;
    const TilePackedX packed = PackTileActivations(x.data(), n, cols, act, &storage);
    for (const WeightView* w : {&a.view, &b.view}) {
      SCOPED_TRACE(testing::Message() << w->rows << " rows, activations " << int(act));
      std::vector<float> per_call(n * w->rows), once(n * w->rows, NAN);
      TileMatMulRows(x.data(), n, *w, 0, w->rows, per_call.data(), act);
      for (int64_t begin = 0; begin < w->rows;) {  // uneven ranges, as threads take them
        const int64_t end = std::min<int64_t>(w->rows, begin + 16 + (begin % 37));
        TileMatMulRowsPacked(packed, *w, begin, end, once.data());
        begin = end;
      }
      for (size_t i = 0; i < once.size(); ++i) ASSERT_TRUE(SameBits(once[i], per_call[i])) << i;
    }
  }
  // Through MatMulOptions: the pool-split product with a shared pack; and a pack whose n does
  // not match the call is ignored (packed per call instead), never misread.
  ThreadPool pool(2);
  MatMulOptions tiles;
  tiles.kernel = Kernel::kTiles;
  std::vector<uint16_t> storage;
  TilePackedX packed;
  const MatMulOptions shared = WithPackedTileX(x.data(), n, a.view, tiles, &packed, &storage);
  ASSERT_EQ(shared.tile_x, &packed);
  std::vector<float> direct(n * a.view.rows), pooled(n * a.view.rows, NAN);
  TileMatMulRows(x.data(), n, a.view, 0, a.view.rows, direct.data());
  MatMul(x.data(), n, a.view, pooled.data(), &pool, shared);
  for (size_t i = 0; i < direct.size(); ++i) ASSERT_TRUE(SameBits(direct[i], pooled[i])) << i;
  std::vector<float> fewer(5 * a.view.rows, NAN), fewer_direct(5 * a.view.rows);
  MatMulRows(x.data(), 5, a.view, 0, a.view.rows, fewer.data(), shared);
  TileMatMulRows(x.data(), 5, a.view, 0, a.view.rows, fewer_direct.data());
  for (size_t i = 0; i < fewer.size(); ++i) ASSERT_TRUE(SameBits(fewer[i], fewer_direct[i])) << i;
  // Vector options are left alone.
  EXPECT_EQ(WithPackedTileX(x.data(), n, a.view, MatMulOptions{}, &packed, &storage).tile_x,
            nullptr);
}

// The opt-in bf16-activation mode on the tiles: bf16(x) times the weights, fp32 sums; the same
// contract as MatMulReference with Activations::kBF16, and MatMulOptions route there.
TEST_F(TileMatMulTest, Bf16ActivationsMatchTheirReference) {
  std::mt19937 rng(13);
  const int64_t rows = 80, cols = 320, n = 11;
  const Bf16Matrix m = RandomMatrix(rows, cols, rng);
  const std::vector<float> x = RandomActivations(n, cols, rng);
  std::vector<float> y(n * rows), twin(n * rows), ref(n * rows), exact(n * rows);
  TileMatMulRows(x.data(), n, m.view, 0, rows, y.data(), TileActivations::kBf16);
  TileMatMulReference(x.data(), n, m.view, twin.data(), TileActivations::kBf16);
  MatMulOptions bf16;
  bf16.activations = Activations::kBF16;
  MatMulReference(x.data(), n, m.view, ref.data(), bf16);
  MatMulReference(x.data(), n, m.view, exact.data());
  const std::vector<float> bound = ErrorBound(x, n, m.view);
  double rounding = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    ASSERT_NEAR(y[i], twin[i], bound[i]) << i;
    ASSERT_NEAR(y[i], ref[i], bound[i]) << i;
    rounding = std::max(rounding, static_cast<double>(std::fabs(y[i] - exact[i]) / bound[i]));
  }
  EXPECT_GT(rounding, 1.0) << "bf16 activations should differ from the exact product";
  ThreadPool pool(2);
  bf16.kernel = Kernel::kTiles;
  std::vector<float> pooled(n * rows, NAN);
  MatMul(x.data(), n, m.view, pooled.data(), &pool, bf16);
  for (size_t i = 0; i < y.size(); ++i) ASSERT_TRUE(SameBits(y[i], pooled[i])) << i;
}

// FP8 weights: widened exactly, per-block scales applied as the block sums leave the tiles;
// ragged last blocks in both directions, rows past the end, odd row ranges.
TEST_F(TileMatMulTest, Fp8MatchesTwinAndReference) {
  std::mt19937 rng(17);
  struct Shape {
    int64_t rows, cols, n;
    int block_rows, block_cols;
  };
  for (const Shape& s : {Shape{128, 256, 5, 128, 128}, Shape{40, 160, 17, 32, 128},
                         Shape{96, 192, 3, 16, 64}, Shape{200, 384, 33, 128, 128}}) {
    SCOPED_TRACE(testing::Message() << s.rows << "x" << s.cols << " n" << s.n << " blocks "
                                    << s.block_rows << "x" << s.block_cols);
    const Fp8Matrix m = RandomFp8Matrix(s.rows, s.cols, s.block_rows, s.block_cols, rng);
    ASSERT_TRUE(TileProductsSupport(m.view));
    ExpectMatchesTwinAndReference(m.view, RandomActivations(s.n, s.cols, rng), s.n);
  }
  // Scale blocks that do not hold whole tiles take the vector kernels.
  EXPECT_FALSE(TileProductsSupport(RandomFp8Matrix(64, 96, 24, 96, rng).view));
  EXPECT_FALSE(TileProductsSupport(RandomFp8Matrix(64, 96, 32, 48, rng).view));
}

TEST_F(TileMatMulTest, Fp8NanWeightPropagates) {
  std::mt19937 rng(19);
  Fp8Matrix m = RandomFp8Matrix(32, 128, 128, 128, rng);
  m.data[5 * 128 + 77] = 0x7F;  // NaN
  const std::vector<float> x = RandomActivations(2, 128, rng);
  std::vector<float> y(2 * 32);
  TileMatMulRows(x.data(), 2, m.view, 0, 32, y.data());
  for (int t = 0; t < 2; ++t) {
    for (int r = 0; r < 32; ++r) EXPECT_EQ(std::isnan(y[t * 32 + r]), r == 5) << t << " " << r;
  }
}

TEST_F(TileMatMulTest, NanActivationPropagates) {
  std::mt19937 rng(9);
  const Bf16Matrix m = RandomMatrix(16, 64, rng);
  std::vector<float> x = RandomActivations(2, 64, rng);
  x[64 + 10] = NAN;
  std::vector<float> y(2 * 16);
  TileMatMulRows(x.data(), 2, m.view, 0, 16, y.data());
  for (int r = 0; r < 16; ++r) {
    EXPECT_FALSE(std::isnan(y[r]));
    EXPECT_TRUE(std::isnan(y[16 + r]));
  }
}

}  // namespace
}  // namespace afd::kernels
