// Tile products on AMX-BF16 (see tile_matmul.h and tile_matmul_amx.h): compiled with the AMX and
// AVX-512 flags; nothing in it runs before TileProductsAvailable() has checked the CPU.
//
// Layout. A step covers 32 input columns. Weights are the A operand, read straight from the
// checkpoint: a tile is 16 weight rows x 32 columns (64 bytes per row, row stride = the
// matrix's). The activations are the B operand: column j of the packed activations is
// (token j / 3, part j % 3) of the split, and a B tile holds 16 such columns for one step as
// 16 rows of column pairs ([k / 2][j][k % 2]). C tiles are 16 rows x 16 columns of fp32 sums.
// Per pass: 1 A tile (16 rows) x up to 3 B tiles (48 columns: 16 tokens' three parts) -> 3 C
// tiles, one dot product each per step (the strided weight tile loads are the slow ones, so each
// feeds as many products as the tile registers allow: with the weights in L2 this measured 1.5x
// the 2 x 2 blocking; from DRAM and in the engine the two are within noise). After
// the last step the C tiles are stored and each output is (hi + mid) + lo of its token's three
// columns.
#include "common/kernels/tile_matmul_amx.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/kernels/matmul.h"

namespace afd::kernels::internal {
namespace {

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

}  // namespace

// Every tile 16 rows x 64 bytes: one configuration for all uses, loaded once per thread.
void ConfigureTileRegisters() {
  thread_local bool configured = false;
  if (configured) return;
  TileConfig config;
  for (int i = 0; i < 8; ++i) {
    config.colsb[i] = 64;
    config.rows[i] = kTileRows;
  }
  // GCC does not model ldtilecfg as reading its operand: when this function was compiled on
  // its own, the stores above were dropped (an all-zero configuration; every tile instruction
  // then faults). The empty asm with a memory clobber keeps them.
  asm volatile("" : : "r"(&config) : "memory");
  _tile_loadconfig(&config);
  configured = true;
}

namespace {

constexpr int kStep = kTileStep;
constexpr int kTileCols = 16;  // packed activation columns per B tile
constexpr int kParts = kTileParts;
constexpr int kTileHalfs = kTileRows * kStep;  // uint16 per A or B tile (1 KiB)

// Per-thread scratch buffers (grown on first use only), 64-byte aligned.
template <class T>
T* Scratch(std::vector<T>& buffer, size_t count) {
  return AlignedTileBuffer(&buffer, count);
}

struct TileScratch {
  std::vector<uint16_t> split, packed, pad, converted;
};

TileScratch& ThreadTileScratch() {
  thread_local TileScratch scratch;
  return scratch;
}

// parts[j * cols + c] for packed column j = P t + p: part p of x[t][c] (P = num_parts: 3, the
// exact split, or 1, bf16(x) only).
void SplitRows(const float* x, int64_t n, int64_t cols, int num_parts, uint16_t* parts) {
  const __m512i low_half = _mm512_set1_epi32(0xFFFF);
  for (int64_t t = 0; t < n; ++t) {
    const float* row = x + t * cols;
    uint16_t* hi = parts + (num_parts * t) * cols;
    uint16_t* mid = hi + cols;
    uint16_t* lo = mid + cols;
    for (int64_t c = 0; c < cols; c += 16) {
      const __m512 v = _mm512_loadu_ps(row + c);
      // Round to nearest even (NaN stays NaN): the bits of bf16(v) in the high halves.
      auto round = [&](__m512 a) {
        const __m512i bits = _mm512_castps_si512(a);
        const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
        __m512i r = _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF)));
        const __mmask16 nan = _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
        r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(bits, _mm512_set1_epi32(0x400000)));
        return _mm512_andnot_si512(low_half, r);  // bf16 value as fp32 bits
      };
      const __m512i h = round(v);
      if (num_parts == 1) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi + c),
                            _mm512_cvtepi32_epi16(_mm512_srli_epi32(h, 16)));
        continue;
      }
      const __m512 r1 = _mm512_sub_ps(v, _mm512_castsi512_ps(h));
      const __m512i m = round(r1);
      const __m512 r2 = _mm512_sub_ps(r1, _mm512_castsi512_ps(m));
      const __m512i l = round(r2);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi + c),
                          _mm512_cvtepi32_epi16(_mm512_srli_epi32(h, 16)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(mid + c),
                          _mm512_cvtepi32_epi16(_mm512_srli_epi32(m, 16)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo + c),
                          _mm512_cvtepi32_epi16(_mm512_srli_epi32(l, 16)));
    }
  }
}

