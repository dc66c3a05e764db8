// Products against packed quantized weights, read straight from the checkpoint's bytes:
// AWQ int4 (AutoAWQ GEMM layout) and MLX affine 2/3/4/5/6/8-bit (QUANT.md). y[n, out] =
// x[n, in] * W^T with fp32 activations; the packed values are dequantized in registers, never
// into a copy of the matrix. Stateless free functions; safe to call concurrently on disjoint
// outputs (per-thread scratch).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "common/kernels/weight_view.h"

namespace afd::kernels {

enum class QuantFormat : uint8_t {
  kAwqInt4,   // AutoAWQ GEMM: transposed, 8 nibbles per int32 along the output axis
  kMlxAffine  // mlx affine: row-major, a little-endian bit stream per row along the input axis
};

class ThreadPool;  // kernels/thread_pool.h

// One quantized linear layer W [rows (out), cols (in)]; a non-owning view. Groups of
// `group_size` consecutive input columns share one scale (and zero point or bias).
//   kAwqInt4: data = qweight u32 [cols, rows/8], column c of a word is the nibble at slot
//             [0,4,1,5,2,6,3,7][c % 8]; zeros = qzeros u32 [cols/G, rows/8] in the same
//             layout (nullptr: every zero point is 8); scales [cols/G, rows].
//             W[o][i] = (q - z) * s.
//   kMlxAffine: data = u32 [rows, cols*bits/32] (value j of a row = bits [j*bits, (j+1)*bits)
//             of the row's words read as one little-endian stream); scales and biases
//             [rows, cols/G]. W[o][i] = s * q + b.
// Scales and biases are `scale_type` (kF32, kBF16 or kF16) elements.
struct QuantMatrix {
  QuantFormat format = QuantFormat::kMlxAffine;
  int64_t rows = 0;
  int64_t cols = 0;
  int bits = 4;
  int group_size = 64;
  const void* data = nullptr;
  const void* zeros = nullptr;
  const void* scales = nullptr;
  const void* biases = nullptr;
  WeightType scale_type = WeightType::kBF16;

