// MLX and AWQ products on the AMX-INT8 tiles (see quant_tile.h): compiled with the AMX and
// AVX-512 flags; nothing in it runs before QuantTileProductsAvailable() (quant_tile.cc) has
// checked the CPU. AWQ's layout is described at its kernel, below.
//
// MLX layout. A step covers 64 input columns. A tiles: 16 weight rows x 64 unsigned codes, in the
// order the packed bytes give them cheaply: 4-bit rows are staged per pair of steps (64 bytes =
// 128 codes) as [low nibbles | high nibbles] of each step's 32 bytes, so step k' of a staged row
// holds code 2k' (k' < 32) or 2(k' - 32) + 1; 8-bit rows are the checkpoint's bytes; 2/3/5/6-bit
// codes are unpacked in natural order (one byte permute and one multishift per step). B tiles:
// 16 rows of 4 consecutive (staged-order) columns x 16 B columns, column 3j + p being plane p
// of the chunk's token j (its byte for K index k at row k / 4, byte 4 * column + k % 4).
// One TDPBUSD per step and row tile yields every plane of five tokens. Row tiles go in pairs
// (each B tile feeds two products); per step pair the codes are staged, the C tiles stored and
// each finished group scaled into 16 fp32 accumulator vectors per row tile and chunk (one per
// weight row, lanes = B columns).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/kernels/matmul.h"
#include "common/kernels/quant_tile.h"
#include "common/kernels/tile_matmul_amx.h"

