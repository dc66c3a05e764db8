// Helpers shared by the node load generators: comma-separated integer lists, deterministic
// routed batches, and latency percentiles. Not thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace afd::bench {

// "1,16,64" -> {1, 16, 64}; false on anything else.
inline bool ParseIntList(const std::string& text, std::vector<int>* out) {
  out->clear();
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int v = 0;
    if (!absl::SimpleAtoi(part, &v) || v <= 0) return false;
    out->push_back(v);
  }
  return !out->empty();
}

// Per token: top_k distinct experts drawn from `experts`, ascending, weights summing to 1;
// hidden states uniform in [-1, 1]. Fixed inputs: the same seed gives the same batch.
struct SyntheticBatch {
  std::vector<float> hidden;        // [T, D]
  std::vector<int32_t> expert_ids;  // [T, K]
  std::vector<float> weights;       // [T, K]
};

inline SyntheticBatch MakeSyntheticBatch(int64_t tokens, int hidden_dim, int top_k,
                                         const std::vector<int>& experts, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  SyntheticBatch b;
  b.hidden.resize(tokens * hidden_dim);
  for (float& v : b.hidden) v = value(rng);
  std::vector<int> pool = experts;
  for (int64_t t = 0; t < tokens; ++t) {
    std::shuffle(pool.begin(), pool.end(), rng);
    std::vector<int> chosen(pool.begin(), pool.begin() + top_k);
    std::sort(chosen.begin(), chosen.end());
    for (int e : chosen) {
      b.expert_ids.push_back(e);
      b.weights.push_back(1.0f / top_k);
    }
  }
  return b;
}

// q in [0, 1] of unsorted samples (sorted in place).
inline double Percentile(std::vector<double>* samples, double q) {
  if (samples->empty()) return 0;
  std::sort(samples->begin(), samples->end());
  const size_t i = std::min(samples->size() - 1, static_cast<size_t>(q * samples->size()));
  return (*samples)[i];
}

}  // namespace afd::bench
