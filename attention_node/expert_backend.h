// ExpertBackend: how the Engine runs one layer's MoE feed-forward for a batch of tokens.
// Two implementations: in-process (all experts local) and remote (gRPC streams to expert
// nodes). Both must return bitwise-identical results for any placement, so the combine rule
// is fixed here: every (token, expert) term y = w * FFN_e(x) is computed in fp32, and each
// token's terms are added in fp32 in ascending expert-id order starting from +0.0f (the
// order of the transformers eager loop). Placement never changes that order.
// Thread-safety: one Run at a time per backend instance unless an implementation says so.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace afd::kernels {
class ThreadPool;
}  // namespace afd::kernels

namespace afd::attention {

struct StepProfile;

// One layer's routed batch. All pointers are borrowed for the duration of Run.
struct ExpertRequest {
  int layer = 0;
  int64_t num_tokens = 0;
  int hidden_dim = 0;
  int top_k = 0;
  const float* hidden = nullptr;       // [num_tokens, hidden_dim] input to the MoE (post-norm)
  const int32_t* expert_ids = nullptr;  // [num_tokens, top_k], ascending within each token
  const float* weights = nullptr;       // [num_tokens, top_k] normalized routing weights
  // Optional [num_tokens]: 1 = the token's products take kernels::Kernel::kTiles (the engine's
  // prompt tokens), 0 = the vector kernels; null: all 0. Every backend honours it, so the
  // results stay bitwise the same for any placement.
  const uint8_t* tiles = nullptr;
  // Optional: threads the backend may use for its own work during Run (the caller's pool,
  // idle meanwhile; one ParallelFor at a time; the remote backend combines the returned terms
  // on them); null: the calling thread only. Never changes a result.
  kernels::ThreadPool* pool = nullptr;
};

// The (token, expert) pairs one expert node has served for a backend since it was created.
struct ExpertNodeTraffic {
  std::string node;
  uint64_t pairs = 0;
  uint64_t compute_ns = 0;  // compute time the node reported for its batches
};

class ExpertBackend {
 public:
  virtual ~ExpertBackend() = default;
  // out: [num_tokens, hidden_dim], overwritten with sum_k weights[t,k] * FFN_{ids[t,k]}(x_t)
  // combined as described above. Errors: UNAVAILABLE naming experts no node can serve,
  // DEADLINE_EXCEEDED, INVALID_ARGUMENT for malformed requests.
  virtual absl::Status Run(const ExpertRequest& request, float* out) = 0;
  // Optional (null = off): during Run the backend adds to `profile` the parts of its time it
  // can name (ProfileStage kExpertGather / kExpertFfn / kExpertCombine); the Engine counts the
  // rest of Run as kExpertOther. Timing never changes a result.
  virtual void set_profile(StepProfile* profile) { (void)profile; }
  // Per expert node, the pairs sent to it (remote backends; empty in process). Call it between
  // Runs, never during one.
  virtual std::vector<ExpertNodeTraffic> Traffic() const { return {}; }
};

}  // namespace afd::attention
