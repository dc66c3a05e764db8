// Lightning attention kernels (see lightning_attention.h). Fast path: Highway dynamic dispatch
// over the head_dim axis; reference twins: scalar loops in transformers' operation order.
#include "common/kernels/lightning_attention.h"
#include "common/kernels/vector_state.h"

#include <algorithm>
#include <cmath>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "common/kernels/lightning_attention.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#ifndef AFD_COMMON_KERNELS_LIGHTNING_ATTENTION_ONCE_
#define AFD_COMMON_KERNELS_LIGHTNING_ATTENTION_ONCE_
namespace afd::kernels {
namespace {

// table[m] = exp(-(slope * m)) in fp32 for m = 0..block_size: transformers' query_decay
// (m = i+1), key_decay (m = B-(i+1)), diagonal_decay (m = i-j) and block decay (m = c).
void FillDecayTable(float slope, int block_size, float* table) {
  for (int m = 0; m <= block_size; ++m) table[m] = std::exp(-(slope * static_cast<float>(m)));
}

}  // namespace
}  // namespace afd::kernels
#endif  // AFD_COMMON_KERNELS_LIGHTNING_ATTENTION_ONCE_

HWY_BEFORE_NAMESPACE();
namespace afd::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

inline float Dot(const float* a, const float* b, int dim) {
  const hn::ScalableTag<float> df;
  const int lanes = static_cast<int>(hn::Lanes(df));
  auto acc = hn::Zero(df);
  int i = 0;
  for (; i + lanes <= dim; i += lanes) {
    acc = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), acc);
  }
  float sum = hn::GetLane(hn::SumOfLanes(df, acc));
  for (; i < dim; ++i) sum += a[i] * b[i];
  return sum;
}

// out[0, dim) += p * v[0, dim)
inline void Axpy(float p, const float* v, int dim, float* out) {
  const hn::ScalableTag<float> df;
  const int lanes = static_cast<int>(hn::Lanes(df));
  const auto vp = hn::Set(df, p);
  int i = 0;
  for (; i + lanes <= dim; i += lanes) {
    hn::StoreU(hn::MulAdd(vp, hn::LoadU(df, v + i), hn::LoadU(df, out + i)), df, out + i);
  }
  for (; i < dim; ++i) out[i] += p * v[i];
}

void LightningPrefillImpl(const float* qkv, int64_t n, int num_heads, int head_dim, int head_begin,
                          int head_end, const float* slopes, int block_size, float* state,
                          float* scratch, float* out) {
  const hn::ScalableTag<float> df;
  const int lanes = static_cast<int>(hn::Lanes(df));
  const int d = head_dim;
  const int bsz = block_size;
  float* decay = scratch;           // [B + 1]
  float* scores = decay + bsz + 1;  // [B]
  float* o_intra = scores + bsz;    // [d]
  float* kv_new = o_intra + d;      // [d, d]
  const int64_t token_stride = static_cast<int64_t>(num_heads) * 3 * d;
  for (int h = head_begin; h < head_end; ++h) {
    FillDecayTable(slopes[h], bsz, decay);
    float* s = state + static_cast<int64_t>(h) * d * d;  // [d, d]
    const float* qh = qkv + static_cast<int64_t>(h) * 3 * d;
    const float* kh = qh + d;
    const float* vh = qh + 2 * d;
    for (int64_t start = 0; start < n; start += bsz) {
      const int c = static_cast<int>(std::min<int64_t>(bsz, n - start));
      for (int i = 0; i < c; ++i) {
        const int64_t t = start + i;
        const float* qi = qh + t * token_stride;
        // Intra-block: ((Q K^T) * diag) V.
        for (int j = 0; j <= i; ++j) {
          scores[j] = Dot(qi, kh + (start + j) * token_stride, d) * decay[i - j];
        }
        std::fill(o_intra, o_intra + d, 0.0f);
        for (int j = 0; j <= i; ++j) Axpy(scores[j], vh + (start + j) * token_stride, d, o_intra);
        // Inter-block: (q * q_decay[i]) S_prev, then O = O_inter + O_intra.
        float* o = out + (t * num_heads + h) * d;
        std::fill(o, o + d, 0.0f);
        const float qd = decay[i + 1];
        for (int a = 0; a < d; ++a) Axpy(qi[a] * qd, s + static_cast<int64_t>(a) * d, d, o);
        int b = 0;
        for (; b + lanes <= d; b += lanes) {
          hn::StoreU(hn::Add(hn::LoadU(df, o + b), hn::LoadU(df, o_intra + b)), df, o + b);
        }
        for (; b < d; ++b) o[b] += o_intra[b];
      }
      // S = S * exp(-s c) + (K * k_decay[B-c:])^T V; key j of the block decays by
      // exp(-s (c-1-j)).
      std::fill(kv_new, kv_new + static_cast<int64_t>(d) * d, 0.0f);
      for (int j = 0; j < c; ++j) {
        const float* kj = kh + (start + j) * token_stride;
        const float* vj = vh + (start + j) * token_stride;
        const float kd = decay[c - 1 - j];
        for (int a = 0; a < d; ++a) Axpy(kj[a] * kd, vj, d, kv_new + static_cast<int64_t>(a) * d);
      }
      const auto block_decay = hn::Set(df, decay[c]);
      const int64_t dd = static_cast<int64_t>(d) * d;
      int64_t e = 0;
      for (; e + lanes <= dd; e += lanes) {
        hn::StoreU(hn::Add(hn::Mul(hn::LoadU(df, s + e), block_decay), hn::LoadU(df, kv_new + e)),
                   df, s + e);
      }
      for (; e < dd; ++e) s[e] = s[e] * decay[c] + kv_new[e];
    }
  }
}

