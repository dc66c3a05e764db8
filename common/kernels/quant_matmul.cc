// Products against AWQ int4 / MLX affine packed weights (see quant_matmul.h).
//
// Decoders turn a chunk of packed codes into fp32 vectors of the raw codes q (lane order is the
// decoder's; activations or outputs are permuted to match, so no shuffle is spent on the
// weights). AVX3_DL extracts every width with one vpmultishiftqb (a 64-bit window per lane
// pair, so 3/5/6-bit codes that straddle words cost nothing extra) and keeps natural order;
// other targets widen bytes (4 and 8 bits; AWQ lanes then come out in nibble order) or decode
// with scalar 64-bit windows (2/3/5/6 bits).
//
// The scale (and AWQ zero point / MLX bias) is applied once per group, not per weight:
//   MLX  sum_i (s q_i + b) x_i = s * sum_i q_i x_i + b * sum_i x_i
//   AWQ  sum_i (q_i - z) s x_i = s * (sum_i q_i x_i - z * sum_i x_i)
// with the per-group sums of x computed once per call.
// - MLX decode (n < 16): dot products along the packed input axis, R rows x N tokens per tile.
// - AWQ decode: the matrix is stored transposed, so a tile of output columns accumulates
//   q(i, cols) * x_i over input rows i (axpy form); lanes are output columns.
// - Prefill (n >= 16): a row tile (MLX) or column panel (AWQ) is dequantized into per-thread
//   fp32 scratch (s * q + b, (q - z) * s, as the reference) and multiplied by a register-blocked
//   outer-product micro-kernel. The scratch is a few rows, never the matrix.
#include "common/kernels/quant_matmul.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/kernels/matmul.h"
#include "common/kernels/quant_tile.h"
#include "common/kernels/thread_pool.h"
#include "common/kernels/thread_scratch.h"
#include "common/kernels/vector_state.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "common/kernels/quant_matmul.cc"
#include "hwy/aligned_allocator.h"
#include "hwy/cache_control.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#ifndef AFD_COMMON_KERNELS_QUANT_MATMUL_SHARED_
#define AFD_COMMON_KERNELS_QUANT_MATMUL_SHARED_
namespace afd::kernels::quant_internal {

// Slot of column c % 8 inside an AWQ word (AWQ_REVERSE_ORDER), and column of slot s.
constexpr int kAwqSlot[8] = {0, 4, 1, 5, 2, 6, 3, 7};
constexpr int kAwqColumn[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// Widening conversions as inline bit manipulation: vector code calls no out-of-line (SSE)
// helper, which would run with live upper vector state (a costly transition on x86).
inline float BitsToFloat(uint32_t bits) {
  float f;
  memcpy(&f, &bits, 4);
  return f;
}
inline float Bf16Bits(uint16_t v) { return BitsToFloat(static_cast<uint32_t>(v) << 16); }
inline float F16Bits(uint16_t v) {
  const uint32_t sign = static_cast<uint32_t>(v & 0x8000) << 16;
  const uint32_t exp = (v >> 10) & 0x1F, mant = v & 0x3FF;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact
    const float mag = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return sign != 0 ? -mag : mag;
  }
  if (exp == 31) return BitsToFloat(sign | 0x7F800000u | (mant << 13));
  return BitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
}

// Element i of a scale/bias array of `type` (f32, bf16 or f16), widened to fp32.
inline float ScaleAt(const void* p, WeightType type, int64_t i) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  switch (type) {
    case WeightType::kF32: {
      float f;
      memcpy(&f, b + 4 * i, 4);
      return f;
    }
    case WeightType::kF16: {
      uint16_t v;
      memcpy(&v, b + 2 * i, 2);
      return F16Bits(v);
    }
    default: {
      uint16_t v;
      memcpy(&v, b + 2 * i, 2);
      return Bf16Bits(v);
    }
  }
}

// Code j of an MLX row (a little-endian bit stream): reads only the bytes holding it.
inline uint32_t MlxCode(const uint8_t* row, int bits, int64_t j) {
  const int64_t bit = j * bits;
  const uint8_t* p = row + bit / 8;
  const int shift = static_cast<int>(bit % 8);
  uint32_t v = p[0];
  if (shift + bits > 8) v |= static_cast<uint32_t>(p[1]) << 8;
  return (v >> shift) & ((1u << bits) - 1);
}

// Nibble of output column c in one AWQ row of words (qweight row i, or qzeros row g).
inline uint32_t AwqNibble(const uint8_t* row, int64_t c) {
  uint32_t word;
  memcpy(&word, row + 4 * (c / 8), 4);
  return (word >> (4 * kAwqSlot[c % 8])) & 0xF;
}

// Per-thread scratch buffer `slot` of at least `count` floats, 64-byte aligned; grows on first
// use only.
float* QuantScratch(int slot, size_t count);

}  // namespace afd::kernels::quant_internal
#endif  // AFD_COMMON_KERNELS_QUANT_MATMUL_SHARED_

HWY_BEFORE_NAMESPACE();
namespace afd::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
namespace qi = quant_internal;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;
using DI = hn::RebindToSigned<DF>;
using DU = hn::RebindToUnsigned<DF>;

constexpr int64_t kMaxLanes = HWY_LANES(float);

// ---------------------------------------------------------------------------------------------
// Decoders. Load(base, v0, w) decodes the kValues = kVecs * Lanes codes starting at value v0 of
// one packed row (MLX: a weight row, values along the input; AWQ: a qweight or qzeros row,
// values along the output) into kVecs float vectors; lane l of vector k holds value
// v0 + Order(k, l). v0 is a multiple of kValues (AWQ scalar decoder: any v0, `count` values).

// Codes of any width, one at a time (natural order).
struct MlxScalarDec {
  static constexpr int kVecs = 1;
  static constexpr bool kNatural = true;
  explicit MlxScalarDec(int bits, int64_t /*values*/) : bits_(bits) {}
  static int64_t Order(int /*k*/, int l) { return l; }
  HWY_INLINE void Load(const uint8_t* base, int64_t v0, VF* w) const {
    const DF d;
    const DI di;
    HWY_ALIGN int32_t buf[kMaxLanes];
    for (size_t l = 0; l < hn::Lanes(d); ++l) {
      buf[l] = static_cast<int32_t>(qi::MlxCode(base, bits_, v0 + static_cast<int64_t>(l)));
    }
    w[0] = hn::ConvertTo(d, hn::Load(di, buf));
  }
  int bits_;
};

// 4-bit codes, two per byte: bytes widened to lanes, low nibbles = even values, high = odd.
struct MlxNibbleDec {
  static constexpr int kVecs = 2;
  static constexpr bool kNatural = false;
  explicit MlxNibbleDec(int /*bits*/, int64_t /*values*/) {}
  static int64_t Order(int k, int l) { return 2 * l + k; }
  HWY_INLINE void Load(const uint8_t* base, int64_t v0, VF* w) const {
    const DF d;
    const DU du;
    const DI di;
    const hn::Rebind<uint8_t, DU> d8;
    const auto b = hn::PromoteTo(du, hn::LoadU(d8, base + v0 / 2));
    w[0] = hn::ConvertTo(d, hn::BitCast(di, hn::And(b, hn::Set(du, 15u))));
    w[1] = hn::ConvertTo(d, hn::BitCast(di, hn::ShiftRight<4>(b)));
  }
};

// 8-bit codes: bytes widened to lanes.
struct MlxByteDec {
  static constexpr int kVecs = 1;
  static constexpr bool kNatural = true;
  explicit MlxByteDec(int /*bits*/, int64_t /*values*/) {}
  static int64_t Order(int /*k*/, int l) { return l; }
  HWY_INLINE void Load(const uint8_t* base, int64_t v0, VF* w) const {
    const DF d;
    const DU du;
    const DI di;
    const hn::Rebind<uint8_t, DU> d8;
    w[0] = hn::ConvertTo(d, hn::BitCast(di, hn::PromoteTo(du, hn::LoadU(d8, base + v0))));
  }
};

// AWQ nibbles in any column range (natural order); `count` valid columns, the rest 0.
struct AwqScalarDec {
  static constexpr int kVecs = 1;
  static constexpr bool kNatural = true;
  AwqScalarDec() = default;
  static int64_t Order(int /*k*/, int l) { return l; }
  HWY_INLINE void Load(const uint8_t* base, int64_t v0, VF* w) const {
    const DF d;
    const DI di;
    HWY_ALIGN int32_t buf[kMaxLanes];
    for (int64_t l = 0; l < static_cast<int64_t>(hn::Lanes(d)); ++l) {
      buf[l] = l < count ? static_cast<int32_t>(qi::AwqNibble(base, v0 + l)) : 0;
    }
    w[0] = hn::ConvertTo(d, hn::Load(di, buf));
  }
  int64_t count = HWY_LANES(float);
};

// AWQ words widened byte by byte: low nibble of byte b of a word is slot 2b, high is 2b+1.
struct AwqNibbleDec {
  static constexpr int kVecs = 2;
  static constexpr bool kNatural = false;
  AwqNibbleDec() = default;
  static int64_t Order(int k, int l) { return 8 * (l / 4) + qi::kAwqColumn[2 * (l % 4) + k]; }
  HWY_INLINE void Load(const uint8_t* base, int64_t v0, VF* w) const {
    const DF d;
    const DU du;
    const DI di;
    const hn::Rebind<uint8_t, DU> d8;
    const auto b = hn::PromoteTo(du, hn::LoadU(d8, base + v0 / 2));
    w[0] = hn::ConvertTo(d, hn::BitCast(di, hn::And(b, hn::Set(du, 15u))));
    w[1] = hn::ConvertTo(d, hn::BitCast(di, hn::ShiftRight<4>(b)));
  }
};

#if HWY_TARGET == HWY_AVX3_DL
// 16 codes of B bits (2 <= B <= 8) per vector, natural order: the 2B bytes holding them are
// placed so that each 64-bit lane pair sees its two codes, vpmultishiftqb moves every code to
// the low byte of its 32-bit lane, and a mask keeps B bits. The last chunk of a row is read
// with a masked load (no byte past the row is touched).
template <int B>
struct MlxShiftDec {
  static constexpr int kVecs = 1;
  static constexpr bool kNatural = true;
  static constexpr int kBytes = 2 * B;  // bytes of 16 codes

  MlxShiftDec(int /*bits*/, int64_t values) : values_(values) {
    alignas(64) uint8_t ctrl[64] = {}, idx[64] = {};
    for (int j = 0; j < 16; ++j) {
      const int q = j / 2;
      const int start = B <= 4 ? 0 : (2 * q * B) / 8;  // first source byte of this 64-bit lane
      for (int k = 0; k < 8; ++k) idx[8 * q + k] = static_cast<uint8_t>(std::min(start + k, 15));
      ctrl[8 * q + 4 * (j % 2)] = static_cast<uint8_t>(j * B - 8 * start);
    }
    ctrl_ = _mm512_load_si512(ctrl);
    idx_ = _mm512_load_si512(idx);
    mask_ = _mm512_set1_epi32((1 << B) - 1);
  }
  static int64_t Order(int /*k*/, int l) { return l; }

  HWY_INLINE void Load(const uint8_t* base, int64_t v0, VF* w) const {
    const uint8_t* p = base + v0 * B / 8;
    const bool last = v0 + 16 >= values_;
    __m512i v;
    if (B == 8) {
      v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      w[0] = VF{_mm512_cvtepi32_ps(v)};
      return;
    }
    if (B == 2 || B == 4) {
      // Exactly 4 / 8 bytes: broadcast straight from memory.
      int64_t q = 0;
      memcpy(&q, p, kBytes);
      v = B == 2 ? _mm512_set1_epi32(static_cast<int32_t>(q)) : _mm512_set1_epi64(q);
    } else if (B == 3) {
      if (!last) {
        int64_t q;
        memcpy(&q, p, 8);
        v = _mm512_set1_epi64(q);
      } else {
        v = _mm512_broadcastq_epi64(_mm_maskz_loadu_epi8((1u << kBytes) - 1, p));
      }
    } else {
      const __m128i x = last ? _mm_maskz_loadu_epi8((1u << kBytes) - 1, p)
                             : _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      v = _mm512_permutexvar_epi8(idx_, _mm512_castsi128_si512(x));
    }
    v = _mm512_and_si512(_mm512_multishift_epi64_epi8(ctrl_, v), mask_);
    w[0] = VF{_mm512_cvtepi32_ps(v)};
  }

  int64_t values_;
  __m512i ctrl_, idx_, mask_;
};

