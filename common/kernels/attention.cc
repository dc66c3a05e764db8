// Causal GQA softmax attention kernels (see attention.h). The fast path uses Highway dynamic
// dispatch for the q.k dot products and the p*v accumulation; the reference twins are plain
// scalar loops in the order transformers' eager attention uses.
#include "common/kernels/attention.h"
#include "common/kernels/vector_state.h"

#include <algorithm>
#include <cmath>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "common/kernels/attention.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/contrib/math/math-inl.h"

HWY_BEFORE_NAMESPACE();
namespace afd::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

inline float Dot(const float* a, const float* b, int dim) {
  const hn::ScalableTag<float> df;
  const int lanes = static_cast<int>(hn::Lanes(df));
  auto acc0 = hn::Zero(df);
  auto acc1 = hn::Zero(df);
  int i = 0;
  for (; i + 2 * lanes <= dim; i += 2 * lanes) {
    acc0 = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), acc0);
    acc1 = hn::MulAdd(hn::LoadU(df, a + i + lanes), hn::LoadU(df, b + i + lanes), acc1);
  }
  for (; i + lanes <= dim; i += lanes) {
    acc0 = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), acc0);
  }
  float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1)));
  for (; i < dim; ++i) sum += a[i] * b[i];
  return sum;
}

// out[c0 + v * Lanes + l] = sum over keys j in order of p_j * value(j)[...], for v < NV: the
// accumulators stay in registers across the keys (an update of `out` per key chained every key
// through a store and a reload: half the attention time). One FMA per key, in key order.
template <int NV, class ValueFn>
HWY_INLINE void AccumulateValues(const float* p, int64_t num_keys, const ValueFn& value, int64_t c0,
                                 float* out) {
  const hn::ScalableTag<float> df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  hn::Vec<decltype(df)> acc[NV];
  for (int v = 0; v < NV; ++v) acc[v] = hn::Zero(df);
  for (int64_t j = 0; j < num_keys; ++j) {
    const auto vp = hn::Set(df, p[j]);
    const float* vj = value(j) + c0;
    for (int v = 0; v < NV; ++v) acc[v] = hn::MulAdd(vp, hn::LoadU(df, vj + v * lanes), acc[v]);
  }
  for (int v = 0; v < NV; ++v) hn::StoreU(acc[v], df, out + c0 + v * lanes);
}

// AccumulateValues<nv> for a run-time nv < 8 (0: nothing).
template <int NV = 7, class ValueFn>
HWY_INLINE void AccumulateLastValues(int64_t nv, const float* p, int64_t num_keys,
                                     const ValueFn& value, int64_t c0, float* out) {
  if constexpr (NV > 0) {
    if (nv == NV) {
      AccumulateValues<NV>(p, num_keys, value, c0, out);
    } else {
      AccumulateLastValues<NV - 1>(nv, p, num_keys, value, c0, out);
    }
  }
}

// Softmax attention of one query over num_keys keys: key(j) / value(j) give the vectors.
template <class KeyFn, class ValueFn>
inline void AttendOne(const float* q, int64_t num_keys, const KeyFn& key, const ValueFn& value,
                      int dim, float scale, float* scores, float* out) {
  float max_score = -INFINITY;
  for (int64_t j = 0; j < num_keys; ++j) {
    const float s = Dot(q, key(j), dim) * scale;
    scores[j] = s;
    max_score = std::max(max_score, s);
  }
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
  // Blocks of 8 vectors of the output in registers, then the rest of the whole vectors, then
  // the columns past the last whole vector.
  const int64_t full = dim / lanes;
  int64_t v0 = 0;
  for (; v0 + 8 <= full; v0 += 8) AccumulateValues<8>(scores, num_keys, value, v0 * lanes, out);
  AccumulateLastValues(full - v0, scores, num_keys, value, v0 * lanes, out);
  if (full * lanes < dim) {
    std::fill(out + full * lanes, out + dim, 0.0f);
    for (int64_t j = 0; j < num_keys; ++j) {
      const float* vj = value(j);
      for (int64_t c = full * lanes; c < dim; ++c) out[c] += scores[j] * vj[c];
    }
  }
}

