// Matrix products against checkpoint-precision weights (see matmul.h).
//
// Two kernel families, compiled for every Highway target and chosen at run time:
// - Decode (n < kPrefillMinTokens): dot products along the input axis, in tiles of R output
//   rows x N tokens with R * N fp32 accumulators in registers (R from the register budget; N up
//   to 8, or 12 and 16 in one-row tiles). Each weight chunk is widened once and used for all N
//   tokens, so the weights stream from memory once per pass of N tokens (FP8 decoding costs
//   about 3 FMAs per vector: passes of 16 matter there); the activations are packed once per call
//   in the decoder's lane order (one pointer reaches every token), and for N*cols too large for L1
//   the columns are blocked with partial sums parked in a small scratch. Weights are
//   software-prefetched ~8 KiB ahead of the tile being computed. One token (batch-1 decode) reads
//   the rows as four long streams instead: tiles of one row from each quarter of the range, each
//   stream prefetched ~3 KiB ahead (adjacent-row tiles are R short streams, which the prefetchers
//   of Zen 5 follow at 0.6-0.9x the rate). Block-scaled FP8: the scales go into a scaled copy of
//   the packed activations per block of 128 output rows, so the inner loop has no multiply.
// - Prefill (n >= kPrefillMinTokens; on AVX-512 whole chunks of 64 tokens, the rest in decode
//   passes, see PrefillChunkedTokens): a register-blocked outer product. A chunk of 64 (or 32)
//   tokens is transposed into xt [cols, tc]; 6 (or 12) weight rows at a time are widened into a
//   small fp32 tile (scale applied: the reference's exact weights); the micro-kernel broadcasts
//   one weight and multiplies it into 4 (or 2) token vectors. fp32 weights take this kernel too:
//   it runs at the FMA peak, and OpenBLAS falls back to a generic core on VMs that hide the CPU
//   model (4x slower there).
// FP8 e4m3 -> fp32: AVX3_DL looks up the exact bf16 bytes of 64 weights in two 128-entry byte
// tables (vpermi2b) and interleaves them into fp32 lanes (lanes permuted within 128-bit blocks;
// the packed activations follow); AVX3/AVX2/NEON go through fp16 bits (value / 256, undone by
// the scale) and vcvtph2ps; the rest uses a 256-entry table. NaN (S.1111.111) stays NaN.
// Only the summation order (and, in decode, where the fp8 block scale is rounded in) differs
// from MatMulReference.
// A third family, the opt-in bf16-activation mode (MatMulOptions), is described in its section
// below. Measured on Sapphire/Emerald Rapids: vdpbf16ps delivers about half the
// multiply-adds per cycle of fp32 FMA there, so the mode is slower than the fp32 kernels on that
// CPU kind (for CPUs with fast BF16 dot products only).
#include "common/kernels/matmul.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "common/kernels/matmul_internal.h"
#include "common/kernels/quant_matmul.h"
#include "common/kernels/quant_tile.h"
#include "common/kernels/thread_pool.h"
#include "common/kernels/thread_scratch.h"
#include "common/kernels/tile_matmul.h"
#include "common/kernels/vector_state.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "common/kernels/matmul.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/aligned_allocator.h"
#include "hwy/cache_control.h"
#include "hwy/highway.h"

#ifndef AFD_COMMON_KERNELS_MATMUL_SHARED_
#define AFD_COMMON_KERNELS_MATMUL_SHARED_
namespace afd::kernels::internal {

// Per-thread scratch buffer `slot` of at least `count` floats, 64-byte aligned. Grows on first
// use only (no allocation in steady state).
float* MatMulScratch(int slot, size_t count);
// The same for uint32_t buffers (their own slots).
uint32_t* MatMulScratchU32(int slot, size_t count);
// Whether the CPU has the AVX512-BF16 dot products (vdpbf16ps).
bool CpuHasAvx512Bf16();
// Fp8E4M3ToFloat of every byte, [256].
const float* Fp8Values();

}  // namespace afd::kernels::internal
#endif  // AFD_COMMON_KERNELS_MATMUL_SHARED_

HWY_BEFORE_NAMESPACE();
namespace afd::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// ---------------------------------------------------------------------------------------------
// Weight decoders. Each widens one chunk of kVecs * Lanes consecutive weights of a row, starting
// at byte pointer p, into kVecs float vectors:
// - Load(): the order the decode kernel uses. Lane l of vector v holds chunk element
//   Element(v, l); the decode kernel packs the activations in the same order. Identity unless
//   kPermuted.
// - LoadNatural(): natural order (vector v lane l = element v * Lanes + l), for the prefill.
// - Scalar(row, c): one element, for tails.
// For block-scaled types the vectors hold value / kScaleMul (the caller multiplies by
// scale * kScaleMul, a power of two, so exactly) and Scalar() returns the value itself.
// kConstRegs: vector registers the decoder keeps live across a loop; kTempRegs: those its Load
// needs for intermediates while the accumulators are live (see RowsPerTile).

// Unscaled types, two vectors per chunk in natural order: only the element type differs.
// DecHalf<T, ToFloat>: 16-bit floats widened by PromoteTo (bf16: shift; f16: vcvtph2ps).
template <class T, size_t kElementBytes>
struct DecNatural {
  static constexpr int kVecs = 2;
  static constexpr bool kScaled = false;
  static constexpr bool kPermuted = false;
  static constexpr float kScaleMul = 1.0f;
  static constexpr size_t kBytes = kElementBytes;
  static constexpr int kConstRegs = 0;
  // Measured rather than counted (bf16, Zen 5, one core): with none, 12 tokens took 2-row
  // tiles (24 accumulators) that ran 1.3x slower than one row.
  static constexpr int kTempRegs = 3;
  explicit DecNatural(DF) {}
  HWY_INLINE void LoadNatural(DF d, const uint8_t* p, VF* w) const {
    const T* e = reinterpret_cast<const T*>(p);
    for (int v = 0; v < kVecs; ++v) {
      if constexpr (std::is_same_v<T, float>) {
        w[v] = hn::LoadU(d, e + v * hn::Lanes(d));
      } else {
        w[v] = hn::PromoteTo(d, hn::LoadU(hn::Rebind<T, DF>(), e + v * hn::Lanes(d)));
      }
    }
  }
  HWY_INLINE void Load(DF d, const uint8_t* p, VF* w) const { LoadNatural(d, p, w); }
  static int64_t Element(int v, int64_t lane, int64_t lanes) { return v * lanes + lane; }
  static float Scalar(const uint8_t* row, int64_t c) {
    if constexpr (std::is_same_v<T, float>) {
      float f;
      memcpy(&f, row + 4 * c, 4);
      return f;
    } else {
      uint16_t v;
      memcpy(&v, row + 2 * c, 2);
      return std::is_same_v<T, hwy::bfloat16_t> ? Bf16ToFloat(v) : F16ToFloat(v);
    }
  }
};
using DecF32 = DecNatural<float, 4>;
using DecBf16 = DecNatural<hwy::bfloat16_t, 2>;
using DecF16 = DecNatural<hwy::float16_t, 2>;

#if HWY_TARGET == HWY_AVX3_DL
// e4m3fn -> exact bf16 bits (NaN included) through two 128-entry byte tables, lo[|v|] and
// hi[|v|] (vpermi2b), with the sign bit copied into hi. Load(): the two byte planes are
// interleaved into bf16 words (vpunpck[lh]bw) and each 32-bit lane yields two fp32 values
// (even word << 16, odd word & 0xFFFF0000): 64 weights in 9 instructions, lanes permuted
// within 128-bit blocks (Element). LoadNatural(): one masked two-table byte permute per output
// vector instead.
struct DecFp8 {
  static constexpr int kVecs = 4;
  static constexpr bool kScaled = true;
  static constexpr bool kPermuted = true;
  static constexpr float kScaleMul = 1.0f;
  static constexpr size_t kBytes = 1;
  static constexpr int kConstRegs = 6;
  // The loaded bytes, the two planes and the two interleaved halves (with the mask constant).
  static constexpr int kTempRegs = 6;

  explicit DecFp8(DF) {
    alignas(64) uint8_t lo[128], hi[128], idx[4][64];
    for (int i = 0; i < 128; ++i) {
      const uint16_t b = FloatToBf16(Fp8E4M3ToFloat(static_cast<uint8_t>(i)));
      lo[i] = static_cast<uint8_t>(b & 0xFF);
      hi[i] = static_cast<uint8_t>(b >> 8);
    }
    for (int j = 0; j < 4; ++j) {
      for (int i = 0; i < 16; ++i) {
        idx[j][4 * i + 0] = 0;
        idx[j][4 * i + 1] = 0;
        idx[j][4 * i + 2] = static_cast<uint8_t>(16 * j + i);       // from the low plane
        idx[j][4 * i + 3] = static_cast<uint8_t>(64 + 16 * j + i);  // from the high plane
      }
    }
    lo0_ = _mm512_load_si512(lo);
    lo1_ = _mm512_load_si512(lo + 64);
    hi0_ = _mm512_load_si512(hi);
    hi1_ = _mm512_load_si512(hi + 64);
    for (int j = 0; j < 4; ++j) idx_[j] = _mm512_load_si512(idx[j]);
  }

  // Low and high bytes of the bf16 of each of the 64 weights at p.
  HWY_INLINE void Planes(const uint8_t* p, __m512i* lo, __m512i* hi) const {
    const __m512i v = _mm512_loadu_si512(p);
    *lo = _mm512_permutex2var_epi8(lo0_, v, lo1_);
    const __m512i h = _mm512_permutex2var_epi8(hi0_, v, hi1_);
    *hi = _mm512_ternarylogic_epi32(h, v, _mm512_set1_epi8(static_cast<char>(0x80)),
                                    0xF8);  // h | (v & 0x80)
  }
  HWY_INLINE void Load(DF, const uint8_t* p, VF* w) const {
    __m512i lo, hi;
    Planes(p, &lo, &hi);
    const __m512i b0 = _mm512_unpacklo_epi8(lo, hi);
    const __m512i b1 = _mm512_unpackhi_epi8(lo, hi);
    const __m512i top = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
    w[0] = VF{_mm512_castsi512_ps(_mm512_slli_epi32(b0, 16))};
    w[1] = VF{_mm512_castsi512_ps(_mm512_and_si512(b0, top))};
    w[2] = VF{_mm512_castsi512_ps(_mm512_slli_epi32(b1, 16))};
    w[3] = VF{_mm512_castsi512_ps(_mm512_and_si512(b1, top))};
  }
  // Lane 4q + i of vector v (q: 128-bit block, i < 4) holds element 16q + 2i + {0, 1, 8, 9}[v].
  static int64_t Element(int v, int64_t lane, int64_t) {
    static constexpr int kOffset[4] = {0, 1, 8, 9};
    return 16 * (lane / 4) + 2 * (lane % 4) + kOffset[v];
  }
  HWY_INLINE void LoadNatural(DF, const uint8_t* p, VF* w) const {
    __m512i lo, hi;
    Planes(p, &lo, &hi);
    constexpr __mmask64 kTopBytes = 0xCCCCCCCCCCCCCCCCull;
    for (int j = 0; j < 4; ++j) {
      w[j] = VF{_mm512_castsi512_ps(_mm512_maskz_permutex2var_epi8(kTopBytes, lo, idx_[j], hi))};
    }
  }
  static float Scalar(const uint8_t* row, int64_t c) { return Fp8E4M3ToFloat(row[c]); }

