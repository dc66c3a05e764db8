// The CPU check and the shape rule of the int8 tile products (see quant_tile.h), compiled
// without special flags; the kernel is in quant_tile_amx.cc.
#include "common/kernels/quant_tile.h"

#include "common/kernels/tile_matmul.h"

namespace afd::kernels {
namespace {

bool HasAmxInt8() {
#if defined(__x86_64__) && defined(AFD_HAVE_AMX_KERNELS)
  unsigned eax, ebx, ecx, edx;
  __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7), "c"(0));
  return ((edx >> 25) & 1) != 0 && __builtin_cpu_supports("avx512vbmi");
#else
  return false;
#endif
}

}  // namespace

bool QuantTileProductsAvailable() {
  static const bool available = TileProductsAvailable() && HasAmxInt8();
  return available;
}

bool QuantTilesTake(const QuantMatrix& w) {
  const bool mlx = w.format == QuantFormat::kMlxAffine &&
                   (w.bits == 2 || w.bits == 3 || w.bits == 4 || w.bits == 5 || w.bits == 6 ||
                    w.bits == 8);
  const bool awq = w.format == QuantFormat::kAwqInt4 && w.bits == 4 && w.rows % 8 == 0;
  return (mlx || awq) && (w.group_size == 64 || w.group_size == 128) && w.cols > 0 &&
         w.cols % 128 == 0 && w.cols / w.group_size <= kMaxTileGroups &&
         QuantTileProductsAvailable();
}

bool UsesQuantTiles(const QuantMatrix& w, int64_t n) {
  const int64_t fewest =
      w.format == QuantFormat::kAwqInt4 ? kAwqTileMinTokens : kQuantTileMinTokens;
  return n >= fewest && QuantTilesTake(w);
}

#if !(defined(__x86_64__) && defined(AFD_HAVE_AMX_KERNELS))
// Never called: UsesQuantTiles is false without the AMX kernels.
QuantTilePackedX PackQuantTileActivations(const float*, int64_t, const QuantMatrix&,
                                          std::vector<uint16_t>*) {
  return {};
}
void QuantTileMatMulRows(const QuantTilePackedX&, const QuantMatrix&, int64_t, int64_t, float*) {}
#endif

}  // namespace afd::kernels
