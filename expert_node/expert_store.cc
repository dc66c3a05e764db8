// ExpertStore (see expert_store.h).
#include "expert_node/expert_store.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

#include "common/status.h"

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

// Asks the kernel to read [data, data + bytes) ahead, then touches one byte per page so the
// range is resident before the node reports ready.
void Prefault(const void* data, size_t bytes) {
  if (data == nullptr || bytes == 0) return;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(data) + bytes;
  madvise(reinterpret_cast<void*>(begin), end - begin, MADV_WILLNEED);
  volatile uint8_t sink = 0;
  for (uintptr_t p = begin; p < end; p += page) sink ^= *reinterpret_cast<const uint8_t*>(p);
  (void)sink;
}

void PrefaultView(const kernels::WeightView& w) {
  const size_t rows = static_cast<size_t>(w.rows);
  const size_t cols = static_cast<size_t>(w.cols);
  if (w.IsPacked()) {
    const size_t groups = w.group_size > 0 ? rows * (cols / w.group_size) : 0;
    const size_t scale = w.group_type == kernels::WeightType::kF32 ? 4 : 2;
    Prefault(w.data, rows * cols * w.bits / 8);
    Prefault(w.group_scales, groups * scale);
    Prefault(w.group_biases, groups * scale);
    Prefault(w.zeros, groups / 2);
    return;
  }
  Prefault(w.data, rows * cols * w.ElementBytes());
  if (w.scales != nullptr) Prefault(w.scales, w.Bytes() - rows * cols * w.ElementBytes());
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
        if (options.prefault) PrefaultView(*v);
      }
      if (store->weight_dtype_.empty()) store->weight_dtype_ = WeightTypeName(w.w1.type);
      store->weights_[static_cast<size_t>(l) * config.num_local_experts + e] = w;
    }
  }
  return store;
}

}  // namespace afd::expert
