// MLX affine and AWQ products of several tokens on the AMX-INT8 tiles (x86 with AMX; the
// kernels are in quant_tile_amx.cc, compiled with the AMX flags). Below, MLX; AWQ swaps the
// operands (its codes are stored transposed: B tiles of codes, A tiles of activation planes;
// see quant_tile_amx.cc).
//
// The activations become the same block floating point as the VNNI decode kernel's (per token
// and group of 64 or 128 columns, X = rint(x * 2^(22-e)) split exactly into three signed
// bytes), so every group's sum of code * X is exact in int32. A tile product multiplies 16
// weight rows' unsigned codes (A, 64 per step) by 16 columns of byte planes (B: up to five
// tokens x three planes), so one TDPBUSD yields a step's sums for 16 rows, five tokens and all
// three planes. Each group's C tile is then scaled in fp32 (scale x unit x plane weight; all but
// the scale are powers of two) into per-row accumulators; the bias term is
// sum_g bias * sum_g(x). Results differ from the VNNI kernel's by fp32 rounding only.
//
// MLX uses them from 4 tokens on (batched decode and prompts). Measured on the lent host (one core,
// 4-bit g64, weights in cache; time vs the faster of the VNNI decode and fp32 prefill kernels):
// 768x1536: 3 tokens 0.83, 4: 0.63, 8: 0.52, 16: 0.47, 32: 0.40, 64: 0.78, 128: 0.89;
// 1536x768: 0.66, 0.54, 0.45, 0.35, 0.53, 0.69, 0.68; 1536x1536: 1.10, 0.70, 0.59, 0.48,
// 0.42, 0.72, 0.73. At 1-2 tokens the tiles lose (1.1-2.9x the VNNI kernel's time). From
// DRAM with 2 threads (quant_matmul_bench --kernels): the 32000x1536 lm_head at 4/8/12 tokens
// 0.54/0.56/0.47 of the VNNI kernel's time; 768x1536 1.23/0.76/0.83. In the engine (m2-perf
// MLX4, 2 cores, distinct prompts) a threshold of 4 beat 8: batch 16 88-89 vs 80 tok/s.
#pragma once

#include <cstdint>
#include <vector>

#include "common/kernels/quant_matmul.h"

namespace afd::kernels {

// Tokens per tile pass: 16 B columns hold 5 tokens' three planes.
constexpr int64_t kQuantTileTokens = 5;
// Most groups per row (cols / group_size) the tile kernel takes.
constexpr int64_t kMaxTileGroups = 256;
// Fewest tokens that take the tiles (below: the VNNI decode kernel). AWQ stages its codes
// through a transpose first, which pays only for prompt-sized products (AWQ g128 1536x1536,
// one core, dev VM: 4 tokens 395 us vs 212 on VNNI, 8 and 12 even, 64 tokens 1690 us vs
// 3418 on the fp32 prefill kernel).
constexpr int64_t kQuantTileMinTokens = 4;
constexpr int64_t kAwqTileMinTokens = 16;

// Activations packed for the tiles (PackQuantTileActivations). Borrowed storage.
struct QuantTilePackedX {
  // [chunk][step][16 rows x 64 bytes]: B tiles of kQuantTileTokens tokens per chunk.
  const int8_t* tiles = nullptr;
  // [chunk][group][16]: per B column (token, plane) the group's unit x plane weight.
  const float* units = nullptr;
  // [n][groups]: per token and group the fp32 sum of x (the bias term).
  const float* sums = nullptr;
  int64_t n = 0;
  int64_t cols = 0;
  int group_size = 0;
  int bits = 0;
  bool awq = false;  // AWQ's layout: A tiles of activations (B holds the codes)
};

// Whether the CPU has AMX-INT8 and the OS granted the tile state.
bool QuantTileProductsAvailable();
// Whether the tiles can run `w` at all (any number of tokens; UsesQuantTiles adds the rule of
// when they pay).
bool QuantTilesTake(const QuantMatrix& w);
// Whether n tokens against `w` take the tiles: MLX 2/3/4/5/6/8-bit, groups of 64 or 128, cols a
// multiple of 128, at most kMaxTileGroups groups per row, n >= kQuantTileMinTokens; or AWQ
// (4-bit, groups of 64 or 128) from kAwqTileMinTokens; on a CPU that has them.
bool UsesQuantTiles(const QuantMatrix& w, int64_t n);

// x[n, cols] for matrices of `w`'s kind (bits, group size, cols) into `storage` (grown as
// needed). Requires UsesQuantTiles(w, n).
QuantTilePackedX PackQuantTileActivations(const float* x, int64_t n, const QuantMatrix& w,
                                          std::vector<uint16_t>* storage);
// y[t * w.rows + r] for rows [row_begin, row_end) from packed activations (their kind: `w`'s).
void QuantTileMatMulRows(const QuantTilePackedX& x, const QuantMatrix& w, int64_t row_begin,
                         int64_t row_end, float* y);

}  // namespace afd::kernels