namespace afd::kernels {
namespace {

constexpr int kStepCols = 64;     // input columns per tile step
constexpr int kTileBytes = 1024;  // 16 rows x 64 bytes
constexpr int kPlanes = 3;
// How far ahead of the staged step pair each weight row is prefetched.
constexpr int64_t kStagePrefetchBytes = 512;
// Per chunk and group: 16 lanes of unit x plane weight, then 16 lanes of the group's sum of x
// (in each token's plane-0 lane, where the bias term is added).
constexpr int kUnitFloats = 32;

// Staged-order position k' of a step -> column of the step (4-bit: even codes, then odd).
int StagedColumn(int bits, int k) {
  if (bits != 4) return k;
  return k < 32 ? 2 * k : 2 * (k - 32) + 1;
}

struct ChunkLayout {
  int64_t chunks, steps, groups;
  size_t tile_bytes, unit_floats;
};

ChunkLayout LayoutOf(int64_t n, int64_t cols, int group_size) {
  ChunkLayout l;
  l.chunks = (n + kQuantTileTokens - 1) / kQuantTileTokens;
  l.steps = cols / kStepCols;
  l.groups = cols / group_size;
  l.tile_bytes = static_cast<size_t>(l.chunks * l.steps) * kTileBytes;
  l.unit_floats = static_cast<size_t>(l.chunks * l.groups) * kUnitFloats;
  return l;
}

// out[0, count) = fp32 of p[first, first + count) of `type` (f32, bf16 or f16), with masked
// vector loads (no byte past the run is read).
void WidenRun(const void* p, WeightType type, int64_t first, int64_t count, float* out) {
  for (int64_t i = 0; i < count; i += 16) {
    const __mmask16 m = static_cast<__mmask16>(count - i >= 16 ? 0xFFFF : (1u << (count - i)) - 1);
    __m512 v;
    if (type == WeightType::kF32) {
      v = _mm512_maskz_loadu_ps(m, static_cast<const float*>(p) + first + i);
    } else {
      const __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(p) + first + i);
      v = type == WeightType::kF16
              ? _mm512_cvtph_ps(h)
              : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    _mm512_mask_storeu_ps(out + i, m, v);
  }
}

// Per-thread buffers of both kernels (layouts where they are used).
struct QuantTileScratch {
  std::vector<uint8_t> stage;  // staged codes (MLX: A tiles of a step pair; AWQ: B tiles)
  std::vector<int32_t> c;      // stored C tiles
  std::vector<float> sb;       // widened scales and biases / zero point terms
  std::vector<float> acc;      // fp32 accumulators
};

QuantTileScratch& ThreadScratch() {
  thread_local QuantTileScratch scratch;
  return scratch;
}

// The 64 codes of one step of `bits` (2, 3, 5 or 6) bits at p (8 * bits bytes; no byte past
// them is read), as bytes in natural order.
inline __m512i UnpackStep(const uint8_t* p, int bits, __m512i ctrl, __m512i gather) {
  const __m512i v = _mm512_maskz_loadu_epi8(_cvtu64_mask64((1ull << (8 * bits)) - 1), p);
  return _mm512_and_si512(_mm512_multishift_epi64_epi8(ctrl, _mm512_permutexvar_epi8(gather, v)),
                          _mm512_set1_epi8(static_cast<char>((1 << bits) - 1)));
}

// Constants of UnpackStep for `bits`: 64-bit lane q gathers the `bits` bytes of codes
// 8q .. 8q + 7, and one multishift moves code 8q + k (bit offset k * bits in that window) to
// byte k.
struct UnpackTables {
  __m512i ctrl, gather;
  explicit UnpackTables(int bits) {
    alignas(64) uint8_t ctrl_b[64], gather_b[64];
    for (int q = 0; q < 8; ++q) {
      for (int k = 0; k < 8; ++k) {
        ctrl_b[8 * q + k] = static_cast<uint8_t>(k * bits);
        gather_b[8 * q + k] = static_cast<uint8_t>(std::min(bits * q + k, 63));
      }
    }
    ctrl = _mm512_load_si512(ctrl_b);
    gather = _mm512_load_si512(gather_b);
  }
};

// A tiles of steps s and s + 1 of one row tile: stage[0] / stage[1] hold 16 rows x 64 codes
// (rows past `rows`: zero). 4-bit: each row's 64 bytes of the two steps split into low and
// high nibbles, the halves of each step put side by side; 8-bit: the bytes as they are; other
// widths: unpacked in natural order.
void StagePair(const uint8_t* data, int bits, const UnpackTables& tables, int64_t row_bytes,
               int64_t r0, int rows, int64_t s, uint8_t* stage) {
  const __m512i m0f = _mm512_set1_epi8(0x0F);
  const __m512i first = _mm512_set_epi64(11, 10, 9, 8, 3, 2, 1, 0);
  const __m512i second = _mm512_set_epi64(15, 14, 13, 12, 7, 6, 5, 4);
  const __m512i ctrl = tables.ctrl, gather = tables.gather;
  const int64_t pair_bytes = 2 * kStepCols * bits / 8;
  const int64_t ahead = s * pair_bytes / 2 + kStagePrefetchBytes;  // offset in the row
  for (int r = 0; r < 16; ++r) {
    __m512i a = _mm512_setzero_si512(), b = _mm512_setzero_si512();
    if (r < rows) {
      const uint8_t* row = data + (r0 + r) * row_bytes;
      // The same row kStagePrefetchBytes further on, or past its end the row a block of 32
      // rows down (the next block's), so the weights stream in ahead of the staging.
      _mm_prefetch(reinterpret_cast<const char*>(
                       ahead < row_bytes ? row + ahead : row + 31 * row_bytes + ahead),
                   _MM_HINT_T0);
      if (bits == 4) {
        const __m512i v = _mm512_loadu_si512(row + s * 32);
        const __m512i lo = _mm512_and_si512(v, m0f);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m0f);
        a = _mm512_permutex2var_epi64(lo, first, hi);
        b = _mm512_permutex2var_epi64(lo, second, hi);
      } else if (bits == 8) {
        a = _mm512_loadu_si512(row + s * kStepCols);
        b = _mm512_loadu_si512(row + (s + 1) * kStepCols);
      } else {
        a = UnpackStep(row + s * 8 * bits, bits, ctrl, gather);
        b = UnpackStep(row + (s + 1) * 8 * bits, bits, ctrl, gather);
      }
    }
    _mm512_store_si512(stage + r * 64, a);
    _mm512_store_si512(stage + kTileBytes + r * 64, b);
  }
}

// For G consecutive groups (C tiles 512 ints apart, their units kUnitFloats apart):
// acc[r] += C[r] * (unit lanes * scale[r]) + bias[r] * sum lanes, group after group, with acc
// loaded and stored once. scales / biases: the first group's entry of row 0; row r's is
// kMaxTileGroups * r further, the next group's 1 further.
template <int G>
inline void ScaleGroups(const int32_t* c, const float* unit, const float* scales,
                        const float* biases, float* acc) {
  __m512 u[G], sum[G];
  for (int g = 0; g < G; ++g) {
    u[g] = _mm512_load_ps(unit + g * kUnitFloats);
    sum[g] = _mm512_load_ps(unit + g * kUnitFloats + 16);
  }
#pragma GCC unroll 16
  for (int r = 0; r < 16; ++r) {
    __m512 a = _mm512_load_ps(acc + 16 * r);
    for (int g = 0; g < G; ++g) {
      const __m512 f = _mm512_cvtepi32_ps(_mm512_load_si512(c + g * 512 + 16 * r));
      const float s = scales[r * kMaxTileGroups + g], b = biases[r * kMaxTileGroups + g];
      a = _mm512_fmadd_ps(f, _mm512_mul_ps(u[g], _mm512_set1_ps(s)), a);
      a = _mm512_fmadd_ps(_mm512_set1_ps(b), sum[g], a);
    }
    _mm512_store_ps(acc + 16 * r, a);
  }
}

}  // namespace