  int64_t groups() const { return group_size > 0 ? cols / group_size : 0; }
  // Bytes of the packed values alone.
  size_t PackedBytes() const;
  // Bytes a full product reads: packed values, scales, zero points / biases.
  size_t Bytes() const;
};

// The same matrix as a WeightView (kAwqInt4 / kMlxAffine) and back.
WeightView AsWeightView(const QuantMatrix& m);
QuantMatrix AsQuantMatrix(const WeightView& w);  // w.IsPacked()

// nullptr when the kernels can run `w`; otherwise what is wrong (static text): bits not 4 for
// AWQ or not in {2,3,4,5,6,8} for MLX, group_size not dividing cols (MLX: not a multiple of
// 32), AWQ rows not a multiple of 8, a scale type other than f32/bf16/f16, missing pointers.
const char* QuantMatrixProblem(const QuantMatrix& w);

// y[n, w.rows] = x[n, w.cols] * W^T. Decode shapes (n < kQuantPrefillMinTokens) stream the
// packed rows once per 8 tokens; larger n dequantize small tiles into per-thread scratch and
// run a register-blocked fp32 product. Highway dynamic dispatch; `w` must pass
// QuantMatrixProblem.
void QuantMatMul(const float* x, int64_t n, const QuantMatrix& w, float* y);

// Output rows [row_begin, row_end) only (y keeps row stride w.rows).
void QuantMatMulRows(const float* x, int64_t n, const QuantMatrix& w, int64_t row_begin,
                     int64_t row_end, float* y);

// AWQ decode products of a few tokens (n <= internal::kAwqSplitMaxTokens) that share x, split
// across `pool` along the input axis: each thread reads whole qweight rows (contiguous bytes)
// and forms whole groups' int32 sums, which are exact; one pass then finishes every column,
// adding the groups in order. Splitting the output columns instead gives each thread a short
// segment of every row, which the hardware prefetchers follow poorly (a 1536-column matrix ran
// 1.26x one thread's speed on two). Bitwise equal to QuantMatMulRows over all rows.
// ys[p] = x * ws[p]^T for p < count. Returns false, computing nothing, where it does not apply
// (no VNNI kernel on this CPU, more tokens, a matrix that is not AWQ, has more than
// internal::kAwqSplitMaxRows outputs or differs from the first in input size or group size, a
// pool of one thread); the caller splits by rows then.
bool AwqMatMulSplitInput(const float* x, int64_t n, const QuantMatrix* const* ws, float* const* ys,
                         int count, ThreadPool* pool);

// Plain scalar reference twin: every weight dequantized to fp32 by the QUANT.md formula
// (QuantWeightAt), fp32 accumulation in the natural order. The oracle for tests.
void QuantMatMulReference(const float* x, int64_t n, const QuantMatrix& w, float* y);

// W[row][col] dequantized to fp32 exactly as the reference does: AWQ (float(q) - float(z)) *
// float(s); MLX float(s) * float(q) + float(b).
float QuantWeightAt(const QuantMatrix& w, int64_t row, int64_t col);

// out[c] = W[row][c] for c < w.cols (a quantized embedding's lookup). For MLX this is the
// row's own bytes; for AWQ it gathers one nibble per input row.
void QuantDequantizeRow(const QuantMatrix& w, int64_t row, float* out);

// The raw quantized value of W[row][col] (0 .. 2^bits - 1), and AWQ's zero point of it.
uint32_t QuantCodeAt(const QuantMatrix& w, int64_t row, int64_t col);
uint32_t AwqZeroAt(const QuantMatrix& w, int64_t row, int64_t col);

namespace internal {

// The block floating point of one group of activations (the VNNI and int8 tile kernels): with
// 2^(e-1) <= max_abs < 2^e, unit = 2^(e-22), so X = rint(x * inv) has 23 significant bits for the
// group's largest values, and inv = 1 / unit; both exact powers of two from the exponent bits
// (no libm call from vector code). Below 1e-30 the group counts as zero (both 0); inf or NaN
// give unit NaN.
struct GroupUnit {
  float unit, inv;
};
inline GroupUnit GroupUnitOf(float max_abs) {
  uint32_t bits;
  std::memcpy(&bits, &max_abs, 4);
  const int e = static_cast<int>(bits >> 23) - 126;
  const bool live = max_abs >= 1.0e-30f && e <= 128;
  auto power_of_two = [](int p) {
    const uint32_t b = static_cast<uint32_t>(p + 127) << 23;
    float f;
    std::memcpy(&f, &b, 4);
    return f;
  };
  if (!live) return {e > 128 ? std::numeric_limits<float>::quiet_NaN() : 0.0f, 0.0f};
  return {power_of_two(e - 22), power_of_two(22 - e)};
}

// Smallest token count that takes the prefill kernel.
constexpr int64_t kQuantPrefillMinTokens = 16;
// Most tokens AwqMatMulSplitInput takes, and most outputs per matrix (a wider matrix's rows are
// long enough that each thread's column segment streams well, and its group sums would need
// megabytes of scratch).
constexpr int64_t kAwqSplitMaxTokens = 4;
constexpr int64_t kAwqSplitMaxRows = 8192;

enum class QuantKernel {
  kDecode,      // the decode kernel this CPU takes (AVX-512 VNNI where available)
  kDecodeFp32,  // the fp32 decode kernel (the fallback of CPUs without VNNI)
  kPrefill,     // the prefill kernel
  kTiles,       // the int8 tile kernel (quant_tile.h), any n; where !QuantTilesTake(w), the
                // kernel this n takes by default
};
// QuantMatMulRows with the kernel forced, any n.
void QuantMatMulRowsKernel(const float* x, int64_t n, const QuantMatrix& w, int64_t row_begin,
                           int64_t row_end, float* y, QuantKernel kernel);

}  // namespace internal
}  // namespace afd::kernels
