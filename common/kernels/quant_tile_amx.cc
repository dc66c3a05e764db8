// AMX-INT8 decode for MLX 4-bit matrices (see quant_tile_amx.h).
//
// Layout. A block is 128 codes of a row = 64 packed bytes; byte j holds code 2j (low nibble) and
// code 2j + 1 (high nibble). Per block, two K steps of 64: the low nibbles (even codes) and the
// high nibbles (odd codes), each unpacked for 16 rows into an A tile (16 rows x 64 u8 codes).
// The B tile of a K step holds, per token, 16 columns of 4-byte groups: column 3 s + p is byte
// plane p of the codes whose group has slot s = group % 4 (zero for codes of other slots), so C
// (16 rows x 16 int32) collects the three plane sums of four consecutive groups; after a chunk
// of four groups C is stored, converted and scaled per row, and zeroed.
#include "common/kernels/quant_tile_amx.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "common/kernels/tile_matmul_amx.h"

namespace afd::kernels::internal {
namespace {

constexpr int kRows = 16;          // weight rows per A tile
constexpr int64_t kBlock = 128;    // codes per block
constexpr int kSlots = 4;          // groups per C tile (3 columns each)
constexpr int kMaxTokens = 5;      // C tiles 3..7 (0, 1: A; 2: B)
constexpr int kTileBytes = 1024;
// Unpacked A tiles are written kAhead blocks before their tile load: a tile load right after
// the vector stores that wrote its lines waits for them to reach L1.
constexpr int kAhead = 2;
constexpr int kRing = kAhead + 1;

float Pow2(int e) {
  const uint32_t bits = static_cast<uint32_t>(e + 127) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

struct Scratch {
  alignas(64) uint8_t a[kRing][2][kTileBytes];  // A tiles of kRing blocks in flight
  alignas(64) int32_t c[kRows * 16];
  std::vector<int8_t> planes;  // [3][cols] of one token, natural code order
  std::vector<int8_t> b;       // [tokens][blocks][2][1 KiB] B tiles
  std::vector<float> unit;     // [tokens][groups + kSlots] 2^(e-22) per group (0 padded)
  std::vector<float> xsum;     // [tokens][groups + 16] sum of x per group (0 padded)
  std::vector<float> sc, bi;   // [16][groups + kSlots] widened scales / biases of a row tile
  std::vector<float> acc;      // [tokens][16][16] fp32 lanes per row
};

Scratch& ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

template <class T>
T* Grow(std::vector<T>& v, size_t count) {
  if (v.size() < count) v.resize(count);
  return v.data();
}

// Token t's planes, units, group sums and B tiles.
void PrepareToken(const float* x, int64_t cols, int64_t group, int8_t* planes, float* unit,
                  float* xsum, int8_t* b) {
  const int64_t groups = cols / group;
  for (int64_t g = 0; g < groups; ++g) {
    const float* p = x + g * group;
    __m512 m = _mm512_setzero_ps(), s = _mm512_setzero_ps();
    for (int64_t i = 0; i < group; i += 16) {
      const __m512 v = _mm512_loadu_ps(p + i);
      m = _mm512_max_ps(m, _mm512_abs_ps(v));
      s = _mm512_add_ps(s, v);
    }
    const float mx = _mm512_reduce_max_ps(m);
    xsum[g] = _mm512_reduce_add_ps(s);
    uint32_t bits;
    std::memcpy(&bits, &mx, 4);
    const int e = static_cast<int>(bits >> 23) - 126;
    const bool live = mx >= 1.0e-30f && e <= 128;  // below 1e-30 the group counts as zero
    unit[g] = live ? Pow2(e - 22) : (e > 128 ? std::numeric_limits<float>::quiet_NaN() : 0.0f);
    const __m512 inv = _mm512_set1_ps(live ? Pow2(22 - e) : 0.0f);
    for (int64_t i = 0; i < group; i += 16) {
      const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(p + i), inv));
      const __m512i x0 = _mm512_srai_epi32(_mm512_slli_epi32(q, 24), 24);
      const __m512i q1 = _mm512_srai_epi32(_mm512_sub_epi32(q, x0), 8);
      const __m512i x1 = _mm512_srai_epi32(_mm512_slli_epi32(q1, 24), 24);
      const __m512i x2 = _mm512_srai_epi32(_mm512_sub_epi32(q1, x1), 8);
      const int64_t at = g * group + i;
      _mm_storeu_si128(reinterpret_cast<__m128i*>(planes + at), _mm512_cvtepi32_epi8(x0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(planes + cols + at), _mm512_cvtepi32_epi8(x1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(planes + 2 * cols + at),
                       _mm512_cvtepi32_epi8(x2));
    }
  }
  for (int64_t g = groups; g < groups + kSlots; ++g) unit[g] = 0.0f;
  for (int64_t g = groups; g < groups + 16; ++g) xsum[g] = 0.0f;
  // B tiles: step v of block bl, row k4, column 3 s + p, byte i = plane p of code
  // 128 bl + 2 (4 k4 + i) + v when that code's group has slot s.
  const int64_t blocks = cols / kBlock;
  std::memset(b, 0, static_cast<size_t>(blocks) * 2 * kTileBytes);
  for (int64_t bl = 0; bl < blocks; ++bl) {
    for (int k4 = 0; k4 < 16; ++k4) {
      const int64_t code = bl * kBlock + 8 * k4;  // the 8 codes of this row: 4 even, 4 odd
      const int slot = static_cast<int>((code / group) % kSlots);
      for (int p = 0; p < 3; ++p) {
        uint64_t eight;
        std::memcpy(&eight, planes + p * cols + code, 8);
        for (int v = 0; v < 2; ++v) {
          const uint32_t four = static_cast<uint32_t>(
              _pext_u64(eight, v == 0 ? 0x00FF00FF00FF00FFull : 0xFF00FF00FF00FF00ull));
          std::memcpy(b + (bl * 2 + v) * kTileBytes + k4 * 64 + (3 * slot + p) * 4, &four, 4);
        }
      }
    }
  }
}

// Widens `count` scale-type elements to fp32.
void Widen(const void* src, WeightType type, int64_t first, int64_t count, float* out) {
  if (type == WeightType::kF32) {
    std::memcpy(out, static_cast<const float*>(src) + first, sizeof(float) * count);
    return;
  }
  const uint16_t* h = static_cast<const uint16_t*>(src) + first;
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i));
    _mm512_storeu_ps(out + i, type == WeightType::kF16
                                  ? _mm512_cvtph_ps(v)
                                  : _mm512_castsi512_ps(_mm512_slli_epi32(
                                        _mm512_cvtepu16_epi32(v), 16)));
  }
  if (i < count) {
    const __mmask16 m = static_cast<__mmask16>((1u << (count - i)) - 1);
    const __m256i v = _mm256_maskz_loadu_epi16(m, h + i);
    _mm512_mask_storeu_ps(out + i, m,
                          type == WeightType::kF16
                              ? _mm512_cvtph_ps(v)
                              : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16)));
  }
}