  __m512i lo0_, lo1_, hi0_, hi1_, idx_[4];
};
#elif (HWY_ARCH_X86 && HWY_TARGET > HWY_AVX2) || HWY_TARGET == HWY_EMU128 || \
    HWY_TARGET == HWY_SCALAR
// No native fp16 conversion on these targets (Highway's emulation would turn NaN into a finite
// value): one vector at a time through a 256-entry table.
struct DecFp8 {
  static constexpr int kVecs = 1;
  static constexpr bool kScaled = true;
  static constexpr bool kPermuted = false;
  static constexpr float kScaleMul = 1.0f;
  static constexpr size_t kBytes = 1;
  static constexpr int kConstRegs = 0;
  static constexpr int kTempRegs = 0;
  explicit DecFp8(DF) : table_(internal::Fp8Values()) {}
  HWY_INLINE void LoadNatural(DF d, const uint8_t* p, VF* w) const {
    float tmp[HWY_LANES(float)];
    for (size_t i = 0; i < hn::Lanes(d); ++i) tmp[i] = table_[p[i]];
    w[0] = hn::LoadU(d, tmp);
  }
  HWY_INLINE void Load(DF d, const uint8_t* p, VF* w) const { LoadNatural(d, p, w); }
  static int64_t Element(int v, int64_t lane, int64_t lanes) { return v * lanes + lane; }
  static float Scalar(const uint8_t* row, int64_t c) { return Fp8E4M3ToFloat(row[c]); }
  const float* table_;
};
#else
// e4m3fn -> fp16 bits (sign | (v & 0x7F) << 7, i.e. value / 256, subnormals included) ->
// PromoteTo (vcvtph2ps on x86). NaN (S.1111.111) maps to an fp16 NaN.
struct DecFp8 {
  static constexpr int kVecs = 2;
  static constexpr bool kScaled = true;
  static constexpr bool kPermuted = false;
  static constexpr float kScaleMul = 256.0f;
  static constexpr size_t kBytes = 1;
  static constexpr int kConstRegs = 3;
  static constexpr int kTempRegs = 0;
  explicit DecFp8(DF) {}
  HWY_INLINE void LoadNatural(DF d, const uint8_t* p, VF* w) const {
    const hn::Repartition<int16_t, DF> d16;  // 2 * Lanes(d) lanes
    const hn::Rebind<int8_t, decltype(d16)> d8;
    const hn::Repartition<hwy::float16_t, DF> dh;
    const hn::Half<decltype(dh)> dhh;
    const auto b = hn::PromoteTo(d16, hn::LoadU(d8, reinterpret_cast<const int8_t*>(p)));
    auto h = hn::And(hn::ShiftLeft<7>(b), hn::Set(d16, static_cast<int16_t>(0xBFFF)));
    const auto k7f = hn::Set(d16, static_cast<int16_t>(0x7F));
    h = hn::IfThenElse(hn::Eq(hn::And(b, k7f), k7f), hn::Set(d16, static_cast<int16_t>(0x7E00)),
                       h);
    const auto hf = hn::BitCast(dh, h);
    w[0] = hn::PromoteTo(d, hn::LowerHalf(dhh, hf));
    w[1] = hn::PromoteTo(d, hn::UpperHalf(dhh, hf));
  }
  HWY_INLINE void Load(DF d, const uint8_t* p, VF* w) const { LoadNatural(d, p, w); }
  static int64_t Element(int v, int64_t lane, int64_t lanes) { return v * lanes + lane; }
  static float Scalar(const uint8_t* row, int64_t c) { return Fp8E4M3ToFloat(row[c]); }
};
#endif

// ---------------------------------------------------------------------------------------------
// Decode kernel.

// Vector registers of the target.
#if HWY_ARCH_X86 && HWY_TARGET > HWY_AVX3
constexpr int kVectorRegs = 16;
#else
constexpr int kVectorRegs = 32;
#endif

// Rows per tile for N tokens: the tallest tile whose accumulators (R * N), activations (reused
// by every row, kVecs * N), widened weights (two rows in flight), decoder constants and Load's
// temporaries fit in the registers; else 2 rows with the activations straight from L1 when
// their accumulators fit (one accumulator per row and token: a single row would leave too few
// independent FMA chains), else 1.
template <class Dec>
constexpr int RowsPerTile(int n) {
  constexpr int kFixed = 2 * Dec::kVecs + Dec::kConstRegs + Dec::kTempRegs;
  for (int r : {8, 6, 4, 3, 2}) {
    if (r * n + Dec::kVecs * n + kFixed <= kVectorRegs - 2) return r;
  }
  // FP8 on AVX-512 VBMI: without its Load's temporaries counted, 6-8 tokens took 2-row tiles
  // that spilled (Zen 5, one core, weights from DRAM: 7 and 8 tokens 1.5x slower than 1 row).
  return 2 * n + kFixed <= kVectorRegs - 2 ? 2 : 1;
}

// Activations of a decode product, packed so that one pointer reaches every token, in the
// decoder's lane order: for c < main_cols (a multiple of the chunk),
// out[(c / L + v) * N * L + t * L + l] = x[t, c + Element(v, l)] for the chunk at c; then the
// tail out[main_cols * N + t * tail_cols + j] = x[t, main_cols + j].
template <class Dec>
void PackX(const float* HWY_RESTRICT x, int64_t n, int64_t cols, int64_t main_cols,
           float* HWY_RESTRICT out) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int64_t chunk = Dec::kVecs * lanes;
  const int64_t tail_cols = cols - main_cols;
  const hn::RebindToSigned<DF> di;
  hn::Vec<decltype(di)> index[Dec::kVecs];
  if (Dec::kPermuted) {
    int32_t tmp[HWY_LANES(float)];
    for (int v = 0; v < Dec::kVecs; ++v) {
      for (int64_t l = 0; l < lanes; ++l) tmp[l] = static_cast<int32_t>(Dec::Element(v, l, lanes));
      index[v] = hn::LoadU(di, tmp);
    }
  }
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * cols;
    for (int64_t c = 0; c < main_cols; c += chunk) {
      for (int v = 0; v < Dec::kVecs; ++v) {
        const auto xv = Dec::kPermuted ? hn::GatherIndex(d, xr + c, index[v])
                                       : hn::LoadU(d, xr + c + v * lanes);
        hn::Store(xv, d, out + (c / lanes + v) * n * lanes + t * lanes);
      }
    }
    float* tail = out + main_cols * n + t * tail_cols;
    for (int64_t j = 0; j < tail_cols; ++j) tail[j] = xr[main_cols + j];
  }
}

// out = packed activations `in` (see PackX) with column col multiplied by
// scales[col / block_cols] * mul.
template <class Dec>
void ScalePacked(const float* HWY_RESTRICT in, int64_t n, int64_t cols, int64_t main_cols,
                 const float* scales, int64_t block_cols, float mul, float* HWY_RESTRICT out) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int64_t chunk = Dec::kVecs * lanes;
  const int64_t tail_cols = cols - main_cols;
  for (int64_t c = 0; c < main_cols; c += chunk) {
    const float* src = in + c * n;
    float* dst = out + c * n;
    if (block_cols % chunk == 0) {  // one scale for the whole chunk
      const VF s = hn::Set(d, scales[c / block_cols] * mul);
      for (int64_t i = 0; i < chunk * n; i += lanes) {
        hn::Store(hn::Mul(hn::LoadU(d, src + i), s), d, dst + i);
      }
    } else {
      for (int v = 0; v < Dec::kVecs; ++v) {
        for (int64_t t = 0; t < n; ++t) {
          const int64_t o = (v * n + t) * lanes;
          for (int64_t l = 0; l < lanes; ++l) {
            const int64_t col = c + Dec::Element(v, l, lanes);
            dst[o + l] = src[o + l] * (scales[col / block_cols] * mul);
          }
        }
      }
    }
  }
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t j = 0; j < tail_cols; ++j) {
      const int64_t col = main_cols + j, i = main_cols * n + t * tail_cols + j;
      out[i] = in[i] * (scales[col / block_cols] * mul);
    }
  }
}

// Sum of v's lanes by halving: lanes [0, h) plus lanes [h, 2h), for h = Lanes / 2, ..., 1.
// The one horizontal sum of both kernels (the prefill replays this tree in PrefillCombine).
template <class D>
HWY_INLINE float ReduceHalving(D d, hn::Vec<D> v) {
#if HWY_TARGET == HWY_SCALAR
  (void)d;
  return hn::GetLane(v);
#else
  if constexpr (hn::MaxLanes(D()) == 1) {
    (void)d;
    return hn::GetLane(v);
  } else {
    const hn::Half<D> dh;
    return ReduceHalving(dh, hn::Add(hn::LowerHalf(dh, v), hn::UpperHalf(dh, v)));
  }
#endif
}

// One tile: R weight rows x N tokens over `cols` columns (the main part: a multiple of the
// chunk; in the last column block `tail_cols` more follow). Rows start at `rows` with stride
// `row_stride` bytes in Dec's format; `xp` is the packed activation block for these columns
// and `tail` the packed tail. Widened weights are divided by Dec::kScaleMul for block-scaled
// types: there the activations carry the scale.
// Every output gets the same arithmetic whatever R, N and the column blocking (the canonical
// order that makes results independent of how rows and tokens are split): one accumulator
// vector per (row, token), one FMA per decoder vector in chunk order; then ReduceHalving, then
// + the tail summed in column order.
// Accumulators start from zero, or from `acc_in` ([R * N] vectors) when given; they end in
// `acc_out` when given, else y[t * y_stride + r * y_row_step] = their sum (plus the tail).
// `prefetch` (may be null): a later tile's first row (same row stride, R rows), whose columns
// are prefetched alongside this tile's.
template <class Dec, int R, int N>
HWY_NOINLINE void DotTile(const Dec& dec, const float* HWY_RESTRICT xp, int64_t cols,
                          const float* HWY_RESTRICT tail, int64_t tail_cols,
                          const uint8_t* rows, int64_t row_stride, const float* acc_in,
                          float* acc_out, float* HWY_RESTRICT y, int64_t y_stride,
                          int64_t y_row_step, const uint8_t* prefetch) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int64_t chunk = Dec::kVecs * lanes;
  const uint8_t* row_ptr[R];
  for (int r = 0; r < R; ++r) row_ptr[r] = rows + r * row_stride;
  const int64_t next = prefetch - rows;  // same offset for every row
  const int64_t chunk_bytes = chunk * static_cast<int64_t>(Dec::kBytes);

  VF acc[R][N];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < N; ++t) {
      acc[r][t] = acc_in ? hn::Load(d, acc_in + (r * N + t) * lanes) : hn::Zero(d);
    }
  }
  for (int64_t c = 0; c < cols; c += chunk) {
    const float* xc = xp + c * N;
    // A chunk's activations for all R rows: in registers when few (bf16 decode hot on one Zen 5
    // core 1.08-1.12x), else one load per use (more registers spill: n = 16 ran 0.6x).
    constexpr bool kHoistX = R > 1 && Dec::kVecs * N <= 8;
    VF xv[kHoistX ? Dec::kVecs : 1][kHoistX ? N : 1];
    if constexpr (kHoistX) {
      for (int v = 0; v < Dec::kVecs; ++v) {
        for (int t = 0; t < N; ++t) xv[v][t] = hn::LoadU(d, xc + (v * N + t) * lanes);
      }
    }
    for (int r = 0; r < R; ++r) {
      const uint8_t* wp = row_ptr[r] + c * static_cast<int64_t>(Dec::kBytes);
      if (prefetch != nullptr) {
        for (int64_t line = 0; line < chunk_bytes; line += 64) hwy::Prefetch(wp + next + line);
      }
      VF wv[Dec::kVecs];
      dec.Load(d, wp, wv);
      for (int v = 0; v < Dec::kVecs; ++v) {
        for (int t = 0; t < N; ++t) {
          if constexpr (kHoistX) {
            acc[r][t] = hn::MulAdd(wv[v], xv[v][t], acc[r][t]);
          } else {
            acc[r][t] = hn::MulAdd(wv[v], hn::LoadU(d, xc + (v * N + t) * lanes), acc[r][t]);
          }
        }
      }
    }
  }
  if (acc_out != nullptr) {
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < N; ++t) hn::Store(acc[r][t], d, acc_out + (r * N + t) * lanes);
    }
    return;
  }
  float tail_sum[R][N] = {};
  for (int64_t j = 0; j < tail_cols; ++j) {
    for (int r = 0; r < R; ++r) {
      const float wr = Dec::Scalar(row_ptr[r], cols + j) * (1.0f / Dec::kScaleMul);
      for (int t = 0; t < N; ++t) tail_sum[r][t] += wr * tail[t * tail_cols + j];
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < N; ++t) {
      y[t * y_stride + r * y_row_step] = ReduceHalving(d, acc[r][t]) + tail_sum[r][t];
    }
  }
}