// B tiles: packed[(q * steps + s) * kTileHalfs + kk * 32 + c * 2 + e] =
// parts[(q * 16 + c) * cols + s * 32 + 2 * kk + e]; columns past `columns` are 0.
void PackTiles(const uint16_t* parts, int64_t columns, int64_t cols, uint16_t* packed) {
  const int64_t steps = cols / kStep;
  const int64_t tiles = (columns + kTileCols - 1) / kTileCols;
  uint32_t* out = reinterpret_cast<uint32_t*>(packed);
  // Tile row kk gathers the column pair kk of a step from the tile's 16 part rows (each a
  // row of `parts`, cols / 2 pairs apart); stores go in order (the buffer outgrows L1).
  const __m512i row_offsets = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
      _mm512_set1_epi32(static_cast<int32_t>(cols / 2)));
  for (int64_t q = 0; q < tiles; ++q) {
    const int64_t first = q * kTileCols;
    const int64_t valid = std::min<int64_t>(columns - first, kTileCols);
    const __mmask16 mask = static_cast<__mmask16>((1u << valid) - 1);
    const int32_t* rows = reinterpret_cast<const int32_t*>(parts + first * cols);
    for (int64_t s = 0; s < steps; ++s) {
      uint32_t* tile = out + (q * steps + s) * (kTileHalfs / 2);
      for (int kk = 0; kk < kStep / 2; ++kk) {
        const __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, row_offsets,
                                                      rows + s * (kStep / 2) + kk, 4);
        _mm512_storeu_si512(tile + kk * kTileCols, v);
      }
    }
  }
}

// bf16 bit patterns of the 128 non-negative e4m3 codes (exact: e4m3 values are bf16 values;
// NaN codes give the canonical bf16 NaN), as four 32-entry tables for vpermt2w.
struct Fp8Tables {
  Fp8Tables() {
    alignas(64) uint16_t table[128];
    for (int m = 0; m < 128; ++m) table[m] = FloatToBf16(Fp8E4M3ToFloat(static_cast<uint8_t>(m)));
    for (int i = 0; i < 4; ++i) part[i] = _mm512_loadu_si512(table + 32 * i);
  }
  __m512i part[4];
};

// dst[r * cols + c] = bf16(e4m3 src[r * src_stride + c]) for rows x cols (cols a multiple of 32).
void ConvertFp8Rows(const uint8_t* src, int64_t src_stride, int64_t rows, int64_t cols,
                    uint16_t* dst) {
  static const Fp8Tables tables;
  const __m512i magnitude = _mm512_set1_epi16(0x7F), sign = _mm512_set1_epi16(0x80);
  const __m512i high_half = _mm512_set1_epi16(0x40);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; c += 32) {
      const __m512i v = _mm512_cvtepu8_epi16(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + r * src_stride + c)));
      const __m512i m = _mm512_and_si512(v, magnitude);
      const __m512i low = _mm512_permutex2var_epi16(tables.part[0], m, tables.part[1]);
      const __m512i high = _mm512_permutex2var_epi16(tables.part[2], m, tables.part[3]);
      __m512i bits = _mm512_mask_blend_epi16(_mm512_test_epi16_mask(m, high_half), low, high);
      bits = _mm512_or_si512(bits, _mm512_slli_epi16(_mm512_and_si512(v, sign), 8));
      _mm512_storeu_si512(dst + r * cols + c, bits);
    }
  }
}

// dst[r * cols + c] = src[r * src_stride + c] for rows x cols bf16 (cols a multiple of 32): a
// row tile's weights staged at 64-byte alignment (checkpoint tensors need not be aligned, and a
// tile load whose rows straddle cache lines takes twice as long).
void CopyBf16Rows(const uint8_t* src, int64_t src_stride, int64_t rows, int64_t cols,
                  uint16_t* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* from = src + r * src_stride;
    for (int64_t c = 0; c < cols; c += 32) {
      _mm512_store_si512(dst + r * cols + c, _mm512_loadu_si512(from + 2 * c));
    }
  }
}

