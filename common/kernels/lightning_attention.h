// Lightning (linear) attention of MiniMax-Text-01 (MODEL.md 3.7, T9, T13): per head h a state
// S [d, d] with S_t = lambda_h * S_{t-1} + k_t^T v_t and o_t = q_t S_t, lambda_h = exp(-slope_h).
// Two paths, exactly as transformers runs them: the block path for a sequence's first chunk
// (state starts at 0, blocks of block_size with precomputed decay powers, short last block uses
// the last c key decays) and the per-token recurrence for every later chunk.
// Stateless free functions; safe to call concurrently on disjoint heads/outputs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace afd::kernels {

// Slopes of one layer, s_h = (2^(-8/H))^(h+1) * (1 - layer/(num_layers - 1 + 1e-5) + 1e-5),
// rounded the way torch computes them in fp32 (base and factor rounded to fp32, the power
// rounded to fp32, then one fp32 product). `layer` is the global layer index. Size num_heads.
std::vector<float> LightningSlopes(int num_heads, int layer, int num_layers);

// Scratch floats LightningPrefill needs per call.
size_t LightningPrefillScratchFloats(int head_dim, int block_size);

// Block path over a sequence's first n tokens, heads [head_begin, head_end) only.
// qkv: [n, H, 3, d] (q | k | v per head, SiLU already applied);
// slopes: [H]; state: [H, d, d], must be zero on entry for those heads and holds the final
// state on return; out: [n, H, d]; scratch: LightningPrefillScratchFloats floats.
void LightningPrefill(const float* qkv, int64_t n, int num_heads, int head_dim, int head_begin,
                      int head_end, const float* slopes, int block_size, float* state,
                      float* scratch, float* out);
void LightningPrefillReference(const float* qkv, int64_t n, int num_heads, int head_dim,
                               const float* slopes, int block_size, float* state, float* out);

// Per-token recurrence continuing from `state` (transformers' cached path, used for every token
// of any chunk after the first): S = exp(-s) * S + k^T v, then o = q S. Same layouts as above.
void LightningDecode(const float* qkv, int64_t n, int num_heads, int head_dim, int head_begin,
                     int head_end, const float* slopes, float* state, float* out);
void LightningDecodeReference(const float* qkv, int64_t n, int num_heads, int head_dim,
                              const float* slopes, float* state, float* out);

}  // namespace afd::kernels