// Column block for N tokens: the activation block [N, kc] must stay in L1 while it meets many
// weight rows (re-reading x from L2 for every tile costs more than the weights for N = 8).
constexpr int64_t kDecodeXBytes = 16 << 10;
// Rows per column-blocked pass (a multiple of every tile height); their partial sums wait in
// a per-thread scratch between column blocks.
constexpr int64_t kDecodeRowBlock = 48;
// How far ahead of the tile being computed its weights are prefetched: enough bytes in flight
// to cover the memory latency at full bandwidth.
constexpr int64_t kPrefetchAheadBytes = 8 << 10;

// Tile order of DotRows: row blocks of `row_block` rows; in each, column blocks of `kc`; in
// each, tiles of R rows.
struct TileCursor {
  int64_t row_end, row_block, main_cols, kc, rows_per_tile;
  int64_t rb, c0, r;
  bool valid;
  void Advance() {
    r += rows_per_tile;
    if (r < std::min(row_end, rb + row_block)) return;
    c0 += kc;
    r = rb;
    if (c0 < main_cols) return;
    c0 = 0;
    rb += row_block;
    r = rb;
    valid = rb < row_end;
  }
};

// Output rows [row_begin, row_end) from packed activations `xp` (see PackX): up to 4 tokens
// first in stream tiles (internal::kDecodeStreams), then in tiles of R rows, then pairs and
// single rows.
// `prefetch_end`: the stream tiles' prefetch may run past row_end into the next rows up to
// there (laid out as the same streams: the next block of a block-scaled matrix).
template <class Dec, int N>
void DotRows(const Dec& dec, const float* xp, const WeightView& w, int64_t row_begin,
             int64_t row_end, float* y, int64_t prefetch_end) {
  constexpr int R = RowsPerTile<Dec>(N);
  static_assert(kDecodeRowBlock % R == 0, "row block must hold whole tiles");
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(DF()));
  const int64_t chunk = Dec::kVecs * lanes;
  const int64_t cols = w.cols;
  const int64_t main_cols = cols / chunk * chunk;
  const float* tail = xp + main_cols * N;
  const int64_t tail_cols = cols - main_cols;
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  const int64_t elem = static_cast<int64_t>(Dec::kBytes);
  const int64_t row_bytes = cols * elem;
  // Column blocks of kc when the activations of all columns would not stay in L1.
  int64_t kc = std::max<int64_t>(chunk, kDecodeXBytes / (N * 4) / chunk * chunk);
  const bool blocked = kc * 2 <= main_cols;  // else not worth blocking
  if (!blocked) kc = main_cols;
  if constexpr (N <= 4) {
    const int64_t span = (row_end - row_begin) / internal::kDecodeStreams;
    if (span >= internal::kDecodeStreamMinRows && !blocked) {
      const int64_t ahead = internal::StreamAheadRows(row_bytes);
      const int64_t next = row_begin + internal::kDecodeStreams * span;  // next call's first row
      const bool into_next = next + internal::kDecodeStreams * span <= prefetch_end;
      for (int64_t i = 0; i < span; ++i) {
        const uint8_t* first = base + (row_begin + i) * row_bytes;
        const uint8_t* pf = i + ahead < span ? first + ahead * row_bytes
                            : into_next      ? base + (next + i + ahead - span) * row_bytes
                                             : nullptr;
        DotTile<Dec, internal::kDecodeStreams, N>(dec, xp, main_cols, tail, tail_cols, first,
                                                  span * row_bytes, nullptr, nullptr,
                                                  y + row_begin + i, w.rows, span, pf);
      }
      row_begin += internal::kDecodeStreams * span;
    }
  }
  const int64_t full_end = row_begin + (row_end - row_begin) / R * R;

  if (full_end > row_begin) {
    float* acc = blocked ? internal::MatMulScratch(4, kDecodeRowBlock * N * lanes) : nullptr;
    TileCursor cur{full_end, blocked ? kDecodeRowBlock : full_end - row_begin, main_cols, kc, R,
                   row_begin, 0, row_begin, true};
    TileCursor ahead = cur;
    const int64_t tile_bytes = std::max<int64_t>(1, R * kc * elem);
    for (int64_t i = (kPrefetchAheadBytes + tile_bytes - 1) / tile_bytes; i > 0; --i) {
      if (ahead.valid) ahead.Advance();
    }
    for (; cur.valid; cur.Advance(), ahead.valid ? ahead.Advance() : void()) {
      const int64_t len = std::min(kc, main_cols - cur.c0);
      const bool first = cur.c0 == 0, last = cur.c0 + len == main_cols;
      float* a = blocked ? acc + (cur.r - cur.rb) * N * lanes : nullptr;
      DotTile<Dec, R, N>(dec, xp + cur.c0 * N, len, tail, last ? tail_cols : 0,
                         base + cur.r * row_bytes + cur.c0 * elem, row_bytes,
                         first ? nullptr : a, last ? nullptr : a, y + cur.r, w.rows, 1,
                         ahead.valid ? base + ahead.r * row_bytes + ahead.c0 * elem : nullptr);
    }
  }
  // Rows left over (fewer than R): pairs, then a single row. Same arithmetic per output.
  int64_t r = full_end;
  if constexpr (R > 2) {
    for (; r + 2 <= row_end; r += 2) {
      DotTile<Dec, 2, N>(dec, xp, main_cols, tail, tail_cols, base + r * row_bytes, row_bytes,
                         nullptr, nullptr, y + r, w.rows, 1, nullptr);
    }
  }
  for (; r < row_end; ++r) {
    DotTile<Dec, 1, N>(dec, xp, main_cols, tail, tail_cols, base + r * row_bytes, row_bytes,
                       nullptr, nullptr, y + r, w.rows, 1, nullptr);
  }
}

// N tokens: packs the activations once; block-scaled weights: per block of output rows, a
// copy with that block's scales folded in, so the inner loop has no multiply.
template <class Dec, int N>
void DecodeRowsN(const Dec& dec, const float* x, const WeightView& w, int64_t row_begin,
                 int64_t row_end, float* y) {
  const int64_t chunk = Dec::kVecs * static_cast<int64_t>(hn::Lanes(DF()));
  const int64_t main_cols = w.cols / chunk * chunk;
  const float* xp = x;  // one token, natural order: x already has the packed layout
  if (N > 1 || Dec::kPermuted) {
    float* packed = internal::MatMulScratch(3, N * w.cols);
    PackX<Dec>(x, N, w.cols, main_cols, packed);
    xp = packed;
  }
  if (!Dec::kScaled) {
    DotRows<Dec, N>(dec, xp, w, row_begin, row_end, y, row_end);
    return;
  }
  float* xs = internal::MatMulScratch(5, N * w.cols);
  const int64_t ncb = (w.cols + w.block_cols - 1) / w.block_cols;
  for (int64_t rb = row_begin / w.block_rows; rb * w.block_rows < row_end; ++rb) {
    const int64_t lo = std::max(row_begin, rb * w.block_rows);
    const int64_t hi = std::min(row_end, (rb + 1) * w.block_rows);
    ScalePacked<Dec>(xp, N, w.cols, main_cols, w.scales + rb * ncb, w.block_cols, Dec::kScaleMul,
                     xs);
    DotRows<Dec, N>(dec, xs, w, lo, hi, y, row_end);
  }
}

// Tokens per decode pass for `left` tokens still to do: up to 16 (one-row tiles: each widened
// weight chunk then serves 12 or 16 tokens, which matters for FP8, whose decoding costs as much
// as 4 FMAs), else up to 8.
constexpr int64_t DecodePassTokens(int64_t left) {
  return left >= 16 ? 16 : left >= 12 ? 12 : std::min<int64_t>(8, left);
}

// fn(std::integral_constant<int, N>()) for the first N of the list equal to n, else the last.
template <int N, int... kRest, class Fn>
HWY_INLINE void WithTokenCount(int64_t n, const Fn& fn) {
  if constexpr (sizeof...(kRest) == 0) {
    fn(std::integral_constant<int, N>());
  } else if (n == N) {
    fn(std::integral_constant<int, N>());
  } else {
    WithTokenCount<kRest...>(n, fn);
  }
}

