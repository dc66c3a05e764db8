// Tests of the softmax attention kernels (common/kernels/attention.h): fast path vs reference
// twin, paged vs contiguous layout, GQA head mapping, causal masking, and a float64 oracle.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "common/kernels/attention.h"
#include "common/kernels/matmul.h"
#include "gtest/gtest.h"

namespace afd::kernels {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// A sequence of `len` tokens stored both contiguously and in a paged pool whose block table is
// deliberately out of order.
struct PagedFixture {
  AttentionShape shape;
  int block_size;
  int64_t len;
  std::vector<float> k, v;            // [len, Hkv, d]
  std::vector<float> k_pool, v_pool;  // [blocks, Hkv, bs, d]
  std::vector<int32_t> table;

  PagedFixture(AttentionShape s, int bs, int64_t n, uint32_t seed)
      : shape(s), block_size(bs), len(n) {
    const int d = s.head_dim, hkv = s.num_kv_heads;
    k = Random(n * hkv * d, seed);
    v = Random(n * hkv * d, seed + 1);
    const int64_t blocks = (n + bs - 1) / bs;
    const int64_t pool_blocks = blocks + 3;
    table.resize(blocks);
    std::vector<int32_t> ids(pool_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), std::mt19937(seed + 2));
    std::copy(ids.begin(), ids.begin() + blocks, table.begin());
    k_pool = Random(pool_blocks * hkv * bs * d, seed + 3);  // garbage outside the sequence
    v_pool = Random(pool_blocks * hkv * bs * d, seed + 4);
    for (int64_t pos = 0; pos < n; ++pos) {
      for (int h = 0; h < hkv; ++h) {
        const int64_t off =
            PagedKvOffset(table[pos / bs], h, static_cast<int>(pos % bs), hkv, bs, d);
        std::copy_n(&k[(pos * hkv + h) * d], d, &k_pool[off]);
        std::copy_n(&v[(pos * hkv + h) * d], d, &v_pool[off]);
      }
    }
  }
  PagedKvView View() const {
    PagedKvView view;
    view.k_pool = k_pool.data();
    view.v_pool = v_pool.data();
    view.block_table = table.data();
    view.block_size = block_size;
    return view;
  }
};

AttentionShape Shape(int heads, int kv_heads, int d) {
  AttentionShape s;
  s.num_heads = heads;
  s.num_kv_heads = kv_heads;
  s.head_dim = d;
  s.scale = 1.0f / std::sqrt(static_cast<float>(d));
  return s;
}

// Float64 textbook attention of query row i (position pos) over contiguous keys 0..pos.
std::vector<double> Oracle(const float* q, const std::vector<float>& k, const std::vector<float>& v,
                           const AttentionShape& s, int64_t pos, int head) {
  const int d = s.head_dim, hkv = s.num_kv_heads, kvh = head / (s.num_heads / hkv);
  std::vector<double> scores(pos + 1);
  double mx = -INFINITY;
  for (int64_t j = 0; j <= pos; ++j) {
    double dot = 0;
    for (int c = 0; c < d; ++c) dot += double(q[c]) * k[(j * hkv + kvh) * d + c];
    scores[j] = dot * s.scale;
    mx = std::max(mx, scores[j]);
  }
  double sum = 0;
  for (double& x : scores) sum += (x = std::exp(x - mx));
  std::vector<double> out(d, 0.0);
  for (int64_t j = 0; j <= pos; ++j) {
    for (int c = 0; c < d; ++c) out[c] += scores[j] / sum * v[(j * hkv + kvh) * d + c];
  }
  return out;
}