// 16 AWQ columns (two words) per vector in natural order: lane j takes the nibble at slot
// kAwqSlot[j % 8] of word j / 8.
struct AwqShiftDec {
  static constexpr int kVecs = 1;
  static constexpr bool kNatural = true;
  AwqShiftDec() {
    alignas(64) uint8_t ctrl[64] = {};
    for (int j = 0; j < 16; ++j) {
      ctrl[4 * j] = static_cast<uint8_t>(32 * (j / 8) + 4 * qi::kAwqSlot[j % 8]);
    }
    ctrl_ = _mm512_load_si512(ctrl);
    mask_ = _mm512_set1_epi32(15);
  }
  static int64_t Order(int /*k*/, int l) { return l; }
  HWY_INLINE void Load(const uint8_t* base, int64_t v0, VF* w) const {
    int64_t q;
    memcpy(&q, base + v0 / 2, 8);
    const __m512i v =
        _mm512_and_si512(_mm512_multishift_epi64_epi8(ctrl_, _mm512_set1_epi64(q)), mask_);
    w[0] = VF{_mm512_cvtepi32_ps(v)};
  }
  __m512i ctrl_, mask_;
};
#endif  // HWY_TARGET == HWY_AVX3_DL

template <class Dec>
constexpr int64_t ChunkValues() {
  return Dec::kVecs * static_cast<int64_t>(HWY_LANES(float));
}

// kVecs vectors of scales (or any per-column fp32 array of `type`) for the columns
// c0 + Order(k, l), of which `count` are valid (the rest 0).
template <class Dec>
HWY_INLINE void LoadColumnScales(const void* p, WeightType type, int64_t c0, int64_t count,
                                 VF* out) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  if (Dec::kNatural && count >= Dec::kVecs * lanes) {
    for (int k = 0; k < Dec::kVecs; ++k) {
      const int64_t c = c0 + k * lanes;
      switch (type) {
        case WeightType::kF32:
          out[k] = hn::LoadU(d, static_cast<const float*>(p) + c);
          break;
        case WeightType::kF16: {
          const hn::Rebind<hwy::float16_t, DF> dh;
          out[k] = hn::PromoteTo(d, hn::LoadU(dh, static_cast<const hwy::float16_t*>(p) + c));
          break;
        }
        default: {
          const hn::Rebind<hwy::bfloat16_t, DF> db;
          out[k] = hn::PromoteTo(d, hn::LoadU(db, static_cast<const hwy::bfloat16_t*>(p) + c));
          break;
        }
      }
    }
    return;
  }
  HWY_ALIGN float buf[kMaxLanes];
  for (int k = 0; k < Dec::kVecs; ++k) {
    for (int64_t l = 0; l < lanes; ++l) {
      const int64_t j = Dec::Order(k, static_cast<int>(l));
      buf[l] = j < count ? qi::ScaleAt(p, type, c0 + j) : 0.0f;
    }
    out[k] = hn::Load(d, buf);
  }
}

// out[0, n) = fp32 of p[first, first + n) of `type`.
void WidenScales(const void* p, WeightType type, int64_t first, int64_t n, float* out) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  if (type == WeightType::kBF16) {
    const hn::Rebind<hwy::bfloat16_t, DF> db;
    const hwy::bfloat16_t* s = static_cast<const hwy::bfloat16_t*>(p) + first;
    for (; i + lanes <= n; i += lanes)
      hn::StoreU(hn::PromoteTo(d, hn::LoadU(db, s + i)), d, out + i);
  } else if (type == WeightType::kF16) {
    const hn::Rebind<hwy::float16_t, DF> dh;
    const hwy::float16_t* s = static_cast<const hwy::float16_t*>(p) + first;
    for (; i + lanes <= n; i += lanes)
      hn::StoreU(hn::PromoteTo(d, hn::LoadU(dh, s + i)), d, out + i);
  }
  for (; i < n; ++i) out[i] = qi::ScaleAt(p, type, first + i);
}

// ---------------------------------------------------------------------------------------------
// MLX decode.

// Bytes [begin, end) of `base` into L1, a cache line at a time.
HWY_INLINE void PrefetchRange(const void* base, int64_t begin, int64_t end) {
  const auto* p = static_cast<const char*>(base);
  for (int64_t b = begin / 64 * 64; b < end; b += 64) hwy::Prefetch(p + b);
}

// Scales and biases of rows [r, r + count) of an MLX matrix, prefetched into L1 a few tiles
// before WidenScales reads them (left to the hardware they missed the caches: WidenScales
// took 15 % of MLX4 decode's samples on Zen 5, 9 % with this; 48 rows ahead was no better).
constexpr int64_t kMlxScaleAheadRows = 16;
HWY_INLINE void PrefetchScaleRows(const QuantMatrix& w, int64_t r, int64_t count) {
  if (r + count > w.rows) return;
  const int64_t scale_bytes = w.scale_type == WeightType::kF32 ? 4 : 2;
  const int64_t begin = r * w.groups() * scale_bytes, end = (r + count) * w.groups() * scale_bytes;
  PrefetchRange(w.scales, begin, end);
  PrefetchRange(w.biases, begin, end);
}

constexpr int MlxRowsPerTile(int n) { return n == 1 ? 4 : n == 2 ? 4 : n <= 4 ? 2 : 1; }

// Packs N tokens of x in the decoder's order: xp[((c * kVecs + k) * N + t) * L + l] =
// x[t, c * kValues + Order(k, l)], and per group g the lane sums of those vectors
// xs[(g * N + t) * L + l] (their lanes add up to the group's sum of x).
template <class Dec>
void PackMlxX(const float* x, int64_t n, int64_t cols, int64_t group, float* xp, float* xs) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  constexpr int64_t kValues = ChunkValues<Dec>();
  const int64_t chunks = cols / kValues;
  const int64_t chunks_per_group = group / kValues;
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * cols;
    for (int64_t c = 0; c < chunks; ++c) {
      for (int k = 0; k < Dec::kVecs; ++k) {
        float* o = xp + ((c * Dec::kVecs + k) * n + t) * lanes;
        if (Dec::kNatural) {
          hn::Store(hn::LoadU(d, xr + c * kValues + k * lanes), d, o);
        } else {
          for (int64_t l = 0; l < lanes; ++l) {
            o[l] = xr[c * kValues + Dec::Order(k, static_cast<int>(l))];
          }
        }
      }
    }
    for (int64_t g = 0; g < cols / group; ++g) {
      VF s = hn::Zero(d);
      for (int64_t c = g * chunks_per_group; c < (g + 1) * chunks_per_group; ++c) {
        for (int k = 0; k < Dec::kVecs; ++k) {
          s = hn::Add(s, hn::Load(d, xp + ((c * Dec::kVecs + k) * n + t) * lanes));
        }
      }
      hn::Store(s, d, xs + (g * n + t) * lanes);
    }
  }
}

// R rows x N tokens. sb: fp32 scales [R, groups] then biases [R, groups] of these rows.
template <class Dec, int R, int N>
HWY_NOINLINE void MlxDotTile(const Dec& dec, const QuantMatrix& w, int64_t r0, const float* xp,
                             const float* xs, const float* sb, float* y) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  constexpr int64_t kValues = ChunkValues<Dec>();
  const int64_t groups = w.groups();
  const int64_t chunks_per_group = w.group_size / kValues;
  const int64_t row_bytes = w.cols * w.bits / 8;
  const uint8_t* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = static_cast<const uint8_t*>(w.data) + (r0 + r) * row_bytes;

  VF acc[R][N];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < N; ++t) acc[r][t] = hn::Zero(d);
  }
  const float* xc = xp;
  for (int64_t g = 0; g < groups; ++g) {
    VF gacc[R][N];
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < N; ++t) gacc[r][t] = hn::Zero(d);
    }
    for (int64_t cc = 0; cc < chunks_per_group; ++cc) {
      const int64_t v0 = (g * chunks_per_group + cc) * kValues;
      for (int r = 0; r < R; ++r) {
        VF wv[Dec::kVecs];
        dec.Load(rows[r], v0, wv);
        for (int k = 0; k < Dec::kVecs; ++k) {
          for (int t = 0; t < N; ++t) {
            gacc[r][t] = hn::MulAdd(wv[k], hn::Load(d, xc + (k * N + t) * lanes), gacc[r][t]);
          }
        }
      }
      xc += Dec::kVecs * N * lanes;
    }
    for (int r = 0; r < R; ++r) {
      const VF s = hn::Set(d, sb[r * groups + g]);
      const VF b = hn::Set(d, sb[(R + r) * groups + g]);
      for (int t = 0; t < N; ++t) {
        acc[r][t] = hn::MulAdd(gacc[r][t], s, acc[r][t]);
        acc[r][t] = hn::MulAdd(hn::Load(d, xs + (g * N + t) * lanes), b, acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < N; ++t) y[t * w.rows + r0 + r] = hn::GetLane(hn::SumOfLanes(d, acc[r][t]));
  }
}

template <class Dec, int N>
void MlxDecodeN(const Dec& dec, const float* x, const QuantMatrix& w, int64_t row_begin,
                int64_t row_end, float* y) {
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(DF()));
  const int64_t groups = w.groups();
  float* xp = qi::QuantScratch(0, N * w.cols);
  float* xs = qi::QuantScratch(1, N * groups * lanes);
  PackMlxX<Dec>(x, N, w.cols, w.group_size, xp, xs);
  constexpr int R = MlxRowsPerTile(N);
  float* sb = qi::QuantScratch(2, 2 * R * groups);
  int64_t r = row_begin;
  for (; r + R <= row_end; r += R) {
    PrefetchScaleRows(w, r + kMlxScaleAheadRows, R);
    WidenScales(w.scales, w.scale_type, r * groups, R * groups, sb);
    WidenScales(w.biases, w.scale_type, r * groups, R * groups, sb + R * groups);
    MlxDotTile<Dec, R, N>(dec, w, r, xp, xs, sb, y);
  }
  for (; r < row_end; ++r) {
    WidenScales(w.scales, w.scale_type, r * groups, groups, sb);
    WidenScales(w.biases, w.scale_type, r * groups, groups, sb + groups);
    MlxDotTile<Dec, 1, N>(dec, w, r, xp, xs, sb, y);
  }
}

template <class Dec>
void MlxDecodeRows(const Dec& dec, const float* x, int64_t n, const QuantMatrix& w,
                   int64_t row_begin, int64_t row_end, float* y) {
  for (int64_t t = 0; t < n; t += 8) {
    const float* xt = x + t * w.cols;
    float* yt = y + t * w.rows;
    switch (std::min<int64_t>(8, n - t)) {
      case 1:
        MlxDecodeN<Dec, 1>(dec, xt, w, row_begin, row_end, yt);
        break;
      case 2:
        MlxDecodeN<Dec, 2>(dec, xt, w, row_begin, row_end, yt);
        break;
      case 3:
        MlxDecodeN<Dec, 3>(dec, xt, w, row_begin, row_end, yt);
        break;
      case 4:
        MlxDecodeN<Dec, 4>(dec, xt, w, row_begin, row_end, yt);
        break;
      case 5:
        MlxDecodeN<Dec, 5>(dec, xt, w, row_begin, row_end, yt);
        break;
      case 6:
        MlxDecodeN<Dec, 6>(dec, xt, w, row_begin, row_end, yt);
        break;
      case 7:
        MlxDecodeN<Dec, 7>(dec, xt, w, row_begin, row_end, yt);
        break;
      default:
        MlxDecodeN<Dec, 8>(dec, xt, w, row_begin, row_end, yt);
        break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// AWQ decode.

// Vectors of output columns per tile for N tokens (accumulators: 2 * vectors * N).
constexpr int AwqVecsPerTile(int n) { return n == 1 ? 8 : n == 2 ? 4 : n <= 4 ? 2 : 1; }

// Columns [c0, c0 + V * kValues) (the scalar decoder: `count` of them) for N tokens.
// xsum: [N, groups] per-group sums of x.
template <class Dec, int V, int N>
HWY_NOINLINE void AwqTile(const Dec& dec, const QuantMatrix& w, int64_t c0, int64_t count,
                          const float* x, const float* xsum, float* y) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  constexpr int J = V * Dec::kVecs;
  constexpr int64_t kValues = ChunkValues<Dec>();
  const int64_t groups = w.groups();
  const int64_t group = w.group_size;
  const int64_t word_bytes = w.rows / 2;  // bytes of one qweight / qzeros row
  const uint8_t* qweight = static_cast<const uint8_t*>(w.data);
  const uint8_t* qzeros = static_cast<const uint8_t*>(w.zeros);

  VF acc[J][N];
  for (int j = 0; j < J; ++j) {
    for (int t = 0; t < N; ++t) acc[j][t] = hn::Zero(d);
  }
  for (int64_t g = 0; g < groups; ++g) {
    VF gacc[J][N];
    for (int j = 0; j < J; ++j) {
      for (int t = 0; t < N; ++t) gacc[j][t] = hn::Zero(d);
    }
    for (int64_t i = g * group; i < (g + 1) * group; ++i) {
      const uint8_t* row = qweight + i * word_bytes;
      VF wv[J];
      for (int v = 0; v < V; ++v) dec.Load(row, c0 + v * kValues, wv + v * Dec::kVecs);
      for (int t = 0; t < N; ++t) {
        const VF xb = hn::Set(d, x[t * w.cols + i]);
        for (int j = 0; j < J; ++j) gacc[j][t] = hn::MulAdd(wv[j], xb, gacc[j][t]);
      }
    }
    VF zf[J], sv[J];
    for (int v = 0; v < V; ++v) {
      if (qzeros != nullptr) {
        dec.Load(qzeros + g * word_bytes, c0 + v * kValues, zf + v * Dec::kVecs);
      } else {
        for (int k = 0; k < Dec::kVecs; ++k) zf[v * Dec::kVecs + k] = hn::Set(d, 8.0f);
      }
      LoadColumnScales<Dec>(
          static_cast<const uint8_t*>(w.scales) +
              (g * w.rows) * static_cast<int64_t>(w.scale_type == WeightType::kF32 ? 4 : 2),
          w.scale_type, c0 + v * kValues, std::min<int64_t>(kValues, count - v * kValues),
          sv + v * Dec::kVecs);
    }
    for (int t = 0; t < N; ++t) {
      const VF xs = hn::Set(d, xsum[t * groups + g]);
      for (int j = 0; j < J; ++j) {
        acc[j][t] = hn::MulAdd(hn::NegMulAdd(zf[j], xs, gacc[j][t]), sv[j], acc[j][t]);
      }
    }
  }
  HWY_ALIGN float buf[kMaxLanes];
  for (int v = 0; v < V; ++v) {
    for (int k = 0; k < Dec::kVecs; ++k) {
      for (int t = 0; t < N; ++t) {
        float* yt = y + t * w.rows + c0 + v * kValues;
        const VF a = acc[v * Dec::kVecs + k][t];
        if (Dec::kNatural && count >= (v + 1) * kValues) {
          hn::StoreU(a, d, yt + k * lanes);
        } else {
          hn::Store(a, d, buf);
          for (int64_t l = 0; l < lanes; ++l) {
            const int64_t j = v * kValues + Dec::Order(k, static_cast<int>(l));
            if (j < count) y[t * w.rows + c0 + j] = buf[l];
          }
        }
      }
    }
  }
}

// xsum[t * groups + g] = sum of x[t, g * group .. (g + 1) * group).
void GroupSums(const float* x, int64_t n, int64_t cols, int64_t group, float* xsum) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int64_t groups = cols / group;
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* p = x + t * cols + g * group;
      VF s = hn::Zero(d);
      int64_t i = 0;
      for (; i + lanes <= group; i += lanes) s = hn::Add(s, hn::LoadU(d, p + i));
      float sum = hn::GetLane(hn::SumOfLanes(d, s));
      for (; i < group; ++i) sum += p[i];
      xsum[t * groups + g] = sum;
    }
  }
}