// One pass: one A tile (16 rows from `a`, stride `a_stride` bytes) x B_N B tiles (b_tiles[q]
// + step * kTileHalfs) over `steps` steps. The C tiles start from `c_in` (nullptr: zero) and
// are stored to `c_out`; both [16 rows][B_N * 16 columns] fp32, row stride 48 floats (storing
// and reloading a C tile is exact, so a sum split over passes has the bits of one pass).
// `prefetch`/`prefetch_bytes`: memory to pull into L2 during the pass.
template <int B_N>
void TilePass(const uint8_t* a, int64_t a_stride, const uint16_t* const* b_tiles, int64_t steps,
              const float* c_in, float* c_out, const uint8_t* prefetch, int64_t prefetch_bytes) {
  constexpr int64_t kStride = 3 * kTileCols * sizeof(float);
  if (c_in == nullptr) {
    _tile_zero(0);
    if constexpr (B_N > 1) _tile_zero(1);
    if constexpr (B_N > 2) _tile_zero(2);
  } else {
    _tile_loadd(0, c_in, kStride);
    if constexpr (B_N > 1) _tile_loadd(1, c_in + kTileCols, kStride);
    if constexpr (B_N > 2) _tile_loadd(2, c_in + 2 * kTileCols, kStride);
  }
  const int64_t pf_per_step = prefetch != nullptr ? (prefetch_bytes + steps - 1) / steps : 0;
  for (int64_t s = 0; s < steps; ++s) {
    for (int64_t off = 0; off < pf_per_step; off += 64) {
      const int64_t at = s * pf_per_step + off;
      if (at < prefetch_bytes) _mm_prefetch(reinterpret_cast<const char*>(prefetch + at), _MM_HINT_T1);
    }
    _tile_loadd(4, a + s * kStep * 2, a_stride);
    _tile_loadd(5, b_tiles[0] + s * kTileHalfs, 64);
    _tile_dpbf16ps(0, 4, 5);
    if constexpr (B_N > 1) {
      _tile_loadd(6, b_tiles[1] + s * kTileHalfs, 64);
      _tile_dpbf16ps(1, 4, 6);
    }
    if constexpr (B_N > 2) {
      _tile_loadd(7, b_tiles[2] + s * kTileHalfs, 64);
      _tile_dpbf16ps(2, 4, 7);
    }
  }
  _tile_stored(0, c_out, kStride);
  if constexpr (B_N > 1) _tile_stored(1, c_out + kTileCols, kStride);
  if constexpr (B_N > 2) _tile_stored(2, c_out + 2 * kTileCols, kStride);
}

void TilePassB(int b_n, const uint8_t* a, int64_t a_stride, const uint16_t* const* b_tiles,
               int64_t steps, const float* c_in, float* c_out, const uint8_t* prefetch,
               int64_t prefetch_bytes) {
  if (b_n == 3) {
    TilePass<3>(a, a_stride, b_tiles, steps, c_in, c_out, prefetch, prefetch_bytes);
  } else if (b_n == 2) {
    TilePass<2>(a, a_stride, b_tiles, steps, c_in, c_out, prefetch, prefetch_bytes);
  } else {
    TilePass<1>(a, a_stride, b_tiles, steps, c_in, c_out, prefetch, prefetch_bytes);
  }
}

}  // namespace

int64_t TilePackedHalfs(int64_t n, int64_t cols, TileActivations activations) {
  const int num_parts = activations == TileActivations::kExact ? kParts : 1;
  const int64_t tiles = (num_parts * n + kTileCols - 1) / kTileCols;
  return tiles * (cols / kStep) * kTileHalfs;
}

void PackTileActivationsAmx(const float* x, int64_t n, int64_t cols, TileActivations activations,
                            uint16_t* packed) {
  const int num_parts = activations == TileActivations::kExact ? kParts : 1;
  TileScratch& scratch = ThreadTileScratch();
  uint16_t* parts = Scratch(scratch.split, static_cast<size_t>(num_parts * n * cols));
  SplitRows(x, n, cols, num_parts, parts);
  PackTiles(parts, num_parts * n, cols, packed);
}

void TileMatMulRowsAmx(const float* x, int64_t n, const WeightView& w, int64_t row_begin,
                       int64_t row_end, float* y, TileActivations activations) {
  if (n <= 0 || row_begin >= row_end) return;
  TileScratch& scratch = ThreadTileScratch();
  uint16_t* packed =
      Scratch(scratch.packed, static_cast<size_t>(TilePackedHalfs(n, w.cols, activations)));
  PackTileActivationsAmx(x, n, w.cols, activations, packed);
  TileMatMulRowsPackedAmx({packed, n, w.cols, activations}, w, row_begin, row_end, y);
}

