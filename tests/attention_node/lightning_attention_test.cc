// Tests of the lightning attention kernels (common/kernels/lightning_attention.h): slopes (T9),
// block path vs reference twin and vs the exact recurrence (incl. the short-last-block key
// decay), per-token recurrence vs reference, and chunk continuation (T13).
#include "common/kernels/lightning_attention.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace afd::kernels {
namespace {

std::vector<float> RandomQkv(int64_t n, int heads, int d, uint32_t seed) {
  // Post-SiLU-like values: mostly positive, some slightly negative.
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.5f);
  std::vector<float> v(n * heads * 3 * d);
  for (float& x : v) {
    const float z = dist(rng);
    x = z / (1.0f + std::exp(-z));
  }
  return v;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

float MaxAbs(const std::vector<float>& a) {
  float m = 0;
  for (float x : a) m = std::max(m, std::fabs(x));
  return m;
}

TEST(LightningSlopesTest, UsesTransformersLayerFactor) {
  // MODEL.md T9: H = 64, L = 80, layer 78. transformers' factor is 0.0126683528, the original /
  // vLLM factor 0.0126682278. Head 63 has base^64 = 2^-8 exactly.
  const std::vector<float> s = LightningSlopes(64, 78, 80);
  ASSERT_EQ(s.size(), 64u);
  const double hf = 0.00390625 * 0.0126683528;
  const double vllm = 0.00390625 * 0.0126682278;
  EXPECT_NEAR(s[63], hf, hf * 1e-6);
  EXPECT_GT(std::fabs(s[63] - vllm), vllm * 5e-6);
}

TEST(LightningSlopesTest, FollowsPowerFormulaForAnyHeadCount) {
  for (int heads : {4, 6, 64}) {
    for (int layer : {0, 3}) {
      const std::vector<float> s = LightningSlopes(heads, layer, 8);
      const double factor = 1.0 - layer / (7 + 1e-5) + 1e-5;
      for (int h = 0; h < heads; ++h) {
        const double want = std::pow(2.0, -8.0 * (h + 1) / heads) * factor;
        EXPECT_NEAR(s[h], want, want * 1e-6) << heads << " heads, head " << h;
      }
    }
  }
}

TEST(LightningAttentionTest, PrefillMatchesReferenceAcrossBlocks) {
  const int heads = 3, d = 16, block = 8;
  const int64_t n = 21;  // blocks of 8, 8, 5
  const std::vector<float> qkv = RandomQkv(n, heads, d, 1);
  const std::vector<float> slopes = LightningSlopes(heads, 1, 4);
  std::vector<float> state(heads * d * d, 0.0f), ref_state(state);
  std::vector<float> out(n * heads * d), ref(out.size());
  std::vector<float> scratch(LightningPrefillScratchFloats(d, block));
  LightningPrefill(qkv.data(), n, heads, d, 0, heads, slopes.data(), block, state.data(),
                   scratch.data(), out.data());
  LightningPrefillReference(qkv.data(), n, heads, d, slopes.data(), block, ref_state.data(),
                            ref.data());
  EXPECT_LE(MaxAbsDiff(out, ref), 1e-5f * MaxAbs(ref));
  EXPECT_LE(MaxAbsDiff(state, ref_state), 1e-5f * MaxAbs(ref_state));
}

TEST(LightningAttentionTest, DecodeMatchesReference) {
  const int heads = 2, d = 32;
  const int64_t n = 9;
  const std::vector<float> qkv = RandomQkv(n, heads, d, 2);
  const std::vector<float> slopes = LightningSlopes(heads, 0, 2);
  std::vector<float> state(heads * d * d);
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 0.1f);
  for (float& x : state) x = dist(rng);
  std::vector<float> ref_state(state);
  std::vector<float> out(n * heads * d), ref(out.size());
  LightningDecode(qkv.data(), n, heads, d, 0, heads, slopes.data(), state.data(), out.data());
  LightningDecodeReference(qkv.data(), n, heads, d, slopes.data(), ref_state.data(), ref.data());
  EXPECT_LE(MaxAbsDiff(out, ref), 1e-6f * MaxAbs(ref));
  EXPECT_LE(MaxAbsDiff(state, ref_state), 1e-6f * MaxAbs(ref_state));
}

