// Tests for common/kernels/rope.h: inv_freq rounding, the vector kernel bit for bit against its
// reference twin for every Highway target, the partial (NeoX half-split) pairing, and the
// untouched pass-through dims.
#include "common/kernels/rope.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/common/kernels/kernel_test_util.h"

namespace afd::kernels {
namespace {

using testing::ForEachTarget;
using testing::RandomVector;

TEST(RopeTest, InvFreqRoundsLikeTorchFloat32) {
  for (double theta : {1e4, 5e6, 1e7}) {
    for (int r : {6, 16, 64, 128}) {
      const std::vector<float> inv = RopeInvFreq(theta, r);
      ASSERT_EQ(inv.size(), static_cast<size_t>(r / 2));
      EXPECT_EQ(inv[0], 1.0f);
      for (int i = 0; i < r / 2; ++i) {
        // fp32 exponent, correctly rounded fp32 power, fp32 reciprocal.
        const float e = static_cast<float>(2 * i) / static_cast<float>(r);
        const float p = static_cast<float>(
            std::pow(static_cast<long double>(static_cast<float>(theta)),
                     static_cast<long double>(e)));
        EXPECT_EQ(inv[i], 1.0f / p) << "theta " << theta << " r " << r << " i " << i;
        // And within a few ulp of the exact value.
        const double exact = std::pow(theta, -2.0 * i / r);
        EXPECT_NEAR(inv[i], exact, 4e-7 * exact);
      }
    }
  }
}

TEST(RopeTest, MatchesReferenceBitForBitForEveryTarget) {
  struct Case {
    int heads, head_dim, rotary_dim;
  };
  const Case cases[] = {{3, 128, 64}, {2, 32, 16}, {4, 10, 6}, {1, 128, 128}, {5, 64, 34}};
  std::mt19937 rng(21);
  for (const Case& c : cases) {
    const int64_t n = 7;
    const std::vector<int32_t> positions = {0, 1, 2, 17, 215, 40000, 131071};
    const std::vector<float> inv = RopeInvFreq(5e6, c.rotary_dim);
    const std::vector<float> x = RandomVector(n * c.heads * c.head_dim, rng, -2.0f, 2.0f);
    std::vector<float> want = x;
    ApplyRopeReference(want.data(), n, c.heads, c.head_dim, c.rotary_dim, positions.data(),
                       inv.data());
    ForEachTarget([&](const std::string& target) {
      std::vector<float> got = x;
      ApplyRope(got.data(), n, c.heads, c.head_dim, c.rotary_dim, positions.data(), inv.data());
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i], want[i]) << target << " head_dim " << c.head_dim << " rotary "
                                   << c.rotary_dim << " index " << i;
      }
    });
  }
}

TEST(RopeTest, RotatesHalfSplitPairsAndPassesTheRestThrough) {
  const int head_dim = 8, r = 4, half = 2;
  const std::vector<float> inv = RopeInvFreq(10000.0, r);  // {1, 0.01}
  const int32_t pos = 3;
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};
  ApplyRope(x.data(), 1, 1, head_dim, r, &pos, inv.data());
  for (int i = 0; i < half; ++i) {
    const float angle = static_cast<float>(pos) * inv[i];
    const float c = static_cast<float>(std::cos(static_cast<double>(angle)));
    const float s = static_cast<float>(std::sin(static_cast<double>(angle)));
    const float a = static_cast<float>(i + 1), b = static_cast<float>(i + 1 + half);
    EXPECT_EQ(x[i], a * c - b * s) << i;
    EXPECT_EQ(x[i + half], b * c + a * s) << i;
  }
  for (int i = r; i < head_dim; ++i) EXPECT_EQ(x[i], static_cast<float>(i + 1)) << i;
}

TEST(RopeTest, PositionZeroIsIdentity) {
  std::mt19937 rng(22);
  const std::vector<float> inv = RopeInvFreq(5e6, 64);
  const std::vector<float> x = RandomVector(2 * 128, rng);
  std::vector<float> y = x;
  const int32_t pos = 0;
  ApplyRope(y.data(), 1, 2, 128, 64, &pos, inv.data());
  EXPECT_EQ(x, y);
}

TEST(RopeTest, AngleIsRoundedToFloat32BeforeCos) {
  // At large positions the fp32 angle differs from the double one by up to half an fp32 ulp
  // (T15); the kernel must use the fp32 angle.
  const std::vector<float> inv = RopeInvFreq(5e6, 64);
  const int32_t pos = 131071;
  std::vector<float> x(64, 0.0f);
  x[0] = 1.0f;
  ApplyRope(x.data(), 1, 1, 64, 64, &pos, inv.data());
  const float angle = static_cast<float>(pos) * inv[0];
  EXPECT_EQ(x[0], static_cast<float>(std::cos(static_cast<double>(angle))));
  EXPECT_EQ(x[32], static_cast<float>(std::sin(static_cast<double>(angle))));
}

}  // namespace
}  // namespace afd::kernels