// The fast paged kernel against the float32 reference and a float64 oracle.
void ExpectPagedMatchesReference(const AttentionShape& s) {
  PagedFixture f(s, 5, 23, 7);
  // A decode-like chunk: queries at positions 17..22.
  const int64_t n = 6;
  std::vector<int32_t> positions(n);
  std::iota(positions.begin(), positions.end(), 17);
  const std::vector<float> q = Random(n * s.num_heads * s.head_dim, 11);
  std::vector<float> fast(q.size()), ref(q.size());
  PagedAttention(q.data(), n, positions.data(), f.View(), s, 0, s.num_heads, fast.data());
  PagedAttentionReference(q.data(), n, positions.data(), f.View(), s, ref.data());
  EXPECT_LE(MaxAbsDiff(fast, ref), 1e-5f);
  for (int64_t i = 0; i < n; ++i) {
    for (int h = 0; h < s.num_heads; ++h) {
      const float* qi = &q[(i * s.num_heads + h) * s.head_dim];
      const std::vector<double> want = Oracle(qi, f.k, f.v, s, positions[i], h);
      for (int c = 0; c < s.head_dim; ++c) {
        EXPECT_NEAR(fast[(i * s.num_heads + h) * s.head_dim + c], want[c], 1e-5);
      }
    }
  }
}

TEST(AttentionKernelTest, PagedMatchesReferenceAndFloat64Oracle) {
  // Group of 3; head dims of 48 (not a multiple of 32), 200 (more vectors than the value
  // accumulators' block of 8 and a partial last vector on any target) and 4 (below a vector).
  for (int d : {48, 200, 4}) {
    SCOPED_TRACE(d);
    ExpectPagedMatchesReference(Shape(6, 2, d));
  }
}

TEST(AttentionKernelTest, PagedPrefillEqualsContiguousCausal) {
  const AttentionShape s = Shape(4, 2, 32);
  PagedFixture f(s, 4, 19, 3);
  const int64_t n = f.len;
  std::vector<int32_t> positions(n);
  std::iota(positions.begin(), positions.end(), 0);
  const std::vector<float> q = Random(n * s.num_heads * s.head_dim, 5);
  std::vector<float> paged(q.size()), causal(q.size()), ref(q.size());
  PagedAttention(q.data(), n, positions.data(), f.View(), s, 0, s.num_heads, paged.data());
  CausalAttention(q.data(), f.k.data(), f.v.data(), n, s, 0, s.num_heads, causal.data());
  CausalAttentionReference(q.data(), f.k.data(), f.v.data(), n, s, ref.data());
  EXPECT_EQ(paged, causal);  // same arithmetic, only the addressing differs
  EXPECT_LE(MaxAbsDiff(causal, ref), 1e-5f);
}

TEST(AttentionKernelTest, FirstPositionReturnsItsOwnValueOfTheGroupKvHead) {
  // With one key the softmax is exactly 1, so query head h returns V of KV head h / group:
  // groups are contiguous (MODEL.md T17), not interleaved.
  const AttentionShape s = Shape(8, 2, 16);
  const std::vector<float> q = Random(s.num_heads * s.head_dim, 1);
  const std::vector<float> k = Random(s.num_kv_heads * s.head_dim, 2);
  const std::vector<float> v = Random(s.num_kv_heads * s.head_dim, 3);
  std::vector<float> out(q.size());
  CausalAttention(q.data(), k.data(), v.data(), 1, s, 0, s.num_heads, out.data());
  for (int h = 0; h < s.num_heads; ++h) {
    const int kvh = h / 4;
    for (int c = 0; c < s.head_dim; ++c) {
      EXPECT_FLOAT_EQ(out[h * s.head_dim + c], v[kvh * s.head_dim + c]) << "head " << h;
    }
  }
}

