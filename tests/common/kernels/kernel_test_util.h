// Helpers shared by the kernel tests: running a body once per Highway target, random vectors,
// and float comparison with a per-element bound. Not thread-safe.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/targets.h"

namespace afd::kernels::testing {

// Runs body(target_name) once per Highway target compiled in and supported by this CPU, with
// dynamic dispatch pinned to that target, then restores normal dispatch.
template <class Body>
void ForEachTarget(const Body& body) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    body(std::string(hwy::TargetName(target)));
  }
  hwy::SetSupportedTargetsForTest(0);
}

inline std::vector<float> RandomVector(size_t n, std::mt19937& rng, float lo = -1.0f,
                                       float hi = 1.0f) {
  std::uniform_real_distribution<float> uni(lo, hi);
  std::vector<float> v(n);
  for (float& f : v) f = uni(rng);
  return v;
}

// Expects got[i] == want[i] (infinities, and NaN for NaN, included) or
// |got[i] - want[i]| <= rel * |want[i]| + abs, for all i; reports the first few misses.
inline void ExpectNear(const std::vector<float>& got, const std::vector<float>& want, float rel,
                       float abs, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < got.size() && bad < 5; ++i) {
    if (got[i] == want[i] || (std::isnan(got[i]) && std::isnan(want[i]))) continue;
    if (!(std::fabs(got[i] - want[i]) <= rel * std::fabs(want[i]) + abs)) {
      ADD_FAILURE() << what << " index " << i << ": got " << got[i] << " want " << want[i];
      ++bad;
    }
  }
}

}  // namespace afd::kernels::testing
