// ExpertFfn: the MoE expert feed-forward shared by the attention node's in-process backend and
// the expert node. For a batch of (token, expert, weight) pairs it computes every pair's term
// y = weight * W2(silu(W1 x) * W3 x) in fp32, grouping the pairs per expert so that each expert
// runs one product over all of its tokens, in ascending token order: a term depends only on the
// rows its expert serves, never on the order of the pairs or on which other experts run here.
// CombineExpertTerms then adds the terms per token in ascending expert order from +0.0f (the
// rule in attention_node/expert_backend.h), so any split of the experts across nodes gives
// bitwise the same sum.
// Thread-safety: one Run at a time per ExpertFfn (it owns scratch buffers).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/kernels/matmul.h"
#include "common/kernels/thread_pool.h"
#include "common/kernels/weight_view.h"
#include "common/model_config.h"
#include "common/safetensors.h"

namespace afd {

// One expert's three matrices as checkpoint-precision views (never copies).
struct ExpertWeights {
  kernels::WeightView w1;  // [intermediate, hidden] gate projection (SiLU applied)
  kernels::WeightView w3;  // [intermediate, hidden] up projection
  kernels::WeightView w2;  // [hidden, intermediate] down projection
};

// Views of `model.layers.<layer>.block_sparse_moe.experts.<expert>.{w1,w3,w2}` (plus FP8
// scales where present; AWQ packed per expert), or of the expert's slice of MLX's stacked
// `switch_mlp.{gate,up,down}_proj`. NOT_FOUND / INVALID_ARGUMENT naming the tensor otherwise.
absl::StatusOr<ExpertWeights> LoadExpertWeights(const Checkpoint& checkpoint,
                                                const ModelConfig& config, int layer, int expert);

// One routed (token, expert) assignment.
struct ExpertPair {
  int32_t token = 0;   // row of the batch's hidden states
  int32_t expert = 0;  // expert id within the layer
  float weight = 0;    // normalized routing weight
  bool tiles = false;  // the products take kernels::Kernel::kTiles (a prompt token)
};

// Where ExpertFfn::Run's time went (seconds, summed over runs) and the weight bytes its
// products read (each expert's three matrices once per run that used it).
struct ExpertFfnTimings {
  double grouping_seconds = 0;  // validating and grouping the pairs per expert
  double products_seconds = 0;  // per expert: row gathers, W1/W3, SwiGLU, W2, weighting
  int64_t weight_bytes = 0;
};

class ExpertFfn {
 public:
  // pool: borrowed, may be null (single-threaded); used for one ParallelFor at a time.
  ExpertFfn(int hidden_dim, int intermediate_dim, kernels::ThreadPool* pool);

  // x: [num_tokens, hidden_dim]. experts(e) returns expert e's weights or nullptr when this
  // process does not hold it (NOT_FOUND). terms: [pairs.size(), hidden_dim], overwritten with
  // terms[p] = pairs[p].weight * FFN_{pairs[p].expert}(x[pairs[p].token]).
  // INVALID_ARGUMENT for a token out of range or weights of the wrong shape.
  absl::Status Run(const float* x, int64_t num_tokens, absl::Span<const ExpertPair> pairs,
                   absl::FunctionRef<const ExpertWeights*(int32_t)> experts, float* terms);

  // Precision of the activations in later Runs' products (kernels/matmul.h): kF32 (default) or
  // the opt-in kBF16 for prefill throughput.
  void set_activations(kernels::Activations activations) { options_.activations = activations; }

  // Accumulates timings of every later Run into `timings` (borrowed; null: off, the default).
  void set_timings(ExpertFfnTimings* timings) { timings_ = timings; }

  int hidden_dim() const { return hidden_dim_; }
  int intermediate_dim() const { return intermediate_dim_; }

 private:
  // One expert over its rows: x_rows [n, D] -> y [n, D] (unweighted), using scratch of
  // n * 2I floats; `pool` may be null.
  void RunExpert(const ExpertWeights& w, const float* x_rows, int64_t n, float* gate_up, float* y,
                 kernels::ThreadPool* pool, const kernels::MatMulOptions& options) const;

  int hidden_dim_;
  int intermediate_dim_;
  kernels::ThreadPool* pool_;
  ExpertFfnTimings* timings_ = nullptr;
  kernels::MatMulOptions options_;
  struct Group {
    const ExpertWeights* weights;
    bool tiles;      // the group's pairs take kernels::Kernel::kTiles
    int64_t begin;  // into order_
    int64_t end;
  };
  std::vector<int32_t> order_;        // pair indices grouped by expert
  std::vector<Group> groups_;         // runs of order_ with one expert
  std::vector<int32_t> group_order_;  // groups, largest first
  std::vector<float> x_rows_;         // [pairs, D] gathered inputs
  std::vector<float> gate_up_;        // [pairs, 2I]
  std::vector<float> y_rows_;         // [pairs, D]
};

// out[t] = +0.0f + terms of t's pairs added in ascending expert id (ties: pair order), for t in
// [0, num_tokens); tokens with no pair get +0.0f. terms: [pairs.size(), hidden_dim];
// out: [num_tokens, hidden_dim]. `pool` (nullable) splits large batches by token; the sums
// are the same either way.
void CombineExpertTerms(absl::Span<const ExpertPair> pairs, const float* terms, int64_t num_tokens,
                        int hidden_dim, float* out, kernels::ThreadPool* pool = nullptr);

}  // namespace afd