template <class Dec>
void DecodeRows(const float* x, int64_t n, const WeightView& w, int64_t row_begin,
                int64_t row_end, float* y) {
  const Dec dec{DF()};
  for (int64_t t = 0, pass = 0; t < n; t += pass) {
    pass = DecodePassTokens(n - t);
    WithTokenCount<1, 2, 3, 4, 5, 6, 7, 12, 16, 8>(pass, [&](auto tokens) {
      DecodeRowsN<Dec, decltype(tokens)::value>(dec, x + t * w.cols, w, row_begin, row_end,
                                                y + t * w.rows);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Prefill kernel.
//
// It computes every output with the decode kernel's exact arithmetic (see DotTile), so that
// a token's outputs have the same bits whatever n is and wherever the token sits in the batch.
// In the decode, lane l of the (row, token) accumulator meets, at step i, the column at chunk
// i / kVecs, element Element(i % kVecs, l), and adds its product by FMA; the lanes are then
// summed by ReduceHalving and the tail added. The prefill runs the same FMA chains as a
// register-blocked outer product with the tokens in the vector lanes: for each decode lane l
// (a "segment"), MR x TV accumulators (rows x token vectors) walk the steps, broadcasting one
// weight and multiplying it into TV token vectors; then the segments are added by the same
// halving tree (PrefillCombine). The activations are transposed into xt with each segment's
// columns contiguous; the weights are widened in the decoder's order (wd, read with stride
// Lanes). Steps go in column blocks of at most kPrefillBlockBytes of wd, so that the wd a block
// reads stays in L1; the segment accumulators wait in a scratch between blocks. Token chunks
// are grouped so that each weight row is widened once per group. Block-scaled types: the scale
// goes into a scaled copy of xt per block of output rows, as the decode scales its packed
// activations (tiles never straddle a row block).

// Most bytes of widened weights per column block of the prefill (MR rows x steps x Lanes
// fp32 values, each line read Lanes times: they must stay in L1).
constexpr int64_t kPrefillBlockBytes = 24 << 10;

// Steps per column block for MR rows.
constexpr int64_t PrefillBlockSteps(int64_t mr, int64_t lanes) {
  return std::max<int64_t>(1, kPrefillBlockBytes / (mr * lanes * 4));
}

// Rows of xt (each tc tokens wide): the steps in column blocks of at most max_block_steps;
// in a block, lane after lane (a segment), segments `stride` rows apart, where stride is
// padded so that the lanes of one step are not a multiple of 4 KiB apart (the transposition
// writes all of them at once); then the tail columns in natural order.
struct XtLayout {
  XtLayout(int64_t steps, int64_t lanes, int64_t tc, int64_t max_block_steps)
      : steps(steps), lanes(lanes),
        blocks((steps + max_block_steps - 1) / max_block_steps),
        block_steps(blocks == 0 ? 0 : (steps + blocks - 1) / blocks) {
    const int64_t period = std::max<int64_t>(1, 4096 / (tc * 4));  // rows per 4 KiB
    stride = block_steps / period * period + 1;
    if (stride < block_steps) stride += period;
  }
  // Steps [First(b), First(b) + Steps(b)) form block b (blocks of nearly equal size).
  int64_t First(int64_t b) const { return b * block_steps; }
  int64_t Steps(int64_t b) const { return std::min(block_steps, steps - First(b)); }
  // First row of lane l's segment in block b.
  int64_t Segment(int64_t b, int64_t l) const { return (b * lanes + l) * stride; }
  int64_t TailRow(int64_t j) const { return blocks * lanes * stride + j; }

  int64_t steps, lanes, blocks, block_steps, stride;
};

#if HWY_TARGET != HWY_SCALAR
// m[j] lane i <- m[i] lane j for i, j < Lanes: log2(Lanes) rounds of unzipping the sequence
// m[0], m[1], ... (each round rotates the element index right by one bit).
HWY_INLINE void TransposeSquare(VF* m) {
  const DF d;
  constexpr size_t kLanes = hn::MaxLanes(DF());
  for (size_t round = 1; round < kLanes; round *= 2) {
    VF u[kLanes];
    for (size_t j = 0; j < kLanes / 2; ++j) {
      u[j] = hn::ConcatEven(d, m[2 * j + 1], m[2 * j]);
      u[kLanes / 2 + j] = hn::ConcatOdd(d, m[2 * j + 1], m[2 * j]);
    }
    for (size_t j = 0; j < kLanes; ++j) m[j] = u[j];
  }
}
#endif

// Where the columns of one chunk go in xt: chunk element e is met at step offset step_of[e]
// (< kVecs) by lane lane_of[e].
template <class Dec>
struct ChunkMap {
  static constexpr size_t kMaxChunk = Dec::kVecs * hn::MaxLanes(DF());
  explicit ChunkMap(int64_t lanes) {
    for (int v = 0; v < Dec::kVecs; ++v) {
      for (int64_t l = 0; l < lanes; ++l) {
        step_of[Dec::Element(v, l, lanes)] = v;
        lane_of[Dec::Element(v, l, lanes)] = l;
      }
    }
  }
  // offset[e] = where (in floats) the xt row of element e of the chunk at step i starts.
  void Offsets(const XtLayout& layout, int64_t i, int64_t tc, int64_t* offset) const {
    int64_t base[Dec::kVecs];
    for (int v = 0; v < Dec::kVecs; ++v) {
      const int64_t b = (i + v) / layout.block_steps;
      base[v] = (layout.Segment(b, 0) + (i + v - layout.First(b))) * tc;
    }
    const int64_t chunk = Dec::kVecs * layout.lanes;
    for (int64_t e = 0; e < chunk; ++e) {
      offset[e] = base[step_of[e]] + lane_of[e] * layout.stride * tc;
    }
  }
  int64_t step_of[kMaxChunk] = {};
  int64_t lane_of[kMaxChunk] = {};
};

// xt: row Segment(b, l) + s = the column lane l meets at step First(b) + s, for tokens [0, tn)
// of x (zero for tokens [tn, tc)); row TailRow(j) = column main_cols + j. Lanes tokens at a time: each
// Lanes x Lanes block of x is transposed in registers and its columns stored as rows of xt.
template <class Dec>
void PrefillTranspose(const float* HWY_RESTRICT x, int64_t tn, int64_t tc, int64_t k_dim,
                      int64_t main_cols, const XtLayout& layout, float* HWY_RESTRICT xt) {
  const int64_t lanes = layout.lanes;
  const int64_t chunk = Dec::kVecs * lanes;
  const ChunkMap<Dec> map(lanes);
  int64_t offset[ChunkMap<Dec>::kMaxChunk];
  for (int64_t i = 0; i < layout.steps; i += Dec::kVecs) {
    const int64_t c = i * lanes;  // i / kVecs chunks of kVecs * lanes columns
    map.Offsets(layout, i, tc, offset);
    int64_t t = 0;
#if HWY_TARGET != HWY_SCALAR
    const DF d;
    for (; t + lanes <= tn; t += lanes) {
      for (int64_t q = 0; q < chunk; q += lanes) {
        VF m[hn::MaxLanes(DF())];
        for (int64_t j = 0; j < lanes; ++j) m[j] = hn::LoadU(d, x + (t + j) * k_dim + c + q);
        TransposeSquare(m);
        for (int64_t j = 0; j < lanes; ++j) hn::Store(m[j], d, xt + offset[q + j] + t);
      }
    }
#endif
    for (; t < tn; ++t) {
      for (int64_t e = 0; e < chunk; ++e) xt[offset[e] + t] = x[t * k_dim + c + e];
    }
    for (int64_t e = 0; e < chunk; ++e) std::fill(xt + offset[e] + tn, xt + offset[e] + tc, 0.0f);
  }
  for (int64_t c = main_cols; c < k_dim; ++c) {
    float* dst = xt + layout.TailRow(c - main_cols) * tc;
    for (int64_t t = 0; t < tn; ++t) dst[t] = x[t * k_dim + c];
    std::fill(dst + tn, dst + tc, 0.0f);
  }
}

// out = `chunks` transposed activations (xt_size floats each) with the row of column c
// multiplied by scale_row[c / block_cols] * kScaleMul, as ScalePacked scales the decode's.
template <class Dec>
void PrefillScale(const float* HWY_RESTRICT xt, int64_t chunks, int64_t xt_size, int64_t tc,
                  int64_t k_dim, int64_t main_cols, const XtLayout& layout,
                  const float* scale_row, int64_t block_cols, float* HWY_RESTRICT out) {
  const DF d;
  const int64_t lanes = layout.lanes;
  int64_t cb = 0, next_block = block_cols;  // column block of the column being scaled
  auto scale_row_at = [&](int64_t offset, int64_t col) {
    while (col >= next_block) {
      ++cb;
      next_block += block_cols;
    }
    const VF s = hn::Set(d, scale_row[cb] * Dec::kScaleMul);
    for (int64_t g = 0; g < chunks; ++g) {
      const float* src = xt + g * xt_size + offset;
      float* dst = out + g * xt_size + offset;
      for (int64_t t = 0; t < tc; t += lanes) {
        hn::Store(hn::Mul(hn::Load(d, src + t), s), d, dst + t);
      }
    }
  };
  const ChunkMap<Dec> map(lanes);
  int64_t offset[ChunkMap<Dec>::kMaxChunk];
  for (int64_t i = 0; i < layout.steps; i += Dec::kVecs) {
    map.Offsets(layout, i, tc, offset);
    for (int64_t e = 0; e < Dec::kVecs * lanes; ++e) scale_row_at(offset[e], i * lanes + e);
  }
  for (int64_t c = main_cols; c < k_dim; ++c) {
    scale_row_at(layout.TailRow(c - main_cols) * tc, c);
  }
}

// out[c] = weight (row at p) of chunk element c in the decoder's order (Load), for
// c < main_cols; then the tail columns in natural order. Block-scaled types: value /
// kScaleMul, no scale (the activations carry it), exactly the decode's widened weights.
template <class Dec>
void WidenRow(const Dec& dec, const uint8_t* p, int64_t cols, int64_t main_cols,
              float* HWY_RESTRICT out) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int64_t chunk = Dec::kVecs * lanes;
  for (int64_t c = 0; c < main_cols; c += chunk) {
    VF wv[Dec::kVecs];
    dec.Load(d, p + c * static_cast<int64_t>(Dec::kBytes), wv);
    for (int v = 0; v < Dec::kVecs; ++v) hn::StoreU(wv[v], d, out + c + v * lanes);
  }
  for (int64_t c = main_cols; c < cols; ++c) out[c] = Dec::Scalar(p, c) * (1.0f / Dec::kScaleMul);
}

// acc_io[r * tc + j * Lanes + .] (+)= sum over s < steps of w[r * w_row + s * w_step] *
// xt[s * tc + j * Lanes + .], r < MR, j < TV (tc = TV * Lanes), one FMA per step in step
// order; starts from zero when `first`.
template <int MR, int TV>
HWY_INLINE void PrefillTile(const float* HWY_RESTRICT xt, const float* HWY_RESTRICT w,
                            int64_t w_row, int64_t w_step, int64_t steps, bool first,
                            float* HWY_RESTRICT acc_io) {
  const DF d;
  const size_t lanes = hn::Lanes(d);
  const size_t tc = TV * lanes;
  VF acc[MR][TV];
  for (int r = 0; r < MR; ++r) {
    for (int j = 0; j < TV; ++j) {
      acc[r][j] = first ? hn::Zero(d) : hn::Load(d, acc_io + r * tc + j * lanes);
    }
  }
  for (int64_t s = 0; s < steps; ++s) {
    VF xv[TV];
    for (int j = 0; j < TV; ++j) xv[j] = hn::Load(d, xt + s * tc + j * lanes);
    for (int r = 0; r < MR; ++r) {
      const VF b = hn::Set(d, w[r * w_row + s * w_step]);
      for (int j = 0; j < TV; ++j) acc[r][j] = hn::MulAdd(b, xv[j], acc[r][j]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int j = 0; j < TV; ++j) hn::Store(acc[r][j], d, acc_io + r * tc + j * lanes);
  }
}

// The tail columns as the decode sums them: out[r * tc + .] = sum_j w[r * w_row + j] *
// xt[j * tc + .] with separate products and sums, from +0.
template <int MR, int TV>
HWY_INLINE void PrefillTail(const float* HWY_RESTRICT xt, const float* HWY_RESTRICT w,
                            int64_t w_row, int64_t tail_cols, float* HWY_RESTRICT out) {
  const DF d;
  const size_t lanes = hn::Lanes(d);
  const size_t tc = TV * lanes;
  VF acc[MR][TV];
  for (int r = 0; r < MR; ++r) {
    for (int j = 0; j < TV; ++j) acc[r][j] = hn::Zero(d);
  }
  for (int64_t c = 0; c < tail_cols; ++c) {
    for (int r = 0; r < MR; ++r) {
      const VF b = hn::Set(d, w[r * w_row + c]);
      for (int j = 0; j < TV; ++j) {
        acc[r][j] = hn::Add(acc[r][j], hn::Mul(b, hn::Load(d, xt + c * tc + j * lanes)));
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int j = 0; j < TV; ++j) hn::Store(acc[r][j], d, out + r * tc + j * lanes);
  }
}

// sum[r * tc + t] = ReduceHalving over lanes l of seg[(l * MR + r) * tc + t] plus sum[r * tc +
// t] (the tail), and y[t * y_stride + r] = that, for r < rn, t < tn: the decode's final sums,
// Lanes tokens at a time.
template <int MR, int TV>
HWY_INLINE void PrefillCombine(const float* HWY_RESTRICT seg, float* HWY_RESTRICT sum,
                               int64_t rn, int64_t tn, float* HWY_RESTRICT y, int64_t y_stride) {
  const DF d;
  const size_t lanes = hn::Lanes(d);
  const size_t tile = MR * TV * lanes;  // floats per segment
  for (size_t i = 0; i < tile; i += lanes) {
    VF v[hn::MaxLanes(DF())];
    for (size_t l = 0; l < lanes; ++l) v[l] = hn::Load(d, seg + l * tile + i);
    for (size_t h = lanes / 2; h >= 1; h /= 2) {
      for (size_t l = 0; l < h; ++l) v[l] = hn::Add(v[l], v[l + h]);
    }
    hn::Store(hn::Add(v[0], hn::Load(d, sum + i)), d, sum + i);
  }
  const size_t tc = TV * lanes;
  for (int64_t t = 0; t < tn; ++t) {
    float* yt = y + t * y_stride;
    for (int64_t r = 0; r < rn; ++r) yt[r] = sum[r * tc + t];
  }
}

// The transposed activations of one group of token chunks stay in L2 while every weight row
// meets them (each row is widened once per group).
constexpr int64_t kPrefillGroupBytes = 1 << 20;

// Tokens [0, tn) of `x` in chunks of tc = TV * Lanes (the last one zero-padded) against rows
// [row_begin, row_end), MR rows at a time (zero-padded), in the decode kernel's arithmetic
// (see above).
// xt_pre: these tokens already transposed (PackPrefillGroups), or null: transposed here.
template <class Dec, int MR, int TV>
HWY_NOINLINE void PrefillGroup(const Dec& dec, const float* x, int64_t tn, const WeightView& w,
                               int64_t row_begin, int64_t row_end, float* y, const float* xt_pre) {
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(DF()));
  const int64_t k_dim = w.cols;
  const int64_t main_cols = k_dim / (Dec::kVecs * lanes) * (Dec::kVecs * lanes);
  const int64_t steps = main_cols / lanes;
  const int64_t tc = TV * lanes;
  const int64_t chunks = (tn + tc - 1) / tc;
  const int64_t row_bytes = k_dim * static_cast<int64_t>(Dec::kBytes);
  const XtLayout layout(steps, lanes, tc, PrefillBlockSteps(MR, lanes));
  const int64_t xt_size = (layout.TailRow(0) + k_dim - main_cols) * tc;  // per chunk
  const float* xt = xt_pre;
  if (xt == nullptr) {
    float* own = internal::MatMulScratch(0, chunks * xt_size);
    for (int64_t g = 0; g < chunks; ++g) {
      PrefillTranspose<Dec>(x + g * tc * k_dim, std::min(tc, tn - g * tc), tc, k_dim, main_cols,
                            layout, own + g * xt_size);
    }
    xt = own;
  }
  float* wd = internal::MatMulScratch(1, MR * k_dim);              // [MR, k_dim]
  float* acc = internal::MatMulScratch(2, (lanes + 1) * MR * tc);  // [lanes + 1, MR, tc]
  float* tail_acc = acc + lanes * MR * tc;
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  for (int64_t lo = row_begin; lo < row_end;) {
    // Block-scaled types: one row block at a time, its scales in a scaled copy of xt.
    int64_t hi = row_end;
    const float* xs = xt;
    if (Dec::kScaled) {
      const int64_t rb = lo / w.block_rows;
      hi = std::min(row_end, (rb + 1) * w.block_rows);
      float* scaled = internal::MatMulScratch(3, chunks * xt_size);
      PrefillScale<Dec>(xt, chunks, xt_size, tc, k_dim, main_cols, layout,
                        w.scales + rb * ((k_dim + w.block_cols - 1) / w.block_cols),
                        w.block_cols, scaled);
      xs = scaled;
    }
    for (int64_t r0 = lo; r0 < hi; r0 += MR) {
      const int64_t rn = std::min<int64_t>(MR, hi - r0);
      for (int64_t r = 0; r < MR; ++r) {
        if (r < rn) {
          WidenRow(dec, base + (r0 + r) * row_bytes, k_dim, main_cols, wd + r * k_dim);
        } else {
          std::fill(wd + r * k_dim, wd + (r + 1) * k_dim, 0.0f);
        }
      }
      for (int64_t g = 0; g < chunks; ++g) {
        const float* xg = xs + g * xt_size;
        if (steps == 0) std::fill(acc, tail_acc, 0.0f);
        for (int64_t b = 0; b < layout.blocks; ++b) {
          const int64_t i0 = layout.First(b);
          for (int64_t l = 0; l < lanes; ++l) {
            PrefillTile<MR, TV>(xg + layout.Segment(b, l) * tc, wd + i0 * lanes + l, k_dim,
                                lanes, layout.Steps(b), b == 0, acc + l * MR * tc);
          }
        }
        PrefillTail<MR, TV>(xg + layout.TailRow(0) * tc, wd + main_cols, k_dim,
                            k_dim - main_cols, tail_acc);
        PrefillCombine<MR, TV>(acc, tail_acc, rn, std::min(tc, tn - g * tc),
                               y + g * tc * w.rows + r0, w.rows);
      }
    }
    lo = hi;
  }
}

// How PrefillGroups cuts tokens of k_dim columns: chunks of tc tokens, xt_size floats of
// transposed activations per chunk, groups of `group` tokens.
template <class Dec, int MR, int TV>
struct PrefillCut {
  explicit PrefillCut(int64_t k_dim)
      : lanes(static_cast<int64_t>(hn::Lanes(DF()))),
        tc(TV * lanes),
        main_cols(k_dim / (Dec::kVecs * lanes) * (Dec::kVecs * lanes)),
        layout(main_cols / lanes, lanes, tc, PrefillBlockSteps(MR, lanes)),
        xt_size((layout.TailRow(0) + k_dim - main_cols) * tc) {
    // One chunk's xt (and its scaled copy).
    const int64_t chunk_bytes = xt_size * 4 * (Dec::kScaled ? 2 : 1);
    group = std::max<int64_t>(1, kPrefillGroupBytes / chunk_bytes) * tc;
  }
  // Floats of the transposed activations of `tn` tokens of one group.
  int64_t GroupFloats(int64_t tn) const { return (tn + tc - 1) / tc * xt_size; }

  int64_t lanes, tc, main_cols;
  XtLayout layout;
  int64_t xt_size, group;
};

// Tokens [t0, t1) in groups of chunks of TV vectors, as many chunks per group as fit in
// kPrefillGroupBytes. xt_pre: PackPrefillGroups of these tokens, or null.
template <class Dec, int MR, int TV>
void PrefillGroups(const Dec& dec, const float* x, int64_t t0, int64_t t1, const WeightView& w,
                   int64_t row_begin, int64_t row_end, float* y, const float* xt_pre) {
  const PrefillCut<Dec, MR, TV> cut(w.cols);
  for (int64_t t = t0; t < t1; t += cut.group) {
    const int64_t tn = std::min(cut.group, t1 - t);
    PrefillGroup<Dec, MR, TV>(dec, x + t * w.cols, tn, w, row_begin, row_end, y + t * w.rows,
                              xt_pre);
    if (xt_pre != nullptr) xt_pre += cut.GroupFloats(tn);
  }
}

// What PrefillGroups transposes for tokens [t0, t1), group after group, written to `out`
// (null: only counted). Returns the floats.
template <class Dec, int MR, int TV>
int64_t PackPrefillGroups(const float* x, int64_t t0, int64_t t1, int64_t k_dim, float* out) {
  const PrefillCut<Dec, MR, TV> cut(k_dim);
  int64_t floats = 0;
  for (int64_t t = t0; t < t1; t += cut.group) {
    const int64_t tn = std::min(cut.group, t1 - t);
    if (out != nullptr) {
      for (int64_t g = 0; g * cut.tc < tn; ++g) {
        PrefillTranspose<Dec>(x + (t + g * cut.tc) * k_dim, std::min(cut.tc, tn - g * cut.tc),
                              cut.tc, k_dim, cut.main_cols, cut.layout,
                              out + floats + g * cut.xt_size);
      }
    }
    floats += cut.GroupFloats(tn);
  }
  return floats;
}

// Tokens of PrefillRows' 4-vector chunks: the rest (from there on) takes 2-vector chunks.
inline int64_t PrefillWideTokens(int64_t n) {
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(DF()));
  const int64_t rest = n % (4 * lanes);
  return n <= 2 * lanes ? 0 : (rest != 0 && rest <= 2 * lanes ? n - rest : n);
}

// Tokens of n that PrefillRows runs in the prefill kernel's chunks; the rest (the last ones)
// take the decode kernel, same bits. On 16-lane targets (AVX-512) only whole 4-vector chunks
// (64 tokens): padded chunks cost the whole chunk, and the decode kernel's passes beat them
// (Zen 5, one core, 768x1536: bf16 24 tokens 314 vs 485 us, 48 tokens 620 vs 788; FP8 331 vs
// 480, 667 vs 809; at 64 the prefill kernel wins). Elsewhere all n.
inline int64_t PrefillChunkedTokens(int64_t n) {
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(DF()));
  return lanes >= 16 ? n / (4 * lanes) * (4 * lanes) : n;
}

// Token chunks of 4 vectors (6-row tiles), or of 2 vectors (12-row tiles) for a batch or a
// remainder of at most 2 vectors; 16-register targets use 3 x 2 tiles; tokens after
// PrefillChunkedTokens(n) in decode passes. xt_pre: PackPrefillRows of this x, or null (each
// call transposes its own).
template <class Dec>
void PrefillRows(const float* x, int64_t n, const WeightView& w, int64_t row_begin, int64_t row_end,
                 float* y, const float* xt_pre) {
  const Dec dec{DF()};
#if HWY_ARCH_X86 && HWY_TARGET > HWY_AVX3
  PrefillGroups<Dec, 3, 2>(dec, x, 0, n, w, row_begin, row_end, y, xt_pre);
#else
  const int64_t chunked = PrefillChunkedTokens(n);
  const int64_t wide = PrefillWideTokens(chunked);
  PrefillGroups<Dec, 6, 4>(dec, x, 0, wide, w, row_begin, row_end, y, xt_pre);
  const float* rest_pre = xt_pre == nullptr
                              ? nullptr
                              : xt_pre + PackPrefillGroups<Dec, 6, 4>(x, 0, wide, w.cols, nullptr);
  PrefillGroups<Dec, 12, 2>(dec, x, wide, chunked, w, row_begin, row_end, y, rest_pre);
  if (chunked < n) {
    DecodeRows<Dec>(x + chunked * w.cols, n - chunked, w, row_begin, row_end, y + chunked * w.rows);
  }
#endif
}

// Everything PrefillRows<Dec> transposes for n tokens of k_dim columns, in its order, to `out`
// (null: only counted). Returns the floats.
template <class Dec>
int64_t PackPrefillRows(const float* x, int64_t n, int64_t k_dim, float* out) {
#if HWY_ARCH_X86 && HWY_TARGET > HWY_AVX3
  return PackPrefillGroups<Dec, 3, 2>(x, 0, n, k_dim, out);
#else
  const int64_t chunked = PrefillChunkedTokens(n);
  const int64_t wide = PrefillWideTokens(chunked);
  const int64_t floats = PackPrefillGroups<Dec, 6, 4>(x, 0, wide, k_dim, out);
  return floats + PackPrefillGroups<Dec, 12, 2>(x, wide, chunked, k_dim,
                                                out == nullptr ? nullptr : out + floats);
#endif
}

// ---------------------------------------------------------------------------------------------
// bf16-activation mode (opt-in, MatMulOptions): activations rounded to bf16 (RNE; FP8 weights:
// after multiplying by the block scale, so the weights stay exact bf16) and multiplied with the
// bf16 (or FP8 -> exact bf16) weights two columns at a time: one u32 lane holds a column pair
// (even column in the low half). AVX-512 CPUs with AVX512-BF16 use vdpbf16ps (32 products per
// instruction, no widening: bf16 weights are its memory operand); every other target runs the
// same pair order with two FMAs (odd column first, as vdpbf16ps). Tiles of R rows x N tokens,
// one accumulator vector per (row, token) over chunks of two pair vectors, then ReduceHalving
// and the tail columns in order: a token's bits depend only on its activations and the row
// (not on n, the tile or the row split), as in the fp32 kernels.

using DU32 = hn::RebindToUnsigned<DF>;
using VU32 = hn::Vec<DU32>;

// Weight sources: Pairs() loads one chunk (2 * Lanes column pairs) as two pair vectors;
// Column(v, l, e) is the column (within the chunk) of half e of lane l of vector v.
struct PairsBf16 {
  static constexpr bool kNatural = true;
  static constexpr size_t kBytes = 2;
  static constexpr int kConstRegs = 0;
  explicit PairsBf16(DF) {}
  HWY_INLINE void Pairs(const uint8_t* p, VU32* w) const {
    const DU32 du;
    const uint32_t* q = reinterpret_cast<const uint32_t*>(p);
    w[0] = hn::LoadU(du, q);
    w[1] = hn::LoadU(du, q + hn::Lanes(du));
  }
  static int64_t Column(int v, int64_t lane, int e, int64_t lanes) {
    return 2 * (v * lanes + lane) + e;
  }
  static uint16_t Scalar(const uint8_t* row, int64_t c) {
    uint16_t v;
    memcpy(&v, row + 2 * c, 2);
    return v;
  }
};

#if HWY_TARGET == HWY_AVX3_DL
// FP8: DecFp8's byte planes interleaved into bf16 words (vpunpck[lh]bw): lane 4q + i of
// vector v holds columns 16q + 8v + 2i and 16q + 8v + 2i + 1.
struct PairsFp8 {
  static constexpr bool kNatural = false;
  static constexpr size_t kBytes = 1;
  static constexpr int kConstRegs = 6;
  explicit PairsFp8(DF d) : dec_(d) {}
  HWY_INLINE void Pairs(const uint8_t* p, VU32* w) const {
    __m512i lo, hi;
    dec_.Planes(p, &lo, &hi);
    w[0] = VU32{_mm512_unpacklo_epi8(lo, hi)};
    w[1] = VU32{_mm512_unpackhi_epi8(lo, hi)};
  }
  static int64_t Column(int v, int64_t lane, int e, int64_t) {
    return 16 * (lane / 4) + 8 * v + 2 * (lane % 4) + e;
  }
  static uint16_t Scalar(const uint8_t* row, int64_t c) {
    return FloatToBf16(Fp8E4M3ToFloat(row[c]));
  }
  DecFp8 dec_;
};
#else
// FP8 elsewhere: the exact values from the 256-entry table (their bf16 bits are the top halves),
// natural pair order.
struct PairsFp8 {
  static constexpr bool kNatural = true;
  static constexpr size_t kBytes = 1;
  static constexpr int kConstRegs = 0;
  explicit PairsFp8(DF) {}
  HWY_INLINE void Pairs(const uint8_t* p, VU32* w) const {
    const DU32 du;
    const size_t lanes = hn::Lanes(du);
    uint32_t tmp[2 * HWY_LANES(uint32_t)];
    for (size_t i = 0; i < 2 * lanes; ++i) {
      tmp[i] = Scalar(p, 2 * i) | static_cast<uint32_t>(Scalar(p, 2 * i + 1)) << 16;
    }
    w[0] = hn::LoadU(du, tmp);
    w[1] = hn::LoadU(du, tmp + lanes);
  }
  static int64_t Column(int v, int64_t lane, int e, int64_t lanes) {
    return 2 * (v * lanes + lane) + e;
  }
  static uint16_t Scalar(const uint8_t* row, int64_t c) {
    uint32_t bits;
    memcpy(&bits, internal::Fp8Values() + row[c], 4);
    return static_cast<uint16_t>(bits >> 16);
  }
};
#endif

// acc += odd(w) * odd(x), then += even(w) * even(x): vdpbf16ps's order, with FMAs.
struct DotPairsFma {
  HWY_INLINE VF operator()(VF acc, VU32 w, VU32 x) const {
    const DF d;
    const DU32 du;
    const VU32 top = hn::Set(du, 0xFFFF0000u);
    acc = hn::MulAdd(hn::BitCast(d, hn::And(w, top)), hn::BitCast(d, hn::And(x, top)), acc);
    return hn::MulAdd(hn::BitCast(d, hn::ShiftLeft<16>(w)), hn::BitCast(d, hn::ShiftLeft<16>(x)),
                      acc);
  }
};

#undef AFD_BF16_DOT_ATTR
#undef AFD_BF16_TILE_ATTR
#if HWY_TARGET == HWY_AVX3_DL
#define AFD_BF16_DOT_ATTR __attribute__((target(HWY_TARGET_STR ",avx512bf16")))
struct DotPairsBf16 {
  HWY_INLINE AFD_BF16_DOT_ATTR VF operator()(VF acc, VU32 w, VU32 x) const {
    return VF{_mm512_dpbf16_ps(acc.raw, (__m512bh)x.raw,
                               (__m512bh)w.raw)};
  }
};
#define AFD_BF16_TILE_ATTR AFD_BF16_DOT_ATTR
#else
#define AFD_BF16_TILE_ATTR
#endif

// Rows per bf16-mode tile for N tokens: accumulators, the two pair vectors of a row and the
// source's constants in the registers; at least 8 independent accumulators where possible.
template <class Src>
constexpr int Bf16RowsPerTile(int n) {
  for (int r : {8, 4, 2}) {
    if (r * n + 2 + Src::kConstRegs <= kVectorRegs - 1 && r * n <= 16) return r;
  }
  return 1;
}

// One tile: R rows x N tokens over the `cols` main columns, packed activations `xp` (pair
// vectors: chunk c, vector v, token t at ((c * 2 + v) * N + t) * Lanes), then the tail.
template <class Src, class Dot, int R, int N>
HWY_NOINLINE AFD_BF16_TILE_ATTR void Bf16Tile(const Src& src, const Dot& dot,
                                              const uint32_t* HWY_RESTRICT xp, int64_t cols,
                                              const float* HWY_RESTRICT tail, int64_t tail_cols,
                                              const uint8_t* rows, int64_t row_stride,
                                              float* HWY_RESTRICT y, int64_t y_stride) {
  const DF d;
  const DU32 du;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int64_t chunk = 4 * lanes;
  VF acc[R][N];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < N; ++t) acc[r][t] = hn::Zero(d);
  }
  for (int64_t c = 0; c < cols; c += chunk) {
    const uint32_t* xc = xp + (c / chunk) * 2 * N * lanes;
    for (int r = 0; r < R; ++r) {
      VU32 w[2];
      src.Pairs(rows + r * row_stride + c * static_cast<int64_t>(Src::kBytes), w);
      for (int v = 0; v < 2; ++v) {
        for (int t = 0; t < N; ++t) {
          acc[r][t] = dot(acc[r][t], w[v], hn::LoadU(du, xc + (v * N + t) * lanes));
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    const uint8_t* row = rows + r * row_stride;
    for (int t = 0; t < N; ++t) {
      float sum = ReduceHalving(d, acc[r][t]);
      for (int64_t j = 0; j < tail_cols; ++j) {
        sum += Bf16ToFloat(Src::Scalar(row, cols + j)) * tail[t * tail_cols + j];
      }
      y[t * y_stride + r] = sum;
    }
  }
}

// bf16 bits (FloatToBf16: round to nearest even, NaN -> 0x7FC0) of v * s in the low halves.
HWY_INLINE VU32 RoundToBf16(VF v, VF s) {
  const DF d;
  const DU32 du;
  const VU32 bits = hn::BitCast(du, hn::Mul(v, s));
  const VU32 odd = hn::And(hn::ShiftRight<16>(bits), hn::Set(du, 1u));
  const VU32 rounded = hn::ShiftRight<16>(hn::Add(bits, hn::Add(odd, hn::Set(du, 0x7FFFu))));
  const auto nan = hn::Gt(hn::And(bits, hn::Set(du, 0x7FFFFFFFu)), hn::Set(du, 0x7F800000u));
  (void)d;
  return hn::IfThenElse(nan, hn::Set(du, 0x7FC0u), rounded);
}

// Packs N tokens of x [N, cols] (column c multiplied by scale_row[c / block_cols] when given)
// as bf16 pairs in Src's order: the main columns into xp, the tail (rounded, as floats) into
// tail [N, cols - main_cols].
template <class Src>
void PackBf16(const float* x, int64_t n, int64_t cols, int64_t main_cols, const float* scale_row,
              int64_t block_cols, uint32_t* HWY_RESTRICT xp, float* HWY_RESTRICT tail) {
  const DF d;
  const DU32 du;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int64_t chunk = 4 * lanes;
  auto scale_at = [&](int64_t c) { return scale_row ? scale_row[c / block_cols] : 1.0f; };
  for (int64_t c = 0; c < main_cols; c += chunk) {
    uint32_t* out = xp + (c / chunk) * 2 * n * lanes;
    // One scale per vector of columns when the blocks allow it, else per column.
    VF s[4];
    const bool uniform = scale_row == nullptr || block_cols % lanes == 0;
    for (int q = 0; q < 4; ++q) s[q] = hn::Set(d, scale_at(c + q * lanes));
    for (int64_t t = 0; t < n; ++t) {
      const float* xr = x + t * cols + c;
      VU32 h[4];
      for (int q = 0; q < 4; ++q) {
        VF sq = s[q];
        if (!uniform) {
          float tmp[HWY_LANES(float)];
          for (int64_t l = 0; l < lanes; ++l) tmp[l] = scale_at(c + q * lanes + l);
          sq = hn::LoadU(d, tmp);
        }
        h[q] = RoundToBf16(hn::LoadU(d, xr + q * lanes), sq);
      }
      if constexpr (Src::kNatural) {
        (void)du;
        for (int v = 0; v < 2; ++v) {
#if HWY_TARGET == HWY_SCALAR
          const uint32_t pair = hn::GetLane(h[2 * v]) | hn::GetLane(h[2 * v + 1]) << 16;
          out[(v * n + t) * lanes] = pair;
#else
          const VU32 even = hn::ConcatEven(du, h[2 * v + 1], h[2 * v]);
          const VU32 odd = hn::ConcatOdd(du, h[2 * v + 1], h[2 * v]);
          hn::StoreU(hn::Or(even, hn::ShiftLeft<16>(odd)), du, out + (v * n + t) * lanes);
#endif
        }
      } else {
#if HWY_TARGET == HWY_AVX3_DL
        // Columns 16q + 2k, +1 as dword k of p[q]; vector v takes dwords 4v..4v+3 of each.
        __m256i p[4];
        for (int q = 0; q < 4; ++q) p[q] = _mm512_cvtepi32_epi16(h[q].raw);
        const __m512i a = _mm512_inserti64x4(_mm512_castsi256_si512(p[0]), p[1], 1);
        const __m512i b = _mm512_inserti64x4(_mm512_castsi256_si512(p[2]), p[3], 1);
        _mm512_storeu_si512(out + t * lanes, _mm512_shuffle_i64x2(a, b, 0x88));
        _mm512_storeu_si512(out + (n + t) * lanes, _mm512_shuffle_i64x2(a, b, 0xDD));
#endif
      }
    }
  }
  const int64_t tail_cols = cols - main_cols;
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t j = 0; j < tail_cols; ++j) {
      const int64_t c = main_cols + j;
      tail[t * tail_cols + j] = Bf16ToFloat(FloatToBf16(x[t * cols + c] * scale_at(c)));
    }
  }
}

// Rows [row_begin, row_end) for N tokens (FP8: one block of output rows at a time, the block's
// scales folded into the packed activations).
template <class Src, class Dot, int N>
void Bf16RowsN(const Src& src, const Dot& dot, const float* x, const WeightView& w,
               int64_t row_begin, int64_t row_end, float* y) {
  constexpr int R = Bf16RowsPerTile<Src>(N);
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(DF()));
  const int64_t main_cols = w.cols / (4 * lanes) * (4 * lanes);
  const int64_t tail_cols = w.cols - main_cols;
  uint32_t* xp = internal::MatMulScratchU32(0, N * main_cols / 2 + 1);
  float* tail = internal::MatMulScratch(5, N * tail_cols + 1);
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  const int64_t row_bytes = w.cols * static_cast<int64_t>(Src::kBytes);
  const bool scaled = w.type == WeightType::kFp8E4M3;
  const int64_t ncb = (w.cols + w.block_cols - 1) / w.block_cols;
  const int64_t block = scaled ? w.block_rows : row_end - row_begin;
  for (int64_t lo = row_begin; lo < row_end;) {
    const int64_t hi = scaled ? std::min(row_end, (lo / block + 1) * block) : row_end;
    PackBf16<Src>(x, N, w.cols, main_cols, scaled ? w.scales + (lo / block) * ncb : nullptr,
                  w.block_cols, xp, tail);
    int64_t r = lo;
    for (; r + R <= hi; r += R) {
      Bf16Tile<Src, Dot, R, N>(src, dot, xp, main_cols, tail, tail_cols, base + r * row_bytes,
                               row_bytes, y + r, w.rows);
    }
    for (; r < hi; ++r) {
      Bf16Tile<Src, Dot, 1, N>(src, dot, xp, main_cols, tail, tail_cols, base + r * row_bytes,
                               row_bytes, y + r, w.rows);
    }
    lo = hi;
  }
}

