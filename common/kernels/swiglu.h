// SiLU-GLU: out = silu(gate) * up, silu(x) = x * sigmoid(x), fp32. Stateless.
#pragma once

#include <cstdint>

namespace afd::kernels {

// gate, up, out: [n] (out may alias gate or up).
void SiluMul(const float* gate, const float* up, int64_t n, float* out);
void SiluMulReference(const float* gate, const float* up, int64_t n, float* out);
// In-place SiLU: x = silu(x).
void Silu(float* x, int64_t n);

}  // namespace afd::kernels