TEST(AttentionKernelTest, LaterKeysDoNotLeakIntoEarlierQueries) {
  const AttentionShape s = Shape(2, 1, 16);
  PagedFixture f(s, 4, 12, 9);
  const int64_t n = 12;
  std::vector<int32_t> positions(n);
  std::iota(positions.begin(), positions.end(), 0);
  const std::vector<float> q = Random(n * s.num_heads * s.head_dim, 4);
  std::vector<float> before(q.size()), after(q.size());
  PagedAttention(q.data(), n, positions.data(), f.View(), s, 0, 2, before.data());
  // Overwrite the keys/values of positions 6..11: rows 0..5 must not change.
  PagedFixture g = f;
  for (int64_t pos = 6; pos < n; ++pos) {
    const int64_t off = PagedKvOffset(g.table[pos / 4], 0, pos % 4, 1, 4, s.head_dim);
    for (int c = 0; c < s.head_dim; ++c) g.k_pool[off + c] = g.v_pool[off + c] = 100.0f + c;
  }
  PagedAttention(q.data(), n, positions.data(), g.View(), s, 0, 2, after.data());
  const int64_t cut = 6 * s.num_heads * s.head_dim;
  EXPECT_TRUE(std::equal(before.begin(), before.begin() + cut, after.begin()));
  EXPECT_FALSE(std::equal(before.begin() + cut, before.end(), after.begin() + cut));
}

// Heads that share a kv head run together (each key and value read once for the group): every
// head must get the bits it gets alone. Groups of 6 and of 12 (more than the kernel takes at
// once), with and without whole vectors per head.
// The bf16 cache: pools of bf16 bits give the bits of fp32 pools holding the same values (the
// widening is exact and the arithmetic the same), for every head-run shape and head dims with
// and without a scalar tail; and the reference twin reads bf16 pools too.
TEST(AttentionKernelTest, Bf16PoolsGiveTheBitsOfTheirFp32Values) {
  for (int group : {1, 6, 12}) {
    for (int d : {48, 128, 200}) {
      SCOPED_TRACE(testing::Message() << "group " << group << " d " << d);
      const AttentionShape s = Shape(2 * group, 2, d);
      PagedFixture f(s, 16, 45, 31);
      std::vector<uint16_t> k16(f.k_pool.size()), v16(f.v_pool.size());
      for (size_t i = 0; i < k16.size(); ++i) {
        k16[i] = FloatToBf16(f.k_pool[i]);
        v16[i] = FloatToBf16(f.v_pool[i]);
        f.k_pool[i] = Bf16ToFloat(k16[i]);  // the fp32 pools now hold the bf16 values
        f.v_pool[i] = Bf16ToFloat(v16[i]);
      }
      PagedKvView bf16 = f.View();
      bf16.k_pool = bf16.v_pool = nullptr;
      bf16.k_pool_bf16 = k16.data();
      bf16.v_pool_bf16 = v16.data();
      const int64_t n = 4;
      const std::vector<int32_t> positions = {0, 17, 33, 44};
      const std::vector<float> q = Random(n * s.num_heads * d, 32);
      std::vector<float> from_bf16(q.size()), from_fp32(q.size());
      PagedAttention(q.data(), n, positions.data(), bf16, s, 0, s.num_heads, from_bf16.data());
      PagedAttention(q.data(), n, positions.data(), f.View(), s, 0, s.num_heads, from_fp32.data());
      EXPECT_EQ(std::memcmp(from_bf16.data(), from_fp32.data(), sizeof(float) * q.size()), 0);
      std::vector<float> ref_bf16(q.size()), ref_fp32(q.size());
      PagedAttentionReference(q.data(), n, positions.data(), bf16, s, ref_bf16.data());
      PagedAttentionReference(q.data(), n, positions.data(), f.View(), s, ref_fp32.data());
      EXPECT_EQ(std::memcmp(ref_bf16.data(), ref_fp32.data(), sizeof(float) * q.size()), 0);
      EXPECT_LT(MaxAbsDiff(from_bf16, ref_bf16), 1e-5f);
    }
  }
}

