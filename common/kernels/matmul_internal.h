// Internals of matmul.cc exposed to its tests and benchmarks: the token count where the prefill
// kernel takes over, and a way to force either kernel. Same thread-safety as matmul.h.
#pragma once

#include <cstdint>

#include "common/kernels/weight_view.h"

namespace afd::kernels::internal {

// Smallest token count that takes the prefill kernel. Below it, the decode kernel's passes of
// 8 tokens cost less than a prefill chunk of 32 tokens mostly padding (measured: 16 tokens run
// ~1.3x faster in decode, 24 break even).
constexpr int64_t kPrefillMinTokens = 24;

// MatMulRows with the kernel forced: the decode kernel (prefill = false) or the prefill kernel
// (prefill = true), for any n and any weight type.
void MatMulRowsKernel(const float* x, int64_t n, const WeightView& w, int64_t row_begin,
                      int64_t row_end, float* y, bool prefill);

}  // namespace afd::kernels::internal
