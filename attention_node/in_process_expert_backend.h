// InProcessExpertBackend: runs every expert of the model in this process (no network) through
// the shared ExpertFfn, then combines per token exactly as expert_backend.h fixes (fp32 terms,
// ascending expert id, from +0.0f), so a remote backend can reproduce it bitwise.
// Thread-safety: one Run at a time.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "attention_node/expert_backend.h"
#include "common/expert_ffn.h"
#include "common/kernels/thread_pool.h"
#include "common/model_config.h"
#include "common/safetensors.h"

namespace afd::attention {

class InProcessExpertBackend : public ExpertBackend {
 public:
  // Views every expert of every layer in `checkpoint` (no copies); `checkpoint` and `pool`
  // (nullable) are borrowed and must outlive the backend.
  static absl::StatusOr<std::unique_ptr<InProcessExpertBackend>> Create(
      const ModelConfig& config, const Checkpoint& checkpoint, kernels::ThreadPool* pool);

  absl::Status Run(const ExpertRequest& request, float* out) override;

 private:
  InProcessExpertBackend(const ModelConfig& config, kernels::ThreadPool* pool);

  ModelConfig config_;
  std::vector<std::vector<ExpertWeights>> experts_;  // [layer][expert]
  ExpertFfn ffn_;
  std::vector<ExpertPair> pairs_;  // [num_tokens * top_k]
  std::vector<float> terms_;       // [num_tokens * top_k, hidden]
};

}  // namespace afd::attention