template <class Src, class Dot>
void Bf16RowsFor(const float* x, int64_t n, const WeightView& w, int64_t row_begin,
                 int64_t row_end, float* y) {
  const Src src{DF()};
  const Dot dot;
  for (int64_t t = 0, pass = 0; t < n; t += pass) {
    pass = std::min<int64_t>(8, n - t);
    WithTokenCount<1, 2, 3, 4, 5, 6, 7, 8>(pass, [&](auto tokens) {
      Bf16RowsN<Src, Dot, decltype(tokens)::value>(src, dot, x + t * w.cols, w, row_begin,
                                                   row_end, y + t * w.rows);
    });
  }
}

template <class Src>
void Bf16RowsForSrc(const float* x, int64_t n, const WeightView& w, int64_t row_begin,
                    int64_t row_end, float* y) {
#if HWY_TARGET == HWY_AVX3_DL
  if (internal::CpuHasAvx512Bf16()) {
    return Bf16RowsFor<Src, DotPairsBf16>(x, n, w, row_begin, row_end, y);
  }
#endif
  Bf16RowsFor<Src, DotPairsFma>(x, n, w, row_begin, row_end, y);
}

// bf16-activation products (bf16 and FP8 weights; MatMulRows sends the others to the fp32
// kernels).
void MatMulRowsBf16Impl(const float* x, int64_t n, const WeightView& w, int64_t row_begin,
                        int64_t row_end, float* y) {
  if (w.type == WeightType::kBF16) {
    Bf16RowsForSrc<PairsBf16>(x, n, w, row_begin, row_end, y);
  } else if (w.type == WeightType::kFp8E4M3) {
    Bf16RowsForSrc<PairsFp8>(x, n, w, row_begin, row_end, y);
  }
}