template <class Dec, int N>
void AwqDecodeN(const Dec& dec, const float* x, const QuantMatrix& w, int64_t col_begin,
                int64_t col_end, float* y) {
  float* xsum = qi::QuantScratch(1, N * w.groups());
  GroupSums(x, N, w.cols, w.group_size, xsum);
  constexpr int V = AwqVecsPerTile(N) / Dec::kVecs > 0 ? AwqVecsPerTile(N) / Dec::kVecs : 1;
  constexpr int64_t kValues = ChunkValues<Dec>();
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(DF()));
  int64_t c = col_begin;
  // Leading columns up to a word boundary, then full tiles, single chunks, and a scalar tail.
  AwqScalarDec scalar;
  for (const int64_t aligned = std::min(col_end, (c + 7) / 8 * 8); c < aligned;) {
    scalar.count = std::min(lanes, aligned - c);
    AwqTile<AwqScalarDec, 1, N>(scalar, w, c, scalar.count, x, xsum, y);
    c += scalar.count;
  }
  for (; c + V * kValues <= col_end; c += V * kValues) {
    AwqTile<Dec, V, N>(dec, w, c, V * kValues, x, xsum, y);
  }
  for (; c + kValues <= col_end; c += kValues) {
    AwqTile<Dec, 1, N>(dec, w, c, kValues, x, xsum, y);
  }
  for (; c < col_end; c += lanes) {
    scalar.count = std::min(lanes, col_end - c);
    AwqTile<AwqScalarDec, 1, N>(scalar, w, c, scalar.count, x, xsum, y);
  }
}

template <class Dec>
void AwqDecodeRows(const Dec& dec, const float* x, int64_t n, const QuantMatrix& w,
                   int64_t col_begin, int64_t col_end, float* y) {
  for (int64_t t = 0; t < n; t += 8) {
    const float* xt = x + t * w.cols;
    float* yt = y + t * w.rows;
    switch (std::min<int64_t>(8, n - t)) {
      case 1:
        AwqDecodeN<Dec, 1>(dec, xt, w, col_begin, col_end, yt);
        break;
      case 2:
        AwqDecodeN<Dec, 2>(dec, xt, w, col_begin, col_end, yt);
        break;
      case 3:
        AwqDecodeN<Dec, 3>(dec, xt, w, col_begin, col_end, yt);
        break;
      case 4:
        AwqDecodeN<Dec, 4>(dec, xt, w, col_begin, col_end, yt);
        break;
      case 5:
        AwqDecodeN<Dec, 5>(dec, xt, w, col_begin, col_end, yt);
        break;
      case 6:
        AwqDecodeN<Dec, 6>(dec, xt, w, col_begin, col_end, yt);
        break;
      case 7:
        AwqDecodeN<Dec, 7>(dec, xt, w, col_begin, col_end, yt);
        break;
      default:
        AwqDecodeN<Dec, 8>(dec, xt, w, col_begin, col_end, yt);
        break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Prefill.

#if HWY_ARCH_X86 && HWY_TARGET > HWY_AVX3
constexpr int kMR = 3;  // 16 vector registers
constexpr int kTV = 2;
#else
constexpr int kMR = 6;  // 32 vector registers: 24 accumulators
constexpr int kTV = 4;
#endif

// out[r * tc + t] = sum_k wd[r * k_dim + k] * xt[k * tc + t] for r < kMR, t < tc = TV vectors
// of lanes. Each output is one accumulator summed over k in order, so its bits do not depend
// on TV (the token width of the tile).
template <int TV>
HWY_INLINE void PrefillTile(const float* HWY_RESTRICT xt, const float* HWY_RESTRICT wd,
                            int64_t k_dim, float* HWY_RESTRICT out) {
  const DF d;
  const size_t lanes = hn::Lanes(d);
  const size_t tc = TV * lanes;
  VF acc[kMR][TV];
  for (int r = 0; r < kMR; ++r) {
    for (int j = 0; j < TV; ++j) acc[r][j] = hn::Zero(d);
  }
  for (int64_t k = 0; k < k_dim; ++k) {
    VF xv[TV];
    for (int j = 0; j < TV; ++j) xv[j] = hn::Load(d, xt + k * tc + j * lanes);
    for (int r = 0; r < kMR; ++r) {
      const VF b = hn::Set(d, wd[r * k_dim + k]);
      for (int j = 0; j < TV; ++j) acc[r][j] = hn::MulAdd(b, xv[j], acc[r][j]);
    }
  }
  for (int r = 0; r < kMR; ++r) {
    for (int j = 0; j < TV; ++j) hn::Store(acc[r][j], d, out + r * tc + j * lanes);
  }
}

// PrefillTile with TV = tv (1..kTV) chosen at run time.
HWY_INLINE void PrefillTileOf(int tv, const float* HWY_RESTRICT xt, const float* HWY_RESTRICT wd,
                              int64_t k_dim, float* HWY_RESTRICT out) {
#if HWY_ARCH_X86 && HWY_TARGET > HWY_AVX3
  if (tv == 1) return PrefillTile<1>(xt, wd, k_dim, out);
  return PrefillTile<2>(xt, wd, k_dim, out);
#else
  switch (tv) {
    case 1:
      return PrefillTile<1>(xt, wd, k_dim, out);
    case 2:
      return PrefillTile<2>(xt, wd, k_dim, out);
    case 3:
      return PrefillTile<3>(xt, wd, k_dim, out);
    default:
      return PrefillTile<4>(xt, wd, k_dim, out);
  }
#endif
}

// out[k'] = W[row, c * kValues + Order(k, l)] for k' = c * kValues + k * L + l (decoder order).
template <class Dec>
void WidenMlxRow(const Dec& dec, const QuantMatrix& w, int64_t row, float* HWY_RESTRICT out) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  constexpr int64_t kValues = ChunkValues<Dec>();
  const int64_t groups = w.groups();
  const uint8_t* base = static_cast<const uint8_t*>(w.data) + row * (w.cols * w.bits / 8);
  for (int64_t g = 0; g < groups; ++g) {
    const VF s = hn::Set(d, qi::ScaleAt(w.scales, w.scale_type, row * groups + g));
    const VF b = hn::Set(d, qi::ScaleAt(w.biases, w.scale_type, row * groups + g));
    for (int64_t v0 = g * w.group_size; v0 < (g + 1) * w.group_size; v0 += kValues) {
      VF q[Dec::kVecs];
      dec.Load(base, v0, q);
      for (int k = 0; k < Dec::kVecs; ++k) {
        hn::StoreU(hn::Add(hn::Mul(s, q[k]), b), d, out + v0 + k * lanes);
      }
    }
  }
}

template <class Dec>
void MlxPrefillRows(const Dec& dec, const float* x, int64_t n, const QuantMatrix& w,
                    int64_t row_begin, int64_t row_end, float* y) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  constexpr int64_t kValues = ChunkValues<Dec>();
  const int64_t k_dim = w.cols;
  const int64_t max_tc = kTV * lanes;
  float* xt = qi::QuantScratch(0, k_dim * max_tc);  // [k_dim, tc], k in decoder order
  float* wd = qi::QuantScratch(1, kMR * k_dim);     // [kMR, k_dim]
  float* out = qi::QuantScratch(2, kMR * max_tc);   // [kMR, tc]
  for (int64_t t0 = 0; t0 < n; t0 += max_tc) {
    const int64_t tn = std::min(max_tc, n - t0);
    // The narrowest tile that holds this chunk's tokens: a 16-token expert group does not pay
    // for 64 (the widened rows are shared by fewer tokens, the products are not padded).
    const int tv = static_cast<int>((tn + lanes - 1) / lanes);
    const int64_t tc = tv * lanes;
    for (int64_t t = 0; t < tc; ++t) {
      // Padding slots (t >= tn) get zeros; no pointer is formed past x's last token.
      const float* xr = t < tn ? x + (t0 + t) * k_dim : nullptr;
      for (int64_t c = 0; c < k_dim; c += kValues) {
        for (int k = 0; k < Dec::kVecs; ++k) {
          for (int64_t l = 0; l < lanes; ++l) {
            xt[(c + k * lanes + l) * tc + t] =
                t < tn ? xr[c + Dec::Order(k, static_cast<int>(l))] : 0.0f;
          }
        }
      }
    }
    for (int64_t r0 = row_begin; r0 < row_end; r0 += kMR) {
      const int64_t rn = std::min<int64_t>(kMR, row_end - r0);
      for (int64_t r = 0; r < kMR; ++r) {
        if (r < rn) {
          WidenMlxRow(dec, w, r0 + r, wd + r * k_dim);
        } else {
          std::fill(wd + r * k_dim, wd + (r + 1) * k_dim, 0.0f);
        }
      }
      PrefillTileOf(tv, xt, wd, k_dim, out);
      for (int64_t t = 0; t < tn; ++t) {
        float* yt = y + (t0 + t) * w.rows + r0;
        for (int64_t r = 0; r < rn; ++r) yt[r] = out[r * tc + t];
      }
    }
  }
}

// AWQ panel: columns [c0, c0 + kTV * L) of W^T, dequantized: panel[i * pw + j] =
// W[c0 + perm[j], i] for every input row i; `count` valid columns (the rest 0).
template <class Dec>
void WidenAwqPanel(const Dec& dec, const QuantMatrix& w, int64_t c0, int64_t count,
                   float* HWY_RESTRICT panel) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  constexpr int64_t kValues = ChunkValues<Dec>();
  constexpr int kChunks = kTV * HWY_LANES(float) / ChunkValues<Dec>() > 0
                              ? static_cast<int>(kTV * HWY_LANES(float) / ChunkValues<Dec>())
                              : 1;
  constexpr int J = kChunks * Dec::kVecs;
  const int64_t pw = kTV * lanes;
  const int64_t word_bytes = w.rows / 2;
  const uint8_t* qweight = static_cast<const uint8_t*>(w.data);
  const uint8_t* qzeros = static_cast<const uint8_t*>(w.zeros);
  const size_t scale_bytes = w.scale_type == WeightType::kF32 ? 4 : 2;
  for (int64_t g = 0; g < w.groups(); ++g) {
    VF zf[J], sv[J];
    for (int v = 0; v < kChunks; ++v) {
      if (qzeros != nullptr) {
        dec.Load(qzeros + g * word_bytes, c0 + v * kValues, zf + v * Dec::kVecs);
      } else {
        for (int k = 0; k < Dec::kVecs; ++k) zf[v * Dec::kVecs + k] = hn::Set(d, 8.0f);
      }
      LoadColumnScales<Dec>(static_cast<const uint8_t*>(w.scales) + g * w.rows * scale_bytes,
                            w.scale_type, c0 + v * kValues,
                            std::min<int64_t>(kValues, count - v * kValues), sv + v * Dec::kVecs);
    }
    for (int64_t i = g * w.group_size; i < (g + 1) * w.group_size; ++i) {
      VF q[J];
      for (int v = 0; v < kChunks; ++v) {
        dec.Load(qweight + i * word_bytes, c0 + v * kValues, q + v * Dec::kVecs);
      }
      for (int j = 0; j < J; ++j) {
        hn::StoreU(hn::Mul(hn::Sub(q[j], zf[j]), sv[j]), d, panel + i * pw + j * lanes);
      }
    }
  }
}

