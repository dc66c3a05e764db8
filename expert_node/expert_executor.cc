// ExpertExecutor (see expert_executor.h).
#include "expert_node/expert_executor.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace afd::expert {

ComputePool::ComputePool(int threads) : threads_(threads < 1 ? 1 : threads) {
  if (threads_ > 1) pool_ = std::make_unique<kernels::ThreadPool>(threads_);
}

ExpertExecutor::ExpertExecutor(const ExpertStore* store, ComputePool* compute,
                               std::string node_name)
    : store_(store),
      compute_(compute),
      node_name_(std::move(node_name)),
      ffn_(store->config().hidden_size, store->config().intermediate_size, compute->pool()) {}

absl::Status ExpertExecutor::Check(const ExpertBatchView& batch) const {
  const ModelConfig& config = store_->config();
  if (batch.hidden_dim != config.hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat(node_name_, ": hidden size ", batch.hidden_dim,
                                                   ", the model's is ", config.hidden_size));
  }
  if (batch.layer < 0 || batch.layer >= config.num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat(node_name_, ": layer ", batch.layer,
                                                   " outside [0, ", config.num_hidden_layers, ")"));
  }
  const int64_t pairs = batch.num_pairs();
  bool all_hosted = true;
  for (int64_t p = 0; p < pairs; ++p) {
    const uint32_t e = batch.expert_ids[p];
    if (e >= static_cast<uint32_t>(config.num_local_experts)) {
      return absl::InvalidArgumentError(absl::StrCat(node_name_, ": expert ", e,
                                                     " does not exist (the model has ",
                                                     config.num_local_experts, " per layer)"));
    }
    all_hosted = all_hosted && store_->Find(batch.layer, static_cast<int>(e)) != nullptr;
  }
  if (all_hosted) return absl::OkStatus();
  ExpertSet missing(config.num_hidden_layers, config.num_local_experts);
  for (int64_t p = 0; p < pairs; ++p) {
    const int e = static_cast<int>(batch.expert_ids[p]);
    if (store_->Find(batch.layer, e) == nullptr) missing.Add(batch.layer, e);
  }
  return absl::NotFoundError(absl::StrCat(node_name_, ": does not host ", missing.ToString()));
}

absl::Status ExpertExecutor::Run(const ExpertBatchView& batch, std::vector<float>* rows) {
  RETURN_IF_ERROR(Check(batch));
  const int64_t d = batch.hidden_dim;
  const int64_t num_pairs = batch.num_pairs();
  pairs_.resize(num_pairs);
  for (int64_t t = 0; t < batch.num_tokens; ++t) {
    for (uint32_t p = batch.offsets[t]; p < batch.offsets[t + 1]; ++p) {
      pairs_[p] = {static_cast<int32_t>(t), static_cast<int32_t>(batch.expert_ids[p]),
                   batch.weights[p], batch.tiles != nullptr && batch.tiles[t] != 0};
    }
  }
  terms_.resize(num_pairs * d);
  const int layer = batch.layer;
  auto experts = [&](int32_t e) { return store_->Find(layer, e); };
  // ExpertFfn reads contiguous rows [T, D]; decoded batches are, gathered views are copied.
  const float* x = batch.hidden;
  if (batch.token_index != nullptr) {
    gathered_.resize(batch.num_tokens * d);
    for (int64_t t = 0; t < batch.num_tokens; ++t) {
      std::memcpy(gathered_.data() + t * d, batch.row(t), sizeof(float) * d);
    }
    x = gathered_.data();
  }
  if (compute_->pool() != nullptr) {
    absl::MutexLock lock(compute_->mutex());
    RETURN_IF_ERROR(ffn_.Run(x, batch.num_tokens, pairs_, experts, terms_.data()));
  } else {
    RETURN_IF_ERROR(ffn_.Run(x, batch.num_tokens, pairs_, experts, terms_.data()));
  }
  rows->resize(ExpertResultRows(batch) * d);
  FoldExpertTerms(batch, terms_.data(), rows->data());
  return absl::OkStatus();
}

}  // namespace afd::expert
