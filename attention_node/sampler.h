// Sampler: picks a sequence's next token from its logits. Greedy (temperature 0) or seeded
// sampling with temperature, top-k, top-p and min-p, after repetition / presence / frequency
// penalties (vLLM's order and conventions), and reports logprobs. The same params, prompt and
// logits always give the same tokens. One Sampler per sequence; not thread-safe.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace afd::attention {

struct SamplingParams {
  float temperature = 0.0f;         // 0: greedy (argmax, lowest id on ties)
  int top_k = 0;                    // keep the k most likely tokens; 0: all
  float top_p = 1.0f;               // keep the smallest set with probability >= top_p; 1: all
  float min_p = 0.0f;               // drop tokens with p < min_p * p_max; 0: none
  float repetition_penalty = 1.0f;  // > 1 discourages tokens of the prompt and output
  float presence_penalty = 0.0f;    // subtracted once from tokens already generated
  float frequency_penalty = 0.0f;   // subtracted per occurrence in the generated tokens
  uint64_t seed = 0;                // RNG seed for non-greedy sampling
  int top_logprobs = 0;             // how many most likely alternatives to report (0..20)
  bool logprobs = false;            // report the chosen token's logprob (implied by top_logprobs)
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;  // log-softmax of the raw (unprocessed) logits
};

struct SampleResult {
  int32_t token = 0;
  float logprob = 0.0f;           // of the chosen token under the raw logits (0 unless asked)
  std::vector<TokenLogprob> top;  // top_logprobs alternatives, most likely first
};

// The logprobs a Sampler reports for `token`: the log-softmax of the raw `logits` in double,
// and the top_n most likely tokens (decreasing logit, lower id first on ties). Also used for
// tokens chosen by teacher forcing.
SampleResult TokenLogprobs(absl::Span<const float> logits, int32_t token, int top_n);

// The greedy token of `logits`: the lowest id among the largest values (a NaN never wins; a
// NaN first entry gives 0). ArgMaxReference is its plain twin (one compare chain).
int32_t ArgMax(absl::Span<const float> logits);
int32_t ArgMaxReference(absl::Span<const float> logits);

class Sampler {
 public:
  // INVALID_ARGUMENT for out-of-range params (negative temperature or top_k, top_p outside
  // (0, 1], min_p outside [0, 1], repetition_penalty <= 0, top_logprobs outside [0, 20]).
  static absl::StatusOr<Sampler> Create(const SamplingParams& params,
                                        absl::Span<const int32_t> prompt);

  // Picks the next token from `logits` [vocab] and records it as generated (it then counts
  // for the penalties of later calls). The log-softmax over the vocabulary (an exp per entry)
  // is computed only when params.logprobs or top_logprobs asks for it.
  SampleResult Sample(absl::Span<const float> logits);

  const SamplingParams& params() const { return params_; }
  const std::vector<int32_t>& generated() const { return generated_; }

 private:
  Sampler(const SamplingParams& params, absl::Span<const int32_t> prompt);
  void ApplyPenalties(std::vector<float>& logits) const;
  int32_t Draw(const std::vector<float>& logits);
  double Uniform();  // [0, 1), 53 random bits

  SamplingParams params_;
  std::vector<int32_t> prompt_;
  std::vector<int32_t> generated_;
  std::mt19937_64 rng_;
  std::vector<float> work_;     // [vocab] processed logits
  std::vector<int32_t> order_;  // candidate ids
};

}  // namespace afd::attention