// ---------------------------------------------------------------------------------------------

template <class T>
struct TypeTag {
  using type = T;
};

// fn(TypeTag<Dec>()) with the decoder of `type` (packed types: MatMulRows sends them to the
// quantized kernels before dispatch).
template <class Fn>
void WithDecoder(WeightType type, const Fn& fn) {
  switch (type) {
    case WeightType::kF32: return fn(TypeTag<DecF32>());
    case WeightType::kBF16: return fn(TypeTag<DecBf16>());
    case WeightType::kF16: return fn(TypeTag<DecF16>());
    case WeightType::kFp8E4M3: return fn(TypeTag<DecFp8>());
    case WeightType::kAwqInt4:
    case WeightType::kMlxAffine: return;
  }
}

// prefill: 1 = the prefill kernel, 0 = the decode kernel, -1 = by token count.
// xt_pre: for the prefill kernel, PackPrefillXImpl of this x for w's type (or null).
void MatMulRowsKernelImpl(const float* x, int64_t n, const WeightView& w, int64_t row_begin,
                          int64_t row_end, float* y, int prefill, const float* xt_pre) {
  WithDecoder(w.type, [&](auto tag) {
    using Dec = typename decltype(tag)::type;
    if (prefill == 1 ||
        (prefill == -1 && n >= internal::kPrefillMinTokens && PrefillChunkedTokens(n) > 0)) {
      PrefillRows<Dec>(x, n, w, row_begin, row_end, y, xt_pre);
    } else {
      DecodeRows<Dec>(x, n, w, row_begin, row_end, y);
    }
  });
}

