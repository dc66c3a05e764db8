// SiLU and SiLU-GLU (see swiglu.h), as torch computes silu in fp32: x / (1 + exp(-x)), then the
// product with `up` rounded separately.
#include "common/kernels/swiglu.h"
#include "common/kernels/vector_state.h"

#include <cmath>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "common/kernels/swiglu.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace afd::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;

// silu(g) = g / (1 + exp(-g)). Highway's Exp is valid only below 104, so exp(-g) for
// -g > 88 (where the float exp overflows or nearly does) is taken as +inf, as libm's overflows:
// silu is then -0 (NaN for -inf), off from the exact value by less than 1e-36.
HWY_INLINE hn::Vec<DF> SiluVec(DF d, hn::Vec<DF> g) {
  const auto neg = hn::Neg(g);
  const auto limit = hn::Set(d, 88.0f);
  const auto e = hn::IfThenElse(hn::Gt(neg, limit), hn::Set(d, HUGE_VALF),
                                hn::CallExp(d, hn::Min(neg, limit)));
  return hn::Div(g, hn::Add(hn::Set(d, 1.0f), e));
}

void SiluMulImpl(const float* gate, const float* up, int64_t n, float* out) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto s = SiluVec(d, hn::LoadU(d, gate + i));
    hn::StoreU(hn::Mul(s, hn::LoadU(d, up + i)), d, out + i);
  }
  for (; i < n; ++i) out[i] = (gate[i] / (1.0f + std::exp(-gate[i]))) * up[i];
}

void SiluImpl(float* x, int64_t n) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(SiluVec(d, hn::LoadU(d, x + i)), d, x + i);
  for (; i < n; ++i) x[i] = x[i] / (1.0f + std::exp(-x[i]));
}

}  // namespace HWY_NAMESPACE
}  // namespace afd::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace afd::kernels {

HWY_EXPORT(SiluMulImpl);
HWY_EXPORT(SiluImpl);

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  if (n <= 0) return;
  HWY_DYNAMIC_DISPATCH(SiluMulImpl)(gate, up, n, out);
  ClearUpperVectorState();
}

void SiluMulReference(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float silu = g / (1.0f + std::exp(-g));
    out[i] = silu * up[i];
  }
}

void Silu(float* x, int64_t n) {
  if (n <= 0) return;
  HWY_DYNAMIC_DISPATCH(SiluImpl)(x, n);
  ClearUpperVectorState();
}

}  // namespace afd::kernels
#endif  // HWY_ONCE
