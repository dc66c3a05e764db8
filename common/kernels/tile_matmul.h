// Tile products: y = x * W^T for bf16 and FP8 (e4m3, block-scaled) weights on the CPU's matrix
// tiles (Intel AMX-BF16), with fp32 activations kept exact. Each activation is split into three
// bf16 parts, x = hi + mid + lo exactly (hi = bf16(x), mid = bf16(x - hi), lo = bf16(x - hi - mid);
// each difference is exact in fp32), and every product of a bf16 weight by a bf16 part is exact in
// the tiles' fp32 accumulators; the three parts accumulate in their own columns over the whole
// row and are added last, y = (hi_sum + mid_sum) + lo_sum. So the error is fp32 accumulation
// error, as in the vector kernels; for many tokens the tiles still run 1.2-2x the vector
// kernels' rate (measured; a product alone is ~10x, but tile loads and products serialize and
// weight tiles stream from DRAM at ~9 GB/s per core): the prompt (prefill) path. FP8 weights are
// widened to bf16 (exact) in an L1 buffer per 32 rows and scale block; each scale block's sums
// leave the tiles, are multiplied by its scale and added in fp32 in block order. bf16 weights
// that do not start on a 64-byte boundary (safetensors pads headers to 8 bytes only) are
// copied to an aligned buffer per row block the same way: a tile load whose rows straddle
// cache lines takes twice as long (1 KiB from L1: 13 ns aligned, 28 ns misaligned, measured).
// An output's bits depend only on its token's activations and its weight row (never on n, the
// other tokens, the row split or the thread), but differ from the vector kernels' bits.
// Stateless free functions; safe to call concurrently on disjoint outputs.
#pragma once

#include <cstdint>
#include <vector>

#include "common/kernels/quant_tile.h"
#include "common/kernels/weight_view.h"

namespace afd::kernels {

// True when the CPU has AMX-TILE and AMX-BF16 and the OS granted this process the tile data
// state (asked once, on the first call). False elsewhere (then nothing here may be called).
bool TileProductsAvailable();

// Whether TileMatMulRows takes `w`: bf16 weights whose rows are a whole number of 32-element
// tile steps, or FP8 weights with that and scale blocks of whole steps and whole 16-row tiles.
// A property of the matrix only, so a matrix always takes the same kernel.
bool TileProductsSupport(const WeightView& w);

// What the tiles multiply the weights by. kExact: the three-part split above (fp32 activations,
// the default). kBf16: bf16(x) only (round to nearest even), the opt-in bf16-activation mode
// (kernels/matmul.h Activations::kBF16) at three times the rate; reduced precision. With FP8
// weights the tiles round x itself (the scale applies to the block sums), where the vector
// kernels round x * scale: the same relative rounding, other bits.
enum class TileActivations : uint8_t { kExact, kBf16 };

// Rows [row_begin, row_end) of y[n, w.rows] = x[n, w.cols] * W^T (y row stride w.rows), as
// MatMulRows. Requires TileProductsAvailable() and TileProductsSupport(w).
void TileMatMulRows(const float* x, int64_t n, const WeightView& w, int64_t row_begin,
                    int64_t row_end, float* y,
                    TileActivations activations = TileActivations::kExact);

// Activations split and packed into B tiles once, for any number of TileMatMulRowsPacked calls
// with the same x: the row units of one product spread over threads, or several products of
// the same x (q/k/v, gate/up). Packing per call cost n x cols of work for every 48-row unit,
// which dominated long prompts (512 tokens: the attention projections took 2x the vector
// kernels' time). Borrowed storage: valid while `storage` is neither changed nor freed.
struct TilePackedX {
  const uint16_t* tiles = nullptr;
  int64_t n = 0;
  int64_t cols = 0;
  TileActivations activations = TileActivations::kExact;
  // Or, for MLX / AWQ products on the int8 tiles (quant_tile.h): x packed for those.
  QuantTilePackedX quant;
};
// x[n, cols] (cols a multiple of 32) into `storage` (grown as needed). Requires
// TileProductsAvailable().
TilePackedX PackTileActivations(const float* x, int64_t n, int64_t cols,
                                TileActivations activations, std::vector<uint16_t>* storage);
// TileMatMulRows from packed activations (w.cols == x.cols): the same bits.
void TileMatMulRowsPacked(const TilePackedX& x, const WeightView& w, int64_t row_begin,
                          int64_t row_end, float* y);

// Scalar twin of the tile arithmetic's contract: per output, each part's sum in fp32 in column
// order (FP8: per scale block, times its scale, blocks added in order), added as
// (hi + mid) + lo (kBf16: the hi sum). The oracle for tests (the tiles' own
// summation order is the hardware's, so they agree within fp32 accumulation error).
void TileMatMulReference(const float* x, int64_t n, const WeightView& w, float* y,
                         TileActivations activations = TileActivations::kExact);

// The exact split of one activation: hi + mid + lo == v for finite v (bf16 bit patterns).
void SplitToBf16x3(float v, uint16_t* hi, uint16_t* mid, uint16_t* lo);

}  // namespace afd::kernels
