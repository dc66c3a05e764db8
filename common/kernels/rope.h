// Partial NeoX rotary embedding: rotates the first `rotary_dim` dims of every head (dim i
// paired with i + rotary_dim/2), leaves the rest untouched. Angles are fp32(pos) * inv_freq
// with one fp32 rounding (MODEL.md T15). Stateless.
#pragma once

#include <cstdint>
#include <vector>

namespace afd::kernels {

// inv_freq[i] = 1 / theta^((2i)/rotary_dim) computed in fp32 like torch; size rotary_dim/2.
std::vector<float> RopeInvFreq(double theta, int rotary_dim);

// x: [n, num_heads, head_dim] in place; positions: [n].
void ApplyRope(float* x, int64_t n, int num_heads, int head_dim, int rotary_dim,
               const int32_t* positions, const float* inv_freq);
void ApplyRopeReference(float* x, int64_t n, int num_heads, int head_dim, int rotary_dim,
                        const int32_t* positions, const float* inv_freq);

}  // namespace afd::kernels
