// The AMX-INT8 decode kernel for MLX 4-bit matrices, in its own translation unit (compiled with
// the AMX and AVX-512 flags, like tile_matmul_amx.cc): nothing in it may run before
// TileInt8Available() has checked the CPU. quant_matmul.cc dispatches to it for decode shapes.
//
// Why tiles for a matrix-vector product: the VNNI decode kernel needs six vpdpbusd per 128 codes
// and row (three exact activation byte planes x two nibble vectors), all on one execution port,
// so it ran at ~14 GB/s of packed weights per core, below what the memory delivers. Here the
// weights' nibbles are unpacked into bytes with three vector instructions per 64 packed bytes
// and stored to L1 as A tiles; the byte planes of every token are B tiles, so one tile product
// does 16 rows x 64 codes x all planes of four groups at once.
#pragma once

#include <cstdint>

#include "common/kernels/quant_matmul.h"

namespace afd::kernels::internal {

// Whether the tile decode kernel takes `w`: MLX affine 4-bit, cols a multiple of 128 and group
// size 32, 64 or 128. A property of the matrix only.
bool QuantTilesSupport(const QuantMatrix& w);

// Rows [row_begin, row_end) of y[n, w.rows] = x[n, w.cols] * W^T (y row stride w.rows), any n
// (tokens in passes of five; a token's bits depend only on its own row of x, never on n or on
// the row range). Requires TileInt8Available() and QuantTilesSupport(w).
//
// Arithmetic: per token and group, x becomes X = rint(x * 2^(22-e)) with 2^(e-1) <= max|x| <
// 2^e, split exactly into three signed bytes (65536 x2 + 256 x1 + x0); the tiles give each
// plane's integer sum of code * byte over the group exactly; each sum is converted to fp32
// (exact, < 2^24), multiplied by scale * 2^(e-22) * 256^plane (one rounding) and accumulated in
// fp32 lanes; the bias term adds sum_g bias * sum(x over g).
void QuantTileRowsAmx(const float* x, int64_t n, const QuantMatrix& w, int64_t row_begin,
                      int64_t row_end, float* y);

}  // namespace afd::kernels::internal
