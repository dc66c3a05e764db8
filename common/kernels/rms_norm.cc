// RMSNorm (see rms_norm.h): out = (x * (1 / sqrt(mean(x^2) + eps))) * weight, fp32, in that
// rounding order (HF normalises, then multiplies by the weight; MODEL.md T8).
#include "common/kernels/rms_norm.h"
#include "common/kernels/vector_state.h"

#include <cmath>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "common/kernels/rms_norm.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace afd::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void RmsNormImpl(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
                 float* out) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * dim;
    float* yr = out + t * dim;
    auto s0 = hn::Zero(d), s1 = hn::Zero(d);
    int64_t i = 0;
    for (; i + 2 * lanes <= dim; i += 2 * lanes) {
      const auto a = hn::LoadU(d, xr + i);
      const auto b = hn::LoadU(d, xr + i + lanes);
      s0 = hn::MulAdd(a, a, s0);
      s1 = hn::MulAdd(b, b, s1);
    }
    float ss = hn::GetLane(hn::SumOfLanes(d, hn::Add(s0, s1)));
    for (; i < dim; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
    const auto vinv = hn::Set(d, inv);
    i = 0;
    for (; i + lanes <= dim; i += lanes) {
      const auto y = hn::Mul(hn::Mul(hn::LoadU(d, xr + i), vinv), hn::LoadU(d, weight + i));
      hn::StoreU(y, d, yr + i);
    }
    for (; i < dim; ++i) yr[i] = (xr[i] * inv) * weight[i];
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace afd::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace afd::kernels {

HWY_EXPORT(RmsNormImpl);

void RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps, float* out) {
  if (n <= 0 || dim <= 0) return;
  HWY_DYNAMIC_DISPATCH(RmsNormImpl)(x, weight, n, dim, eps, out);
  ClearUpperVectorState();
}

void RmsNormReference(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
                      float* out) {
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * dim;
    float ss = 0.0f;
    for (int64_t i = 0; i < dim; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
    float* yr = out + t * dim;
    for (int64_t i = 0; i < dim; ++i) yr[i] = (xr[i] * inv) * weight[i];
  }
}

}  // namespace afd::kernels
#endif  // HWY_ONCE