// y[t, c0 + perm[j]] for the panel's columns, tokens [0, n).
template <class Dec>
void AwqPanelProduct(const float* x, int64_t n, const QuantMatrix& w, const float* panel,
                     int64_t c0, int64_t count, float* y) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  constexpr int64_t kValues = ChunkValues<Dec>();
  const int64_t pw = kTV * lanes;
  const int64_t k_dim = w.cols;
  int64_t perm[kTV * kMaxLanes];
  for (int64_t j = 0; j < pw; ++j) {
    const int64_t chunk = j / kValues, within = j % kValues;
    perm[j] = chunk * kValues +
              Dec::Order(static_cast<int>(within / lanes), static_cast<int>(within % lanes));
  }
  HWY_ALIGN float out[kTV * kMaxLanes];
  for (int64_t t0 = 0; t0 < n; t0 += kMR) {
    const int64_t tn = std::min<int64_t>(kMR, n - t0);
    VF acc[kMR][kTV];
    for (int t = 0; t < kMR; ++t) {
      for (int j = 0; j < kTV; ++j) acc[t][j] = hn::Zero(d);
    }
    const float* xr[kMR];
    for (int t = 0; t < kMR; ++t) xr[t] = x + (t0 + std::min<int64_t>(t, tn - 1)) * k_dim;
    for (int64_t i = 0; i < k_dim; ++i) {
      VF wv[kTV];
      for (int j = 0; j < kTV; ++j) wv[j] = hn::LoadU(d, panel + i * pw + j * lanes);
      for (int t = 0; t < kMR; ++t) {
        const VF xb = hn::Set(d, xr[t][i]);
        for (int j = 0; j < kTV; ++j) acc[t][j] = hn::MulAdd(wv[j], xb, acc[t][j]);
      }
    }
    for (int64_t t = 0; t < tn; ++t) {
      for (int j = 0; j < kTV; ++j) hn::Store(acc[t][j], d, out + j * lanes);
      float* yt = y + (t0 + t) * w.rows + c0;
      for (int64_t j = 0; j < pw; ++j) {
        if (perm[j] < count) yt[perm[j]] = out[j];
      }
    }
  }
}

template <class Dec>
void AwqPrefillRows(const Dec& dec, const float* x, int64_t n, const QuantMatrix& w,
                    int64_t col_begin, int64_t col_end, float* y) {
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(DF()));
  const int64_t pw = kTV * lanes;
  float* panel = qi::QuantScratch(0, w.cols * pw);
  int64_t c = col_begin;
  // Panels need word-aligned starts for the vector decoders; other columns go scalar.
  auto scalar_panel = [&](int64_t count) {
    // kTV scalar chunks of L columns each.
    for (int64_t g = 0; g < w.groups(); ++g) {
      for (int64_t i = g * w.group_size; i < (g + 1) * w.group_size; ++i) {
        for (int64_t j = 0; j < pw; ++j) {
          panel[i * pw + j] = j < count ? QuantWeightAt(w, c + j, i) : 0.0f;
        }
      }
    }
    AwqPanelProduct<AwqScalarDec>(x, n, w, panel, c, count, y);
    c += count;
  };
  for (const int64_t aligned = std::min(col_end, (c + 7) / 8 * 8); c < aligned;) {
    scalar_panel(std::min(pw, aligned - c));
  }
  const bool vector_panel = pw % ChunkValues<Dec>() == 0;
  for (; vector_panel && c + pw <= col_end; c += pw) {
    WidenAwqPanel(dec, w, c, pw, panel);
    AwqPanelProduct<Dec>(x, n, w, panel, c, pw, y);
  }
  while (c < col_end) scalar_panel(std::min(pw, col_end - c));
}

// ---------------------------------------------------------------------------------------------
// AVX-512 VNNI decode (AVX3_DL). Activations become block floating point per group: with
// 2^(e-1) <= max|x| < 2^e, X_i = rint(x_i * 2^(22-e)) (23 significant bits, like fp32 for the
// group's largest values), split exactly into three signed bytes X = 65536 x2 + 256 x1 + x0.
// vpdpbusd multiplies the unsigned codes by each byte plane, so a group's sum of q * X is exact
// in int32 and one conversion per block feeds the fp32 accumulators (the scale, zero point and
// bias applied per group as above). The only rounding beyond fp32 summation is X's, at 2^-23 of
// the group's largest activation.

#if HWY_TARGET == HWY_AVX3_DL
#define AFD_VNNI __attribute__((target("avx512vnni")))

bool HasVnni() {
  static const bool has = __builtin_cpu_supports("avx512vnni");
  return has;
}

// acc += per-lane sum of 4 u8 x s8 products. The accumulator is tied in asm: GCC's allocation
// of the builtin copies every loop-carried accumulator twice per iteration.
HWY_INLINE __m512i Dpbusd(__m512i acc, __m512i u8, __m512i s8) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u8), "v"(s8));
  return acc;
}

// The three byte planes of N tokens, each [N, stride] in the kernel's element order, and per
// token and group the unit 2^(e-22) and the fp32 sum of x ([N, groups + 16], zero padded).
struct BlockX {
  const int8_t* plane[3];
  int64_t stride;
  const float* unit;
  const float* sum;
  int64_t groups_padded;
};

// Quantizes x [n, cols] into the byte planes, `stride` bytes per token (zero past cols), in
// natural order, then rearranged per `layout` block: 4 = blocks of 128 as [even | odd]
// elements (the 4-bit nibble order), 2 = blocks of 256 as four planes j % 4 (2-bit order),
// 0 = natural.
BlockX QuantizeBlockX(const float* x, int64_t n, int64_t cols, int64_t group, int64_t stride,
                      int layout) {
  const DF d;
  const hn::Rebind<int8_t, DI> d8;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int64_t groups = cols / group;
  const int64_t gp = groups + 16;
  int8_t* planes = reinterpret_cast<int8_t*>(qi::QuantScratch(3, (3 * n * stride + 64) / 4 + 16));
  float* unit = qi::QuantScratch(4, 2 * n * gp);
  float* sum = unit + n * gp;
  std::fill(unit, unit + 2 * n * gp, 0.0f);
  for (int64_t t = 0; t < n; ++t) {
    int8_t* pl[3] = {planes + t * stride, planes + (n + t) * stride, planes + (2 * n + t) * stride};
    for (int64_t g = 0; g < groups; ++g) {
      const float* p = x + t * cols + g * group;
      VF m = hn::Zero(d), s = hn::Zero(d);
      int64_t i = 0;
      for (; i + lanes <= group; i += lanes) {
        const VF v = hn::LoadU(d, p + i);
        m = hn::Max(m, hn::Abs(v));
        s = hn::Add(s, v);
      }
      float mx = hn::GetLane(hn::MaxOfLanes(d, m));
      float total = hn::GetLane(hn::SumOfLanes(d, s));
      for (int64_t j = i; j < group; ++j) {
        mx = std::max(mx, std::fabs(p[j]));
        total += p[j];
      }
      const internal::GroupUnit gu = internal::GroupUnitOf(mx);
      unit[t * gp + g] = gu.unit;
      sum[t * gp + g] = total;
      const VF inv = hn::Set(d, gu.inv);
      for (int64_t i0 = 0; i0 < group; i0 += lanes) {
        const int64_t cnt = std::min(lanes, group - i0);
        VF v;
        if (cnt == lanes) {
          v = hn::LoadU(d, p + i0);
        } else {
          HWY_ALIGN float buf[kMaxLanes] = {};
          for (int64_t j = 0; j < cnt; ++j) buf[j] = p[i0 + j];
          v = hn::Load(d, buf);
        }
        const auto q = hn::NearestInt(hn::Mul(v, inv));
        const auto x0 = hn::ShiftRight<24>(hn::ShiftLeft<24>(q));
        const auto q1 = hn::ShiftRight<8>(hn::Sub(q, x0));
        const auto x1 = hn::ShiftRight<24>(hn::ShiftLeft<24>(q1));
        const auto x2 = hn::ShiftRight<8>(hn::Sub(q1, x1));
        const int64_t at = g * group + i0;
        if (cnt == lanes) {
          hn::StoreU(hn::DemoteTo(d8, x0), d8, pl[0] + at);
          hn::StoreU(hn::DemoteTo(d8, x1), d8, pl[1] + at);
          hn::StoreU(hn::DemoteTo(d8, x2), d8, pl[2] + at);
        } else {
          HWY_ALIGN int8_t tmp[3][kMaxLanes];
          hn::Store(hn::DemoteTo(d8, x0), d8, tmp[0]);
          hn::Store(hn::DemoteTo(d8, x1), d8, tmp[1]);
          hn::Store(hn::DemoteTo(d8, x2), d8, tmp[2]);
          for (int k = 0; k < 3; ++k) memcpy(pl[k] + at, tmp[k], static_cast<size_t>(cnt));
        }
      }
    }
    for (int k = 0; k < 3; ++k) {
      std::fill(pl[k] + cols, pl[k] + stride, int8_t{0});
      if (layout == 4) {
        // [x0 x1 ... x127] -> [x0 x2 ... x126 | x1 x3 ... x127] per block.
        alignas(64) uint8_t even[64], odd[64];
        for (int j = 0; j < 64; ++j) {
          even[j] = static_cast<uint8_t>(2 * j);
          odd[j] = static_cast<uint8_t>(2 * j + 1);
        }
        const __m512i ie = _mm512_load_si512(even), io = _mm512_load_si512(odd);
        for (int64_t b = 0; b < stride; b += 128) {
          const __m512i lo = _mm512_loadu_si512(pl[k] + b), hi = _mm512_loadu_si512(pl[k] + b + 64);
          _mm512_storeu_si512(pl[k] + b, _mm512_permutex2var_epi8(lo, ie, hi));
          _mm512_storeu_si512(pl[k] + b + 64, _mm512_permutex2var_epi8(lo, io, hi));
        }
      } else if (layout == 2) {
        alignas(64) int8_t blk[256];
        for (int64_t b = 0; b < stride; b += 256) {
          memcpy(blk, pl[k] + b, 256);
          for (int64_t w = 0; w < 256; ++w) pl[k][b + (w % 4) * 64 + w / 4] = blk[w];
        }
      }
    }
  }
  BlockX bx;
  for (int k = 0; k < 3; ++k) bx.plane[k] = planes + k * n * stride;
  bx.stride = stride;
  bx.unit = unit;
  bx.sum = sum;
  bx.groups_padded = gp;
  return bx;
}

// MLX block layout for B-bit codes: kBlock codes from kBlock * B / 8 bytes as kV vectors of
// 64 u8 codes; byte j of vector v is code Code(v, j) of the block; dword lane l of every vector
// holds codes of the block's sub-range starting at LaneFirst(l) (one group).
template <int B>
struct MlxVnniLayout {
  static constexpr int kV = B == 4 ? 2 : B == 2 ? 4 : 1;
  static constexpr int64_t kBlock = 64 * kV;
  static constexpr int64_t kBlockBytes = kBlock * B / 8;
  static int64_t Code(int v, int64_t j) {
    return B == 4 ? 2 * j + v : B == 2 ? 4 * j + v : j;  // 4-bit: low nibble = even code
  }
  static int64_t LaneFirst(int l) { return B == 4 ? 8 * l : B == 2 ? 16 * l : 4 * l; }
};

// Unpacks block `b` of one row into kV vectors of u8 codes (a short last block reads only its
// bytes; missing codes are 0).
template <int B, bool kPartial>
AFD_VNNI HWY_INLINE void MlxVnniUnpack(const uint8_t* row, int64_t row_bytes, int64_t b,
                                       __m512i ctrl, __m512i idx, __m512i* c) {
  using L = MlxVnniLayout<B>;
  const uint8_t* p = row + b * L::kBlockBytes;
  __m512i v;
  if (!kPartial && L::kBlockBytes == 64) {
    v = _mm512_loadu_si512(p);
  } else {
    const int64_t nbytes = std::min<int64_t>(L::kBlockBytes, row_bytes - b * L::kBlockBytes);
    v = _mm512_maskz_loadu_epi8(_cvtu64_mask64(nbytes >= 64 ? ~0ull : (1ull << nbytes) - 1), p);
  }
  if (B == 4) {
    const __m512i m = _mm512_set1_epi8(0x0F);
    c[0] = _mm512_and_si512(v, m);
    c[1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m);
  } else if (B == 8) {
    c[0] = v;
  } else if (B == 2) {
    const __m512i m = _mm512_set1_epi8(0x03);
    c[0] = _mm512_and_si512(v, m);
    c[1] = _mm512_and_si512(_mm512_srli_epi16(v, 2), m);
    c[2] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m);
    c[3] = _mm512_and_si512(_mm512_srli_epi16(v, 6), m);
  } else {
    // 8 codes per B bytes: each 64-bit lane gathers its pack, then one shift per code.
    c[0] = _mm512_and_si512(_mm512_multishift_epi64_epi8(ctrl, _mm512_permutexvar_epi8(idx, v)),
                            _mm512_set1_epi8(static_cast<char>((1 << B) - 1)));
  }
}

