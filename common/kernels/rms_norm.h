// RMSNorm over the last axis: out = x * (1/sqrt(mean(x^2) + eps)) * weight, all fp32
// (MODEL.md T8). Stateless; in-place (out == x) allowed.
#pragma once

#include <cstdint>

namespace afd::kernels {

// x, out: [n, dim]; weight: [dim] fp32.
void RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps, float* out);
void RmsNormReference(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
                      float* out);

}  // namespace afd::kernels
