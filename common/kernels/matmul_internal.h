// Internals of matmul.cc exposed to its tests and benchmarks: the token count where the prefill
// kernel takes over, and a way to force either kernel. Same thread-safety as matmul.h.
#pragma once

#include <cstdint>

#include "common/kernels/weight_view.h"

namespace afd::kernels::internal {

// Smallest token count that takes the prefill kernel. Below it, the decode kernel's passes of
// 8 tokens cost less than a prefill chunk of 32 tokens mostly padding (measured: 16 tokens run
// ~1.3x faster in decode, 24 break even). On AVX-512 the prefill kernel takes only whole
// 64-token chunks (matmul.cc, PrefillChunkedTokens).
constexpr int64_t kPrefillMinTokens = 24;

// Decode of 1-4 tokens (batch 1, and the 2-4 tokens an expert gets in a batched step) reads a
// range of weight rows as kDecodeStreams long sequential streams: each
// tile takes one row from each of as many contiguous spans of the range, and each stream
// prefetches kDecodeStreamAheadBytes ahead (rounded up to whole rows). Tiles of adjacent rows
// interleave one short stream per row, which the hardware prefetchers follow poorly (Zen 5:
// 0.6-0.9x the rate). Spans shorter than kDecodeStreamMinRows rows keep adjacent-row tiles.
// Used by the bf16/FP8 decode; block-scaled FP8 runs them within each 128-row block (its scaled
// activations are per row block), so its spans are 32 rows. The MLX decode keeps adjacent-row
// tiles, prefetched a tile ahead: its rows are short (768 bytes for 1536 4-bit inputs), its tile
// one contiguous run, and stream tiles measured 0.85-0.9x (any prefetch distance).
constexpr int kDecodeStreams = 4;
constexpr int64_t kDecodeStreamMinRows = 16;
constexpr int64_t kDecodeStreamAheadBytes = 3 << 10;
constexpr int64_t StreamAheadRows(int64_t row_bytes) {
  return (kDecodeStreamAheadBytes + row_bytes - 1) / row_bytes;
}

// MatMulRows with the kernel forced: the decode kernel (prefill = false) or the prefill kernel
// (prefill = true), for any n and any weight type. On AVX-512 the prefill kernel runs whole
// 64-token chunks only; the tokens after them still take the decode kernel.
void MatMulRowsKernel(const float* x, int64_t n, const WeightView& w, int64_t row_begin,
                      int64_t row_end, float* y, bool prefill);

}  // namespace afd::kernels::internal
