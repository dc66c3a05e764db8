// ExpertStore: the experts one expert node hosts, as zero-copy views straight into the
// checkpoint's mmap'd shards (only the hosted experts' pages are ever read; dense weights are
// never touched), plus the model shape they belong to. Immutable after Load: safe to share
// between any number of threads.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/cluster/expert_set.h"
#include "common/expert_ffn.h"
#include "common/model_config.h"
#include "common/safetensors.h"

namespace afd::expert {

struct ExpertStoreOptions {
  // Read every hosted page once at load (after MADV_WILLNEED), so the first calls do not pay
  // for page faults and readiness means "warm".
  bool prefault = true;
};

class ExpertStore {
 public:
  // Reads <model_dir>/config.json, maps the shards, and views `spec`'s experts. Errors: those of
  // LoadModelConfig / Checkpoint::Open, INVALID_ARGUMENT for a spec outside the model,
  // NOT_FOUND / INVALID_ARGUMENT naming a missing or malformed expert tensor.
  static absl::StatusOr<std::unique_ptr<ExpertStore>> Load(const std::string& model_dir,
                                                           const ExpertSpec& spec,
                                                           const ExpertStoreOptions& options);

  const ModelConfig& config() const { return config_; }
  const ExpertSet& hosted() const { return hosted_; }
  // nullptr when (layer, expert) is not hosted here (or out of range).
  const ExpertWeights* Find(int layer, int expert) const {
    return hosted_.Contains(layer, expert)
               ? &weights_[static_cast<size_t>(layer) * config_.num_local_experts + expert]
               : nullptr;
  }
  // Bytes of expert weights (and FP8 scales) this node serves.
  size_t hosted_bytes() const { return hosted_bytes_; }
  // Checkpoint dtype of the expert weights ("BF16", "F8_E4M3", ...).
  const std::string& weight_dtype() const { return weight_dtype_; }

 private:
  ExpertStore() = default;

  ModelConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;
  ExpertSet hosted_;
  std::vector<ExpertWeights> weights_;  // [num_layers * num_experts]; valid where hosted
  size_t hosted_bytes_ = 0;
  std::string weight_dtype_;
};

}  // namespace afd::expert
