// InProcessExpertBackend (see in_process_expert_backend.h).
#include "attention_node/in_process_expert_backend.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "attention_node/model_weights.h"
#include "common/weights.h"
#include "common/status.h"

namespace afd::attention {

InProcessExpertBackend::InProcessExpertBackend(const ModelConfig& config, kernels::ThreadPool* pool)
    : config_(config), pool_(pool), ffn_(config.hidden_size, config.intermediate_size, pool) {}

absl::StatusOr<std::unique_ptr<InProcessExpertBackend>> InProcessExpertBackend::Create(
    const ModelConfig& config, const Checkpoint& checkpoint, kernels::ThreadPool* pool) {
  std::unique_ptr<InProcessExpertBackend> backend(new InProcessExpertBackend(config, pool));
  backend->experts_.resize(config.num_hidden_layers);
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    for (int e = 0; e < config.num_local_experts; ++e) {
      ASSIGN_OR_RETURN(ExpertWeights w, LoadExpertWeights(checkpoint, config, l, e));
      PrefaultWeightPages(w.w1);
      PrefaultWeightPages(w.w3);
      PrefaultWeightPages(w.w2);
      backend->experts_[l].push_back(w);
    }
  }
  return backend;
}

void InProcessExpertBackend::set_profile(StepProfile* profile) {
  profile_ = profile;
  ffn_.set_timings(profile == nullptr ? nullptr : &timings_);
}

absl::Status InProcessExpertBackend::Run(const ExpertRequest& request, float* out) {
  const auto t_start = std::chrono::steady_clock::now();
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
      pairs_[p] = {static_cast<int32_t>(t), expert, request.weights[p],
                   request.tiles != nullptr && request.tiles[t] != 0};
    }
  }
  terms_.resize(num_pairs * request.hidden_dim);
  const std::vector<ExpertWeights>& layer = experts_[request.layer];
  const ExpertFfnTimings before = timings_;
  const auto t_ffn = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(ffn_.Run(
      request.hidden, request.num_tokens, pairs_,
      [&](int32_t e) -> const ExpertWeights* { return &layer[e]; }, terms_.data()));
  const auto t_combine = std::chrono::steady_clock::now();
  CombineExpertTerms(pairs_, terms_.data(), request.num_tokens, request.hidden_dim, out, pool_);
  if (profile_ != nullptr) {
    const auto t_end = std::chrono::steady_clock::now();
    auto sec = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    const double grouping = timings_.grouping_seconds - before.grouping_seconds;
    const double products = timings_.products_seconds - before.products_seconds;
    const double ffn_rest = sec(t_ffn, t_combine) - grouping - products;
    profile_->Add(ProfileStage::kExpertGather, sec(t_start, t_ffn) + grouping);
    profile_->Add(ProfileStage::kExpertFfn, products);
    profile_->Add(ProfileStage::kExpertCombine, ffn_rest + sec(t_combine, t_end));
    profile_->weight_bytes += timings_.weight_bytes - before.weight_bytes;
  }
  return absl::OkStatus();
}

}  // namespace afd::attention