// Also keys in blocks against keys one at a time: on x86 with 512-bit vectors a run of g heads
// takes its keys in blocks (4 keys for g <= 2, 2 for g <= 6, else 1) and the rest one at a time,
// so at 33-37 keys each key meets both paths across the head counts here (6, 8 + 4 and 1).
TEST(AttentionKernelTest, GroupedHeadsGiveTheBitsOfOneHeadAtATime) {
  for (int group : {6, 12}) {
    for (int d : {48, 200, 4}) {
      SCOPED_TRACE(testing::Message() << "group " << group << " d " << d);
      const AttentionShape s = Shape(2 * group, 2, d);
      PagedFixture f(s, 4, 37, 9);
      const int64_t n = 5;
      std::vector<int32_t> positions(n);
      std::iota(positions.begin(), positions.end(), 32);
      const std::vector<float> q = Random(n * s.num_heads * d, 13);
      std::vector<float> together(q.size()), alone(q.size());
      PagedAttention(q.data(), n, positions.data(), f.View(), s, 0, s.num_heads, together.data());
      for (int h = 0; h < s.num_heads; ++h) {
        PagedAttention(q.data(), n, positions.data(), f.View(), s, h, h + 1, alone.data());
      }
      EXPECT_EQ(std::memcmp(together.data(), alone.data(), sizeof(float) * q.size()), 0);
      // The contiguous causal kernel too.
      std::vector<float> cq = Random(37 * s.num_heads * d, 14);
      std::vector<float> ck = Random(37 * s.num_kv_heads * d, 15);
      std::vector<float> cv = Random(37 * s.num_kv_heads * d, 16);
      std::vector<float> ctogether(cq.size()), calone(cq.size());
      CausalAttention(cq.data(), ck.data(), cv.data(), 37, s, 0, s.num_heads, ctogether.data());
      for (int h = 0; h < s.num_heads; ++h) {
        CausalAttention(cq.data(), ck.data(), cv.data(), 37, s, h, h + 1, calone.data());
      }
      EXPECT_EQ(std::memcmp(ctogether.data(), calone.data(), sizeof(float) * cq.size()), 0);
    }
  }
}

TEST(AttentionKernelTest, HeadRangeWritesOnlyThoseHeads) {
  const AttentionShape s = Shape(4, 2, 32);
  PagedFixture f(s, 8, 10, 21);
  const int64_t n = 3;
  std::vector<int32_t> positions = {7, 8, 9};
  const std::vector<float> q = Random(n * s.num_heads * s.head_dim, 22);
  std::vector<float> full(q.size()), part(q.size(), -7.0f);
  PagedAttention(q.data(), n, positions.data(), f.View(), s, 0, 4, full.data());
  PagedAttention(q.data(), n, positions.data(), f.View(), s, 1, 3, part.data());
  for (int64_t i = 0; i < n; ++i) {
    for (int h = 0; h < 4; ++h) {
      for (int c = 0; c < s.head_dim; ++c) {
        const int64_t idx = (i * 4 + h) * s.head_dim + c;
        if (h == 1 || h == 2) {
          EXPECT_EQ(part[idx], full[idx]);
        } else {
          EXPECT_EQ(part[idx], -7.0f);
        }
      }
    }
  }
}

TEST(AttentionKernelTest, ScaleIsAppliedToScores) {
  // Two keys with dot products 0 and 8 and scale 0.25: weights softmax(0, 2).
  AttentionShape s = Shape(1, 1, 4);
  s.scale = 0.25f;
  const std::vector<float> q = {1, 1, 1, 1};
  const std::vector<float> k = {0, 0, 0, 0, 2, 2, 2, 2};
  const std::vector<float> v = {1, 0, 0, 0, 0, 1, 0, 0};
  std::vector<float> out(8);
  CausalAttention(q.data(), k.data(), v.data(), 1, s, 0, 1, out.data());
  EXPECT_FLOAT_EQ(out[0], 1.0f);  // query 0 sees only key 0
  std::vector<float> q2 = {0, 0, 0, 0, 1, 1, 1, 1};
  CausalAttention(q2.data(), k.data(), v.data(), 2, s, 0, 1, out.data());
  const double w1 = std::exp(2.0) / (1.0 + std::exp(2.0));
  EXPECT_NEAR(out[4], 1 - w1, 1e-6);
  EXPECT_NEAR(out[5], w1, 1e-6);
}

}  // namespace
}  // namespace afd::kernels
