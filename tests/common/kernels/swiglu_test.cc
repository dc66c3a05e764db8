// Tests for common/kernels/swiglu.h: SiluMul and Silu against the reference twin on random data
// (including saturated inputs) for every Highway target, and aliasing.
#include "common/kernels/swiglu.h"

#include <cmath>
#include <limits>
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

std::vector<float> Gates(size_t n, std::mt19937& rng) {
  std::vector<float> g = RandomVector(n, rng, -20.0f, 20.0f);
  const float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 87.0f, -87.0f, 88.5f, -88.5f,
                           100.0f, -100.0f, 1000.0f, -1000.0f, 3e38f, -3e38f};
  for (size_t i = 0; i < sizeof(special) / sizeof(special[0]) && i < n; ++i) g[i] = special[i];
  return g;
}

TEST(SwigluTest, SiluMulMatchesReferenceForEveryTarget) {
  std::mt19937 rng(31);
  for (int64_t n : {1, 7, 16, 33, 1000}) {
    const std::vector<float> g = Gates(n, rng);
    const std::vector<float> u = RandomVector(n, rng, -3.0f, 3.0f);
    std::vector<float> want(n);
    SiluMulReference(g.data(), u.data(), n, want.data());
    ForEachTarget([&](const std::string& target) {
      std::vector<float> got(n);
      SiluMul(g.data(), u.data(), n, got.data());
      // exp differs by an ulp or two from the libm one.
      ExpectNear(got, want, 1e-6f, 1e-30f, target + " n=" + std::to_string(n));
    });
  }
}

TEST(SwigluTest, SiluMatchesReference) {
  std::mt19937 rng(32);
  const int64_t n = 300;
  const std::vector<float> g = Gates(n, rng);
  const std::vector<float> ones(n, 1.0f);
  std::vector<float> want(n);
  SiluMulReference(g.data(), ones.data(), n, want.data());
  ForEachTarget([&](const std::string& target) {
    std::vector<float> got = g;
    Silu(got.data(), n);
    ExpectNear(got, want, 1e-6f, 1e-30f, target);
  });
}

TEST(SwigluTest, OutputMayAliasEitherInput) {
  std::mt19937 rng(33);
  const int64_t n = 77;
  const std::vector<float> g = Gates(n, rng);
  const std::vector<float> u = RandomVector(n, rng);
  std::vector<float> want(n);
  SiluMul(g.data(), u.data(), n, want.data());
  std::vector<float> g2 = g, u2 = u;
  SiluMul(g2.data(), u.data(), n, g2.data());
  SiluMul(g.data(), u2.data(), n, u2.data());
  EXPECT_EQ(g2, want);
  EXPECT_EQ(u2, want);
}

TEST(SwigluTest, KnownValues) {
  const float g[4] = {0.0f, 1.0f, -1.0f, 30.0f};
  const float u[4] = {5.0f, 2.0f, 2.0f, 1.0f};
  float out[4];
  SiluMul(g, u, 4, out);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_NEAR(out[1], 2.0 * 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
  EXPECT_NEAR(out[2], 2.0 * -1.0 / (1.0 + std::exp(1.0)), 1e-6);
  EXPECT_NEAR(out[3], 30.0f, 1e-5f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  float x[3] = {nan, -nan, 2.0f};
  Silu(x, 3);
  EXPECT_TRUE(std::isnan(x[0]));
  EXPECT_TRUE(std::isnan(x[1]));
}

}  // namespace
}  // namespace afd::kernels
