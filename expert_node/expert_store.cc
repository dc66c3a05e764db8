// ExpertStore (see expert_store.h).
#include "expert_node/expert_store.h"


#include <cstdint>

#include "common/status.h"
#include "common/weights.h"

namespace afd::expert {
namespace {

const char* WeightTypeName(kernels::WeightType type) {
  switch (type) {
    case kernels::WeightType::kF32:
      return "F32";
    case kernels::WeightType::kBF16:
      return "BF16";
    case kernels::WeightType::kF16:
      return "F16";
    case kernels::WeightType::kFp8E4M3:
      return "F8_E4M3";
    case kernels::WeightType::kAwqInt4:
      return "AWQ_INT4";
    case kernels::WeightType::kMlxAffine:
      return "MLX_AFFINE";
  }
  return "?";
}

}  // namespace

absl::StatusOr<std::unique_ptr<ExpertStore>> ExpertStore::Load(const std::string& model_dir,
                                                               const ExpertSpec& spec,
                                                               const ExpertStoreOptions& options) {
  std::unique_ptr<ExpertStore> store(new ExpertStore());
  ASSIGN_OR_RETURN(store->config_, LoadModelConfig(model_dir));
  const ModelConfig& config = store->config_;
  ASSIGN_OR_RETURN(store->hosted_,
                   ExpertSet::FromSpec(spec, config.num_hidden_layers, config.num_local_experts));
  ASSIGN_OR_RETURN(store->checkpoint_, Checkpoint::Open(model_dir));
  store->weights_.resize(static_cast<size_t>(config.num_hidden_layers) * config.num_local_experts);
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    for (int e : store->hosted_.ExpertsOf(l)) {
      ASSIGN_OR_RETURN(ExpertWeights w, LoadExpertWeights(*store->checkpoint_, config, l, e));
      for (const kernels::WeightView* v : {&w.w1, &w.w3, &w.w2}) {
        store->hosted_bytes_ += v->Bytes();
        if (options.prefault) PrefaultWeightPages(*v);
      }
      if (store->weight_dtype_.empty()) store->weight_dtype_ = WeightTypeName(w.w1.type);
      store->weights_[static_cast<size_t>(l) * config.num_local_experts + e] = w;
    }
  }
  return store;
}

}  // namespace afd::expert