// AWQ products (below).
void AwqTileMatMulRows(const QuantTilePackedX& x, const QuantMatrix& w, int64_t row_begin,
                       int64_t row_end, float* y);

QuantTilePackedX PackQuantTileActivations(const float* x, int64_t n, const QuantMatrix& w,
                                          std::vector<uint16_t>* storage) {
  const ChunkLayout l = LayoutOf(n, w.cols, w.group_size);
  const size_t unit_offset = (l.tile_bytes + 63) / 64 * 64;
  uint8_t* base = reinterpret_cast<uint8_t*>(
      internal::AlignedTileBuffer(storage, (unit_offset + l.unit_floats * 4) / 2 + 1));
  int8_t* tiles = reinterpret_cast<int8_t*>(base);
  float* units = reinterpret_cast<float*>(base + unit_offset);
  std::memset(base, 0, unit_offset + l.unit_floats * 4);
  // Staged order as a byte permutation of a step's 64 values.
  alignas(64) uint8_t order[64];
  for (int k = 0; k < 64; ++k) order[k] = static_cast<uint8_t>(StagedColumn(w.bits, k));
  const __m512i perm = _mm512_load_si512(order);
  const bool awq = w.format == QuantFormat::kAwqInt4;
  // Dword kk of a plane vector goes to B row kk: dword index kk * 16 + column.
  const __m512i rows16 =
      _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                         _mm512_set1_epi32(16));
  const int64_t steps_per_group = w.group_size / kStepCols;
  for (int64_t t = 0; t < n; ++t) {
    const int64_t chunk = t / kQuantTileTokens, j = t % kQuantTileTokens;
    for (int64_t g = 0; g < l.groups; ++g) {
      const float* p = x + t * w.cols + g * w.group_size;
      __m512 mx = _mm512_setzero_ps(), sum = _mm512_setzero_ps();
      __mmask16 nan = 0;  // vmaxps drops NaN; they are caught apart (the group becomes NaN)
      for (int i = 0; i < w.group_size; i += 16) {
        const __m512 v = _mm512_loadu_ps(p + i);
        mx = _mm512_max_ps(mx, _mm512_abs_ps(v));
        sum = _mm512_add_ps(sum, v);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      }
      const float m = nan != 0 ? std::numeric_limits<float>::infinity() : _mm512_reduce_max_ps(mx);
      const internal::GroupUnit gu = internal::GroupUnitOf(m);  // the VNNI kernel's rule
      const float unit = gu.unit;
      const __m512 inv = _mm512_set1_ps(gu.inv);
      float* u = units + (chunk * l.groups + g) * kUnitFloats;
      u[3 * j + 0] = unit * 65536.0f;
      u[3 * j + 1] = unit * 256.0f;
      u[3 * j + 2] = unit;
      u[16 + 3 * j] = _mm512_reduce_add_ps(sum);
      for (int64_t ss = 0; ss < steps_per_group; ++ss) {
        const int64_t s = g * steps_per_group + ss;
        alignas(64) int8_t plane[kPlanes][64];
        for (int i = 0; i < 64; i += 16) {
          const __m512i q =
              _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(p + ss * 64 + i), inv));
          const __m512i x0 = _mm512_srai_epi32(_mm512_slli_epi32(q, 24), 24);
          const __m512i q1 = _mm512_srai_epi32(_mm512_sub_epi32(q, x0), 8);
          const __m512i x1 = _mm512_srai_epi32(_mm512_slli_epi32(q1, 24), 24);
          const __m512i x2 = _mm512_srai_epi32(_mm512_sub_epi32(q1, x1), 8);
          _mm_store_si128(reinterpret_cast<__m128i*>(plane[0] + i), _mm512_cvtepi32_epi8(x2));
          _mm_store_si128(reinterpret_cast<__m128i*>(plane[1] + i), _mm512_cvtepi32_epi8(x1));
          _mm_store_si128(reinterpret_cast<__m128i*>(plane[2] + i), _mm512_cvtepi32_epi8(x0));
        }
        int8_t* tile = tiles + (chunk * l.steps + s) * kTileBytes;
        for (int k = 0; k < kPlanes; ++k) {
          if (awq) {  // A tile: row 3j + k holds the plane, natural order
            _mm512_store_si512(tile + (3 * j + k) * 64, _mm512_load_si512(plane[k]));
            continue;
          }
          const __m512i v = _mm512_permutexvar_epi8(perm, _mm512_load_si512(plane[k]));
          _mm512_i32scatter_epi32(tile, _mm512_add_epi32(rows16, _mm512_set1_epi32(3 * j + k)), v,
                                  4);
        }
      }
    }
  }
  QuantTilePackedX packed;
  packed.tiles = tiles;
  packed.units = units;
  packed.n = n;
  packed.cols = w.cols;
  packed.group_size = w.group_size;
  packed.bits = w.bits;
  packed.awq = awq;
  return packed;
}