// One block of R rows x N tokens into acc (the last block of a row may be short: `partial`).
template <int B, int R, int N, bool kPartial>
AFD_VNNI HWY_INLINE void MlxVnniBlock(const uint8_t* const* rows, int64_t row_bytes, int64_t b,
                                      int64_t g0, int64_t groups, const BlockX& bx,
                                      const float* pf_b, const float* sb, __m512i lane_group,
                                      __m512i ctrl, __m512i idx, int64_t prefetch,
                                      __m512 (&acc)[R][N]) {
  using L = MlxVnniLayout<B>;
  const __m512 k256 = _mm512_set1_ps(256.0f);
  __m512i c[R][L::kV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    MlxVnniUnpack<B, kPartial>(rows[r], row_bytes, b, ctrl, idx, c[r]);
    // The same block of a later tile's row, `prefetch` bytes ahead (0: none).
    if (prefetch != 0) {
      _mm_prefetch(reinterpret_cast<const char*>(rows[r] + prefetch + b * L::kBlockBytes),
                   _MM_HINT_T0);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < N; ++t) {
    const int8_t* x2 = bx.plane[2] + t * bx.stride + b * L::kBlock;
    const int8_t* x1 = bx.plane[1] + t * bx.stride + b * L::kBlock;
    const int8_t* x0 = bx.plane[0] + t * bx.stride + b * L::kBlock;
    const __m512 pf = _mm512_load_ps(pf_b + t * 16);
    // The block's activation planes in registers, shared by the R rows (a memory operand per
    // vpdpbusd reloaded them for every row: 768x1536 hot on one Zen 5 core 34 -> 44 GB/s).
    __m512i xv[3][L::kV];
    for (int v = 0; v < L::kV; ++v) {
      xv[2][v] = _mm512_load_si512(x2 + 64 * v);
      xv[1][v] = _mm512_load_si512(x1 + 64 * v);
      xv[0][v] = _mm512_load_si512(x0 + 64 * v);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      __m512 f;
      if (B != 8) {
        // |sum| < 2^31 for B <= 6 (a lane holds at most 16 codes of <= 63: 16 * 63 * 2^22 <
        // 2^30): one integer per lane, (D2 * 256 + D1) * 256 + D0. The three planes' sums are
        // independent chains (one chain through all three planes was latency-bound: 768x1536
        // hot on one Zen 5 core 30 -> 34 GB/s); integer sums, so the bits do not change.
        __m512i a2 = Dpbusd(_mm512_setzero_si512(), c[r][0], xv[2][0]);
        __m512i a1 = Dpbusd(_mm512_setzero_si512(), c[r][0], xv[1][0]);
        __m512i a0 = Dpbusd(_mm512_setzero_si512(), c[r][0], xv[0][0]);
#pragma GCC unroll 4
        for (int v = 1; v < L::kV; ++v) {
          a2 = Dpbusd(a2, c[r][v], xv[2][v]);
          a1 = Dpbusd(a1, c[r][v], xv[1][v]);
          a0 = Dpbusd(a0, c[r][v], xv[0][v]);
        }
        const __m512i a = _mm512_add_epi32(
            _mm512_slli_epi32(_mm512_add_epi32(_mm512_slli_epi32(a2, 8), a1), 8), a0);
        f = _mm512_cvtepi32_ps(a);
      } else {
        // 8-bit codes could overflow that: D2 * 256 + D1 and D0 apart.
        __m512i hi = Dpbusd(_mm512_setzero_si512(), c[r][0], xv[2][0]);
        hi = Dpbusd(_mm512_slli_epi32(hi, 8), c[r][0], xv[1][0]);
        const __m512i lo = Dpbusd(_mm512_setzero_si512(), c[r][0], xv[0][0]);
        f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), k256, _mm512_cvtepi32_ps(lo));
      }
      const __m512 sl = _mm512_permutexvar_ps(lane_group, _mm512_loadu_ps(sb + r * groups + g0));
      acc[r][t] = _mm512_fmadd_ps(f, _mm512_mul_ps(sl, pf), acc[r][t]);
    }
  }
}

// How far ahead the MLX VNNI decode prefetches its rows. Alternating MLX4 decode runs on Zen 5:
// 6 KiB (two tiles of 4 rows of 768 bytes) 1.07-1.2x one tile (3 KiB); 12 KiB as 6 KiB; 24 KiB
// 1.0-1.08x.
constexpr int64_t kMlxPrefetchBytes = 6 << 10;

// What every tile of one MLX VNNI decode product shares, worked out once per product instead
// of in every 4-row tile (three divisions per tile and one per block before; the hot and the
// engine rates did not move, the out-of-order core hid them).
struct MlxVnniGeometry {
  int64_t groups, row_bytes, blocks, full;
  int64_t ahead_rows;          // prefetch distance: whole tiles, at least kMlxPrefetchBytes
  const int64_t* block_group;  // [blocks]: the group of each block's first column
};

// R rows x N tokens over every block. sb: fp32 scales [R, groups] then biases [R, groups]
// (padded by 16). pf: [N, blocks, 16] per-lane units. lane_group: lane -> group offset.
template <int B, int R, int N>
AFD_VNNI HWY_NOINLINE void MlxVnniTile(const QuantMatrix& w, const MlxVnniGeometry& geo, int64_t r0,
                                       const BlockX& bx, const float* pf, const float* sb,
                                       __m512i lane_group, float* y) {
  using L = MlxVnniLayout<B>;
  const int64_t groups = geo.groups;
  const int64_t row_bytes = geo.row_bytes;
  const int64_t blocks = geo.blocks;
  const int64_t full = geo.full;
  alignas(64) uint8_t ctrl_b[64] = {}, idx_b[64] = {};
  for (int q = 0; q < 8; ++q) {
    for (int k = 0; k < 8; ++k) {
      ctrl_b[8 * q + k] = static_cast<uint8_t>(k * B);
      idx_b[8 * q + k] = static_cast<uint8_t>(std::min(B * q + k, 63));
    }
  }
  const __m512i ctrl = _mm512_load_si512(ctrl_b), idx = _mm512_load_si512(idx_b);
  const uint8_t* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = static_cast<const uint8_t*>(w.data) + (r0 + r) * row_bytes;
  __m512 acc[R][N];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < N; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  // pf is [N, blocks, 16]: block b of token t at pf + (t * blocks + b) * 16, so the block's
  // tokens are `blocks * 16` floats apart; MlxVnniBlock reads pf_b + t * 16, hence the
  // per-block copy into a token-contiguous buffer.
  alignas(64) float pf_b[N * 16];
  // Whole tiles at least kMlxPrefetchBytes ahead (rows are contiguous).
  const int64_t prefetch = r0 + R + geo.ahead_rows <= w.rows ? geo.ahead_rows * row_bytes : 0;
  for (int64_t b = 0; b < full; ++b) {
    for (int t = 0; t < N; ++t) {
      _mm512_store_ps(pf_b + t * 16, _mm512_load_ps(pf + (t * blocks + b) * 16));
    }
    MlxVnniBlock<B, R, N, false>(rows, row_bytes, b, geo.block_group[b], groups, bx, pf_b, sb,
                                 lane_group, ctrl, idx, prefetch, acc);
  }
  if (full < blocks) {
    for (int t = 0; t < N; ++t) {
      _mm512_store_ps(pf_b + t * 16, _mm512_load_ps(pf + (t * blocks + full) * 16));
    }
    MlxVnniBlock<B, R, N, true>(rows, row_bytes, full, geo.block_group[full], groups, bx, pf_b, sb,
                                lane_group, ctrl, idx, 0, acc);
  }
  // Bias terms: sum_g bias[r, g] * sum_t[g].
  for (int r = 0; r < R; ++r) {
    const float* bias = sb + (R + r) * groups;
    for (int t = 0; t < N; ++t) {
      const float* xs = bx.sum + t * bx.groups_padded;
      __m512 a = acc[r][t];
      for (int64_t g = 0; g < groups; g += 16) {
        const __mmask16 m =
            static_cast<__mmask16>(groups - g >= 16 ? 0xFFFF : (1u << (groups - g)) - 1);
        a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, bias + g), _mm512_maskz_loadu_ps(m, xs + g),
                            a);
      }
      y[t * w.rows + r0 + r] = _mm512_reduce_add_ps(a);
    }
  }
}

template <int B, int N>
void MlxVnniDecodeN(const float* x, const QuantMatrix& w, int64_t row_begin, int64_t row_end,
                    float* y) {
  using L = MlxVnniLayout<B>;
  const int64_t groups = w.groups();
  const int64_t blocks = (w.cols + L::kBlock - 1) / L::kBlock;
  // The tiles prefetch kMlxPrefetchBytes ahead, so the first rows would be demand misses one
  // after another: ask for them (and their scales) now, while x is quantized.
  {
    const int64_t row_bytes = w.cols * B / 8;
    const int64_t bytes = std::min(kMlxPrefetchBytes, (row_end - row_begin) * row_bytes);
    PrefetchRange(w.data, row_begin * row_bytes, row_begin * row_bytes + bytes);
    PrefetchScaleRows(w, row_begin, std::min(kMlxScaleAheadRows, row_end - row_begin));
  }
  const BlockX bx = QuantizeBlockX(x, N, w.cols, w.group_size, blocks * L::kBlock,
                                   B == 4   ? 4
                                   : B == 2 ? 2
                                            : 0);
  alignas(64) int32_t lg[16];
  for (int l = 0; l < 16; ++l) {
    lg[l] = static_cast<int32_t>(w.group_size >= L::kBlock ? 0 : L::LaneFirst(l) / w.group_size);
  }
  const __m512i lane_group = _mm512_load_si512(lg);
  // Per token and block, the unit of each lane's group (the unit arrays are zero padded).
  float* pf = qi::QuantScratch(5, N * blocks * 16);
  for (int64_t t = 0; t < N; ++t) {
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t g0 = b * L::kBlock / w.group_size;
      _mm512_store_ps(
          pf + (t * blocks + b) * 16,
          _mm512_permutexvar_ps(lane_group, _mm512_loadu_ps(bx.unit + t * bx.groups_padded + g0)));
    }
  }
  constexpr int R = N == 1 ? 4 : N == 2 ? 2 : 1;
  MlxVnniGeometry geo;
  geo.groups = groups;
  geo.row_bytes = w.cols * B / 8;
  geo.blocks = blocks;
  geo.full = w.cols / L::kBlock;
  const int64_t tile_bytes = R * geo.row_bytes;
  geo.ahead_rows = (kMlxPrefetchBytes + tile_bytes - 1) / tile_bytes * R;
  int64_t* block_group = reinterpret_cast<int64_t*>(qi::QuantScratch(7, 2 * blocks));
  for (int64_t b = 0; b < blocks; ++b) block_group[b] = b * L::kBlock / w.group_size;
  geo.block_group = block_group;
  float* sb = qi::QuantScratch(6, 2 * R * groups + 16);
  int64_t r = row_begin;
  for (; r + R <= row_end; r += R) {
    PrefetchScaleRows(w, r + kMlxScaleAheadRows, R);
    WidenScales(w.scales, w.scale_type, r * groups, R * groups, sb);
    WidenScales(w.biases, w.scale_type, r * groups, R * groups, sb + R * groups);
    std::fill(sb + 2 * R * groups, sb + 2 * R * groups + 16, 0.0f);
    MlxVnniTile<B, R, N>(w, geo, r, bx, pf, sb, lane_group, y);
  }
  for (; r < row_end; ++r) {
    WidenScales(w.scales, w.scale_type, r * groups, groups, sb);
    WidenScales(w.biases, w.scale_type, r * groups, groups, sb + groups);
    std::fill(sb + 2 * groups, sb + 2 * groups + 16, 0.0f);
    MlxVnniTile<B, 1, N>(w, geo, r, bx, pf, sb, lane_group, y);
  }
}

