// Tests for common/kernels/rms_norm.h: the vector kernel against its reference twin on random
// data for every Highway target, in place and out of place, plus hand-computed values.
#include "common/kernels/rms_norm.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/common/kernels/kernel_test_util.h"

namespace afd::kernels {
namespace {

using testing::ExpectNear;
using testing::ForEachTarget;
using testing::RandomVector;

TEST(RmsNormTest, MatchesReferenceForEveryTarget) {
  std::mt19937 rng(11);
  for (int64_t dim : {1, 3, 16, 17, 64, 100, 1024, 3072, 6144}) {
    for (int64_t n : {1, 5}) {
      const std::vector<float> x = RandomVector(n * dim, rng, -3.0f, 3.0f);
      const std::vector<float> w = RandomVector(dim, rng, 0.5f, 1.5f);
      for (float eps : {1e-6f, 1e-5f}) {
        std::vector<float> want(n * dim);
        RmsNormReference(x.data(), w.data(), n, dim, eps, want.data());
        ForEachTarget([&](const std::string& target) {
          std::vector<float> got(n * dim);
          RmsNorm(x.data(), w.data(), n, dim, eps, got.data());
          // Only the summation order of sum(x^2) differs.
          ExpectNear(got, want, 1e-5f, 1e-30f,
                     target + " dim=" + std::to_string(dim) + " n=" + std::to_string(n));
        });
      }
    }
  }
}

TEST(RmsNormTest, InPlaceEqualsOutOfPlace) {
  std::mt19937 rng(12);
  const int64_t n = 3, dim = 130;
  const std::vector<float> x = RandomVector(n * dim, rng);
  const std::vector<float> w = RandomVector(dim, rng);
  std::vector<float> out(n * dim), inplace = x;
  RmsNorm(x.data(), w.data(), n, dim, 1e-6f, out.data());
  RmsNorm(inplace.data(), w.data(), n, dim, 1e-6f, inplace.data());
  EXPECT_EQ(out, inplace);
}

TEST(RmsNormTest, HandComputedValues) {
  // mean(3^2, 4^2) = 12.5; out = x / sqrt(12.5 + eps) * w.
  const float x[2] = {3.0f, 4.0f};
  const float w[2] = {1.0f, 2.0f};
  for (float eps : {0.0f, 0.5f}) {
    float out[2], ref[2];
    RmsNorm(x, w, 1, 2, eps, out);
    RmsNormReference(x, w, 1, 2, eps, ref);
    const float inv = 1.0f / std::sqrt(12.5f + eps);
    EXPECT_EQ(out[0], (3.0f * inv) * 1.0f);
    EXPECT_EQ(out[1], (4.0f * inv) * 2.0f);
    EXPECT_EQ(ref[0], out[0]);
    EXPECT_EQ(ref[1], out[1]);
  }
}

TEST(RmsNormTest, EpsilonKeepsZeroRowsFinite) {
  std::vector<float> x(40, 0.0f), w(40, 1.0f), out(40, 1.0f);
  RmsNorm(x.data(), w.data(), 1, 40, 1e-6f, out.data());
  for (float v : out) EXPECT_EQ(v, 0.0f);
}

TEST(RmsNormTest, EpsilonChangesTheResult) {
  // Epsilon is added to the mean square, not to the root (MODEL.md T10: 1e-5 vs 1e-6 matters).
  std::vector<float> x(64, 0.01f), w(64, 1.0f), a(64), b(64);
  RmsNorm(x.data(), w.data(), 1, 64, 1e-6f, a.data());
  RmsNorm(x.data(), w.data(), 1, 64, 1e-5f, b.data());
  EXPECT_NEAR(a[0], 0.01f / std::sqrt(1e-4f + 1e-6f), 1e-6f);
  EXPECT_NEAR(b[0], 0.01f / std::sqrt(1e-4f + 1e-5f), 1e-6f);
  EXPECT_GT(std::fabs(a[0] - b[0]), 1e-3f);
}

}  // namespace
}  // namespace afd::kernels