void QuantTileMatMulRows(const QuantTilePackedX& x, const QuantMatrix& w, int64_t row_begin,
                         int64_t row_end, float* y) {
  if (w.format == QuantFormat::kAwqInt4) return AwqTileMatMulRows(x, w, row_begin, row_end, y);
  internal::ConfigureTileRegisters();
  const ChunkLayout l = LayoutOf(x.n, w.cols, w.group_size);
  const int64_t row_bytes = w.cols * w.bits / 8;
  const bool two_groups = w.group_size == kStepCols;  // a step pair spans 2 groups, else 1
  const auto* data = static_cast<const uint8_t*>(w.data);
  QuantTileScratch& scratch = ThreadScratch();
  uint8_t* stage = internal::AlignedTileBuffer(&scratch.stage, 4 * kTileBytes);
  int32_t* cbuf = internal::AlignedTileBuffer(&scratch.c, 4 * 256);
  float* scales = internal::AlignedTileBuffer(&scratch.sb, 2 * 2 * 16 * kMaxTileGroups);
  float* biases = scales + 2 * 16 * kMaxTileGroups;
  float* acc = internal::AlignedTileBuffer(&scratch.acc, l.chunks * 2 * 256);
  const UnpackTables tables(w.bits);
  // Blocks of two row tiles: each B tile feeds two products (two independent C chains). Per
  // pair of steps the codes are staged (L1), every chunk's products run and the groups they
  // finish are scaled into acc [chunk][tile][16 rows][16 lanes].
  for (int64_t r0 = row_begin; r0 < row_end; r0 += 32) {
    int rows[2];
    for (int rt = 0; rt < 2; ++rt) {
      const int64_t first = r0 + 16 * rt;
      rows[rt] = static_cast<int>(std::clamp<int64_t>(row_end - first, 0, 16));
      for (int r = 0; r < rows[rt]; ++r) {
        const int64_t at = (rt * 16 + r) * kMaxTileGroups;
        WidenRun(w.scales, w.scale_type, (first + r) * l.groups, l.groups, scales + at);
        WidenRun(w.biases, w.scale_type, (first + r) * l.groups, l.groups, biases + at);
      }
      for (int r = rows[rt]; r < 16; ++r) {
        const int64_t at = (rt * 16 + r) * kMaxTileGroups;
        std::fill(scales + at, scales + at + l.groups, 0.0f);
        std::fill(biases + at, biases + at + l.groups, 0.0f);
      }
    }
    std::fill(acc, acc + l.chunks * 2 * 256, 0.0f);
    for (int64_t s = 0; s < l.steps; s += 2) {
      for (int rt = 0; rt < 2; ++rt) {
        StagePair(data, w.bits, tables, row_bytes, r0 + 16 * rt, rows[rt], s,
                  stage + rt * 2 * kTileBytes);
      }
      for (int64_t chunk = 0; chunk < l.chunks; ++chunk) {
        const int8_t* bt = x.tiles + (chunk * l.steps + s) * kTileBytes;
        // Step s: rows 0-15 (tile 0) and 16-31 (tile 1) against B (tile 2).
        _tile_loadd(0, stage, 64);
        _tile_loadd(1, stage + 2 * kTileBytes, 64);
        _tile_loadd(2, bt, 64);
        _tile_zero(4);
        _tile_zero(5);
        _tile_dpbusd(4, 0, 2);
        _tile_dpbusd(5, 1, 2);
        if (two_groups) {
          _tile_stored(4, cbuf, 64);
          _tile_stored(5, cbuf + 256, 64);
          _tile_zero(4);
          _tile_zero(5);
        }
        // Step s + 1.
        _tile_loadd(0, stage + kTileBytes, 64);
        _tile_loadd(1, stage + 3 * kTileBytes, 64);
        _tile_loadd(2, bt + kTileBytes, 64);
        _tile_dpbusd(4, 0, 2);
        _tile_dpbusd(5, 1, 2);
        _tile_stored(4, cbuf + 512, 64);
        _tile_stored(5, cbuf + 768, 64);
        const int64_t g = two_groups ? s : s / 2;
        const float* units = x.units + (chunk * l.groups + g) * kUnitFloats;
        for (int rt = 0; rt < 2; ++rt) {
          if (rows[rt] == 0) continue;
          float* a = acc + (chunk * 2 + rt) * 256;
          const float* sc = scales + rt * 16 * kMaxTileGroups + g;
          const float* bi = biases + rt * 16 * kMaxTileGroups + g;
          if (two_groups) {
            ScaleGroups<2>(cbuf + rt * 256, units, sc, bi, a);
          } else {
            ScaleGroups<1>(cbuf + 512 + rt * 256, units, sc, bi, a);
          }
        }
      }
    }
    for (int64_t chunk = 0; chunk < l.chunks; ++chunk) {
      const int64_t tokens = std::min<int64_t>(kQuantTileTokens, x.n - chunk * kQuantTileTokens);
      for (int rt = 0; rt < 2; ++rt) {
        for (int r = 0; r < rows[rt]; ++r) {
          const float* lanes = acc + (chunk * 2 + rt) * 256 + 16 * r;
          for (int64_t j = 0; j < tokens; ++j) {
            const int64_t t = chunk * kQuantTileTokens + j;
            y[t * w.rows + r0 + 16 * rt + r] = (lanes[3 * j] + lanes[3 * j + 1]) + lanes[3 * j + 2];
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// AWQ. The matrix is stored transposed (qweight [in][out / 8] words, 8 output columns per word
// in the nibble order kAwqSlot), so the codes are the B operand: a B tile is 16 output columns
// x 64 input rows, [k / 4][4 c + k % 4], and the A tiles are the activation planes (row 3j + p:
// plane p of token j). Per block of 128 output columns (one cache line of every qweight row)
// each input row is put in column order (two byte permutes), then four rows at a time are
// interleaved into the block's eight B tiles (byte and word unpacks, a 4 x 4 transpose of
// 128-bit lanes). C tiles are [token plane][column]; each step's sums are scaled in fp32 by its
// group's scale and the zero point term (scale x zero x sum of x) is subtracted per group.

namespace {

constexpr int kAwqSlot[8] = {0, 4, 1, 5, 2, 6, 3, 7};  // nibble of column c % 8 in its word
constexpr int kAwqBlockCols = 128;

// B tiles of one block of 128 output columns (`cols` of them real) for every step:
// out + (s * 8 + ct) * kTileBytes. rows = input rows.
void StageAwqBlock(const uint8_t* qweight, int64_t row_bytes, int64_t c0, int64_t cols,
                   int64_t steps, uint8_t* colcodes, uint8_t* out) {
  alignas(64) uint8_t idx_b[2][64];
  for (int c = 0; c < 128; ++c) {
    const int slot = kAwqSlot[c % 8];
    idx_b[c / 64][c % 64] = static_cast<uint8_t>((slot % 2) * 64 + 4 * (c / 8) + slot / 2);
  }
  const __m512i idx0 = _mm512_load_si512(idx_b[0]), idx1 = _mm512_load_si512(idx_b[1]);
  const __m512i m0f = _mm512_set1_epi8(0x0F);
  const __mmask64 mask = cols >= 128 ? ~0ull : (1ull << (cols / 2)) - 1;
  for (int64_t s = 0; s < steps; ++s) {
    // 64 input rows in column order: colcodes[k][c].
    for (int k = 0; k < 64; ++k) {
      const __m512i v = _mm512_maskz_loadu_epi8(mask, qweight + (64 * s + k) * row_bytes + c0 / 2);
      const __m512i lo = _mm512_and_si512(v, m0f);
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m0f);
      _mm512_store_si512(colcodes + k * 128, _mm512_permutex2var_epi8(lo, idx0, hi));
      _mm512_store_si512(colcodes + k * 128 + 64, _mm512_permutex2var_epi8(lo, idx1, hi));
    }
    uint8_t* tiles = out + s * 8 * kTileBytes;
    for (int kk = 0; kk < 16; ++kk) {
      for (int half = 0; half < 2; ++half) {
        const uint8_t* r = colcodes + 4 * kk * 128 + 64 * half;
        const __m512i r0 = _mm512_load_si512(r), r1 = _mm512_load_si512(r + 128);
        const __m512i r2 = _mm512_load_si512(r + 256), r3 = _mm512_load_si512(r + 384);
        const __m512i a = _mm512_unpacklo_epi8(r0, r1), b = _mm512_unpackhi_epi8(r0, r1);
        const __m512i c = _mm512_unpacklo_epi8(r2, r3), d = _mm512_unpackhi_epi8(r2, r3);
        // Per 128-bit lane l: columns 16l + 0..3 / 4..7 / 8..11 / 12..15, four rows each.
        const __m512i e = _mm512_unpacklo_epi16(a, c), f = _mm512_unpackhi_epi16(a, c);
        const __m512i g = _mm512_unpacklo_epi16(b, d), h = _mm512_unpackhi_epi16(b, d);
        const __m512i t0 = _mm512_shuffle_i64x2(e, f, 0x44), t1 = _mm512_shuffle_i64x2(e, f, 0xEE);
        const __m512i t2 = _mm512_shuffle_i64x2(g, h, 0x44), t3 = _mm512_shuffle_i64x2(g, h, 0xEE);
        const int ct = 4 * half;
        _mm512_store_si512(tiles + (ct + 0) * kTileBytes + kk * 64, _mm512_shuffle_i64x2(t0, t2, 0x88));
        _mm512_store_si512(tiles + (ct + 1) * kTileBytes + kk * 64, _mm512_shuffle_i64x2(t0, t2, 0xDD));
        _mm512_store_si512(tiles + (ct + 2) * kTileBytes + kk * 64, _mm512_shuffle_i64x2(t1, t3, 0x88));
        _mm512_store_si512(tiles + (ct + 3) * kTileBytes + kk * 64, _mm512_shuffle_i64x2(t1, t3, 0xDD));
      }
    }
  }
}

// acc[m] += C[m] * (scales * unit[m]) for the 15 token-plane rows, then the zero point term
// acc[3j] -= scale * zero * sum_j.
inline void ScaleAwqStep(const int32_t* c, const float* unit, __m512 sv, __m512 szv, bool zero_term,
                         float* acc) {
#pragma GCC unroll 15
  for (int m = 0; m < 15; ++m) {
    __m512 a = _mm512_load_ps(acc + 16 * m);
    a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * m)),
                        _mm512_mul_ps(sv, _mm512_set1_ps(unit[m])), a);
    if (zero_term && m % 3 == 0) a = _mm512_fnmadd_ps(szv, _mm512_set1_ps(unit[16 + m]), a);
    _mm512_store_ps(acc + 16 * m, a);
  }
}

}  // namespace

void AwqTileMatMulRows(const QuantTilePackedX& x, const QuantMatrix& w, int64_t row_begin,
                       int64_t row_end, float* y) {
  internal::ConfigureTileRegisters();
  const ChunkLayout l = LayoutOf(x.n, w.cols, w.group_size);
  const int64_t row_bytes = w.rows / 2;  // one qweight row: 8 columns per 4 bytes
  const int64_t steps_per_group = w.group_size / kStepCols;
  const auto* qweight = static_cast<const uint8_t*>(w.data);
  const auto* qzeros = static_cast<const uint8_t*>(w.zeros);
  QuantTileScratch& scratch = ThreadScratch();
  uint8_t* stage = internal::AlignedTileBuffer(&scratch.stage, l.steps * 8 * kTileBytes + 64 * 128);
  uint8_t* colcodes = stage + l.steps * 8 * kTileBytes;
  int32_t* cbuf = internal::AlignedTileBuffer(&scratch.c, 2 * 256);
  // Per group and column tile: 16 scales, then 16 scale x zero point.
  float* sz = internal::AlignedTileBuffer(&scratch.sb, l.groups * 8 * 32);
  float* acc = internal::AlignedTileBuffer(&scratch.acc, 2 * 256);
  for (int64_t b0 = row_begin / kAwqBlockCols * kAwqBlockCols; b0 < row_end; b0 += kAwqBlockCols) {
    const int64_t bcols = std::min<int64_t>(kAwqBlockCols, w.rows - b0);
    for (int64_t g = 0; g < l.groups; ++g) {
      for (int64_t c = 0; c < 128; ++c) {
        float scale = 0.0f, zero = 8.0f;
        if (c < bcols) {
          WidenRun(w.scales, w.scale_type, g * w.rows + b0 + c, 1, &scale);
          if (qzeros != nullptr) {
            uint32_t word;
            memcpy(&word, qzeros + g * row_bytes + 4 * ((b0 + c) / 8), 4);
            zero = static_cast<float>((word >> (4 * kAwqSlot[(b0 + c) % 8])) & 0xF);
          }
        }
        float* t = sz + (g * 8 + c / 16) * 32;
        t[c % 16] = scale;
        t[16 + c % 16] = scale * zero;
      }
    }
    StageAwqBlock(qweight, row_bytes, b0, bcols, l.steps, colcodes, stage);
    const int64_t tiles_here = (bcols + 15) / 16;
    for (int64_t chunk = 0; chunk < l.chunks; ++chunk) {
      const int8_t* at = x.tiles + chunk * l.steps * kTileBytes;
      const int64_t tokens = std::min<int64_t>(kQuantTileTokens, x.n - chunk * kQuantTileTokens);
      for (int64_t ct = 0; ct < tiles_here; ct += 2) {  // two column tiles: two C chains
        const int64_t c0 = b0 + 16 * ct;
        if (c0 + 32 <= row_begin || c0 >= row_end) continue;  // neither tile is wanted
        std::fill(acc, acc + 2 * 256, 0.0f);
        for (int64_t s = 0; s < l.steps; ++s) {
          const uint8_t* bt = stage + (s * 8 + ct) * kTileBytes;
          _tile_loadd(0, at + s * kTileBytes, 64);
          _tile_loadd(2, bt, 64);
          _tile_loadd(3, bt + kTileBytes, 64);
          _tile_zero(4);
          _tile_zero(5);
          _tile_dpbsud(4, 0, 2);
          _tile_dpbsud(5, 0, 3);
          _tile_stored(4, cbuf, 64);
          _tile_stored(5, cbuf + 256, 64);
          const int64_t g = s / steps_per_group;
          const bool zero_term = s % steps_per_group == 0;  // once per group
          const float* units = x.units + (chunk * l.groups + g) * kUnitFloats;
          for (int k = 0; k < 2; ++k) {
            const float* t = sz + (g * 8 + ct + k) * 32;
            ScaleAwqStep(cbuf + 256 * k, units, _mm512_load_ps(t), _mm512_load_ps(t + 16),
                         zero_term, acc + 256 * k);
          }
        }
        for (int k = 0; k < 2; ++k) {
          const int64_t c = c0 + 16 * k;
          const int64_t lo = std::max(row_begin, c), hi = std::min(row_end, c + 16);
          if (lo >= hi) continue;
          const __mmask16 keep = static_cast<__mmask16>(((1u << (hi - c)) - 1) & ~((1u << (lo - c)) - 1));
          const float* a = acc + 256 * k;
          for (int64_t j = 0; j < tokens; ++j) {
            const __m512 v = _mm512_add_ps(
                _mm512_add_ps(_mm512_load_ps(a + 48 * j), _mm512_load_ps(a + 48 * j + 16)),
                _mm512_load_ps(a + 48 * j + 32));
            _mm512_mask_storeu_ps(y + (chunk * kQuantTileTokens + j) * w.rows + c, keep, v);
          }
        }
      }
    }
  }
}

}  // namespace afd::kernels