// o_t = sum_{j<=t} lambda^(t-j) (q_t . k_j) v_j and S_n = sum_j lambda^(n-1-j) k_j^T v_j, in
// double.
void ExactRecurrence(const std::vector<float>& qkv, int64_t n, int heads, int d,
                     const std::vector<float>& slopes, std::vector<double>* out,
                     std::vector<double>* state) {
  out->assign(n * heads * d, 0.0);
  state->assign(heads * d * d, 0.0);
  const int64_t stride = int64_t{heads} * 3 * d;
  for (int h = 0; h < heads; ++h) {
    const double lambda = std::exp(-double(slopes[h]));
    std::vector<double> s(d * d, 0.0);
    for (int64_t t = 0; t < n; ++t) {
      const float* q = &qkv[t * stride + h * 3 * d];
      const float* k = q + d;
      const float* v = q + 2 * d;
      for (int a = 0; a < d; ++a) {
        for (int b = 0; b < d; ++b) s[a * d + b] = lambda * s[a * d + b] + double(k[a]) * v[b];
      }
      for (int b = 0; b < d; ++b) {
        double acc = 0;
        for (int a = 0; a < d; ++a) acc += double(q[a]) * s[a * d + b];
        (*out)[(t * heads + h) * d + b] = acc;
      }
    }
    std::copy(s.begin(), s.end(), state->begin() + int64_t{h} * d * d);
  }
}

TEST(LightningAttentionTest, BlockPathEqualsExactRecurrenceWithShortLastBlock) {
  // 19 tokens with blocks of 16: the last block has 3 tokens, so its keys must decay by
  // lambda^(2-j) (the last 3 key decays), not lambda^(15-j).
  const int heads = 4, d = 16, block = 16;
  const int64_t n = 19;
  const std::vector<float> qkv = RandomQkv(n, heads, d, 4);
  const std::vector<float> slopes = LightningSlopes(heads, 0, 4);
  std::vector<float> state(heads * d * d, 0.0f);
  std::vector<float> out(n * heads * d);
  std::vector<float> scratch(LightningPrefillScratchFloats(d, block));
  LightningPrefill(qkv.data(), n, heads, d, 0, heads, slopes.data(), block, state.data(),
                   scratch.data(), out.data());
  std::vector<double> want_out, want_state;
  ExactRecurrence(qkv, n, heads, d, slopes, &want_out, &want_state);
  double scale = 0;
  for (double x : want_state) scale = std::max(scale, std::fabs(x));
  for (size_t i = 0; i < state.size(); ++i) EXPECT_NEAR(state[i], want_state[i], 1e-5 * scale);
  scale = 0;
  for (double x : want_out) scale = std::max(scale, std::fabs(x));
  for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], want_out[i], 1e-5 * scale);
}

TEST(LightningAttentionTest, DecodeContinuesTheBlockPathState) {
  // First 20 tokens by the block path, then 7 by the recurrence == 27 by the block path.
  const int heads = 2, d = 16, block = 8;
  const int64_t n = 27, first = 20;
  const std::vector<float> qkv = RandomQkv(n, heads, d, 5);
  const std::vector<float> slopes = LightningSlopes(heads, 2, 4);
  std::vector<float> scratch(LightningPrefillScratchFloats(d, block));
  std::vector<float> whole_state(heads * d * d, 0.0f), whole(n * heads * d);
  LightningPrefill(qkv.data(), n, heads, d, 0, heads, slopes.data(), block, whole_state.data(),
                   scratch.data(), whole.data());
  std::vector<float> state(heads * d * d, 0.0f), split(n * heads * d);
  LightningPrefill(qkv.data(), first, heads, d, 0, heads, slopes.data(), block, state.data(),
                   scratch.data(), split.data());
  LightningDecode(qkv.data() + first * heads * 3 * d, n - first, heads, d, 0, heads, slopes.data(),
                  state.data(), split.data() + first * heads * d);
  EXPECT_LE(MaxAbsDiff(split, whole), 1e-5f * MaxAbs(whole));
  EXPECT_LE(MaxAbsDiff(state, whole_state), 1e-5f * MaxAbs(whole_state));
}

TEST(LightningAttentionTest, HeadRangesComposeToTheFullComputation) {
  const int heads = 4, d = 16, block = 16;
  const int64_t n = 10;
  const std::vector<float> qkv = RandomQkv(n, heads, d, 6);
  const std::vector<float> slopes = LightningSlopes(heads, 0, 1);
  std::vector<float> scratch(LightningPrefillScratchFloats(d, block));
  std::vector<float> s1(heads * d * d, 0.0f), o1(n * heads * d);
  LightningPrefill(qkv.data(), n, heads, d, 0, heads, slopes.data(), block, s1.data(),
                   scratch.data(), o1.data());
  std::vector<float> s2(heads * d * d, 0.0f), o2(n * heads * d);
  LightningPrefill(qkv.data(), n, heads, d, 2, 4, slopes.data(), block, s2.data(), scratch.data(),
                   o2.data());
  LightningPrefill(qkv.data(), n, heads, d, 0, 2, slopes.data(), block, s2.data(), scratch.data(),
                   o2.data());
  EXPECT_EQ(o1, o2);
  EXPECT_EQ(s1, s2);
}

}  // namespace
}  // namespace afd::kernels
