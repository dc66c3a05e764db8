// Causal GQA softmax attention kernels (see attention.h). The fast path uses Highway dynamic
// dispatch for the q.k dot products and the p*v accumulation; the reference twins are plain
// scalar loops in the order transformers' eager attention uses.
#include "common/kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "common/kernels/matmul.h"
#include "common/kernels/vector_state.h"
#include "hwy/cache_control.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "common/kernels/attention.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

// After highway.h, per target.
#include "hwy/contrib/math/math-inl.h"

#ifndef AFD_COMMON_KERNELS_ATTENTION_SHARED_
#define AFD_COMMON_KERNELS_ATTENTION_SHARED_
namespace afd::kernels::attention_internal {

// A cache element as fp32: fp32 as it is, bf16 bits widened (exact).
inline float KvScalar(float v) { return v; }
inline float KvScalar(uint16_t bits) { return Bf16ToFloat(bits); }

}  // namespace afd::kernels::attention_internal
#endif  // AFD_COMMON_KERNELS_ATTENTION_SHARED_

HWY_BEFORE_NAMESPACE();
namespace afd::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using attention_internal::KvScalar;

// A vector of cache elements at p as fp32: fp32 as they are, bf16 widened (exact).
template <class D>
HWY_INLINE hn::Vec<D> LoadKv(D df, const float* p) {
  return hn::LoadU(df, p);
}
template <class D>
HWY_INLINE hn::Vec<D> LoadKv(D df, const uint16_t* p) {
  return hn::PromoteTo(
      df, hn::LoadU(hn::Rebind<hwy::bfloat16_t, D>(), reinterpret_cast<const hwy::bfloat16_t*>(p)));
}

// The G dot products q[g] . k, each as a two-accumulator Dot (acc0 / acc1 over alternating
// vectors, their sum reduced, then the scalar tail): the key is loaded once for all G heads.
template <int G, class T>
HWY_INLINE void DotGroup(const float* const* q, const T* k, int dim, float* out) {
  const hn::ScalableTag<float> df;
  const int lanes = static_cast<int>(hn::Lanes(df));
  hn::Vec<decltype(df)> acc0[G], acc1[G];
  for (int g = 0; g < G; ++g) acc0[g] = acc1[g] = hn::Zero(df);
  int i = 0;
  for (; i + 2 * lanes <= dim; i += 2 * lanes) {
    const auto k0 = LoadKv(df, k + i), k1 = LoadKv(df, k + i + lanes);
    for (int g = 0; g < G; ++g) {
      acc0[g] = hn::MulAdd(hn::LoadU(df, q[g] + i), k0, acc0[g]);
      acc1[g] = hn::MulAdd(hn::LoadU(df, q[g] + i + lanes), k1, acc1[g]);
    }
  }
  for (; i + lanes <= dim; i += lanes) {
    const auto k0 = LoadKv(df, k + i);
    for (int g = 0; g < G; ++g) acc0[g] = hn::MulAdd(hn::LoadU(df, q[g] + i), k0, acc0[g]);
  }
  for (int g = 0; g < G; ++g) {
    float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0[g], acc1[g])));
    for (int c = i; c < dim; ++c) sum += q[g][c] * KvScalar(k[c]);
    out[g] = sum;
  }
}

// The key blocks below: x86 targets with 512-bit vectors (SumOfLanes elsewhere reduces in other
// trees, so those targets take a key at a time).
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3

