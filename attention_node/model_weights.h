// ModelWeights: the attention node's view of a checkpoint. Projection matrices, the router and
// the lm_head are WeightViews in checkpoint precision (no copies of big matrices); norm weights,
// the routing bias and lightning slopes are small fp32 vectors. Experts are not here: they
// belong to the ExpertBackend. Immutable after Load; concurrent reads are safe. The Checkpoint
// must outlive it.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/kernels/weight_view.h"
#include "common/model_config.h"
#include "common/safetensors.h"

namespace afd::attention {

// Softmax-attention layer (M2 every layer; Text-01 the full-attention layers).
struct FullAttentionWeights {
  kernels::WeightView q_proj;  // [H*d, D]
  kernels::WeightView k_proj;  // [Hkv*d, D]
  kernels::WeightView v_proj;  // [Hkv*d, D]
  kernels::WeightView o_proj;  // [D, H*d]
  std::vector<float> q_norm;   // [H*d]; empty without QK-norm
  std::vector<float> k_norm;   // [Hkv*d]; empty without QK-norm
};

// Text-01 lightning (linear) attention layer.
struct LightningWeights {
  kernels::WeightView qkv_proj;     // [3*H*d, D], rows interleaved per head as q | k | v
  kernels::WeightView output_gate;  // [H*d, D]
  kernels::WeightView out_proj;     // [D, H*d]
  std::vector<float> norm;          // [H*d]
  std::vector<float> slopes;        // [H], LightningSlopes of this layer
};

struct LayerWeights {
  bool linear = false;             // lightning layer (else full attention)
  std::vector<float> input_norm;   // [D]
  std::vector<float> post_norm;    // [D]
  FullAttentionWeights full;       // when !linear
  LightningWeights lightning;      // when linear
  kernels::WeightView router;      // [E, D] (fp32 or bf16 as stored)
  std::vector<float> router_bias;  // [E]; empty when the model has none
};

class ModelWeights {
 public:
  // Views every non-expert tensor the forward pass needs; NOT_FOUND / INVALID_ARGUMENT naming
  // the tensor when one is missing or has the wrong shape or dtype.
  static absl::StatusOr<std::unique_ptr<ModelWeights>> Load(const ModelConfig& config,
                                                            const Checkpoint& checkpoint);

  const ModelConfig& config() const { return config_; }
  const LayerWeights& layer(int index) const { return layers_[index]; }
  const std::vector<float>& final_norm() const { return final_norm_; }  // [D]
  const kernels::WeightView& lm_head() const { return lm_head_; }       // [V, D]
  const kernels::WeightView& embedding() const { return embedding_; }   // [V, D]

  // out: [D] = the embedding row of `token` widened to fp32. INVALID_ARGUMENT when `token` is
  // outside [0, vocab_size).
  absl::Status Embed(int32_t token, float* out) const;

 private:
  ModelWeights() = default;
  ModelConfig config_;
  std::vector<LayerWeights> layers_;
  std::vector<float> final_norm_;
  kernels::WeightView embedding_;
  kernels::WeightView lm_head_;
};

// Row `row` of `w` widened to fp32 (FP8 rows multiplied by their block scales). out: [w.cols].
void DequantizeRow(const kernels::WeightView& w, int64_t row, float* out);

}  // namespace afd::attention
