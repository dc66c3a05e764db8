// Partial NeoX RoPE (see rope.h), rounding exactly like transformers in fp32 (MODEL.md T15):
// inv_freq = 1 / base^(fp32(2i) / r) in fp32, angle = fp32(pos) * inv_freq (one rounding),
// cos/sin of that fp32 angle, then x1' = x1*cos - x2*sin and x2' = x2*cos + x1*sin with every
// product and sum rounded to fp32 separately (no fused multiply-add).
#include "common/kernels/rope.h"
#include "common/kernels/vector_state.h"

#include <cmath>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "common/kernels/rope.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#ifndef AFD_COMMON_KERNELS_ROPE_SHARED_
#define AFD_COMMON_KERNELS_ROPE_SHARED_
namespace afd::kernels::internal {

// cos_out[i], sin_out[i] for i < half: of the fp32 angle fp32(pos) * inv_freq[i], computed in
// double and rounded once (torch's fp32 cos/sin are within 1 ulp of this).
inline void RopeCosSin(int32_t pos, const float* inv_freq, int half, float* cos_out,
                       float* sin_out) {
  const float p = static_cast<float>(pos);
  for (int i = 0; i < half; ++i) {
    const float angle = p * inv_freq[i];
    cos_out[i] = static_cast<float>(std::cos(static_cast<double>(angle)));
    sin_out[i] = static_cast<float>(std::sin(static_cast<double>(angle)));
  }
}

// Per-thread scratch of at least `count` floats (grows on first use only).
float* RopeScratch(size_t count);

}  // namespace afd::kernels::internal
#endif  // AFD_COMMON_KERNELS_ROPE_SHARED_

HWY_BEFORE_NAMESPACE();
namespace afd::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void ApplyRopeImpl(float* x, int64_t n, int num_heads, int head_dim, int rotary_dim,
                   const int32_t* positions, const float* inv_freq) {
  const hn::ScalableTag<float> d;
  const int half = rotary_dim / 2;
  const int lanes = static_cast<int>(hn::Lanes(d));
  float* cs = internal::RopeScratch(2 * static_cast<size_t>(half));
  float* cos_t = cs;
  float* sin_t = cs + half;
  for (int64_t t = 0; t < n; ++t) {
    internal::RopeCosSin(positions[t], inv_freq, half, cos_t, sin_t);
    for (int h = 0; h < num_heads; ++h) {
      float* x1 = x + (t * num_heads + h) * head_dim;
      float* x2 = x1 + half;
      int i = 0;
      for (; i + lanes <= half; i += lanes) {
        const auto a = hn::LoadU(d, x1 + i);
        const auto b = hn::LoadU(d, x2 + i);
        const auto c = hn::LoadU(d, cos_t + i);
        const auto s = hn::LoadU(d, sin_t + i);
        hn::StoreU(hn::Sub(hn::Mul(a, c), hn::Mul(b, s)), d, x1 + i);
        hn::StoreU(hn::Add(hn::Mul(b, c), hn::Mul(a, s)), d, x2 + i);
      }
      for (; i < half; ++i) {
        const float a = x1[i], b = x2[i];
        x1[i] = a * cos_t[i] - b * sin_t[i];
        x2[i] = b * cos_t[i] + a * sin_t[i];
      }
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace afd::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace afd::kernels {

HWY_EXPORT(ApplyRopeImpl);

namespace internal {
float* RopeScratch(size_t count) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < count) buffer.resize(count);
  return buffer.data();
}
}  // namespace internal

std::vector<float> RopeInvFreq(double theta, int rotary_dim) {
  // torch: 1.0 / (base ** (arange(0, r, 2, float32) / r)): the exponent is an fp32 division,
  // the power is taken in fp32 (here in double, rounded once), the reciprocal in fp32.
  const float base = static_cast<float>(theta);
  std::vector<float> inv(static_cast<size_t>(rotary_dim / 2));
  for (int i = 0; i < rotary_dim / 2; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(rotary_dim);
    const float p = static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(e)));
    inv[i] = 1.0f / p;
  }
  return inv;
}

void ApplyRope(float* x, int64_t n, int num_heads, int head_dim, int rotary_dim,
               const int32_t* positions, const float* inv_freq) {
  if (n <= 0 || rotary_dim < 2) return;
  HWY_DYNAMIC_DISPATCH(ApplyRopeImpl)(x, n, num_heads, head_dim, rotary_dim, positions,
                                      inv_freq);
  ClearUpperVectorState();
}

void ApplyRopeReference(float* x, int64_t n, int num_heads, int head_dim, int rotary_dim,
                        const int32_t* positions, const float* inv_freq) {
  const int half = rotary_dim / 2;
  for (int64_t t = 0; t < n; ++t) {
    const float p = static_cast<float>(positions[t]);
    for (int h = 0; h < num_heads; ++h) {
      float* head = x + (t * num_heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float angle = p * inv_freq[i];
        const float c = static_cast<float>(std::cos(static_cast<double>(angle)));
        const float s = static_cast<float>(std::sin(static_cast<double>(angle)));
        const float a = head[i], b = head[i + half];
        // q*cos + rotate_half(q)*sin, rotate_half(q) = concat(-q[half:], q[:half]).
        head[i] = a * c + (-b) * s;
        head[i + half] = b * c + a * s;
      }
    }
  }
}

}  // namespace afd::kernels
#endif  // HWY_ONCE