void TileMatMulRowsPackedAmx(const TilePackedX& x, const WeightView& w, int64_t row_begin,
                             int64_t row_end, float* y) {
  const int64_t n = x.n;
  if (n <= 0 || row_begin >= row_end) return;
  ConfigureTileRegisters();
  const int num_parts = x.activations == TileActivations::kExact ? kParts : 1;
  const int64_t cols = w.cols;
  const int64_t steps = cols / kStep;
  const int64_t columns = num_parts * n;
  const int64_t tiles = (columns + kTileCols - 1) / kTileCols;  // B tiles per step
  const bool fp8 = w.type == WeightType::kFp8E4M3;
  const int64_t row_bytes = cols * (fp8 ? 1 : 2);
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  // Steps per k block. FP8: one scale column block (its sums are scaled as they leave the
  // tiles, then added in fp32 in block order). bf16: kBf16BlockSteps, so that a chunk's B
  // tiles for one k block (3 x 8 KiB) stay in L1 while every row tile of the row block meets
  // them; the C tiles carry the sums from one k block to the next (exact).
  constexpr int64_t kBf16BlockSteps = 8;
  const int64_t block_steps = fp8 ? w.block_cols / kStep : std::min(kBf16BlockSteps, steps);
  const int64_t k_blocks = (steps + block_steps - 1) / block_steps;
  const int64_t ncb = fp8 ? (cols + w.block_cols - 1) / w.block_cols : 1;
  const uint16_t* packed = x.tiles;

  // Loop order: row blocks of kBlockTiles row tiles; in each, chunks of 3 B tiles (48
  // columns: whole tokens, 16 of them with three parts); in each, k blocks; in each, the
  // block's row tiles. So each chunk of B is read once per row block, and each row tile reads
  // the k block's B tiles from L1 (the tile loads, not the products, set the pace), while the
  // block's weights (bf16 staged or in place, FP8 widened, once per block) stay in L2. Every
  // output's arithmetic is the same in any order: its C element accumulates over the steps in
  // order (bf16: carried across k blocks in the C tiles; FP8: per scale block, the blocks'
  // scaled sums added in order).
  constexpr int64_t kBlockTiles = 4;
  TileScratch& scratch = ThreadTileScratch();
  const int64_t block_rows = kBlockTiles * kTileRows;
  // Weights staged per row block: FP8 always (widened), bf16 when the rows are not 64-byte
  // aligned (checkpoint layout).
  const bool staged = fp8 || (reinterpret_cast<uintptr_t>(base) | row_bytes) % 64 != 0;
  uint16_t* converted =
      staged ? Scratch(scratch.converted, static_cast<size_t>(block_rows * cols)) : nullptr;
  uint8_t* pad =
      reinterpret_cast<uint8_t*>(Scratch(scratch.pad, static_cast<size_t>(kTileRows * cols)));
  constexpr int64_t kChunk = kTileRows * 3 * kTileCols;  // [16 rows][48 columns]
  // Per row tile of the block: the running sums of the chunk (bf16: the C tiles between k
  // blocks; FP8: the scaled block sums) and, FP8 only, one scale block's C tiles.
  alignas(64) float sums[kBlockTiles * kChunk];
  alignas(64) float c_tiles[kBlockTiles * kChunk];

  for (int64_t b0 = row_begin; b0 < row_end; b0 += block_rows) {
    const int64_t b1 = std::min(row_end, b0 + block_rows);
    const int64_t row_tiles = (b1 - b0 + kTileRows - 1) / kTileRows;
    // A of each row tile and k block: pointer and stride.
    const uint8_t* a_rows[kBlockTiles];
    for (int64_t i = 0; i < row_tiles; ++i) {
      const int64_t r0 = b0 + i * kTileRows;
      const uint8_t* rows = base + r0 * row_bytes;
      // Rows past the matrix end come from a zero-padded copy (same bits for the real rows:
      // each output depends only on its own row and column).
      if (r0 + kTileRows > w.rows) {
        std::memset(pad, 0, kTileRows * row_bytes);
        std::memcpy(pad, rows, (w.rows - r0) * row_bytes);
        rows = pad;
      }
      if (staged) {
        // Staged once per row block: [row tile][k block][16 rows][block_steps * 32] (FP8
        // widened to bf16; bf16 copied to an aligned buffer).
        uint16_t* dst = converted + i * kTileRows * cols;
        for (int64_t kb = 0; kb < k_blocks; ++kb) {
          const int64_t s0 = kb * block_steps;
          const int64_t ns = std::min(block_steps, steps - s0);
          uint16_t* to = dst + s0 * kStep * kTileRows;
          if (fp8) {
            ConvertFp8Rows(rows + s0 * kStep, row_bytes, kTileRows, ns * kStep, to);
          } else {
            CopyBf16Rows(rows + s0 * kStep * 2, row_bytes, kTileRows, ns * kStep, to);
          }
        }
        rows = reinterpret_cast<const uint8_t*>(dst);
      }
      a_rows[i] = rows;
    }
    // The next row block's weights into L2 over this block's first chunk, a slice per pass.
    const int64_t next = b1 < row_end ? b1 : -1;
    const int64_t next_bytes =
        next < 0 ? 0 : (std::min(row_end, next + block_rows) - next) * row_bytes;
    const int64_t passes = k_blocks * row_tiles;
    // FP8: the first `width` sums of row tile i (+)= its scale block kb's C tiles times the
    // block's scales.
    auto scale_add = [&](int64_t i, int64_t kb, int64_t width) {
      const int64_t r0 = b0 + i * kTileRows;
      const int64_t rn = std::min<int64_t>(kTileRows, b1 - r0);
      float* tile_sums = sums + i * kChunk;
      const float* c_tile = c_tiles + i * kChunk;
      for (int64_t r = 0; r < rn; ++r) {
        float* sum = tile_sums + r * 3 * kTileCols;
        const float* c = c_tile + r * 3 * kTileCols;
        const float sc = w.scales[((r0 + r) / w.block_rows) * ncb + kb];
        for (int64_t j = 0; j < width; ++j) {
          const float term = sc * c[j];
          sum[j] = kb == 0 ? term : sum[j] + term;
        }
      }
    };
    for (int64_t q0 = 0; q0 < tiles; q0 += 3) {
      const int b_n = static_cast<int>(std::min<int64_t>(3, tiles - q0));
      const int64_t width = b_n * kTileCols;
      for (int64_t kb = 0; kb < k_blocks; ++kb) {
        const int64_t s0 = kb * block_steps;
        const int64_t ns = std::min(block_steps, steps - s0);
        const uint16_t* b_tiles[3];
        for (int j = 0; j < b_n; ++j) b_tiles[j] = packed + ((q0 + j) * steps + s0) * kTileHalfs;
        for (int64_t i = 0; i < row_tiles; ++i) {
          const uint8_t* pf = nullptr;
          int64_t pf_bytes = 0;
          if (q0 == 0 && next >= 0) {
            const int64_t pass = kb * row_tiles + i;
            const int64_t from = pass * next_bytes / passes;
            pf = base + next * row_bytes + from;
            pf_bytes = (pass + 1) * next_bytes / passes - from;
          }
          const uint8_t* a =
              staged ? a_rows[i] + s0 * kStep * kTileRows * 2 : a_rows[i] + s0 * kStep * 2;
          const int64_t a_stride = staged ? ns * kStep * 2 : row_bytes;
          if (!fp8) {  // bf16: the C tiles carried in the row tile's sums
            float* tile_sums = sums + i * kChunk;
            TilePassB(b_n, a, a_stride, b_tiles, ns, kb == 0 ? nullptr : tile_sums, tile_sums, pf,
                      pf_bytes);
            continue;
          }
          // FP8: this pass's scale block sums go to its own C buffer; the previous row tile's
          // are scaled into its sums meanwhile (vector work the core overlaps with the tile
          // products, instead of waiting on the C tiles it has just stored).
          TilePassB(b_n, a, a_stride, b_tiles, ns, nullptr, c_tiles + i * kChunk, pf, pf_bytes);
          if (i > 0) scale_add(i - 1, kb, width);
        }
        if (fp8) scale_add(row_tiles - 1, kb, width);
      }
      // The chunk's whole tokens: columns [q0 * 16, q0 * 16 + width) = tokens
      // [q0 * 16 / P, ...), each its P part columns in a row.
      const int64_t t_begin = q0 * kTileCols / num_parts;
      const int64_t t_end = std::min(n, (q0 * kTileCols + width) / num_parts);
      for (int64_t i = 0; i < row_tiles; ++i) {
        const int64_t r0 = b0 + i * kTileRows;
        const int64_t rn = std::min<int64_t>(kTileRows, b1 - r0);
        const float* tile_sums = sums + i * kChunk;
        for (int64_t t = t_begin; t < t_end; ++t) {
          for (int64_t r = 0; r < rn; ++r) {
            const float* s = tile_sums + r * 3 * kTileCols + (num_parts * t - q0 * kTileCols);
            y[t * w.rows + r0 + r] = num_parts == 1 ? s[0] : (s[0] + s[1]) + s[2];
          }
        }
      }
    }
  }
}

}  // namespace afd::kernels::internal
