// MoE routing (see routing.h). Scores are computed in fp32 exactly as torch does on CPU:
// sigmoid(x) = 1 / (1 + exp(-x)); softmax = exp(x - max) * (1 / sum). Selection takes the k
// largest selection scores, the lower expert id winning exact ties (NaN ranks lowest); the
// chosen weights are renormalised by their sum taken in ascending expert-id order.
#include "common/kernels/routing.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace afd::kernels {
namespace {

float Sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }

// Selection key: NaN ranks below everything.
float Key(float v) { return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v; }

// True when expert a (score sa) ranks before expert b (score sb).
bool Before(float sa, int a, float sb, int b) {
  const float ka = Key(sa), kb = Key(sb);
  return ka > kb || (ka == kb && a < b);
}

// ids[0, k) = the k best experts by `score` (sorted by ascending id). Partial selection: keeps
// the best k seen so far, best first, in `top`.
void SelectTopK(const float* score, int num_experts, int k, int32_t* ids) {
  int count = 0;
  for (int j = 0; j < num_experts; ++j) {
    if (count == k && !Before(score[j], j, score[ids[k - 1]], ids[k - 1])) continue;
    int pos = count < k ? count++ : k - 1;
    while (pos > 0 && Before(score[j], j, score[ids[pos - 1]], ids[pos - 1])) {
      ids[pos] = ids[pos - 1];
      --pos;
    }
    ids[pos] = j;
  }
  std::sort(ids, ids + k);
}

// Reference selection: full sort of all experts by the same order.
void SelectTopKReference(const float* score, int num_experts, int k, int32_t* ids) {
  std::vector<int32_t> order(static_cast<size_t>(num_experts));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int32_t a, int32_t b) { return Before(score[a], a, score[b], b); });
  std::copy(order.begin(), order.begin() + k, ids);
  std::sort(ids, ids + k);
}

// weights[i] = p[ids[i]] / sum_i p[ids[i]] (ids ascending, so the sum runs in id order).
void Renormalize(const float* p, const int32_t* ids, int k, float* weights) {
  float sum = 0.0f;
  for (int i = 0; i < k; ++i) sum += p[ids[i]];
  for (int i = 0; i < k; ++i) weights[i] = p[ids[i]] / sum;
}

// Per-thread scratch of at least `count` floats (grows on first use only).
float* Scratch(size_t count) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < count) buffer.resize(count);
  return buffer.data();
}

void Softmax(const float* logits, int num_experts, float* p) {
  float max = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < num_experts; ++j) max = std::max(max, logits[j]);
  float sum = 0.0f;
  for (int j = 0; j < num_experts; ++j) {
    p[j] = std::exp(logits[j] - max);
    sum += p[j];
  }
  const float inv = 1.0f / sum;
  for (int j = 0; j < num_experts; ++j) p[j] *= inv;
}

}  // namespace

void SigmoidBiasTopK(const float* logits, const float* bias, int64_t n, int num_experts, int k,
                     int32_t* expert_ids, float* weights) {
  float* s = Scratch(2 * static_cast<size_t>(num_experts));
  float* c = s + num_experts;
  for (int64_t t = 0; t < n; ++t) {
    const float* l = logits + t * num_experts;
    for (int j = 0; j < num_experts; ++j) {
      s[j] = Sigmoid(l[j]);
      c[j] = bias != nullptr ? s[j] + bias[j] : s[j];
    }
    SelectTopK(c, num_experts, k, expert_ids + t * k);
    Renormalize(s, expert_ids + t * k, k, weights + t * k);
  }
}

void SigmoidBiasTopKReference(const float* logits, const float* bias, int64_t n, int num_experts,
                              int k, int32_t* expert_ids, float* weights) {
  std::vector<float> s(static_cast<size_t>(num_experts)), c(static_cast<size_t>(num_experts));
  for (int64_t t = 0; t < n; ++t) {
    for (int j = 0; j < num_experts; ++j) {
      s[j] = 1.0f / (1.0f + std::exp(-logits[t * num_experts + j]));
      c[j] = s[j] + (bias != nullptr ? bias[j] : 0.0f);
    }
    SelectTopKReference(c.data(), num_experts, k, expert_ids + t * k);
    Renormalize(s.data(), expert_ids + t * k, k, weights + t * k);
  }
}

void SoftmaxTopK(const float* logits, int64_t n, int num_experts, int k, int32_t* expert_ids,
                 float* weights) {
  float* p = Scratch(static_cast<size_t>(num_experts));
  for (int64_t t = 0; t < n; ++t) {
    Softmax(logits + t * num_experts, num_experts, p);
    SelectTopK(p, num_experts, k, expert_ids + t * k);
    Renormalize(p, expert_ids + t * k, k, weights + t * k);
  }
}

void SoftmaxTopKReference(const float* logits, int64_t n, int num_experts, int k,
                          int32_t* expert_ids, float* weights) {
  std::vector<float> p(static_cast<size_t>(num_experts));
  for (int64_t t = 0; t < n; ++t) {
    const float* l = logits + t * num_experts;
    float max = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < num_experts; ++j) max = l[j] > max ? l[j] : max;
    float sum = 0.0f;
    for (int j = 0; j < num_experts; ++j) sum += (p[j] = std::exp(l[j] - max));
    for (int j = 0; j < num_experts; ++j) p[j] = p[j] * (1.0f / sum);
    SelectTopKReference(p.data(), num_experts, k, expert_ids + t * k);
    Renormalize(p.data(), expert_ids + t * k, k, weights + t * k);
  }
}

}  // namespace afd::kernels
