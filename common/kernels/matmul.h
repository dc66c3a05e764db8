// Matrix products against checkpoint-precision weights: y[n, out] = x[n, in] * W[out, in]^T.
// Activations are fp32; bf16/fp16/FP8 weights are widened in registers, never expanded into an
// fp32 copy. Stateless free functions; safe to call concurrently on disjoint outputs.
#pragma once

#include <cstdint>

#include "common/kernels/weight_view.h"

namespace afd::kernels {

class ThreadPool;

// y[n, w.rows] = x[n, w.cols] * W^T. `x` row stride is w.cols, `y` row stride is w.rows.
// Highway dynamic dispatch (AVX-512/AVX2/NEON): a memory-bound decode kernel for small n and a
// register-blocked prefill kernel from n = 24 (fp32 weights included).
void MatMul(const float* x, int64_t n, const WeightView& w, float* y);

// Rows [row_begin, row_end) of the output only (y still has row stride w.rows). Lets callers
// split one product across threads.
void MatMulRows(const float* x, int64_t n, const WeightView& w, int64_t row_begin,
                int64_t row_end, float* y);

// MatMul with the output rows split across `pool`'s threads (the caller takes part). With a
// null pool or a one-thread pool this is MatMul.
void MatMul(const float* x, int64_t n, const WeightView& w, float* y, ThreadPool* pool);

// Plain scalar reference twin (dequantize element by element, fp32 accumulation in the
// natural order). The oracle for tests.
void MatMulReference(const float* x, int64_t n, const WeightView& w, float* y);

// Scalar helpers shared by every kernel and the loader.
float Bf16ToFloat(uint16_t v);
uint16_t FloatToBf16(float v);  // round to nearest even
float F16ToFloat(uint16_t v);
float Fp8E4M3ToFloat(uint8_t v);

}  // namespace afd::kernels