void PagedAttentionImpl(const float* q, int64_t n, const int32_t* positions, const PagedKvView& kv,
                        const AttentionShape& shape, int head_begin, int head_end, float* scores,
                        float* out) {
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
  for (int64_t i = 0; i < n; ++i) {
    const int64_t num_keys = static_cast<int64_t>(positions[i]) + 1;
    for (int h = head_begin; h < head_end; ++h) {
      const int kvh = h / group;
      const float* k_head = kv.k_pool + kvh * head_stride;
      const float* v_head = kv.v_pool + kvh * head_stride;
      auto key = [&](int64_t j) { return k_head + base[j]; };
      auto value = [&](int64_t j) { return v_head + base[j]; };
      const int64_t row = (i * shape.num_heads + h) * d;
      AttendOne(q + row, num_keys, key, value, d, shape.scale, scores, out + row);
    }
  }
}

void CausalAttentionImpl(const float* q, const float* k, const float* v, int64_t n,
                         const AttentionShape& shape, int head_begin, int head_end, float* scores,
                         float* out) {
  const int d = shape.head_dim;
  const int hkv = shape.num_kv_heads;
  const int group = shape.num_heads / hkv;
  for (int64_t i = 0; i < n; ++i) {
    for (int h = head_begin; h < head_end; ++h) {
      const int kvh = h / group;
      auto key = [&](int64_t j) { return k + (j * hkv + kvh) * d; };
      auto value = [&](int64_t j) { return v + (j * hkv + kvh) * d; };
      const int64_t row = (i * shape.num_heads + h) * d;
      AttendOne(q + row, i + 1, key, value, d, shape.scale, scores, out + row);
    }
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
                    const AttentionShape& shape, int head_begin, int head_end, float* scores,
                    float* out) {
  HWY_DYNAMIC_DISPATCH(PagedAttentionImpl)
  (q, n, positions, kv, shape, head_begin, head_end, scores, out);
  ClearUpperVectorState();
}

void CausalAttention(const float* q, const float* k, const float* v, int64_t n,
                     const AttentionShape& shape, int head_begin, int head_end, float* scores,
                     float* out) {
  HWY_DYNAMIC_DISPATCH(CausalAttentionImpl)(q, k, v, n, shape, head_begin, head_end, scores, out);
  ClearUpperVectorState();
}

namespace {

// Eager-attention order: s_j = (q . k_j) * scale; p = softmax(s) in fp32; out = sum_j p_j v_j.
template <class KeyFn, class ValueFn>
void AttendOneReference(const float* q, int64_t num_keys, const KeyFn& key, const ValueFn& value,
                        int dim, float scale, float* out) {
  std::vector<float> p(num_keys);
  float max_score = -INFINITY;
  for (int64_t j = 0; j < num_keys; ++j) {
    const float* kj = key(j);
    float dot = 0.0f;
    for (int c = 0; c < dim; ++c) dot += q[c] * kj[c];
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
    for (int64_t j = 0; j < num_keys; ++j) acc += p[j] * value(j)[c];
    out[c] = acc;
  }
}

}  // namespace

void PagedAttentionReference(const float* q, int64_t n, const int32_t* positions,
                             const PagedKvView& kv, const AttentionShape& shape, float* out) {
  const int d = shape.head_dim;
  const int hkv = shape.num_kv_heads;
  const int group = shape.num_heads / hkv;
  const int bs = kv.block_size;
  for (int64_t i = 0; i < n; ++i) {
    for (int h = 0; h < shape.num_heads; ++h) {
      const int kvh = h / group;
      auto key = [&](int64_t j) {
        return kv.k_pool +
               PagedKvOffset(kv.block_table[j / bs], kvh, static_cast<int>(j % bs), hkv, bs, d);
      };
      auto value = [&](int64_t j) {
        return kv.v_pool +
               PagedKvOffset(kv.block_table[j / bs], kvh, static_cast<int>(j % bs), hkv, bs, d);
      };
      const int64_t row = (i * shape.num_heads + h) * d;
      AttendOneReference(q + row, static_cast<int64_t>(positions[i]) + 1, key, value, d,
                         shape.scale, out + row);
    }
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
