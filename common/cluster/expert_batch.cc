// ExpertBatchView checks and the folded-row layout (see expert_batch.h).
#include "common/cluster/expert_batch.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace afd {

absl::Status ValidateExpertBatch(const ExpertBatchView& batch) {
  if (batch.num_tokens < 0 || batch.hidden_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("expert batch: ", batch.num_tokens,
                                                   " tokens of hidden size ", batch.hidden_dim));
  }
  if (batch.num_tokens == 0) return absl::OkStatus();
  if (batch.offsets[0] != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("expert batch: offsets[0] is ", batch.offsets[0], ", expected 0"));
  }
  // All offsets first: the pair checks below index expert_ids with them.
  for (int64_t t = 0; t < batch.num_tokens; ++t) {
    if (batch.offsets[t + 1] < batch.offsets[t]) {
      return absl::InvalidArgumentError(absl::StrCat("expert batch: token ", t, ": offsets ",
                                                     batch.offsets[t], " > ", batch.offsets[t + 1],
                                                     " (must not decrease)"));
    }
  }
  for (int64_t t = 0; t < batch.num_tokens; ++t) {
    const uint32_t begin = batch.offsets[t], end = batch.offsets[t + 1];
    for (uint32_t p = begin + 1; p < end; ++p) {
      if (batch.expert_ids[p] <= batch.expert_ids[p - 1]) {
        return absl::InvalidArgumentError(
            absl::StrCat("expert batch: token ", t, ": expert ids ", batch.expert_ids[p - 1], ", ",
                         batch.expert_ids[p], " are not strictly ascending"));
      }
    }
    if (batch.tiles != nullptr && batch.tiles[t] > 1) {
      return absl::InvalidArgumentError(absl::StrCat("expert batch: token ", t, ": tiles ",
                                                     batch.tiles[t], " (must be 0 or 1)"));
    }
    if (batch.fold != nullptr && batch.fold[t] > end - begin) {
      return absl::InvalidArgumentError(absl::StrCat("expert batch: token ", t, ": fold ",
                                                     batch.fold[t], " exceeds its ", end - begin,
                                                     " pairs"));
    }
  }
  return absl::OkStatus();
}

int64_t ExpertResultRows(const ExpertBatchView& batch) {
  int64_t rows = batch.num_pairs();
  if (batch.fold != nullptr) {
    for (int64_t t = 0; t < batch.num_tokens; ++t) {
      if (batch.fold[t] > 1) rows -= batch.fold[t] - 1;
    }
  }
  return rows;
}

void FoldExpertTerms(const ExpertBatchView& batch, const float* terms, float* rows) {
  const int64_t d = batch.hidden_dim;
  float* out = rows;
  for (int64_t t = 0; t < batch.num_tokens; ++t) {
    int64_t p = batch.offsets[t];
    const int64_t end = batch.offsets[t + 1];
    const int64_t fold = batch.fold != nullptr ? batch.fold[t] : 0;
    if (fold >= 1) {
      // The same additions, in the same order, as the attention node's combine: +0.0f, then
      // each term in ascending expert order.
      std::fill(out, out + d, 0.0f);
      for (const int64_t stop = p + fold; p < stop; ++p) {
        const float* term = terms + p * d;
        for (int64_t c = 0; c < d; ++c) out[c] += term[c];
      }
      out += d;
    }
    const int64_t rest = end - p;
    std::memcpy(out, terms + p * d, sizeof(float) * rest * d);
    out += rest * d;
  }
}

}  // namespace afd
