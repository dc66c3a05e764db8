// Tests for common/kernels/routing.h: both routers against their reference twins (exactly),
// the bias-for-selection-only rule, tie-breaking, output order and renormalisation.
#include "common/kernels/routing.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/common/kernels/kernel_test_util.h"

namespace afd::kernels {
namespace {

using testing::RandomVector;

float Sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }

TEST(RoutingTest, SigmoidBiasTopKMatchesReference) {
  std::mt19937 rng(41);
  for (int experts : {8, 16, 256}) {
    for (int k : {1, 2, 8}) {
      const int64_t n = 40;
      std::vector<float> logits = RandomVector(n * experts, rng, -4.0f, 4.0f);
      // Quantised logits make exact ties common.
      for (int64_t i = 0; i < n * experts; i += 3) logits[i] = std::round(logits[i]);
      const std::vector<float> bias = RandomVector(experts, rng, -0.1f, 0.1f);
      for (const float* b : {static_cast<const float*>(nullptr), bias.data()}) {
        std::vector<int32_t> ids(n * k), ref_ids(n * k);
        std::vector<float> w(n * k), ref_w(n * k);
        SigmoidBiasTopK(logits.data(), b, n, experts, k, ids.data(), w.data());
        SigmoidBiasTopKReference(logits.data(), b, n, experts, k, ref_ids.data(), ref_w.data());
        EXPECT_EQ(ids, ref_ids) << experts << " " << k;
        EXPECT_EQ(w, ref_w) << experts << " " << k;
      }
    }
  }
}

TEST(RoutingTest, BiasChoosesButDoesNotWeigh) {
  // Without bias experts 0 and 1 win; bias +5 on expert 2 makes it win over expert 1. The
  // weights are the un-biased sigmoids of {0, 2}, renormalised.
  const float logits[4] = {2.0f, 1.0f, 0.0f, -1.0f};
  const float bias[4] = {0.0f, 0.0f, 5.0f, 0.0f};
  int32_t ids[2];
  float w[2];
  SigmoidBiasTopK(logits, nullptr, 1, 4, 2, ids, w);
  EXPECT_EQ(ids[0], 0);
  EXPECT_EQ(ids[1], 1);
  SigmoidBiasTopK(logits, bias, 1, 4, 2, ids, w);
  EXPECT_EQ(ids[0], 0);
  EXPECT_EQ(ids[1], 2);
  const float s0 = Sigmoid(2.0f), s2 = Sigmoid(0.0f);
  EXPECT_EQ(w[0], s0 / (s0 + s2));
  EXPECT_EQ(w[1], s2 / (s0 + s2));
}

TEST(RoutingTest, OutputsAreSortedByExpertIdAndWeightsSumToOne) {
  std::mt19937 rng(42);
  const int64_t n = 20;
  const int experts = 256, k = 8;
  const std::vector<float> logits = RandomVector(n * experts, rng, -4.0f, 4.0f);
  const std::vector<float> bias = RandomVector(experts, rng, -0.5f, 0.5f);
  std::vector<int32_t> ids(n * k);
  std::vector<float> w(n * k);
  SigmoidBiasTopK(logits.data(), bias.data(), n, experts, k, ids.data(), w.data());
  for (int64_t t = 0; t < n; ++t) {
    float sum = 0.0f;
    for (int i = 0; i < k; ++i) {
      if (i > 0) {
        EXPECT_LT(ids[t * k + i - 1], ids[t * k + i]);
      }
      EXPECT_GT(w[t * k + i], 0.0f);
      sum += w[t * k + i];
    }
    EXPECT_NEAR(sum, 1.0f, 1e-6f);
    // Every chosen expert's biased score is >= every unchosen one's.
    float worst_chosen = std::numeric_limits<float>::infinity();
    for (int i = 0; i < k; ++i) {
      const int e = ids[t * k + i];
      worst_chosen = std::min(worst_chosen, Sigmoid(logits[t * experts + e]) + bias[e]);
    }
    for (int e = 0; e < experts; ++e) {
      if (std::find(&ids[t * k], &ids[t * k] + k, e) != &ids[t * k] + k) continue;
      EXPECT_LE(Sigmoid(logits[t * experts + e]) + bias[e], worst_chosen);
    }
  }
}

TEST(RoutingTest, ExactTiesGoToTheLowerExpertId) {
  const std::vector<float> zeros(16, 0.0f);
  int32_t ids[4];
  float w[4];
  SigmoidBiasTopK(zeros.data(), nullptr, 1, 16, 4, ids, w);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(ids[i], i);
    EXPECT_EQ(w[i], 0.25f);
  }
  // Experts 3, 9, 12 tie for the top; 3 and 9 win a top-2.
  std::vector<float> logits(16, -1.0f);
  logits[12] = logits[9] = logits[3] = 2.0f;
  SoftmaxTopK(logits.data(), 1, 16, 2, ids, w);
  EXPECT_EQ(ids[0], 3);
  EXPECT_EQ(ids[1], 9);
  EXPECT_EQ(w[0], 0.5f);
}

TEST(RoutingTest, NanScoresRankLast) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float logits[5] = {nan, 1.0f, nan, 0.5f, -2.0f};
  int32_t ids[3], ref_ids[3];
  float w[3], ref_w[3];
  SigmoidBiasTopK(logits, nullptr, 1, 5, 3, ids, w);
  SigmoidBiasTopKReference(logits, nullptr, 1, 5, 3, ref_ids, ref_w);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 3);
  EXPECT_EQ(ids[2], 4);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ids[i], ref_ids[i]);
}

TEST(RoutingTest, SoftmaxTopKMatchesReference) {
  std::mt19937 rng(43);
  for (int experts : {4, 32, 64}) {
    for (int k : {1, 2, 4}) {
      const int64_t n = 50;
      std::vector<float> logits = RandomVector(n * experts, rng, -6.0f, 6.0f);
      for (int64_t i = 0; i < n * experts; i += 4) logits[i] = std::round(logits[i]);
      std::vector<int32_t> ids(n * k), ref_ids(n * k);
      std::vector<float> w(n * k), ref_w(n * k);
      SoftmaxTopK(logits.data(), n, experts, k, ids.data(), w.data());
      SoftmaxTopKReference(logits.data(), n, experts, k, ref_ids.data(), ref_w.data());
      EXPECT_EQ(ids, ref_ids) << experts << " " << k;
      EXPECT_EQ(w, ref_w) << experts << " " << k;
    }
  }
}

TEST(RoutingTest, SoftmaxTopTwoEqualsSoftmaxOverTheChosenLogits) {
  // Mixtral: renormalised top-k of the full softmax = softmax over the selected logits.
  const float logits[4] = {1.0f, 3.0f, 2.0f, 0.0f};
  int32_t ids[2];
  float w[2];
  SoftmaxTopK(logits, 1, 4, 2, ids, w);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 2);
  const double e = std::exp(1.0);
  EXPECT_NEAR(w[0], e / (e + 1.0), 1e-6);
  EXPECT_NEAR(w[1], 1.0 / (e + 1.0), 1e-6);
}

}  // namespace
}  // namespace afd::kernels