template <int B>
void MlxVnniDecodeRows(const float* x, int64_t n, const QuantMatrix& w, int64_t row_begin,
                       int64_t row_end, float* y) {
  for (int64_t t = 0; t < n; t += 4) {
    const float* xt = x + t * w.cols;
    float* yt = y + t * w.rows;
    switch (std::min<int64_t>(4, n - t)) {
      case 1:
        MlxVnniDecodeN<B, 1>(xt, w, row_begin, row_end, yt);
        break;
      case 2:
        MlxVnniDecodeN<B, 2>(xt, w, row_begin, row_end, yt);
        break;
      case 3:
        MlxVnniDecodeN<B, 3>(xt, w, row_begin, row_end, yt);
        break;
      default:
        MlxVnniDecodeN<B, 4>(xt, w, row_begin, row_end, yt);
        break;
    }
  }
}

// AWQ: 64 output columns [c0, c0 + 64) per tile, four input rows per step. Byte j of a qweight
// row's 32 tile bytes holds slots 2(j%4) (low nibble) and 2(j%4)+1 of word j/4; a two-source
// byte permute gathers the four rows' nibbles of 16 such bytes into the 4 bytes of one dword
// lane. Vectors 0/1: low nibbles of bytes 0-15 / 16-31; 2/3: high nibbles.
int64_t AwqVnniColumn(int v, int j) {
  const int byte = (v % 2) * 16 + j;
  return 8 * (byte / 4) + qi::kAwqColumn[2 * (byte % 4) + v / 2];
}

// Rows [i0, i0 + 4 * kSteps) of the 64 columns at `p` (qweight + i0 * wb + c0 / 2) into this
// tile's int32 sums of each of n tokens: acc[t * 12 + 4 * plane + vector] (in memory). The codes
// are unpacked once and kept in registers for every token. kPartial: only `nbytes` bytes of each
// row exist (masked loads). xp[3 * t + plane]: token t's activation plane at row i0. `pf` (or
// nullptr): the same rows' bytes further down the matrix, prefetched into L2 meanwhile (one
// cache line per row). `fresh`: the sums start from zero instead of acc's contents. The
// activation bytes are read at xp[3 * t + plane] + xo.
template <int kSteps, bool kPartial, int kN>
AFD_VNNI HWY_INLINE void AwqVnniRows(const uint8_t* p, int64_t wb, int64_t nbytes,
                                     const int8_t* const* xp, int64_t xo, int64_t n, __m512i idx0,
                                     __m512i idx1, const uint8_t* pf, bool fresh, __m512i* acc) {
  const __m512i m0f = _mm512_set1_epi8(0x0F);
  const __mmask32 m32 = nbytes >= 32 ? 0xFFFFFFFFu : (1u << nbytes) - 1;
  auto load32 = [&](const uint8_t* q) {
    return kPartial ? _mm256_maskz_loadu_epi8(m32, q)
                    : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
  };
  __m512i c[kSteps][4];
  for (int s = 0; s < kSteps; ++s, p += 4 * wb) {
    if (pf != nullptr) {
      for (int r = 0; r < 4; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(pf + (4 * s + r) * wb), _MM_HINT_T1);
      }
    }
    const __m512i A = _mm512_inserti64x4(_mm512_castsi256_si512(load32(p)), load32(p + wb), 1);
    const __m512i Bv =
        _mm512_inserti64x4(_mm512_castsi256_si512(load32(p + 2 * wb)), load32(p + 3 * wb), 1);
    const __m512i alo = _mm512_and_si512(A, m0f);
    const __m512i ahi = _mm512_and_si512(_mm512_srli_epi16(A, 4), m0f);
    const __m512i blo = _mm512_and_si512(Bv, m0f);
    const __m512i bhi = _mm512_and_si512(_mm512_srli_epi16(Bv, 4), m0f);
    c[s][0] = _mm512_permutex2var_epi8(alo, idx0, blo);
    c[s][1] = _mm512_permutex2var_epi8(alo, idx1, blo);
    c[s][2] = _mm512_permutex2var_epi8(ahi, idx0, bhi);
    c[s][3] = _mm512_permutex2var_epi8(ahi, idx1, bhi);
  }
  for (int64_t t = 0; t < (kN > 0 ? kN : n); ++t) {
    __m512i* at = acc + 12 * t;
    const int8_t* const* x = xp + 3 * t;
    __m512i a[3][4];
    for (int k = 0; k < 3; ++k) {
      for (int v = 0; v < 4; ++v) {
        a[k][v] = fresh ? _mm512_setzero_si512() : _mm512_load_si512(at + 4 * k + v);
      }
    }
    for (int s = 0; s < kSteps; ++s) {
      for (int k = 0; k < 3; ++k) {
        // One broadcast per plane and step, shared by the 4 vectors, kept in a register (the
        // empty asm stops GCC from folding it back into 4 memory-broadcast operands: the load
        // ports were the limit, 768x1536 hot on one Zen 5 core 26 -> 33 GB/s).
        int32_t xv;
        memcpy(&xv, x[k] + xo + 4 * s, 4);
        __m512i xb = _mm512_set1_epi32(xv);
        asm("" : "+v"(xb));
        for (int v = 0; v < 4; ++v) a[k][v] = _mm512_dpbusd_epi32(a[k][v], c[s][v], xb);
      }
    }
    for (int k = 0; k < 3; ++k) {
      for (int v = 0; v < 4; ++v) _mm512_store_si512(at + 4 * k + v, a[k][v]);
    }
  }
}

// AwqVnniRows over `steps` steps of 4 rows (4 at a time, then one by one). `fresh`: the sums
// start from zero (the group's first rows: no zeroing pass over the sums).
template <bool kPartial, int kN>
AFD_VNNI HWY_INLINE void AwqVnniRowBlock(const uint8_t* p, int64_t wb, int64_t steps,
                                         int64_t nbytes, const int8_t* const* xp, int64_t n,
                                         __m512i idx0, __m512i idx1, const uint8_t* pf, bool fresh,
                                         __m512i* acc) {
  if (fresh && steps == 0) std::fill(acc, acc + 12 * n, _mm512_setzero_si512());
  int64_t s = 0;
  for (; s + 4 <= steps; s += 4) {
    AwqVnniRows<4, kPartial, kN>(p + 4 * s * wb, wb, nbytes, xp, 4 * s, n, idx0, idx1,
                                 pf != nullptr ? pf + 4 * s * wb : nullptr, fresh && s == 0, acc);
  }
  for (; s < steps; ++s) {
    AwqVnniRows<1, kPartial, kN>(p + 4 * s * wb, wb, nbytes, xp, 4 * s, n, idx0, idx1,
                                 pf != nullptr ? pf + 4 * s * wb : nullptr, fresh && s == 0, acc);
  }
}

// Group g of the 64 columns [c0, c0 + 64) for token t, from the group's int32 sums `ia` (as
// AwqVnniRows leaves them): acc[0, 64) (lane order) += the group's terms. kPartial: only the
// first `valid` columns exist.
template <bool kPartial>
AFD_VNNI HWY_INLINE void AwqVnniFinish(const QuantMatrix& w, int64_t g, int64_t c0, int64_t valid,
                                       const BlockX& bx, int64_t t, const int32_t (*sidx)[16],
                                       const __m512i* ia, float* acc) {
  const int64_t wb = w.rows / 2;
  const uint8_t* qzeros = static_cast<const uint8_t*>(w.zeros);
  const __m512 k256 = _mm512_set1_ps(256.0f);
  const int64_t nbytes = valid / 2;
  const __mmask32 m32 = nbytes >= 32 ? 0xFFFFFFFFu : (1u << nbytes) - 1;
  // Zero points and scales of this group in lane order.
  __m512 zf[4];
  if (qzeros != nullptr) {
    const uint8_t* zp = qzeros + g * wb + c0 / 2;
    const __m256i z = kPartial ? _mm256_maskz_loadu_epi8(m32, zp)
                               : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zp));
    const __m256i zl = _mm256_and_si256(z, _mm256_set1_epi8(0x0F));
    const __m256i zh = _mm256_and_si256(_mm256_srli_epi16(z, 4), _mm256_set1_epi8(0x0F));
    zf[0] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(zl)));
    zf[1] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(zl, 1)));
    zf[2] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(zh)));
    zf[3] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(zh, 1)));
  } else {
    for (int v = 0; v < 4; ++v) zf[v] = _mm512_set1_ps(8.0f);
  }
  const size_t scale_bytes = w.scale_type == WeightType::kF32 ? 4 : 2;
  const uint8_t* srow = static_cast<const uint8_t*>(w.scales) + (g * w.rows + c0) * scale_bytes;
  __m512 sv[4];
  for (int h = 0; h < 2; ++h) {  // columns [32h, 32h + 32) as [32h, +16) and [32h + 16, +16)
    __m512 s[2];
    for (int q = 0; q < 2; ++q) {
      const uint8_t* sp = srow + (32 * h + 16 * q) * scale_bytes;
      const int64_t cnt = std::clamp<int64_t>(valid - 32 * h - 16 * q, 0, 16);
      const __mmask16 m = kPartial ? static_cast<__mmask16>((1u << cnt) - 1) : 0xFFFF;
      if (w.scale_type == WeightType::kF32) {
        s[q] = _mm512_maskz_loadu_ps(m, sp);
      } else {
        const __m256i h16 = _mm256_maskz_loadu_epi16(m, sp);
        s[q] = w.scale_type == WeightType::kF16
                   ? _mm512_cvtph_ps(h16)
                   : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h16), 16));
      }
    }
    // Vector v covers columns [32 * (v % 2), +32): v = h (low nibbles) and v = h + 2 (high).
    sv[h] = _mm512_permutex2var_ps(s[0], _mm512_load_si512(sidx[h]), s[1]);
    sv[h + 2] = _mm512_permutex2var_ps(s[0], _mm512_load_si512(sidx[h + 2]), s[1]);
  }
  const __m512 unit = _mm512_set1_ps(bx.unit[t * bx.groups_padded + g]);
  const __m512 xsum = _mm512_set1_ps(bx.sum[t * bx.groups_padded + g]);
  for (int v = 0; v < 4; ++v) {
    const __m512i hi = _mm512_add_epi32(_mm512_slli_epi32(ia[8 + v], 8), ia[4 + v]);
    const __m512 f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), k256, _mm512_cvtepi32_ps(ia[v]));
    const __m512 term = _mm512_fnmadd_ps(zf[v], xsum, _mm512_mul_ps(f, unit));
    _mm512_store_ps(acc + 16 * v, _mm512_fmadd_ps(term, sv[v], _mm512_load_ps(acc + 16 * v)));
  }
}

// Output columns [c_begin, c_end) for n tokens, in tiles of 64 from the word boundary at or
// below c_begin (a tile past the matrix end masks its loads; columns outside the range are
// computed but not stored), so a column's arithmetic never depends on how a caller splits the
// range (a group's int32 sums are exact in any order). Per panel of kAwqPanelTiles tiles and
// group, blocks of kAwqBlockRows input rows sweep the panel's tiles: each block reads
// kAwqBlockRows contiguous row segments front to back, streams the hardware prefetcher follows
// whatever the row stride (a tile-by-tile sweep of a wide matrix touches every row's page for
// each 32 bytes), while the rows kAwqPrefetchRows further down (this group's or the next's;
// a panel's worth of them fits L2) are prefetched, into L1 for a panel of whole rows.
// Measured in alternating AWQ decode runs on Zen 5: 32 rows ahead into L1 1.04-1.09x 64 rows
// into L2, 128 rows 0.9x; on the Xeon VM (session 12) 32 and 64 rows and the L1 and L2 hints
// were equal.
constexpr int64_t kAwqPanelTiles = 32;
constexpr int64_t kAwqBlockRows = 16;
constexpr int64_t kAwqPrefetchRows = 32;

// The byte permutes of AwqVnniRows (idx_b), the scale permutes of AwqVnniFinish (sidx) and each
// lane's column within its tile (column).
struct AwqVnniLanes {
  AwqVnniLanes() {
    for (int j = 0; j < 16; ++j) {
      for (int h = 0; h < 2; ++h) {
        const int byte = 16 * h + j;
        idx_b[h][4 * j + 0] = static_cast<uint8_t>(byte);
        idx_b[h][4 * j + 1] = static_cast<uint8_t>(32 + byte);
        idx_b[h][4 * j + 2] = static_cast<uint8_t>(64 + byte);
        idx_b[h][4 * j + 3] = static_cast<uint8_t>(96 + byte);
      }
      for (int v = 0; v < 4; ++v) {
        sidx[v][j] = static_cast<int32_t>(AwqVnniColumn(v, j) % 32);
        column[16 * v + j] = static_cast<int>(AwqVnniColumn(v, j));
      }
    }
  }
  alignas(64) uint8_t idx_b[2][64];
  alignas(64) int32_t sidx[4][16];
  int column[64];
};
const AwqVnniLanes& AwqLanes() {
  static const AwqVnniLanes lanes;
  return lanes;
}

