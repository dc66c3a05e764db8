// ExpertBatchView: the tokens of one layer's (micro-)batch that go to one expert node, in CSR
// form (the domain twin of afd.v1.ExpertBatch; common/rpc converts between the two), and the
// arithmetic contract of the reply: per-pair fp32 terms, with an optional folded prefix per
// token, so that the attention node's combine is bitwise the in-process one for any placement.
// Plain borrowed views and stateless functions; safe from any thread.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace afd {

struct ExpertBatchView {
  uint64_t id = 0;  // echoed in the result
  int layer = 0;
  int64_t num_tokens = 0;                // T
  int hidden_dim = 0;                    // D
  const float* hidden = nullptr;         // [*, D] input rows
  const int32_t* token_index = nullptr;  // optional [T]: token t's row of `hidden`; null: row t
  const uint32_t* offsets = nullptr;     // [T + 1], token t's pairs are [offsets[t], offsets[t+1])
  const uint32_t* expert_ids = nullptr;  // [P] strictly ascending within a token
  const float* weights = nullptr;        // [P] routing weights
  // Optional [T]: fold[t] = f folds the token's first f pairs into one row: their terms summed
  // in fp32 from +0.0f in pair order. Only valid when those f pairs are also the first f
  // terms of the token's complete expert sum (the sender knows; the expert node trusts it).
  const uint32_t* fold = nullptr;
  // Optional [T]: tiles[t] = 1 runs token t's products with kernels::Kernel::kTiles (prompt
  // tokens), 0 with the vector kernels; null: all 0.
  const uint8_t* tiles = nullptr;

  int64_t num_pairs() const { return num_tokens > 0 ? offsets[num_tokens] : 0; }
  const float* row(int64_t t) const {
    return hidden + (token_index != nullptr ? token_index[t] : t) * int64_t{hidden_dim};
  }
};

// Structure only (no model knowledge): offsets[0] == 0 and non-decreasing, expert ids strictly
// ascending within each token, fold[t] <= the token's pair count. INVALID_ARGUMENT naming the
// token otherwise.
absl::Status ValidateExpertBatch(const ExpertBatchView& batch);

// Rows of the result: sum over tokens of n_t - max(fold[t] - 1, 0), n_t = the token's pairs.
int64_t ExpertResultRows(const ExpertBatchView& batch);

// terms: [P, D] per-pair terms in pair order; rows: [ExpertResultRows(batch), D], written as:
// for each token in order, its folded prefix (if fold[t] >= 1) then its remaining pairs' terms.
void FoldExpertTerms(const ExpertBatchView& batch, const float* terms, float* rows);

}  // namespace afd