// C tile of token slot T is tile register 3 + T (the tile intrinsics take literal numbers).
#define AFD_TILE_DOT(C, B0, B1) \
  do {                          \
    _tile_loadd(2, B0, 64);     \
    _tile_dpbusd(C, 0, 2);      \
    _tile_loadd(2, B1, 64);     \
    _tile_dpbusd(C, 1, 2);      \
  } while (0)

void TileStoreZero(int t, int32_t* c) {
  switch (t) {
    case 0: _tile_stored(3, c, 64); _tile_zero(3); break;
    case 1: _tile_stored(4, c, 64); _tile_zero(4); break;
    case 2: _tile_stored(5, c, 64); _tile_zero(5); break;
    case 3: _tile_stored(6, c, 64); _tile_zero(6); break;
    default: _tile_stored(7, c, 64); _tile_zero(7); break;
  }
}

template <int N>
void RowTile(const uint8_t* rows0, int64_t row_bytes, int rows, bool prefetch, int64_t blocks,
             int64_t group, int64_t groups, const int8_t* const* b, const float* const* unit, Scratch& s,
             float* const* acc) {
  const __m512i m0f = _mm512_set1_epi8(0x0F);
  // Lane 3 s + p of a chunk: slot s's scale times 256^(2-p) (lanes 12-15 unused: factor 0).
  alignas(64) int32_t slot_idx[16];
  alignas(64) float plane_factor[16];
  for (int l = 0; l < 16; ++l) {
    slot_idx[l] = l < 12 ? l / 3 : 0;
    plane_factor[l] = l < 12 ? (l % 3 == 0 ? 1.0f : l % 3 == 1 ? 256.0f : 65536.0f) : 0.0f;
  }
  const __m512i sidx = _mm512_load_si512(slot_idx);
  const __m512 pfac = _mm512_load_ps(plane_factor);
  const int64_t gp = groups + kSlots;
  if (rows < kRows) std::memset(s.a, 0, sizeof(s.a));  // rows past the range stay zero
  if constexpr (N > 0) _tile_zero(3);
  if constexpr (N > 1) _tile_zero(4);
  if constexpr (N > 2) _tile_zero(5);
  if constexpr (N > 3) _tile_zero(6);
  if constexpr (N > 4) _tile_zero(7);
  const int64_t blocks_per_chunk = std::max<int64_t>(1, kSlots * group / kBlock);
  auto unpack = [&](int64_t bl) {
    uint8_t(*a)[kTileBytes] = s.a[bl % kRing];
    const uint8_t* p = rows0 + bl * 64;
    for (int r = 0; r < rows; ++r, p += row_bytes) {
      // Each row's 64 bytes of a block are a separate stream too short for the hardware
      // prefetcher: fetch the same block of the next row tile now.
      if (prefetch) _mm_prefetch(reinterpret_cast<const char*>(p + kRows * row_bytes), _MM_HINT_T0);
      const __m512i v = _mm512_loadu_si512(p);
      _mm512_store_si512(a[0] + 64 * r, _mm512_and_si512(v, m0f));
      _mm512_store_si512(a[1] + 64 * r, _mm512_and_si512(_mm512_srli_epi16(v, 4), m0f));
    }
  };
  for (int64_t bl = 0; bl < std::min<int64_t>(kAhead, blocks); ++bl) unpack(bl);
  for (int64_t bl = 0; bl < blocks; ++bl) {
    if (bl + kAhead < blocks) unpack(bl + kAhead);
    _tile_loadd(0, s.a[bl % kRing][0], 64);
    _tile_loadd(1, s.a[bl % kRing][1], 64);
    const int64_t off = bl * 2 * kTileBytes;
    if constexpr (N > 0) AFD_TILE_DOT(3, b[0] + off, b[0] + off + kTileBytes);
    if constexpr (N > 1) AFD_TILE_DOT(4, b[1] + off, b[1] + off + kTileBytes);
    if constexpr (N > 2) AFD_TILE_DOT(5, b[2] + off, b[2] + off + kTileBytes);
    if constexpr (N > 3) AFD_TILE_DOT(6, b[3] + off, b[3] + off + kTileBytes);
    if constexpr (N > 4) AFD_TILE_DOT(7, b[4] + off, b[4] + off + kTileBytes);
    if ((bl + 1) % blocks_per_chunk != 0 && bl + 1 != blocks) continue;
    // Flush the chunk of groups [g0, g0 + 4).
    const int64_t g0 = (bl / blocks_per_chunk) * blocks_per_chunk * kBlock / group;
    for (int t = 0; t < N; ++t) {
      TileStoreZero(t, s.c);
      // Lane factor: 256^(2-p) * unit of slot s's group (exact powers of two).
      const __m512 f = _mm512_mul_ps(
          pfac, _mm512_permutexvar_ps(sidx, _mm512_castps128_ps512(_mm_loadu_ps(unit[t] + g0))));
      for (int r = 0; r < rows; ++r) {
        const __m512 sums = _mm512_cvtepi32_ps(_mm512_load_si512(s.c + 16 * r));
        const __m512 sc = _mm512_permutexvar_ps(
            sidx, _mm512_castps128_ps512(_mm_loadu_ps(s.sc.data() + r * gp + g0)));
        float* a = acc[t] + 16 * r;
        _mm512_storeu_ps(a, _mm512_fmadd_ps(sums, _mm512_mul_ps(f, sc), _mm512_loadu_ps(a)));
      }
    }
  }
}