// The int32 sums of input rows [i_begin, i_end) (one group's) for 64-column tiles [p0, p1)
// from column `first`, every token, written to sums[(tile - p0) * n * 12 + 12 * t]. Rows below
// `pf_end` may be prefetched ahead. kN: the token count when fixed at compile time (1), else 0.
template <int kN>
AFD_VNNI HWY_INLINE void AwqVnniSweep(const QuantMatrix& w, const AwqVnniLanes& lanes,
                                      const BlockX& bx, int64_t n, int64_t first, int64_t p0,
                                      int64_t p1, int64_t i_begin, int64_t i_end, int64_t pf_end,
                                      const int8_t** xp, __m512i* sums) {
  const __m512i idx0 = _mm512_load_si512(lanes.idx_b[0]);
  const __m512i idx1 = _mm512_load_si512(lanes.idx_b[1]);
  const int64_t wb = w.rows / 2;
  const uint8_t* qweight = static_cast<const uint8_t*>(w.data);
  for (int64_t i0 = i_begin; i0 < i_end; i0 += kAwqBlockRows) {
    const int64_t steps = std::min(kAwqBlockRows, i_end - i0) / 4;
    for (int64_t t = 0; t < n; ++t) {
      for (int k = 0; k < 3; ++k) xp[3 * t + k] = bx.plane[k] + t * bx.stride + i0;
    }
    const bool prefetch = i0 + kAwqPrefetchRows + 4 * steps <= pf_end;
    // A panel of every column: the block kAwqPrefetchRows further down is one contiguous
    // range, prefetched front to back, a few lines per tile (what the L2 streamer follows
    // best: 4-8 % faster on one core than a line per row in tile order).
    const bool whole_rows = prefetch && first == 0 && p0 == 0 && 64 * p1 >= w.rows;
    const int64_t lines = (4 * steps * wb + 63) / 64;
    const int64_t lines_per_tile = (lines + (p1 - p0) - 1) / (p1 - p0);
    const uint8_t* ahead = qweight + (i0 + kAwqPrefetchRows) * wb;
    for (int64_t tile = p0; tile < p1; ++tile) {
      const int64_t c0 = first + 64 * tile;
      const int64_t valid = std::min<int64_t>(64, w.rows - c0);
      const uint8_t* p = qweight + i0 * wb + c0 / 2;
      if (whole_rows) {
        const int64_t line_end = std::min(lines, (tile - p0 + 1) * lines_per_tile);
        for (int64_t line = (tile - p0) * lines_per_tile; line < line_end; ++line) {
          _mm_prefetch(reinterpret_cast<const char*>(ahead + 64 * line), _MM_HINT_T0);
        }
      }
      // Otherwise one prefetch per cache line of each row: the tile starting it, and the
      // panel's first.
      const uint8_t* pf = !whole_rows && prefetch && ((c0 / 2) % 64 < 32 || tile == p0)
                              ? p + kAwqPrefetchRows * wb
                              : nullptr;
      __m512i* a = sums + (tile - p0) * n * 12;
      if (valid == 64) {
        AwqVnniRowBlock<false, kN>(p, wb, steps, 32, xp, n, idx0, idx1, pf, i0 == i_begin, a);
      } else {
        AwqVnniRowBlock<true, kN>(p, wb, steps, valid / 2, xp, n, idx0, idx1, nullptr,
                                  i0 == i_begin, a);
      }
    }
  }
}

// Group g's scales and zero points of columns [c_begin, c_end) into L1 (AwqVnniFinish reads
// them after the group's sweep; left to the hardware they missed the caches: a tenth of the
// kernel's time in AWQ decode on Zen 5).
HWY_INLINE void PrefetchAwqGroupParams(const QuantMatrix& w, int64_t g, int64_t c_begin,
                                       int64_t c_end) {
  const int64_t scale_bytes = w.scale_type == WeightType::kF32 ? 4 : 2;
  PrefetchRange(w.scales, (g * w.rows + c_begin) * scale_bytes, (g * w.rows + c_end) * scale_bytes);
  if (w.zeros != nullptr) {
    const int64_t zero_row = g * (w.rows / 2);
    PrefetchRange(w.zeros, zero_row + c_begin / 2, zero_row + (c_end + 1) / 2);
  }
}

AFD_VNNI HWY_NOINLINE void AwqVnniColumns(const QuantMatrix& w, int64_t c_begin, int64_t c_end,
                                          const BlockX& bx, int64_t n, float* y) {
  const AwqVnniLanes& lanes = AwqLanes();
  const auto& sidx = lanes.sidx;
  const int64_t first = c_begin / 8 * 8;
  const int64_t tiles = (c_end - first + 63) / 64;
  const int64_t group = w.group_size;
  float* acc = qi::QuantScratch(6, n * tiles * 64);
  std::fill(acc, acc + n * tiles * 64, 0.0f);
  // int32 sums of a panel's tiles for one group, every token: [panel tiles, n, 12 vectors];
  // narrower panels for more tokens keep them in L1.
  const int64_t panel = std::max<int64_t>(1, kAwqPanelTiles / n);
  __m512i* ia = reinterpret_cast<__m512i*>(qi::QuantScratch(2, panel * n * 12 * 16));
  // Per token and plane, the activation bytes of the current row block.
  const int8_t** xp = reinterpret_cast<const int8_t**>(qi::QuantScratch(5, 3 * n * 2 + 2));
  for (int64_t p0 = 0; p0 < tiles; p0 += panel) {
    const int64_t p1 = std::min(tiles, p0 + panel);
    for (int64_t g = 0; g < w.groups(); ++g) {
      PrefetchAwqGroupParams(w, g, first + 64 * p0, std::min(w.rows, first + 64 * p1));
      if (n == 1) {
        AwqVnniSweep<1>(w, lanes, bx, n, first, p0, p1, g * group, (g + 1) * group, w.cols, xp, ia);
      } else {
        AwqVnniSweep<0>(w, lanes, bx, n, first, p0, p1, g * group, (g + 1) * group, w.cols, xp, ia);
      }
      for (int64_t tile = p0; tile < p1; ++tile) {
        const int64_t c0 = first + 64 * tile;
        const int64_t valid = std::min<int64_t>(64, w.rows - c0);
        for (int64_t t = 0; t < n; ++t) {
          float* a = acc + (t * tiles + tile) * 64;
          const __m512i* sums = ia + ((tile - p0) * n + t) * 12;
          if (valid == 64) {
            AwqVnniFinish<false>(w, g, c0, valid, bx, t, sidx, sums, a);
          } else {
            AwqVnniFinish<true>(w, g, c0, valid, bx, t, sidx, sums, a);
          }
        }
      }
    }
  }
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t tile = 0; tile < tiles; ++tile) {
      const float* a = acc + (t * tiles + tile) * 64;
      const int64_t c0 = first + 64 * tile;
      for (int l = 0; l < 64; ++l) {
        const int64_t c = c0 + lanes.column[l];
        if (c >= c_begin && c < c_end) y[t * w.rows + c] = a[l];
      }
    }
  }
}

void AwqVnniDecodeRows(const float* x, int64_t n, const QuantMatrix& w, int64_t col_begin,
                       int64_t col_end, float* y) {
  // The sweep prefetches kAwqPrefetchRows rows ahead, so a whole matrix's first rows would be
  // demand misses one after another: ask for all of them now, while x is quantized.
  if (col_begin == 0 && col_end == w.rows) {
    PrefetchRange(w.data, 0, std::min(kAwqPrefetchRows, w.cols) * (w.rows / 2));
  }
  const BlockX bx = QuantizeBlockX(x, n, w.cols, w.group_size, w.cols, 0);
  AwqVnniColumns(w, col_begin, col_end, bx, n, y);
}

// Split along the input axis (AwqMatMulSplitInput). Groups [g_begin, g_end) of every tile of
// the matrix: sums[((g * tiles + tile) * n + t) * 12] = the int32 sums AwqVnniColumns forms.
AFD_VNNI HWY_NOINLINE void AwqVnniGroupSums(const QuantMatrix& w, const BlockX& bx, int64_t n,
                                            int64_t g_begin, int64_t g_end, __m512i* sums) {
  const AwqVnniLanes& lanes = AwqLanes();
  const int64_t tiles = (w.rows + 63) / 64;
  const int64_t panel = std::max<int64_t>(1, kAwqPanelTiles / n);
  const int64_t group = w.group_size;
  const int8_t* xp[3 * internal::kAwqSplitMaxTokens];
  for (int64_t g = g_begin; g < g_end; ++g) {
    __m512i* gs = sums + g * tiles * n * 12;
    for (int64_t p0 = 0; p0 < tiles; p0 += panel) {
      // Prefetch stays inside [g_begin, g_end) (the rows after it may be another thread's).
      const int64_t p1 = std::min(tiles, p0 + panel);
      if (n == 1) {
        AwqVnniSweep<1>(w, lanes, bx, n, 0, p0, p1, g * group, (g + 1) * group, g_end * group, xp,
                        gs + p0 * n * 12);
      } else {
        AwqVnniSweep<0>(w, lanes, bx, n, 0, p0, p1, g * group, (g + 1) * group, g_end * group, xp,
                        gs + p0 * n * 12);
      }
    }
  }
}

// Every column from every group's sums, groups added in order from 0.0f as AwqVnniColumns
// does, so the bits are the same.
AFD_VNNI HWY_NOINLINE void AwqVnniFinishColumns(const QuantMatrix& w, const BlockX& bx, int64_t n,
                                                const __m512i* sums, int64_t tile_begin,
                                                int64_t tile_end, float* y) {
  const AwqVnniLanes& lanes = AwqLanes();
  const int64_t tiles = (w.rows + 63) / 64;
  alignas(64) float acc[64];
  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    const int64_t c0 = 64 * tile;
    const int64_t valid = std::min<int64_t>(64, w.rows - c0);
    for (int64_t t = 0; t < n; ++t) {
      std::fill(acc, acc + 64, 0.0f);
      for (int64_t g = 0; g < w.groups(); ++g) {
        const __m512i* s = sums + ((g * tiles + tile) * n + t) * 12;
        if (valid == 64) {
          AwqVnniFinish<false>(w, g, c0, valid, bx, t, lanes.sidx, s, acc);
        } else {
          AwqVnniFinish<true>(w, g, c0, valid, bx, t, lanes.sidx, s, acc);
        }
      }
      for (int l = 0; l < 64; ++l) {
        const int64_t c = c0 + lanes.column[l];
        if (c < w.rows) y[t * w.rows + c] = acc[l];
      }
    }
  }
}
#endif  // HWY_TARGET == HWY_AVX3_DL

bool AwqSplitInputImpl(const float* x, int64_t n, const QuantMatrix* const* ws, float* const* ys,
                       int count, ThreadPool* pool) {
#if HWY_TARGET == HWY_AVX3_DL
  if (!HasVnni() || n < 1 || n > internal::kAwqSplitMaxTokens || count < 1) return false;
  const QuantMatrix& w0 = *ws[0];
  for (int p = 0; p < count; ++p) {
    const QuantMatrix& w = *ws[p];
    if (w.format != QuantFormat::kAwqInt4 || w.group_size % 4 != 0 || w.cols != w0.cols ||
        w.group_size != w0.group_size || w.rows > internal::kAwqSplitMaxRows) {
      return false;
    }
  }
  const BlockX bx = QuantizeBlockX(x, n, w0.cols, w0.group_size, w0.cols, 0);
  // Each thread's share: a contiguous run of groups (of one product or several in turn) of
  // about equal bytes, so each thread streams whole rows front to back.
  struct Run {
    int share;
    int p;
    int64_t g_begin, g_end;
  };
  const int shares = pool->num_threads();
  thread_local std::vector<Run> runs;
  thread_local std::vector<int64_t> offset;
  runs.clear();
  offset.assign(count + 1, 0);
  int64_t total = 0;
  for (int p = 0; p < count; ++p) total += ws[p]->groups() * ws[p]->group_size * ws[p]->rows / 2;
  int64_t done = 0;
  for (int p = 0; p < count; ++p) {
    const QuantMatrix& w = *ws[p];
    const int64_t group_bytes = w.group_size * w.rows / 2;
    for (int64_t g = 0; g < w.groups(); ++g, done += group_bytes) {
      // The share holding this group's middle byte.
      const int share = static_cast<int>((2 * done + group_bytes) * shares / (2 * total));
      if (!runs.empty() && runs.back().share == share && runs.back().p == p) {
        runs.back().g_end = g + 1;
      } else {
        runs.push_back({share, p, g, g + 1});
      }
    }
    offset[p + 1] = offset[p] + w.groups() * ((w.rows + 63) / 64) * n * 12;
  }
  __m512i* sums = reinterpret_cast<__m512i*>(qi::QuantScratch(7, offset[count] * 16));
  // The calling thread's lists, by pointer: in the workers the names denote their own.
  const Run* run_list = runs.data();
  const int64_t num_runs = static_cast<int64_t>(runs.size());
  const int64_t* run_offset = offset.data();
  // A share may run on any thread (a late thread leaves its share to the others); the sums
  // are exact, so who computes them never changes a bit.
  pool->ParallelFor(shares, [&](int64_t begin, int64_t end) {
    for (int64_t r = 0; r < num_runs; ++r) {
      const Run& run = run_list[r];
      if (run.share < begin || run.share >= end) continue;
      AwqVnniGroupSums(*ws[run.p], bx, n, run.g_begin, run.g_end, sums + run_offset[run.p]);
    }
  });
  // The columns of every product from their sums, tiles shared out again (each tile's groups
  // in order on one thread: the same bits wherever it runs). Serial, this was a fifth of the
  // AWQ attention projections' time in decode.
  int64_t total_tiles = 0;
  for (int p = 0; p < count; ++p) total_tiles += (ws[p]->rows + 63) / 64;
  pool->ParallelFor(total_tiles, [&](int64_t begin, int64_t end) {
    int64_t first = 0;
    for (int p = 0; p < count; ++p) {
      const int64_t tiles = (ws[p]->rows + 63) / 64;
      const int64_t b = std::max(begin - first, int64_t{0}), e = std::min(end - first, tiles);
      if (b < e) AwqVnniFinishColumns(*ws[p], bx, n, sums + run_offset[p], b, e, ys[p]);
      first += tiles;
    }
  });
  return true;
#else
  (void)x, (void)n, (void)ws, (void)ys, (void)count, (void)pool;
  return false;
#endif
}