// x transposed once for every prefill product of weights of `type` with `cols` columns, into
// *storage (64-byte aligned inside it); returns where it starts (null for packed types).
const float* PackPrefillXImpl(const float* x, int64_t n, int64_t cols, WeightType type,
                              std::vector<float>* storage) {
  const float* out = nullptr;
  WithDecoder(type, [&](auto tag) {
    using Dec = typename decltype(tag)::type;
    const int64_t floats = PackPrefillRows<Dec>(x, n, cols, nullptr);
    storage->resize(static_cast<size_t>(floats) + 16);
    float* aligned = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(storage->data()) + 63) &
                                              ~uintptr_t{63});
    PackPrefillRows<Dec>(x, n, cols, aligned);
    out = aligned;
  });
  return out;
}

}  // namespace HWY_NAMESPACE
}  // namespace afd::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace afd::kernels {

HWY_EXPORT(MatMulRowsKernelImpl);
HWY_EXPORT(PackPrefillXImpl);
HWY_EXPORT(MatMulRowsBf16Impl);

namespace internal {

struct MatMulScratchTag {};

float* MatMulScratch(int slot, size_t count) {
  return ThreadScratch<MatMulScratchTag, float, 6>(slot, count);
}

uint32_t* MatMulScratchU32(int slot, size_t count) {
  return ThreadScratch<MatMulScratchTag, uint32_t, 1>(slot, count);
}

const float* Fp8Values() {
  static const struct Values {
    Values() {
      for (int i = 0; i < 256; ++i) v[i] = Fp8E4M3ToFloat(static_cast<uint8_t>(i));
    }
    float v[256];
  } values;
  return values.v;
}

bool CpuHasAvx512Bf16() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

void MatMulRowsKernel(const float* x, int64_t n, const WeightView& w, int64_t row_begin,
                      int64_t row_end, float* y, bool prefill) {
  if (n <= 0 || row_begin >= row_end) return;
  if (w.IsPacked()) {
    return QuantMatMulRowsKernel(x, n, AsQuantMatrix(w), row_begin, row_end, y,
                                 prefill ? QuantKernel::kPrefill : QuantKernel::kDecode);
  }
  HWY_DYNAMIC_DISPATCH(MatMulRowsKernelImpl)
  (x, n, w, row_begin, row_end, y, prefill ? 1 : 0, nullptr);
  ClearUpperVectorState();
}

}  // namespace internal

namespace {

// Weight types the bf16-activation mode covers.
bool UsesBf16Activations(const WeightView& w) {
  return w.type == WeightType::kBF16 || w.type == WeightType::kFp8E4M3;
}

// Whether kTiles products of `w` run on the tiles.
bool UsesTiles(const WeightView& w) {
  return TileProductsSupport(w) && TileProductsAvailable();
}

float WeightAt(const WeightView& w, int64_t r, int64_t c) {
  const int64_t i = r * w.cols + c;
  switch (w.type) {
    case WeightType::kF32: {
      float f;
      memcpy(&f, static_cast<const uint8_t*>(w.data) + 4 * i, 4);
      return f;
    }
    case WeightType::kBF16: {
      uint16_t v;
      memcpy(&v, static_cast<const uint8_t*>(w.data) + 2 * i, 2);
      return Bf16ToFloat(v);
    }
    case WeightType::kF16: {
      uint16_t v;
      memcpy(&v, static_cast<const uint8_t*>(w.data) + 2 * i, 2);
      return F16ToFloat(v);
    }
    case WeightType::kFp8E4M3: {
      const int64_t ncb = (w.cols + w.block_cols - 1) / w.block_cols;
      const float scale = w.scales[(r / w.block_rows) * ncb + c / w.block_cols];
      return Fp8E4M3ToFloat(static_cast<const uint8_t*>(w.data)[i]) * scale;
    }
    case WeightType::kAwqInt4:
    case WeightType::kMlxAffine:
      return QuantWeightAt(AsQuantMatrix(w), r, c);
  }
  return 0.0f;
}

}  // namespace

