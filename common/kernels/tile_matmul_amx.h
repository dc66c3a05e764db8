// The AMX kernels behind tile_matmul.h, in their own translation unit: it is compiled with the
// AMX and AVX-512 flags, so nothing in it may run before TileProductsAvailable() (compiled
// without them, in tile_matmul.cc) has checked the CPU. Shared constants of the tile layout.
#pragma once

#include <cstdint>
#include <vector>

#include "common/kernels/tile_matmul.h"
#include "common/kernels/weight_view.h"

namespace afd::kernels::internal {

constexpr int kTileStep = 32;  // input columns per tile step
constexpr int kTileRows = 16;  // A rows / C rows per tile
constexpr int kTileParts = 3;  // bf16 parts per exact activation

// `count` elements of `buffer` (grown as needed, never shrunk) starting at a 64-byte boundary.
// Tile loads of rows that straddle cache lines take twice as long (measured here: a 1 KiB tile
// from L1 in 13 ns aligned, 28 ns at a 16-byte offset, which large vectors' storage has).
template <class T>
T* AlignedTileBuffer(std::vector<T>* buffer, size_t count) {
  constexpr size_t kAlign = 64;
  const size_t need = count + kAlign / sizeof(T);
  if (buffer->size() < need) buffer->resize(need);
  const auto address = reinterpret_cast<uintptr_t>(buffer->data());
  return reinterpret_cast<T*>((address + kAlign - 1) & ~static_cast<uintptr_t>(kAlign - 1));
}

// Every tile register 16 rows x 64 bytes: one configuration for every tile kernel (bf16 and
// int8), loaded once per thread.
void ConfigureTileRegisters();

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