void LightningDecodeImpl(const float* qkv, int64_t n, int num_heads, int head_dim, int head_begin,
                         int head_end, const float* slopes, float* state, float* out) {
  const hn::ScalableTag<float> df;
  const int lanes = static_cast<int>(hn::Lanes(df));
  const int d = head_dim;
  const int64_t token_stride = static_cast<int64_t>(num_heads) * 3 * d;
  for (int h = head_begin; h < head_end; ++h) {
    const float ratio = std::exp(-slopes[h]);
    const auto vratio = hn::Set(df, ratio);
    float* s = state + static_cast<int64_t>(h) * d * d;  // [d, d]
    for (int64_t t = 0; t < n; ++t) {
      const float* q = qkv + t * token_stride + static_cast<int64_t>(h) * 3 * d;
      const float* k = q + d;
      const float* v = q + 2 * d;
      float* o = out + (t * num_heads + h) * d;
      std::fill(o, o + d, 0.0f);
      for (int a = 0; a < d; ++a) {
        float* row = s + static_cast<int64_t>(a) * d;
        const auto ka = hn::Set(df, k[a]);
        int b = 0;
        // S[a, b] = ratio * S[a, b] + k[a] * v[b], each product rounded as transformers does.
        for (; b + lanes <= d; b += lanes) {
          const auto updated =
              hn::Add(hn::Mul(vratio, hn::LoadU(df, row + b)), hn::Mul(ka, hn::LoadU(df, v + b)));
          hn::StoreU(updated, df, row + b);
        }
        for (; b < d; ++b) row[b] = ratio * row[b] + k[a] * v[b];
        Axpy(q[a], row, d, o);
      }
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace afd::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace afd::kernels {

HWY_EXPORT(LightningPrefillImpl);
HWY_EXPORT(LightningDecodeImpl);

std::vector<float> LightningSlopes(int num_heads, int layer, int num_layers) {
  const float base = static_cast<float>(1.0 / std::pow(2.0, 8.0 / num_heads));
  const float factor = static_cast<float>(1.0 - layer / (num_layers - 1 + 1e-5) + 1e-5);
  std::vector<float> slopes(num_heads);
  for (int h = 0; h < num_heads; ++h) {
    const float rate = static_cast<float>(std::pow(static_cast<double>(base), h + 1));
    slopes[h] = rate * factor;
  }
  return slopes;
}

size_t LightningPrefillScratchFloats(int head_dim, int block_size) {
  return static_cast<size_t>(block_size) + 1 + block_size + head_dim +
         static_cast<size_t>(head_dim) * head_dim;
}

void LightningPrefill(const float* qkv, int64_t n, int num_heads, int head_dim, int head_begin,
                      int head_end, const float* slopes, int block_size, float* state,
                      float* scratch, float* out) {
  HWY_DYNAMIC_DISPATCH(LightningPrefillImpl)
  (qkv, n, num_heads, head_dim, head_begin, head_end, slopes, block_size, state, scratch, out);
  ClearUpperVectorState();
}

void LightningDecode(const float* qkv, int64_t n, int num_heads, int head_dim, int head_begin,
                     int head_end, const float* slopes, float* state, float* out) {
  HWY_DYNAMIC_DISPATCH(LightningDecodeImpl)
  (qkv, n, num_heads, head_dim, head_begin, head_end, slopes, state, out);
  ClearUpperVectorState();
}

void LightningPrefillReference(const float* qkv, int64_t n, int num_heads, int head_dim,
                               const float* slopes, int block_size, float* state, float* out) {
  const int d = head_dim;
  const int bsz = block_size;
  const int64_t stride = static_cast<int64_t>(num_heads) * 3 * d;
  std::vector<float> decay(bsz + 1);
  std::vector<float> scores(static_cast<size_t>(bsz) * bsz);
  std::vector<float> kv_new(static_cast<size_t>(d) * d);
  for (int h = 0; h < num_heads; ++h) {
    FillDecayTable(slopes[h], bsz, decay.data());
    float* s = state + static_cast<int64_t>(h) * d * d;
    auto q = [&](int64_t t, int a) { return qkv[t * stride + h * 3 * d + a]; };
    auto k = [&](int64_t t, int a) { return qkv[t * stride + h * 3 * d + d + a]; };
    auto v = [&](int64_t t, int a) { return qkv[t * stride + h * 3 * d + 2 * d + a]; };
    for (int64_t start = 0; start < n; start += bsz) {
      const int c = static_cast<int>(std::min<int64_t>(bsz, n - start));
      // attn_weights_intra = Q K^T, masked by the diagonal decay (0 above the diagonal).
      for (int i = 0; i < c; ++i) {
        for (int j = 0; j < c; ++j) {
          float dot = 0.0f;
          for (int a = 0; a < d; ++a) dot += q(start + i, a) * k(start + j, a);
          scores[i * bsz + j] = j <= i ? dot * decay[i - j] : 0.0f;
        }
      }
      for (int i = 0; i < c; ++i) {
        const int64_t t = start + i;
        for (int b = 0; b < d; ++b) {
          float intra = 0.0f;
          for (int j = 0; j < c; ++j) intra += scores[i * bsz + j] * v(start + j, b);
          float inter = 0.0f;
          for (int a = 0; a < d; ++a) inter += (q(t, a) * decay[i + 1]) * s[a * d + b];
          out[(t * num_heads + h) * d + b] = inter + intra;
        }
      }
      for (int a = 0; a < d; ++a) {
        for (int b = 0; b < d; ++b) {
          float acc = 0.0f;
          for (int j = 0; j < c; ++j) acc += (k(start + j, a) * decay[c - 1 - j]) * v(start + j, b);
          kv_new[a * d + b] = acc;
        }
      }
      for (int e = 0; e < d * d; ++e) s[e] = s[e] * decay[c] + kv_new[e];
    }
  }
}

void LightningDecodeReference(const float* qkv, int64_t n, int num_heads, int head_dim,
                              const float* slopes, float* state, float* out) {
  const int d = head_dim;
  const int64_t stride = static_cast<int64_t>(num_heads) * 3 * d;
  for (int h = 0; h < num_heads; ++h) {
    const float ratio = std::exp(-slopes[h]);
    float* s = state + static_cast<int64_t>(h) * d * d;
    for (int64_t t = 0; t < n; ++t) {
      const float* q = qkv + t * stride + h * 3 * d;
      const float* k = q + d;
      const float* v = q + 2 * d;
      for (int a = 0; a < d; ++a) {
        for (int b = 0; b < d; ++b) s[a * d + b] = ratio * s[a * d + b] + k[a] * v[b];
      }
      for (int b = 0; b < d; ++b) {
        float acc = 0.0f;
        for (int a = 0; a < d; ++a) acc += q[a] * s[a * d + b];
        out[(t * num_heads + h) * d + b] = acc;
      }
    }
  }
}

}  // namespace afd::kernels
#endif  // HWY_ONCE