float Bf16ToFloat(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t FloatToBf16(float v) {
  if (std::isnan(v)) return 0x7FC0;  // as c10::BFloat16
  uint32_t bits;
  memcpy(&bits, &v, 4);
  const uint32_t rounding_bias = ((bits >> 16) & 1) + 0x7FFF;
  return static_cast<uint16_t>((bits + rounding_bias) >> 16);
}

float F16ToFloat(uint16_t v) {
  const uint32_t sign = static_cast<uint32_t>(v & 0x8000) << 16;
  const uint32_t exp = (v >> 10) & 0x1F;
  const uint32_t mant = v & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    const float mag = std::ldexp(static_cast<float>(mant), -24);  // zero or subnormal, exact
    memcpy(&bits, &mag, 4);
    bits |= sign;
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf or NaN (payload kept)
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

float Fp8E4M3ToFloat(uint8_t v) {
  const bool negative = (v & 0x80) != 0;
  const int exp = (v >> 3) & 0xF;
  const int mant = v & 0x7;
  float mag;
  if (exp == 15 && mant == 7) {
    mag = std::numeric_limits<float>::quiet_NaN();
  } else if (exp == 0) {
    mag = std::ldexp(static_cast<float>(mant), -9);  // 2^-6 * m/8
  } else {
    mag = std::ldexp(static_cast<float>(8 + mant), exp - 10);  // 2^(e-7) * (1 + m/8)
  }
  return negative ? -mag : mag;
}

void MatMulRows(const float* x, int64_t n, const WeightView& w, int64_t row_begin,
                int64_t row_end, float* y) {
  if (n <= 0 || row_begin >= row_end) return;
  if (w.IsPacked()) {  // AWQ / MLX codes: common/kernels/quant_matmul.h
    QuantMatMulRows(x, n, AsQuantMatrix(w), row_begin, row_end, y);
    return;
  }
  HWY_DYNAMIC_DISPATCH(MatMulRowsKernelImpl)(x, n, w, row_begin, row_end, y, -1, nullptr);
  ClearUpperVectorState();
}

namespace {
TileActivations TileActivationsOf(const MatMulOptions& options) {
  return options.activations == Activations::kBF16 ? TileActivations::kBf16
                                                   : TileActivations::kExact;
}
}  // namespace

MatMulOptions WithPackedTileX(const float* x, int64_t n, const WeightView& w,
                              const MatMulOptions& options, TilePackedX* packed,
                              std::vector<uint16_t>* storage) {
  if (w.IsPacked()) {  // MLX / AWQ on the int8 tiles, whatever the kernel option
    const QuantMatrix q = AsQuantMatrix(w);
    if (!UsesQuantTiles(q, n)) return options;
    *packed = TilePackedX{};
    packed->quant = PackQuantTileActivations(x, n, q, storage);
    MatMulOptions out = options;
    out.tile_x = packed;
    return out;
  }
  if (options.kernel != Kernel::kTiles || n <= 0 || !UsesTiles(w)) return options;
  *packed = PackTileActivations(x, n, w.cols, TileActivationsOf(options), storage);
  MatMulOptions out = options;
  out.tile_x = packed;
  return out;
}

void MatMulRows(const float* x, int64_t n, const WeightView& w, int64_t row_begin,
                int64_t row_end, float* y, const MatMulOptions& options) {
  if (w.IsPacked()) {
    const QuantTilePackedX* q = options.tile_x != nullptr ? &options.tile_x->quant : nullptr;
    const bool packed_for_w = q != nullptr && q->tiles != nullptr && q->n == n &&
                              q->awq == (w.type == WeightType::kAwqInt4) && q->cols == w.cols &&
                              q->group_size == w.group_size && q->bits == w.bits;
    if (packed_for_w && row_begin < row_end) {
      QuantTileMatMulRows(*q, AsQuantMatrix(w), row_begin, row_end, y);
      ClearUpperVectorState();
      return;
    }
    MatMulRows(x, n, w, row_begin, row_end, y);
    return;
  }
  if (options.kernel == Kernel::kTiles && UsesTiles(w)) {
    const TilePackedX* p = options.tile_x;
    if (p != nullptr && p->n == n && p->cols == w.cols &&
        p->activations == TileActivationsOf(options)) {
      TileMatMulRowsPacked(*p, w, row_begin, row_end, y);
    } else {
      TileMatMulRows(x, n, w, row_begin, row_end, y, TileActivationsOf(options));
    }
    return;
  }
  if (options.activations == Activations::kBF16 && UsesBf16Activations(w)) {
    if (n <= 0 || row_begin >= row_end) return;
    HWY_DYNAMIC_DISPATCH(MatMulRowsBf16Impl)(x, n, w, row_begin, row_end, y);
    ClearUpperVectorState();
    return;
  }
  const PrefillPackedX* p = options.prefill_x;
  if (p != nullptr && p->data != nullptr && p->x == x && p->n == n && p->cols == w.cols &&
      p->type == w.type && n >= internal::kPrefillMinTokens && row_begin < row_end) {
    HWY_DYNAMIC_DISPATCH(MatMulRowsKernelImpl)(x, n, w, row_begin, row_end, y, 1, p->data);
    ClearUpperVectorState();
    return;
  }
  MatMulRows(x, n, w, row_begin, row_end, y);
}

MatMulOptions WithPackedPrefillX(const float* x, int64_t n, const WeightView& w,
                                 const MatMulOptions& options, PrefillPackedX* packed,
                                 std::vector<float>* storage) {
  const bool vector_f32 = !w.IsPacked() && !(options.kernel == Kernel::kTiles && UsesTiles(w)) &&
                          !(options.activations == Activations::kBF16 && UsesBf16Activations(w));
  if (!vector_f32 || n < internal::kPrefillMinTokens) return options;
  *packed = PrefillPackedX{x, n, w.cols, w.type,
                           HWY_DYNAMIC_DISPATCH(PackPrefillXImpl)(x, n, w.cols, w.type, storage)};
  ClearUpperVectorState();
  MatMulOptions out = options;
  out.prefill_x = packed;
  return out;
}

void MatMul(const float* x, int64_t n, const WeightView& w, float* y) {
  MatMulRows(x, n, w, 0, w.rows, y);
}

void MatMul(const float* x, int64_t n, const WeightView& w, float* y, ThreadPool* pool,
            const MatMulOptions& options) {
  if (pool == nullptr || pool->num_threads() <= 1 || w.rows <= kRowUnit) {
    MatMulRows(x, n, w, 0, w.rows, y, options);
    return;
  }
  const WeightView* ws[1] = {&w};
  if (MatMulSplitInput(x, n, ws, &y, 1, pool, options)) return;
  // Tiles: x packed once for every row unit (per calling thread: concurrent MatMuls of one
  // pool never share it).
  thread_local std::vector<uint16_t> tile_storage;
  thread_local std::vector<float> prefill_storage;
  TilePackedX tile_x;
  PrefillPackedX prefill_x;
  MatMulOptions unit_options = options.tile_x != nullptr
                                   ? options
                                   : WithPackedTileX(x, n, w, options, &tile_x, &tile_storage);
  // The same for the vector kernels' prompt products, where threads take several units each
  // (packing runs before the loop, on this thread).
  const int64_t units = (w.rows + kRowUnit - 1) / kRowUnit;
  if (unit_options.prefill_x == nullptr && units >= 2 * pool->num_threads()) {
    unit_options = WithPackedPrefillX(x, n, w, unit_options, &prefill_x, &prefill_storage);
  }
  struct Args {
    const float* x;
    int64_t n;
    const WeightView* w;
    float* y;
    const MatMulOptions* options;
  } args{x, n, &w, y, &unit_options};
  const Args* a = &args;  // one pointer: fits std::function's inline storage, no allocation
  pool->ParallelFor(
      units,
      [a](int64_t begin, int64_t end) {
        MatMulRows(a->x, a->n, *a->w, begin * kRowUnit, std::min(end * kRowUnit, a->w->rows), a->y,
                   *a->options);
      },
      ParallelUnitGrain(w, kRowUnit));
}

bool MatMulSplitInput(const float* x, int64_t n, const WeightView* const* ws, float* const* ys,
                      int count, ThreadPool* pool, const MatMulOptions& options) {
  constexpr int kMaxProducts = 8;
  if (options.kernel != Kernel::kVector || count < 1 || count > kMaxProducts) return false;
  QuantMatrix q[kMaxProducts];
  const QuantMatrix* qs[kMaxProducts];
  for (int i = 0; i < count; ++i) {
    if (ws[i]->type != WeightType::kAwqInt4) return false;
    q[i] = AsQuantMatrix(*ws[i]);
    qs[i] = &q[i];
  }
  return AwqMatMulSplitInput(x, n, qs, ys, count, pool);
}

int64_t ParallelRowGrain(const WeightView& w) { return w.type == WeightType::kAwqInt4 ? 384 : 1; }

void MatMul(const float* x, int64_t n, const WeightView& w, float* y, ThreadPool* pool) {
  MatMul(x, n, w, y, pool, MatMulOptions{});
}

void MatMulReference(const float* x, int64_t n, const WeightView& w, float* y) {
  if (w.IsPacked()) return QuantMatMulReference(x, n, AsQuantMatrix(w), y);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t r = 0; r < w.rows; ++r) {
      float acc = 0.0f;
      for (int64_t c = 0; c < w.cols; ++c) acc += x[t * w.cols + c] * WeightAt(w, r, c);
      y[t * w.rows + r] = acc;
    }
  }
}

void MatMulReference(const float* x, int64_t n, const WeightView& w, float* y,
                     const MatMulOptions& options) {
  if (options.activations != Activations::kBF16 || !UsesBf16Activations(w)) {
    return MatMulReference(x, n, w, y);
  }
  const int64_t ncb = (w.cols + w.block_cols - 1) / w.block_cols;
  const uint8_t* data = static_cast<const uint8_t*>(w.data);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t r = 0; r < w.rows; ++r) {
      float acc = 0.0f;
      for (int64_t c = 0; c < w.cols; ++c) {
        const int64_t i = r * w.cols + c;
        float scale = 1.0f, value;
        if (w.type == WeightType::kFp8E4M3) {
          scale = w.scales[(r / w.block_rows) * ncb + c / w.block_cols];
          value = Fp8E4M3ToFloat(data[i]);
        } else {
          uint16_t b;
          memcpy(&b, data + 2 * i, 2);
          value = Bf16ToFloat(b);
        }
        acc += Bf16ToFloat(FloatToBf16(x[t * w.cols + c] * scale)) * value;
      }
      y[t * w.rows + r] = acc;
    }
  }
}

}  // namespace afd::kernels
#endif  // HWY_ONCE
