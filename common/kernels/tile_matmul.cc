// Tile products (see tile_matmul.h): the CPU check, the dispatch and the scalar twin, compiled
// without special flags; the AMX kernels are in tile_matmul_amx.cc.
#include "common/kernels/tile_matmul.h"
#include "common/kernels/vector_state.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "common/kernels/matmul.h"
#include "common/kernels/tile_matmul_amx.h"

namespace afd::kernels {
namespace {

using internal::kTileParts;
using internal::kTileRows;
using internal::kTileStep;

bool AskTileData() {
#if defined(__x86_64__) && defined(AFD_HAVE_AMX_KERNELS)
  if (!__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512f")) return false;
  unsigned eax, ebx, ecx, edx;
  __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7), "c"(0));
  const bool amx_bf16 = (edx >> 22) & 1, amx_tile = (edx >> 24) & 1;
  if (!amx_bf16 || !amx_tile) return false;
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

}  // namespace

bool TileProductsAvailable() {
  static const bool available = AskTileData();
  return available;
}

bool TileProductsSupport(const WeightView& w) {
  if (w.cols <= 0 || w.cols % kTileStep != 0) return false;
  if (w.type == WeightType::kBF16) return true;
  return w.type == WeightType::kFp8E4M3 && w.scales != nullptr && w.block_cols > 0 &&
         w.block_cols % kTileStep == 0 && w.block_rows > 0 && w.block_rows % kTileRows == 0;
}

void SplitToBf16x3(float v, uint16_t* hi, uint16_t* mid, uint16_t* lo) {
  *hi = FloatToBf16(v);
  const float r1 = v - Bf16ToFloat(*hi);
  *mid = FloatToBf16(r1);
  const float r2 = r1 - Bf16ToFloat(*mid);
  *lo = FloatToBf16(r2);
}

void TileMatMulRows(const float* x, int64_t n, const WeightView& w, int64_t row_begin,
                    int64_t row_end, float* y, TileActivations activations) {
#if defined(AFD_HAVE_AMX_KERNELS)
  internal::TileMatMulRowsAmx(x, n, w, row_begin, row_end, y, activations);
  ClearUpperVectorState();
#else
  (void)x, (void)n, (void)w, (void)row_begin, (void)row_end, (void)y, (void)activations;
#endif
}

TilePackedX PackTileActivations(const float* x, int64_t n, int64_t cols,
                                TileActivations activations, std::vector<uint16_t>* storage) {
  TilePackedX packed;
  packed.n = n;
  packed.cols = cols;
  packed.activations = activations;
#if defined(AFD_HAVE_AMX_KERNELS)
  const size_t halfs = static_cast<size_t>(internal::TilePackedHalfs(n, cols, activations));
  uint16_t* tiles = internal::AlignedTileBuffer(storage, halfs);
  internal::PackTileActivationsAmx(x, n, cols, activations, tiles);
  ClearUpperVectorState();
  packed.tiles = tiles;
#else
  (void)x, (void)storage;
#endif
  return packed;
}

void TileMatMulRowsPacked(const TilePackedX& x, const WeightView& w, int64_t row_begin,
                          int64_t row_end, float* y) {
#if defined(AFD_HAVE_AMX_KERNELS)
  internal::TileMatMulRowsPackedAmx(x, w, row_begin, row_end, y);
  ClearUpperVectorState();
#else
  (void)x, (void)w, (void)row_begin, (void)row_end, (void)y;
#endif
}

void TileMatMulReference(const float* x, int64_t n, const WeightView& w, float* y,
                         TileActivations activations) {
  const bool fp8 = w.type == WeightType::kFp8E4M3;
  const int64_t block = fp8 ? w.block_cols : w.cols;
  const int64_t ncb = (w.cols + block - 1) / block;
  std::vector<uint16_t> parts(kTileParts * w.cols);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t c = 0; c < w.cols; ++c) {
      SplitToBf16x3(x[t * w.cols + c], &parts[c], &parts[w.cols + c], &parts[2 * w.cols + c]);
      if (activations == TileActivations::kBf16) {
        parts[w.cols + c] = 0;  // bf16(x) alone: the first part is bf16(x) rounded to nearest
        parts[2 * w.cols + c] = 0;
      }
    }
    for (int64_t r = 0; r < w.rows; ++r) {
      float sum[kTileParts] = {0.0f, 0.0f, 0.0f};
      for (int p = 0; p < kTileParts; ++p) {
        for (int64_t kb = 0; kb < ncb; ++kb) {
          float block_sum = 0.0f;
          for (int64_t c = kb * block; c < std::min(w.cols, (kb + 1) * block); ++c) {
            const float weight =
                fp8 ? Fp8E4M3ToFloat(static_cast<const uint8_t*>(w.data)[r * w.cols + c])
                    : Bf16ToFloat(static_cast<const uint16_t*>(w.data)[r * w.cols + c]);
            block_sum += Bf16ToFloat(parts[p * w.cols + c]) * weight;
          }
          const float scale = fp8 ? w.scales[(r / w.block_rows) * ncb + kb] : 1.0f;
          sum[p] = kb == 0 ? scale * block_sum : sum[p] + scale * block_sum;
        }
      }
      y[t * w.rows + r] = activations == TileActivations::kBf16 ? sum[0]
                                                                : (sum[0] + sum[1]) + sum[2];
    }
  }
}

}  // namespace afd::kernels
