// Matrix products against checkpoint-precision weights: y[n, out] = x[n, in] * W[out, in]^T.
// Activations are fp32; bf16/fp16/FP8 weights are widened in registers, never expanded into an
// fp32 copy. Stateless free functions; safe to call concurrently on disjoint outputs.
#pragma once

#include <cstdint>
#include <vector>

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

// Output rows per parallel unit of MatMul(pool) (a multiple of every decode tile height: 8, 6, 4,
// 3, 2); callers that split products themselves use the same units.
inline constexpr int64_t kRowUnit = 48;

// The output rows one thread's share of a product with `w` should come in multiples of: 1, or
// for AWQ (packed along the output axis) 384 = 3 cache lines of every packed input row, so that
// threads neither read parts of the same cache lines nor compute tiles they do not store.
int64_t ParallelRowGrain(const WeightView& w);
// The same in work units of `unit_rows` output rows (rounded up).
inline int64_t ParallelUnitGrain(const WeightView& w, int64_t unit_rows) {
  return (ParallelRowGrain(w) + unit_rows - 1) / unit_rows;
}

// Precision of the activations in a product. kF32 (the default): exact fp32 activations, weights
// widened in registers. kBF16 (opt-in, for prefill throughput): each activation is rounded to bf16
// (nearest even; with FP8 weights after multiplying by its block scale, so the weights stay exact)
// and the products run on AVX512-BF16 dot instructions where the CPU has them (the same pair
// order with FMAs elsewhere). Applies to bf16 and FP8 weights; other weight types ignore it.
// Measured on Sapphire/Emerald Rapids it is slower than kF32 (vdpbf16ps runs at about half the
// multiply-add rate of fp32 FMA there); it pays only where BF16 dot products are fast.
// Output bits depend only on the token's activations and the weight row in both modes (not on
// n, the batch or the row split), per CPU kind.
enum class Activations : uint8_t { kF32, kBF16 };

// Which unit runs a product. kVector (the default): the Highway kernels above. kTiles: the
// CPU's matrix tiles (kernels/tile_matmul.h: AMX-BF16, fp32 activations split exactly into three
// bf16 parts) for bf16 and FP8 weights whose rows are whole 32-column steps (FP8: scale blocks of
// whole steps and 16-row tiles), on CPUs that have them; other
// weights and CPUs take kVector. For many tokens at once (prompts): measured 1.5-2x the vector
// products' rate with exact fp32 activations, ~3x more with Activations::kBF16 (one bf16 part
// instead of three). Bits differ from kVector's by fp32 rounding, so a caller picks the unit per
// token by a rule of its own that does not depend on the batch (the engine: prompt tokens take
// kTiles).
enum class Kernel : uint8_t { kVector, kTiles };

struct TilePackedX;  // kernels/tile_matmul.h

// x [n, cols] transposed once for the vector kernels' prompt-sized products (n >= 24 tokens)
// of weights of one type, so the row units of those products on every thread share it instead
// of each transposing x again (see WithPackedPrefillX).
struct PrefillPackedX {
  const float* x = nullptr;  // the activations it was packed from
  int64_t n = 0;
  int64_t cols = 0;
  WeightType type = WeightType::kF32;
  const float* data = nullptr;
};

struct MatMulOptions {
  Activations activations = Activations::kF32;
  Kernel kernel = Kernel::kVector;
  // kTiles: x already packed for the tiles (PackTileActivations of this very x, n and
  // activations; see WithPackedTileX); null: each call packs its own. Same bits either way.
  const TilePackedX* tile_x = nullptr;
  // fp32 products on the vector kernels: x already transposed (WithPackedPrefillX), used by
  // products of this very x, n, cols and weight type; null or another: each call transposes
  // its own. Same bits either way.
  const PrefillPackedX* prefill_x = nullptr;
};

// For kTiles products of one x over threads or over several matrices (all with w.cols
// columns): when `w` takes the tiles, packs x once into `storage` (kept in `packed`) and
// returns `options` pointing at it; otherwise `options` as they are.
MatMulOptions WithPackedTileX(const float* x, int64_t n, const WeightView& w,
                              const MatMulOptions& options, TilePackedX* packed,
                              std::vector<uint16_t>* storage);

// For products of one x over threads or over several matrices (all with w.cols columns and
// w's type) that take the fp32 vector kernels with at least 24 tokens: transposes x once into
// `storage` (kept in `packed`) and returns `options` pointing at it; otherwise `options` as
// they are.
MatMulOptions WithPackedPrefillX(const float* x, int64_t n, const WeightView& w,
                                 const MatMulOptions& options, PrefillPackedX* packed,
                                 std::vector<float>* storage);

// The products above with options (MatMulOptions{} gives exactly the calls without).
void MatMulRows(const float* x, int64_t n, const WeightView& w, int64_t row_begin,
                int64_t row_end, float* y, const MatMulOptions& options);
void MatMul(const float* x, int64_t n, const WeightView& w, float* y, ThreadPool* pool,
            const MatMulOptions& options);

// ys[i] = x * ws[i]^T for i < count, products of one x split across `pool` along the input
// axis where that is how they run best (AWQ decode with kVector: kernels/quant_matmul.h,
// AwqMatMulSplitInput); bitwise the products MatMulRows gives. Returns false, computing
// nothing, where it does not apply; the caller splits by rows then.
bool MatMulSplitInput(const float* x, int64_t n, const WeightView* const* ws, float* const* ys,
                      int count, ThreadPool* pool, const MatMulOptions& options);

// Plain scalar reference twin (dequantize element by element, fp32 accumulation in the
// natural order). The oracle for tests.
void MatMulReference(const float* x, int64_t n, const WeightView& w, float* y);
// Reference twin of the options: with kBF16 (bf16 and FP8 weights), y = sum over c of
// bf16(x[c] * s) * v[c] in column order, where v is the bf16 weight (s = 1) or the FP8 value
// and s its block scale.
void MatMulReference(const float* x, int64_t n, const WeightView& w, float* y,
                     const MatMulOptions& options);

// Scalar helpers shared by every kernel and the loader.
float Bf16ToFloat(uint16_t v);
uint16_t FloatToBf16(float v);  // round to nearest even
float F16ToFloat(uint16_t v);
float Fp8E4M3ToFloat(uint8_t v);

}  // namespace afd::kernels