// The lane sums of 16 vectors at once: r[4j + m] = the sum of v[4m + j]'s lanes, each added in
// the tree of _mm512_reduce_add_ps (what SumOfLanes is here; GCC's order: a_i + a_{i+8}, then
// + the partner 4 lanes on, then t_0 + t_2 and t_1 + t_3, then those two), so every sum has the
// bits it has alone (float addition commutes exactly; only the tree matters). 45 shuffles and
// adds for 16 sums, where one at a time takes about 8 per sum.
HWY_INLINE __m512 SumLanesOf16(const __m512* v) {
  __m512 halves[8];  // lanes 0-7: v[2p]'s a_i + a_{i+8}; lanes 8-15: v[2p + 1]'s
  for (int p = 0; p < 8; ++p) {
    halves[p] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], 0xEE),
                              _mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], 0x44));
  }
  __m512 quarters[4];  // 128-bit block j: v[4r + j]'s four partial sums
  for (int r = 0; r < 4; ++r) {
    quarters[r] = _mm512_add_ps(_mm512_shuffle_f32x4(halves[2 * r], halves[2 * r + 1], 0xDD),
                                _mm512_shuffle_f32x4(halves[2 * r], halves[2 * r + 1], 0x88));
  }
  __m512 pairs[2];  // block j: (t0 + t2, t1 + t3) of quarters[2u] then of quarters[2u + 1]
  for (int u = 0; u < 2; ++u) {
    pairs[u] = _mm512_add_ps(
        _mm512_shuffle_ps(quarters[2 * u], quarters[2 * u + 1], _MM_SHUFFLE(1, 0, 1, 0)),
        _mm512_shuffle_ps(quarters[2 * u], quarters[2 * u + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  return _mm512_add_ps(_mm512_shuffle_ps(pairs[0], pairs[1], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_ps(pairs[0], pairs[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

// Keys per block of DotGroupKeys for G heads: the G * KB pairs of accumulators, the keys' and
// a head's vectors fit the 32 vector registers, and G * KB <= 16.
constexpr int KeysPerBlock(int g) { return g <= 2 ? 4 : g <= 6 ? 2 : 1; }

// DotGroup for keys j0 .. j0 + KB - 1 at once: out[g * KB + b] = q[g] . key(j0 + b), each with
// DotGroup's accumulators in DotGroup's order and its lane sum in SumOfLanes' tree, so the bits
// are DotGroup's; the lane sums of the block are done together (SumLanesOf16) and each head's
// vectors are loaded once for the KB keys.
template <int G, int KB, class KeyFn>
HWY_INLINE void DotGroupKeys(const float* const* q, const KeyFn& key, int64_t j0, int dim,
                             float* out) {
  static_assert(G * KB <= 16);
  const hn::ScalableTag<float> df;
  constexpr int kLanes = 16;
  static_assert(HWY_LANES(float) == kLanes);
  using T = std::remove_const_t<std::remove_pointer_t<decltype(key(j0))>>;
  const T* k[KB];
  for (int b = 0; b < KB; ++b) k[b] = key(j0 + b);
  hn::Vec<decltype(df)> acc0[G][KB], acc1[G][KB];
  for (int g = 0; g < G; ++g) {
    for (int b = 0; b < KB; ++b) acc0[g][b] = acc1[g][b] = hn::Zero(df);
  }
  int i = 0;
  for (; i + 2 * kLanes <= dim; i += 2 * kLanes) {
    hn::Vec<decltype(df)> k0[KB], k1[KB];
    for (int b = 0; b < KB; ++b) {
      k0[b] = LoadKv(df, k[b] + i);
      k1[b] = LoadKv(df, k[b] + i + kLanes);
    }
    for (int g = 0; g < G; ++g) {
      const auto q0 = hn::LoadU(df, q[g] + i), q1 = hn::LoadU(df, q[g] + i + kLanes);
      for (int b = 0; b < KB; ++b) {
        acc0[g][b] = hn::MulAdd(q0, k0[b], acc0[g][b]);
        acc1[g][b] = hn::MulAdd(q1, k1[b], acc1[g][b]);
      }
    }
  }
  for (; i + kLanes <= dim; i += kLanes) {
    hn::Vec<decltype(df)> k0[KB];
    for (int b = 0; b < KB; ++b) k0[b] = LoadKv(df, k[b] + i);
    for (int g = 0; g < G; ++g) {
      const auto q0 = hn::LoadU(df, q[g] + i);
      for (int b = 0; b < KB; ++b) acc0[g][b] = hn::MulAdd(q0, k0[b], acc0[g][b]);
    }
  }
  // Sum p = g * KB + b lands in lane p when it goes in as v[4 (p % 4) + p / 4].
  __m512 v[16];
  for (int p = 0; p < 16; ++p) {
    v[4 * (p % 4) + p / 4] =
        p < G * KB ? hn::Add(acc0[p / KB][p % KB], acc1[p / KB][p % KB]).raw : _mm512_setzero_ps();
  }
  HWY_ALIGN float sums[kLanes];
  _mm512_store_ps(sums, SumLanesOf16(v));
  for (int g = 0; g < G; ++g) {
    for (int b = 0; b < KB; ++b) {
      float sum = sums[g * KB + b];
      for (int c = i; c < dim; ++c) sum += q[g][c] * KvScalar(k[b][c]);
      out[g * KB + b] = sum;
    }
  }
}
#endif

// Keys (and values) ahead of the one in use whose rows are prefetched: a paged cache's rows
// are contiguous only within a block, where the hardware prefetchers stop.
constexpr int64_t kKeysAhead = 16;

// Prefetches the cache lines of row[0, count).
template <class T>
HWY_INLINE void PrefetchRow(const T* row, int64_t count) {
  for (int64_t c = 0; c < count; c += 64 / sizeof(T)) hwy::Prefetch(row + c);
}

// p = softmax(scores) in place over num_keys scores.
inline void SoftmaxInPlace(float* scores, int64_t num_keys, float max_score) {
  // exp(s - max) a vector at a time (Highway's Exp, within 1 ulp of libm; the scalar libm call
  // per key). The last partial vector is padded with max - 1000, whose term is exp(-1000) = 0,
  // so every key's term is the same whatever num_keys is.
  const hn::ScalableTag<float> df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  const auto vmax = hn::Set(df, max_score);
  auto vsum = hn::Zero(df);
  int64_t j = 0;
  for (; j + lanes <= num_keys; j += lanes) {
    const auto e = hn::Exp(df, hn::Sub(hn::LoadU(df, scores + j), vmax));
    hn::StoreU(e, df, scores + j);
    vsum = hn::Add(vsum, e);
  }
  if (j < num_keys) {
    HWY_ALIGN float tail[HWY_MAX_BYTES / sizeof(float)];
    for (int64_t t = 0; t < lanes; ++t) {
      tail[t] = j + t < num_keys ? scores[j + t] : max_score - 1000.0f;
    }
    const auto e = hn::Exp(df, hn::Sub(hn::Load(df, tail), vmax));
    hn::Store(e, df, tail);
    vsum = hn::Add(vsum, e);
    for (int64_t t = 0; j + t < num_keys; ++t) scores[j + t] = tail[t];
  }
  const float sum = hn::GetLane(hn::SumOfLanes(df, vsum));
  const float inv_sum = 1.0f / sum;
  for (int64_t jj = 0; jj < num_keys; ++jj) scores[jj] *= inv_sum;
}

// out[g][c0 + v * Lanes + l] = sum over keys j in order of p[g][j] * value(j)[...], for v < NV
// and each of the G heads: the accumulators stay in registers across the keys (an update of
// `out` per key chained every key through a store and a reload: half the attention time), and
// each value vector is loaded once for the G heads. One FMA per key and head, in key order.
template <int G, int NV, class ValueFn>
HWY_INLINE void AccumulateValues(const float* p, int64_t num_keys, const ValueFn& value, int64_t c0,
                                 float* const* out) {
  const hn::ScalableTag<float> df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  hn::Vec<decltype(df)> acc[G][NV];
  for (int g = 0; g < G; ++g) {
    for (int v = 0; v < NV; ++v) acc[g][v] = hn::Zero(df);
  }
  for (int64_t j = 0; j < num_keys; ++j) {
    if (j + kKeysAhead < num_keys) PrefetchRow(value(j + kKeysAhead) + c0, NV * lanes);
    const auto* vj = value(j) + c0;
    hn::Vec<decltype(df)> vv[NV];
    for (int v = 0; v < NV; ++v) vv[v] = LoadKv(df, vj + v * lanes);
    for (int g = 0; g < G; ++g) {
      const auto vp = hn::Set(df, p[g * num_keys + j]);
      for (int v = 0; v < NV; ++v) acc[g][v] = hn::MulAdd(vp, vv[v], acc[g][v]);
    }
  }
  for (int g = 0; g < G; ++g) {
    for (int v = 0; v < NV; ++v) hn::StoreU(acc[g][v], df, out[g] + c0 + v * lanes);
  }
}

// AccumulateValues<G, nv> for a run-time nv < NV + 1 (0: nothing).
template <int G, int NV, class ValueFn>
HWY_INLINE void AccumulateLastValues(int64_t nv, const float* p, int64_t num_keys,
                                     const ValueFn& value, int64_t c0, float* const* out) {
  if constexpr (NV > 0) {
    if (nv == NV) {
      AccumulateValues<G, NV>(p, num_keys, value, c0, out);
    } else {
      AccumulateLastValues<G, NV - 1>(nv, p, num_keys, value, c0, out);
    }
  }
}

// Value vectors per register block for G heads: G * NV accumulators and NV loads fit the
// vector registers.
constexpr int ValueBlock(int g) { return g <= 2 ? 8 : g <= 3 ? 6 : g <= 6 ? 4 : 2; }

// Softmax attention of G query heads that share one kv head (grouped-query attention) over
// num_keys keys: key(j) / value(j) give the vectors, each read once for all G heads (a head at
// a time read them G times: at long contexts that is G times the cache's bytes per step). Per
// head the arithmetic is that of one head alone, in the same order. scores: G * num_keys.
template <int G, class KeyFn, class ValueFn>
inline void AttendGroup(const float* const* q, int64_t num_keys, const KeyFn& key,
                        const ValueFn& value, int dim, float scale, float* scores,
                        float* const* out) {
  float max_score[G];
  for (int g = 0; g < G; ++g) max_score[g] = -INFINITY;
  int64_t j = 0;
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
  constexpr int kKeys = KeysPerBlock(G);
  for (; j + kKeys <= num_keys; j += kKeys) {
    for (int b = 0; b < kKeys; ++b) {
      if (j + b + kKeysAhead < num_keys) PrefetchRow(key(j + b + kKeysAhead), dim);
    }
    float dots[G * kKeys];
    DotGroupKeys<G, kKeys>(q, key, j, dim, dots);
    for (int b = 0; b < kKeys; ++b) {
      for (int g = 0; g < G; ++g) {
        const float s = dots[g * kKeys + b] * scale;
        scores[g * num_keys + j + b] = s;
        max_score[g] = std::max(max_score[g], s);
      }
    }
  }
#endif
  for (; j < num_keys; ++j) {
    if (j + kKeysAhead < num_keys) PrefetchRow(key(j + kKeysAhead), dim);
    float dots[G];
    DotGroup<G>(q, key(j), dim, dots);
    for (int g = 0; g < G; ++g) {
      const float s = dots[g] * scale;
      scores[g * num_keys + j] = s;
      max_score[g] = std::max(max_score[g], s);
    }
  }
  for (int g = 0; g < G; ++g) SoftmaxInPlace(scores + g * num_keys, num_keys, max_score[g]);
  // Blocks of ValueBlock(G) vectors of the outputs in registers, then the rest of the whole
  // vectors, then the columns past the last whole vector.
  const hn::ScalableTag<float> df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  constexpr int kNV = ValueBlock(G);
  const int64_t full = dim / lanes;
  int64_t v0 = 0;
  for (; v0 + kNV <= full; v0 += kNV) {
    AccumulateValues<G, kNV>(scores, num_keys, value, v0 * lanes, out);
  }
  AccumulateLastValues<G, kNV - 1>(full - v0, scores, num_keys, value, v0 * lanes, out);
  if (full * lanes < dim) {
    for (int g = 0; g < G; ++g) {
      float* o = out[g];
      const float* p = scores + g * num_keys;
      std::fill(o + full * lanes, o + dim, 0.0f);
      for (int64_t j = 0; j < num_keys; ++j) {
        const auto* vj = value(j);
        for (int64_t c = full * lanes; c < dim; ++c) o[c] += p[j] * KvScalar(vj[c]);
      }
    }
  }
}

// Most query heads attended together (a larger group goes in parts).
constexpr int kMaxGroup = 8;

// AttendGroup<g> for a run-time g in [1, G].
template <int G = kMaxGroup, class KeyFn, class ValueFn>
HWY_INLINE void AttendGroupOf(int g, const float* const* q, int64_t num_keys, const KeyFn& key,
                              const ValueFn& value, int dim, float scale, float* scores,
                              float* const* out) {
  if constexpr (G > 1) {
    if (g != G) {
      AttendGroupOf<G - 1>(g, q, num_keys, key, value, dim, scale, scores, out);
      return;
    }
  }
  AttendGroup<G>(q, num_keys, key, value, dim, scale, scores, out);
}

// Heads [head_begin, head_end) of query row i in runs that share a kv head: fn(kvh, h, g) for
// each run of g <= kMaxGroup heads from h.
template <class Fn>
HWY_INLINE void ForEachHeadRun(int head_begin, int head_end, int group, const Fn& fn) {
  for (int h = head_begin; h < head_end;) {
    const int kvh = h / group;
    const int g = std::min({head_end, (kvh + 1) * group, h + kMaxGroup}) - h;
    fn(kvh, h, g);
    h += g;
  }
}

// Query row i's heads [h, h + g) (one kv head's) of q [n, H, d] into out [n, H, d].
template <class KeyFn, class ValueFn>
HWY_INLINE void AttendHeadRun(const float* q, float* out, const AttentionShape& shape, int64_t i,
                              int h, int g, int64_t num_keys, const KeyFn& key,
                              const ValueFn& value, float* scores) {
  const float* qs[kMaxGroup];
  float* outs[kMaxGroup];
  for (int e = 0; e < g; ++e) {
    const int64_t row = (i * shape.num_heads + h + e) * shape.head_dim;
    qs[e] = q + row;
    outs[e] = out + row;
  }
  AttendGroupOf(g, qs, num_keys, key, value, shape.head_dim, shape.scale, scores, outs);
}

// Per-thread scratch for the scores of a run of heads.
inline float* GroupScores(int64_t count) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < count) buf.resize(count);
  return buf.data();
}

// PagedAttentionImpl over pools of element type T (fp32 or bf16 bits).
template <class T>
void PagedAttentionOf(const float* q, int64_t n, const int32_t* positions, const PagedKvView& kv,
                      const T* k_pool, const T* v_pool, const AttentionShape& shape, int head_begin,
                      int head_end, float* out) {
  const int d = shape.head_dim;
  const int hkv = shape.num_kv_heads;
  const int group = shape.num_heads / hkv;
  const int bs = kv.block_size;
  // Offset of key j of kv head 0 (PagedKvOffset), once per call: two integer divisions per key
  // and head in the loops below cost more than the dot products of a prefill.
  int64_t max_keys = 0;
  for (int64_t i = 0; i < n; ++i) max_keys = std::max<int64_t>(max_keys, positions[i] + 1);
  thread_local std::vector<int64_t> base;
  if (static_cast<int64_t>(base.size()) < max_keys) base.resize(max_keys);
  for (int64_t j = 0; j < max_keys; ++j) {
    base[j] = PagedKvOffset(kv.block_table[j / bs], 0, static_cast<int>(j % bs), hkv, bs, d);
  }
  const int64_t head_stride = static_cast<int64_t>(bs) * d;  // PagedKvOffset per kv head
  float* group_scores = GroupScores(kMaxGroup * max_keys);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t num_keys = static_cast<int64_t>(positions[i]) + 1;
    ForEachHeadRun(head_begin, head_end, group, [&](int kvh, int h, int g) {
      const T* k_head = k_pool + kvh * head_stride;
      const T* v_head = v_pool + kvh * head_stride;
      auto key = [&](int64_t j) { return k_head + base[j]; };
      auto value = [&](int64_t j) { return v_head + base[j]; };
      AttendHeadRun(q, out, shape, i, h, g, num_keys, key, value, group_scores);
    });
  }
}

void PagedAttentionImpl(const float* q, int64_t n, const int32_t* positions, const PagedKvView& kv,
                        const AttentionShape& shape, int head_begin, int head_end, float* out) {
  if (kv.k_pool_bf16 != nullptr) {
    PagedAttentionOf(q, n, positions, kv, kv.k_pool_bf16, kv.v_pool_bf16, shape, head_begin,
                     head_end, out);
  } else {
    PagedAttentionOf(q, n, positions, kv, kv.k_pool, kv.v_pool, shape, head_begin, head_end, out);
  }
}

void CausalAttentionImpl(const float* q, const float* k, const float* v, int64_t n,
                         const AttentionShape& shape, int head_begin, int head_end, float* out) {
  const int d = shape.head_dim;
  const int hkv = shape.num_kv_heads;
  const int group = shape.num_heads / hkv;
  float* group_scores = GroupScores(kMaxGroup * n);
  for (int64_t i = 0; i < n; ++i) {
    ForEachHeadRun(head_begin, head_end, group, [&](int kvh, int h, int g) {
      auto key = [&](int64_t j) { return k + (j * hkv + kvh) * d; };
      auto value = [&](int64_t j) { return v + (j * hkv + kvh) * d; };
      AttendHeadRun(q, out, shape, i, h, g, i + 1, key, value, group_scores);
    });
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace afd::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace afd::kernels {

HWY_EXPORT(PagedAttentionImpl);
HWY_EXPORT(CausalAttentionImpl);

void PagedAttention(const float* q, int64_t n, const int32_t* positions, const PagedKvView& kv,
                    const AttentionShape& shape, int head_begin, int head_end, float* out) {
  HWY_DYNAMIC_DISPATCH(PagedAttentionImpl)(q, n, positions, kv, shape, head_begin, head_end, out);
  ClearUpperVectorState();
}

void CausalAttention(const float* q, const float* k, const float* v, int64_t n,
                     const AttentionShape& shape, int head_begin, int head_end, float* out) {
  HWY_DYNAMIC_DISPATCH(CausalAttentionImpl)(q, k, v, n, shape, head_begin, head_end, out);
  ClearUpperVectorState();
}

namespace {

// Eager-attention order: s_j = (q . k_j) * scale; p = softmax(s) in fp32; out = sum_j p_j v_j.
template <class KeyFn, class ValueFn>
void AttendOneReference(const float* q, int64_t num_keys, const KeyFn& key, const ValueFn& value,
                        int dim, float scale, float* out) {
  using attention_internal::KvScalar;
  std::vector<float> p(num_keys);
  float max_score = -INFINITY;
  for (int64_t j = 0; j < num_keys; ++j) {
    const auto* kj = key(j);
    float dot = 0.0f;
    for (int c = 0; c < dim; ++c) dot += q[c] * KvScalar(kj[c]);
    p[j] = dot * scale;
    max_score = std::max(max_score, p[j]);
  }
  float sum = 0.0f;
  for (int64_t j = 0; j < num_keys; ++j) {
    p[j] = std::exp(p[j] - max_score);
    sum += p[j];
  }
  for (int64_t j = 0; j < num_keys; ++j) p[j] /= sum;
  for (int c = 0; c < dim; ++c) {
    float acc = 0.0f;
    for (int64_t j = 0; j < num_keys; ++j) acc += p[j] * KvScalar(value(j)[c]);
    out[c] = acc;
  }
}

// PagedAttentionReference over pools of element type T.
template <class T>
void PagedAttentionReferenceOf(const float* q, int64_t n, const int32_t* positions,
                               const PagedKvView& kv, const T* k_pool, const T* v_pool,
                               const AttentionShape& shape, float* out) {
  const int d = shape.head_dim;
  const int hkv = shape.num_kv_heads;
  const int group = shape.num_heads / hkv;
  const int bs = kv.block_size;
  for (int64_t i = 0; i < n; ++i) {
    for (int h = 0; h < shape.num_heads; ++h) {
      const int kvh = h / group;
      auto key = [&](int64_t j) {
        return k_pool +
               PagedKvOffset(kv.block_table[j / bs], kvh, static_cast<int>(j % bs), hkv, bs, d);
      };
      auto value = [&](int64_t j) {
        return v_pool +
               PagedKvOffset(kv.block_table[j / bs], kvh, static_cast<int>(j % bs), hkv, bs, d);
      };
      const int64_t row = (i * shape.num_heads + h) * d;
      AttendOneReference(q + row, static_cast<int64_t>(positions[i]) + 1, key, value, d,
                         shape.scale, out + row);
    }
  }
}

}  // namespace

void PagedAttentionReference(const float* q, int64_t n, const int32_t* positions,
                             const PagedKvView& kv, const AttentionShape& shape, float* out) {
  if (kv.k_pool_bf16 != nullptr) {
    PagedAttentionReferenceOf(q, n, positions, kv, kv.k_pool_bf16, kv.v_pool_bf16, shape, out);
  } else {
    PagedAttentionReferenceOf(q, n, positions, kv, kv.k_pool, kv.v_pool, shape, out);
  }
}

void CausalAttentionReference(const float* q, const float* k, const float* v, int64_t n,
                              const AttentionShape& shape, float* out) {
  const int d = shape.head_dim;
  const int hkv = shape.num_kv_heads;
  const int group = shape.num_heads / hkv;
  for (int64_t i = 0; i < n; ++i) {
    for (int h = 0; h < shape.num_heads; ++h) {
      const int kvh = h / group;
      auto key = [&](int64_t j) { return k + (j * hkv + kvh) * d; };
      auto value = [&](int64_t j) { return v + (j * hkv + kvh) * d; };
      const int64_t row = (i * shape.num_heads + h) * d;
      AttendOneReference(q + row, i + 1, key, value, d, shape.scale, out + row);
    }
  }
}

}  // namespace afd::kernels
#endif  // HWY_ONCE