// ---------------------------------------------------------------------------------------------
// Dispatch.

// mode: -1 = by token count, 0 = decode kernel, 1 = prefill kernel, 2 = decode kernel without
// VNNI (the fp32 decode path, for tests).
template <class Dec>
void MlxRows(const float* x, int64_t n, const QuantMatrix& w, int64_t row_begin, int64_t row_end,
             float* y, int mode) {
  const Dec dec(w.bits, w.cols);
  const bool prefill = mode == 1 || (mode < 0 && n >= internal::kQuantPrefillMinTokens);
  if (prefill) {
    MlxPrefillRows(dec, x, n, w, row_begin, row_end, y);
    return;
  }
#if HWY_TARGET == HWY_AVX3_DL
  if (mode != 2 && HasVnni()) {
    switch (w.bits) {
      case 2:
        return MlxVnniDecodeRows<2>(x, n, w, row_begin, row_end, y);
      case 3:
        return MlxVnniDecodeRows<3>(x, n, w, row_begin, row_end, y);
      case 4:
        return MlxVnniDecodeRows<4>(x, n, w, row_begin, row_end, y);
      case 5:
        return MlxVnniDecodeRows<5>(x, n, w, row_begin, row_end, y);
      case 6:
        return MlxVnniDecodeRows<6>(x, n, w, row_begin, row_end, y);
      default:
        return MlxVnniDecodeRows<8>(x, n, w, row_begin, row_end, y);
    }
  }
#endif
  MlxDecodeRows(dec, x, n, w, row_begin, row_end, y);
}

template <class Dec>
void AwqRows(const float* x, int64_t n, const QuantMatrix& w, int64_t row_begin, int64_t row_end,
             float* y, int mode) {
  const Dec dec;
  const bool prefill = mode == 1 || (mode < 0 && n >= internal::kQuantPrefillMinTokens);
  if (prefill) {
    AwqPrefillRows(dec, x, n, w, row_begin, row_end, y);
    return;
  }
#if HWY_TARGET == HWY_AVX3_DL
  if (mode != 2 && HasVnni() && w.group_size % 4 == 0) {
    return AwqVnniDecodeRows(x, n, w, row_begin, row_end, y);
  }
#endif
  AwqDecodeRows(dec, x, n, w, row_begin, row_end, y);
}

void QuantMatMulRowsImpl(const float* x, int64_t n, const QuantMatrix& w, int64_t row_begin,
                         int64_t row_end, float* y, int mode) {
  if (w.format == QuantFormat::kAwqInt4) {
#if HWY_TARGET == HWY_AVX3_DL
    return AwqRows<AwqShiftDec>(x, n, w, row_begin, row_end, y, mode);
#else
    if (HWY_LANES(float) >= 4) return AwqRows<AwqNibbleDec>(x, n, w, row_begin, row_end, y, mode);
    return AwqRows<AwqScalarDec>(x, n, w, row_begin, row_end, y, mode);
#endif
  }
#if HWY_TARGET == HWY_AVX3_DL
  switch (w.bits) {
    case 2:
      return MlxRows<MlxShiftDec<2>>(x, n, w, row_begin, row_end, y, mode);
    case 3:
      return MlxRows<MlxShiftDec<3>>(x, n, w, row_begin, row_end, y, mode);
    case 4:
      return MlxRows<MlxShiftDec<4>>(x, n, w, row_begin, row_end, y, mode);
    case 5:
      return MlxRows<MlxShiftDec<5>>(x, n, w, row_begin, row_end, y, mode);
    case 6:
      return MlxRows<MlxShiftDec<6>>(x, n, w, row_begin, row_end, y, mode);
    default:
      return MlxRows<MlxShiftDec<8>>(x, n, w, row_begin, row_end, y, mode);
  }
#else
  // The nibble decoder's chunk (2 lanes of codes per byte lane) must divide the group.
  if (w.bits == 4 && w.group_size % ChunkValues<MlxNibbleDec>() == 0) {
    return MlxRows<MlxNibbleDec>(x, n, w, row_begin, row_end, y, mode);
  }
  if (w.bits == 8) return MlxRows<MlxByteDec>(x, n, w, row_begin, row_end, y, mode);
  return MlxRows<MlxScalarDec>(x, n, w, row_begin, row_end, y, mode);
#endif
}

}  // namespace HWY_NAMESPACE
}  // namespace afd::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace afd::kernels {

HWY_EXPORT(QuantMatMulRowsImpl);
HWY_EXPORT(AwqSplitInputImpl);

namespace quant_internal {

struct QuantScratchTag {};

float* QuantScratch(int slot, size_t count) {
  return internal::ThreadScratch<QuantScratchTag, float, 8>(slot, count);
}

}  // namespace quant_internal

namespace qi = quant_internal;

WeightView AsWeightView(const QuantMatrix& m) {
  WeightView w;
  w.type = m.format == QuantFormat::kAwqInt4 ? WeightType::kAwqInt4 : WeightType::kMlxAffine;
  w.rows = m.rows;
  w.cols = m.cols;
  w.data = m.data;
  w.zeros = m.zeros;
  w.group_scales = m.scales;
  w.group_biases = m.biases;
  w.group_type = m.scale_type;
  w.bits = m.bits;
  w.group_size = m.group_size;
  return w;
}

QuantMatrix AsQuantMatrix(const WeightView& w) {
  QuantMatrix m;
  m.format = w.type == WeightType::kAwqInt4 ? QuantFormat::kAwqInt4 : QuantFormat::kMlxAffine;
  m.rows = w.rows;
  m.cols = w.cols;
  m.bits = w.bits;
  m.group_size = w.group_size;
  m.data = w.data;
  m.zeros = w.zeros;
  m.scales = w.group_scales;
  m.biases = w.group_biases;
  m.scale_type = w.group_type;
  return m;
}

size_t QuantMatrix::PackedBytes() const {
  return static_cast<size_t>(rows) * static_cast<size_t>(cols) * static_cast<size_t>(bits) / 8;
}

size_t QuantMatrix::Bytes() const {
  const size_t scale_bytes = scale_type == WeightType::kF32 ? 4 : 2;
  const size_t groups = static_cast<size_t>(rows) * static_cast<size_t>(this->groups());
  size_t b = PackedBytes() + groups * scale_bytes;
  if (format == QuantFormat::kMlxAffine) b += groups * scale_bytes;          // biases
  if (format == QuantFormat::kAwqInt4 && zeros != nullptr) b += groups / 2;  // 4-bit zeros
  return b;
}

const char* QuantMatrixProblem(const QuantMatrix& w) {
  if (w.rows <= 0 || w.cols <= 0) return "empty matrix";
  if (w.data == nullptr || w.scales == nullptr) return "missing packed values or scales";
  if (w.scale_type != WeightType::kF32 && w.scale_type != WeightType::kBF16 &&
      w.scale_type != WeightType::kF16) {
    return "scales must be f32, bf16 or f16";
  }
  if (w.group_size <= 0 || w.cols % w.group_size != 0) {
    return "group_size must divide the input features";
  }
  if (w.format == QuantFormat::kAwqInt4) {
    if (w.bits != 4) return "AWQ packs 4-bit codes only";
    if (w.rows % 8 != 0) return "AWQ output features must be a multiple of 8";
    return nullptr;
  }
  if (!(w.bits >= 2 && w.bits <= 8 && w.bits != 7)) return "MLX bits must be 2, 3, 4, 5, 6 or 8";
  if (w.group_size % 32 != 0) return "MLX group_size must be a multiple of 32";
  if (w.biases == nullptr) return "MLX needs biases";
  return nullptr;
}

uint32_t QuantCodeAt(const QuantMatrix& w, int64_t row, int64_t col) {
  const uint8_t* data = static_cast<const uint8_t*>(w.data);
  if (w.format == QuantFormat::kAwqInt4) return qi::AwqNibble(data + col * (w.rows / 2), row);
  return qi::MlxCode(data + row * (w.cols * w.bits / 8), w.bits, col);
}

uint32_t AwqZeroAt(const QuantMatrix& w, int64_t row, int64_t col) {
  if (w.zeros == nullptr) return 8;
  const uint8_t* zeros = static_cast<const uint8_t*>(w.zeros);
  return qi::AwqNibble(zeros + (col / w.group_size) * (w.rows / 2), row);
}

float QuantWeightAt(const QuantMatrix& w, int64_t row, int64_t col) {
  const int64_t g = col / w.group_size;
  const float q = static_cast<float>(QuantCodeAt(w, row, col));
  if (w.format == QuantFormat::kAwqInt4) {
    const float z = static_cast<float>(AwqZeroAt(w, row, col));
    const float s = qi::ScaleAt(w.scales, w.scale_type, g * w.rows + row);
    return (q - z) * s;
  }
  const float s = qi::ScaleAt(w.scales, w.scale_type, row * w.groups() + g);
  const float b = qi::ScaleAt(w.biases, w.scale_type, row * w.groups() + g);
  return s * q + b;
}

void QuantDequantizeRow(const QuantMatrix& w, int64_t row, float* out) {
  for (int64_t c = 0; c < w.cols; ++c) out[c] = QuantWeightAt(w, row, c);
}

namespace {
// The int8 tiles with x packed by this call (per thread: concurrent calls never share it).
void QuantTileRowsUnpacked(const float* x, int64_t n, const QuantMatrix& w, int64_t row_begin,
                           int64_t row_end, float* y) {
  thread_local std::vector<uint16_t> storage;
  QuantTileMatMulRows(PackQuantTileActivations(x, n, w, &storage), w, row_begin, row_end, y);
  ClearUpperVectorState();
}
}  // namespace

void QuantMatMulRows(const float* x, int64_t n, const QuantMatrix& w, int64_t row_begin,
                     int64_t row_end, float* y) {
  if (n <= 0 || row_begin >= row_end) return;
  if (UsesQuantTiles(w, n)) return QuantTileRowsUnpacked(x, n, w, row_begin, row_end, y);
  HWY_DYNAMIC_DISPATCH(QuantMatMulRowsImpl)(x, n, w, row_begin, row_end, y, -1);
  ClearUpperVectorState();
}

void QuantMatMul(const float* x, int64_t n, const QuantMatrix& w, float* y) {
  QuantMatMulRows(x, n, w, 0, w.rows, y);
}

bool AwqMatMulSplitInput(const float* x, int64_t n, const QuantMatrix* const* ws, float* const* ys,
                         int count, ThreadPool* pool) {
  if (pool == nullptr || pool->num_threads() <= 1 || count < 1) return false;
  for (int p = 0; p < count; ++p) {
    if (UsesQuantTiles(*ws[p], n)) return false;
  }
  const bool done = HWY_DYNAMIC_DISPATCH(AwqSplitInputImpl)(x, n, ws, ys, count, pool);
  ClearUpperVectorState();
  return done;
}

void QuantMatMulReference(const float* x, int64_t n, const QuantMatrix& w, float* y) {
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t r = 0; r < w.rows; ++r) {
      float acc = 0.0f;
      for (int64_t c = 0; c < w.cols; ++c) acc += x[t * w.cols + c] * QuantWeightAt(w, r, c);
      y[t * w.rows + r] = acc;
    }
  }
}

namespace internal {

void QuantMatMulRowsKernel(const float* x, int64_t n, const QuantMatrix& w, int64_t row_begin,
                           int64_t row_end, float* y, QuantKernel kernel) {
  if (n <= 0 || row_begin >= row_end) return;
  if (kernel == QuantKernel::kTiles && QuantTilesTake(w)) {
    return QuantTileRowsUnpacked(x, n, w, row_begin, row_end, y);
  }
  const int mode = kernel == QuantKernel::kPrefill ? 1 : kernel == QuantKernel::kDecode ? 0 : 2;
  HWY_DYNAMIC_DISPATCH(QuantMatMulRowsImpl)(x, n, w, row_begin, row_end, y, mode);
  ClearUpperVectorState();
}

}  // namespace internal
}  // namespace afd::kernels
#endif  // HWY_ONCE
