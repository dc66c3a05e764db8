// Sampler (see sampler.h).
#include "attention_node/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace afd::attention {

int32_t ArgMaxReference(absl::Span<const float> v) {
  int32_t best = 0;
  for (int32_t i = 1; i < static_cast<int32_t>(v.size()); ++i) {
    if (v[i] > v[best]) best = i;
  }
  return best;
}

int32_t ArgMax(absl::Span<const float> v) {
  const int64_t n = static_cast<int64_t>(v.size());
  if (n == 0 || std::isnan(v[0])) return 0;
  // The largest value, in kLanes independent chains (x > m ? x : m: a NaN never wins).
  constexpr int kLanes = 16;
  float m[kLanes];
  std::fill(m, m + kLanes, v[0]);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) m[j] = v[i + j] > m[j] ? v[i + j] : m[j];
  }
  float best = v[0];
  for (int j = 0; j < kLanes; ++j) best = m[j] > best ? m[j] : best;
  for (; i < n; ++i) best = v[i] > best ? v[i] : best;
  // Its first index: whole blocks checked, then the block holding it scanned. (The reference's
  // strict > keeps the first of equal values, and +0 == -0 there as here.)
  int64_t b = 0;
  for (; b + kLanes <= n; b += kLanes) {
    bool any = false;
    for (int j = 0; j < kLanes; ++j) any |= v[b + j] == best;
    if (any) break;
  }
  for (int64_t k = b; k < n; ++k) {
    if (v[k] == best) return static_cast<int32_t>(k);
  }
  return 0;
}

absl::StatusOr<Sampler> Sampler::Create(const SamplingParams& p, absl::Span<const int32_t> prompt) {
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling: temperature must be >= 0, got ", p.temperature));
  }
  if (p.top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat("sampling: top_k must be >= 0, got ", p.top_k));
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling: top_p must be in (0, 1], got ", p.top_p));
  }
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling: min_p must be in [0, 1], got ", p.min_p));
  }
  if (!(p.repetition_penalty > 0.0f) || !std::isfinite(p.repetition_penalty)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling: repetition_penalty must be > 0, got ", p.repetition_penalty));
  }
  if (!std::isfinite(p.presence_penalty) || !std::isfinite(p.frequency_penalty)) {
    return absl::InvalidArgumentError("sampling: presence/frequency penalties must be finite");
  }
  if (p.top_logprobs < 0 || p.top_logprobs > 20) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling: top_logprobs must be in [0, 20], got ", p.top_logprobs));
  }
  return Sampler(p, prompt);
}

Sampler::Sampler(const SamplingParams& params, absl::Span<const int32_t> prompt)
    : params_(params), prompt_(prompt.begin(), prompt.end()), rng_(params.seed) {}

double Sampler::Uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

void Sampler::ApplyPenalties(std::vector<float>& logits) const {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  if (params_.repetition_penalty != 1.0f) {
    absl::flat_hash_set<int32_t> seen(prompt_.begin(), prompt_.end());
    seen.insert(generated_.begin(), generated_.end());
    const float rp = params_.repetition_penalty;
    for (int32_t t : seen) {
      if (t < 0 || t >= vocab) continue;
      logits[t] = logits[t] > 0 ? logits[t] / rp : logits[t] * rp;
    }
  }
  if (params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f) {
    absl::flat_hash_map<int32_t, int> counts;
    for (int32_t t : generated_) ++counts[t];
    for (const auto& [t, count] : counts) {
      if (t < 0 || t >= vocab) continue;
      logits[t] -= params_.frequency_penalty * static_cast<float>(count) + params_.presence_penalty;
    }
  }
}

int32_t Sampler::Draw(const std::vector<float>& logits) {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  const double inv_t = 1.0 / params_.temperature;
  // Candidates by decreasing logit, lower id first on ties (a total order, so deterministic).
  auto before = [&](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  };
  order_.resize(vocab);
  std::iota(order_.begin(), order_.end(), 0);
  int32_t keep = vocab;
  if (params_.top_k > 0 && params_.top_k < vocab) {
    keep = params_.top_k;
    std::partial_sort(order_.begin(), order_.begin() + keep, order_.end(), before);
  } else {
    std::sort(order_.begin(), order_.end(), before);
  }
  // Softmax of logits / temperature over the kept candidates, in double.
  std::vector<double> probs(keep);
  const double top = logits[order_[0]] * inv_t;
  double sum = 0.0;
  for (int32_t i = 0; i < keep; ++i) {
    const double d = logits[order_[i]] * inv_t - top;
    probs[i] = d > -708.0 ? std::exp(d) : 0.0;  // as in Sample: skip glibc's subnormal path
    sum += probs[i];
  }
  for (double& p : probs) p /= sum;
  // top-p: smallest prefix whose mass reaches top_p.
  if (params_.top_p < 1.0f) {
    double cum = 0.0;
    int32_t i = 0;
    while (i < keep) {
      cum += probs[i++];
      if (cum >= params_.top_p) break;
    }
    keep = std::max(i, 1);
  }
  // min-p: drop candidates below min_p times the most likely one.
  if (params_.min_p > 0.0f) {
    const double floor = params_.min_p * probs[0];
    int32_t i = 1;
    while (i < keep && probs[i] >= floor) ++i;
    keep = i;
  }
  double mass = 0.0;
  for (int32_t i = 0; i < keep; ++i) mass += probs[i];
  const double u = Uniform() * mass;
  double cum = 0.0;
  for (int32_t i = 0; i < keep; ++i) {
    cum += probs[i];
    if (u < cum) return order_[i];
  }
  return order_[keep - 1];
}

SampleResult TokenLogprobs(absl::Span<const float> logits, int32_t token, int top_n) {
  double max_logit = -INFINITY;
  for (float x : logits) max_logit = std::max<double>(max_logit, x);
  // Terms below e^-708 (subnormal or zero in double) cannot change a sum that is >= 1, and
  // glibc's exp takes a slow path for them (~12x per call).
  double sum = 0.0;
  for (float x : logits) {
    const double d = x - max_logit;
    if (d > -708.0) sum += std::exp(d);
  }
  const double log_z = max_logit + std::log(sum);
  SampleResult result;
  result.token = token;
  result.logprob = static_cast<float>(logits[token] - log_z);
  const int32_t vocab = static_cast<int32_t>(logits.size());
  const int32_t k = std::min(top_n, vocab);
  if (k > 0) {
    std::vector<int32_t> ids(vocab);
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
      return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
    });
    for (int32_t i = 0; i < k; ++i) {
      result.top.push_back({ids[i], static_cast<float>(logits[ids[i]] - log_z)});
    }
  }
  return result;
}

SampleResult Sampler::Sample(absl::Span<const float> logits) {
  SampleResult result;
  const bool greedy = params_.temperature == 0.0f;
  const bool penalties = params_.repetition_penalty != 1.0f || params_.presence_penalty != 0.0f ||
                         params_.frequency_penalty != 0.0f;
  if (greedy && !penalties) {
    result.token = ArgMax(logits);  // nothing to change: no copy of the row
  } else {
    work_.assign(logits.begin(), logits.end());
    ApplyPenalties(work_);
    result.token = greedy ? ArgMax(work_) : Draw(work_);
  }

  if (params_.logprobs || params_.top_logprobs > 0) {
    result = TokenLogprobs(logits, result.token, params_.top_logprobs);
  }
  generated_.push_back(result.token);
  return result;
}

}  // namespace afd::attention
