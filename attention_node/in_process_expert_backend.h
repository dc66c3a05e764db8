// InProcessExpertBackend: runs every expert of the model in this process (no network) through
// the shared ExpertFfn, then combines per token exactly as expert_backend.h fixes (fp32 terms,
// ascending expert id, from +0.0f), so a remote backend can reproduce it bitwise.
// Thread-safety: one Run at a time.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "attention_node/expert_backend.h"
#include "attention_node/step_profile.h"
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

  // Precision of the activations in later Runs' expert products (see ExpertFfn).
  void set_activations(kernels::Activations activations) { ffn_.set_activations(activations); }

  // Attributes later Runs' time to the kExpert* stages of `profile` and adds the expert
  // weight bytes read (borrowed; null: off, the default).
  void set_profile(StepProfile* profile) override;

 private:
  InProcessExpertBackend(const ModelConfig& config, kernels::ThreadPool* pool);

  ModelConfig config_;
  kernels::ThreadPool* pool_;
  std::vector<std::vector<ExpertWeights>> experts_;  // [layer][expert]
  ExpertFfn ffn_;
  StepProfile* profile_ = nullptr;
  ExpertFfnTimings timings_;
  std::vector<ExpertPair> pairs_;  // [num_tokens * top_k]
  std::vector<float> terms_;       // [num_tokens * top_k, hidden]
};

}  // namespace afd::attention
