// The AMX kernels behind tile_matmul.h, in their own translation unit: it is compiled with the
// AMX and AVX-512 flags, so nothing in it may run before TileProductsAvailable() (compiled
// without them, in tile_matmul.cc) has checked the CPU. Shared constants of the tile layout.
#pragma once

#include <cstdint>

#include "common/kernels/tile_matmul.h"
#include "common/kernels/weight_view.h"

namespace afd::kernels::internal {

constexpr int kTileStep = 32;  // input columns per tile step
constexpr int kTileRows = 16;  // A rows / C rows per tile
constexpr int kTileParts = 3;  // bf16 parts per exact activation

// TileMatMulRows itself (see tile_matmul.h); requires TileProductsAvailable().
void TileMatMulRowsAmx(const float* x, int64_t n, const WeightView& w, int64_t row_begin,
                       int64_t row_end, float* y, TileActivations activations);
// PackTileActivations / TileMatMulRowsPacked (see tile_matmul.h).
int64_t TilePackedHalfs(int64_t n, int64_t cols, TileActivations activations);
void PackTileActivationsAmx(const float* x, int64_t n, int64_t cols, TileActivations activations,
                            uint16_t* packed);
void TileMatMulRowsPackedAmx(const TilePackedX& x, const WeightView& w, int64_t row_begin,
                             int64_t row_end, float* y);

}  // namespace afd::kernels::internal
