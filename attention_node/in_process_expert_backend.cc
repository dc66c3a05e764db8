// InProcessExpertBackend (see in_process_expert_backend.h).
#include "attention_node/in_process_expert_backend.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace afd::attention {

InProcessExpertBackend::InProcessExpertBackend(const ModelConfig& config, kernels::ThreadPool* pool)
    : config_(config), ffn_(config.hidden_size, config.intermediate_size, pool) {}

absl::StatusOr<std::unique_ptr<InProcessExpertBackend>> InProcessExpertBackend::Create(
    const ModelConfig& config, const Checkpoint& checkpoint, kernels::ThreadPool* pool) {
  std::unique_ptr<InProcessExpertBackend> backend(new InProcessExpertBackend(config, pool));
  backend->experts_.resize(config.num_hidden_layers);
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    for (int e = 0; e < config.num_local_experts; ++e) {
      ASSIGN_OR_RETURN(ExpertWeights w, LoadExpertWeights(checkpoint, config, l, e));
      backend->experts_[l].push_back(w);
    }
  }
  return backend;
}

absl::Status InProcessExpertBackend::Run(const ExpertRequest& request, float* out) {
  if (request.layer < 0 || request.layer >= config_.num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expert request: layer ", request.layer, " outside [0, ", config_.num_hidden_layers, ")"));
  }
  if (request.hidden_dim != config_.hidden_size || request.top_k <= 0 || request.num_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expert request: hidden_dim ", request.hidden_dim, " (model: ", config_.hidden_size,
        "), top_k ", request.top_k, ", num_tokens ", request.num_tokens));
  }
  const int64_t num_pairs = request.num_tokens * request.top_k;
  pairs_.resize(num_pairs);
  for (int64_t t = 0; t < request.num_tokens; ++t) {
    for (int k = 0; k < request.top_k; ++k) {
      const int64_t p = t * request.top_k + k;
      const int32_t expert = request.expert_ids[p];
      if (expert < 0 || expert >= config_.num_local_experts) {
        return absl::InvalidArgumentError(
            absl::StrCat("expert request: token ", t, " routes to expert ", expert,
                         ", outside [0, ", config_.num_local_experts, ")"));
      }
      pairs_[p] = {static_cast<int32_t>(t), expert, request.weights[p]};
    }
  }
  terms_.resize(num_pairs * request.hidden_dim);
  const std::vector<ExpertWeights>& layer = experts_[request.layer];
  RETURN_IF_ERROR(ffn_.Run(
      request.hidden, request.num_tokens, pairs_,
      [&](int32_t e) -> const ExpertWeights* { return &layer[e]; }, terms_.data()));
  CombineExpertTerms(pairs_, terms_.data(), request.num_tokens, request.hidden_dim, out);
  return absl::OkStatus();
}

}  // namespace afd::attention