#undef AFD_TILE_DOT

}  // namespace

bool QuantTilesSupport(const QuantMatrix& w) {
  return w.format == QuantFormat::kMlxAffine && w.bits == 4 && w.cols > 0 &&
         w.cols % kBlock == 0 && (w.group_size == 32 || w.group_size == 64 || w.group_size == 128);
}

void QuantTileRowsAmx(const float* x, int64_t n, const QuantMatrix& w, int64_t row_begin,
                      int64_t row_end, float* y) {
  if (n <= 0 || row_begin >= row_end) return;
  ConfigureTiles();
  Scratch& s = ThreadScratch();
  const int64_t cols = w.cols, group = w.group_size, groups = w.groups();
  const int64_t blocks = cols / kBlock;
  const int64_t row_bytes = cols / 2;
  const int64_t gp = groups + kSlots;
  const int64_t tokens = std::min<int64_t>(n, kMaxTokens);
  int8_t* planes = Grow(s.planes, static_cast<size_t>(3 * cols + 64));
  int8_t* btiles = Grow(s.b, static_cast<size_t>(tokens * blocks * 2 * kTileBytes));
  float* units = Grow(s.unit, static_cast<size_t>(tokens * gp));
  float* sums = Grow(s.xsum, static_cast<size_t>(tokens * (groups + 16)));
  float* sc = Grow(s.sc, static_cast<size_t>(kRows * gp));
  float* bi = Grow(s.bi, static_cast<size_t>(kRows * gp));
  float* accs = Grow(s.acc, static_cast<size_t>(tokens * kRows * 16 + 16));
  const uint8_t* data = static_cast<const uint8_t*>(w.data);
  for (int64_t t0 = 0; t0 < n; t0 += kMaxTokens) {
    const int nt = static_cast<int>(std::min<int64_t>(kMaxTokens, n - t0));
    const int8_t* b[kMaxTokens];
    const float* unit[kMaxTokens];
    float* acc[kMaxTokens];
    for (int t = 0; t < nt; ++t) {
      b[t] = btiles + t * blocks * 2 * kTileBytes;
      unit[t] = units + t * gp;
      acc[t] = accs + t * kRows * 16;
      PrepareToken(x + (t0 + t) * cols, cols, group, planes, units + t * gp,
                   sums + t * (groups + 16), btiles + t * blocks * 2 * kTileBytes);
    }
    for (int64_t r0 = row_begin; r0 < row_end; r0 += kRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kRows, row_end - r0));
      for (int r = 0; r < rows; ++r) {
        Widen(w.scales, w.scale_type, (r0 + r) * groups, groups, sc + r * gp);
        Widen(w.biases, w.scale_type, (r0 + r) * groups, groups, bi + r * gp);
        std::fill(sc + r * gp + groups, sc + (r + 1) * gp, 0.0f);
      }
      std::fill(accs, accs + nt * kRows * 16, 0.0f);
      const uint8_t* rows0 = data + r0 * row_bytes;
      const bool prefetch = r0 + 2 * kRows <= w.rows;
      switch (nt) {
        case 1: RowTile<1>(rows0, row_bytes, rows, prefetch, blocks, group, groups, b, unit, s, acc); break;
        case 2: RowTile<2>(rows0, row_bytes, rows, prefetch, blocks, group, groups, b, unit, s, acc); break;
        case 3: RowTile<3>(rows0, row_bytes, rows, prefetch, blocks, group, groups, b, unit, s, acc); break;
        case 4: RowTile<4>(rows0, row_bytes, rows, prefetch, blocks, group, groups, b, unit, s, acc); break;
        default: RowTile<5>(rows0, row_bytes, rows, prefetch, blocks, group, groups, b, unit, s, acc); break;
      }
      // y = sum of the lanes + sum_g bias[g] * sum(x over g).
      for (int t = 0; t < nt; ++t) {
        const float* xs = sums + t * (groups + 16);
        for (int r = 0; r < rows; ++r) {
          __m512 a = _mm512_loadu_ps(acc[t] + 16 * r);
          const float* brow = bi + r * gp;
          for (int64_t g = 0; g < groups; g += 16) {
            const __mmask16 m =
                static_cast<__mmask16>(groups - g >= 16 ? 0xFFFF : (1u << (groups - g)) - 1);
            a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, brow + g), _mm512_maskz_loadu_ps(m, xs + g),
                                a);
          }
          y[(t0 + t) * w.rows + r0 + r] = _mm512_reduce_add_ps(a);
        }
      }
    }
  }
}

}  // namespace afd::kernels::internal
