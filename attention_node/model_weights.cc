// ModelWeights: checkpoint views for the attention node (see model_weights.h).
#include "attention_node/model_weights.h"


#include <cstdint>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/kernels/lightning_attention.h"
#include "common/kernels/matmul.h"
#include "common/kernels/quant_matmul.h"
#include "common/status.h"
#include "common/weights.h"

namespace afd::attention {
namespace {

// A small 1-D tensor (norm weight, bias) widened to fp32.
absl::StatusOr<std::vector<float>> LoadFloatVector(const Checkpoint& checkpoint,
                                                   const std::string& name, int64_t size) {
  ASSIGN_OR_RETURN(TensorView t, LoadVector(checkpoint, name, size));
  std::vector<float> out(size);
  for (int64_t i = 0; i < size; ++i) {
    switch (t.dtype) {
      case DType::kF32:
        std::memcpy(&out[i], t.data + 4 * i, 4);
        break;
      case DType::kBF16: {
        uint16_t v;
        std::memcpy(&v, t.data + 2 * i, 2);
        out[i] = kernels::Bf16ToFloat(v);
        break;
      }
      default: {
        uint16_t v;
        std::memcpy(&v, t.data + 2 * i, 2);
        out[i] = kernels::F16ToFloat(v);
        break;
      }
    }
  }
  return out;
}

}  // namespace

void DequantizeRow(const kernels::WeightView& w, int64_t row, float* out) {
  const int64_t cols = w.cols;
  switch (w.type) {
    case kernels::WeightType::kF32:
      std::memcpy(out, static_cast<const float*>(w.data) + row * cols, sizeof(float) * cols);
      return;
    case kernels::WeightType::kBF16: {
      const uint16_t* src = static_cast<const uint16_t*>(w.data) + row * cols;
      for (int64_t c = 0; c < cols; ++c) out[c] = kernels::Bf16ToFloat(src[c]);
      return;
    }
    case kernels::WeightType::kF16: {
      const uint16_t* src = static_cast<const uint16_t*>(w.data) + row * cols;
      for (int64_t c = 0; c < cols; ++c) out[c] = kernels::F16ToFloat(src[c]);
      return;
    }
    case kernels::WeightType::kFp8E4M3: {
      const uint8_t* src = static_cast<const uint8_t*>(w.data) + row * cols;
      const int64_t scale_cols = (cols + w.block_cols - 1) / w.block_cols;
      const float* scales = w.scales + (row / w.block_rows) * scale_cols;
      for (int64_t c = 0; c < cols; ++c) {
        out[c] = kernels::Fp8E4M3ToFloat(src[c]) * scales[c / w.block_cols];
      }
      return;
    }
    case kernels::WeightType::kAwqInt4:
    case kernels::WeightType::kMlxAffine:
      // A quantized embedding: the token's row is dequantized on lookup (QUANT.md).
      kernels::QuantDequantizeRow(kernels::AsQuantMatrix(w), row, out);
      return;
  }
}

absl::StatusOr<std::unique_ptr<ModelWeights>> ModelWeights::Load(const ModelConfig& config,
                                                                 const Checkpoint& checkpoint) {
  std::unique_ptr<ModelWeights> m(new ModelWeights());
  m->config_ = config;
  const int64_t d_model = config.hidden_size;
  const int64_t q_dim = int64_t{config.num_attention_heads} * config.head_dim;
  const int64_t kv_dim = int64_t{config.num_key_value_heads} * config.head_dim;
  const int64_t vocab = config.vocab_size;

  ASSIGN_OR_RETURN(m->embedding_,
                   LoadLinear(checkpoint, config, "model.embed_tokens", vocab, d_model));
  if (config.tie_word_embeddings && !checkpoint.Has("lm_head.weight")) {
    m->lm_head_ = m->embedding_;
  } else {
    ASSIGN_OR_RETURN(m->lm_head_, LoadLinear(checkpoint, config, "lm_head", vocab, d_model));
  }
  ASSIGN_OR_RETURN(m->final_norm_, LoadFloatVector(checkpoint, "model.norm.weight", d_model));

  m->layers_.resize(config.num_hidden_layers);
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    LayerWeights& lw = m->layers_[l];
    const std::string p = absl::StrCat("model.layers.", l, ".");
    lw.linear = config.IsLinearLayer(l);
    ASSIGN_OR_RETURN(lw.input_norm,
                     LoadFloatVector(checkpoint, p + "input_layernorm.weight", d_model));
    ASSIGN_OR_RETURN(lw.post_norm,
                     LoadFloatVector(checkpoint, p + "post_attention_layernorm.weight", d_model));
    if (lw.linear) {
      LightningWeights& w = lw.lightning;
      ASSIGN_OR_RETURN(
          w.qkv_proj, LoadLinear(checkpoint, config, p + "self_attn.qkv_proj", 3 * q_dim, d_model));
      ASSIGN_OR_RETURN(w.output_gate,
                       LoadLinear(checkpoint, config, p + "self_attn.output_gate", q_dim, d_model));
      ASSIGN_OR_RETURN(w.out_proj,
                       LoadLinear(checkpoint, config, p + "self_attn.out_proj", d_model, q_dim));
      ASSIGN_OR_RETURN(w.norm, LoadFloatVector(checkpoint, p + "self_attn.norm.weight", q_dim));
      w.slopes = kernels::LightningSlopes(config.num_attention_heads, l, config.num_hidden_layers);
    } else {
      FullAttentionWeights& w = lw.full;
      ASSIGN_OR_RETURN(w.q_proj,
                       LoadLinear(checkpoint, config, p + "self_attn.q_proj", q_dim, d_model));
      ASSIGN_OR_RETURN(w.k_proj,
                       LoadLinear(checkpoint, config, p + "self_attn.k_proj", kv_dim, d_model));
      ASSIGN_OR_RETURN(w.v_proj,
                       LoadLinear(checkpoint, config, p + "self_attn.v_proj", kv_dim, d_model));
      ASSIGN_OR_RETURN(w.o_proj,
                       LoadLinear(checkpoint, config, p + "self_attn.o_proj", d_model, q_dim));
      if (config.use_qk_norm) {
        ASSIGN_OR_RETURN(w.q_norm,
                         LoadFloatVector(checkpoint, p + "self_attn.q_norm.weight", q_dim));
        ASSIGN_OR_RETURN(w.k_norm,
                         LoadFloatVector(checkpoint, p + "self_attn.k_norm.weight", kv_dim));
      }
    }
    ASSIGN_OR_RETURN(lw.router, LoadLinear(checkpoint, config, p + "block_sparse_moe.gate",
                                           config.num_local_experts, d_model));
    if (config.scoring == RouterScoring::kSigmoidWithBias && config.use_routing_bias) {
      ASSIGN_OR_RETURN(lw.router_bias,
                       LoadFloatVector(checkpoint, p + "block_sparse_moe.e_score_correction_bias",
                                       config.num_local_experts));
    }
  }
  // Map the matrices every step reads, and the embedding: a step reads only its tokens' rows,
  // but a row not yet mapped costs a page fault in that step (a read from disk when the page
  // cache dropped it: 2.3 ms per m2-perf decode step measured after another model had run).
  PrefaultWeightPages(m->embedding_);
  if (m->lm_head_.data != m->embedding_.data) PrefaultWeightPages(m->lm_head_);
  for (const LayerWeights& lw : m->layers_) {
    for (const kernels::WeightView* w :
         {&lw.full.q_proj, &lw.full.k_proj, &lw.full.v_proj, &lw.full.o_proj,
          &lw.lightning.qkv_proj, &lw.lightning.output_gate, &lw.lightning.out_proj, &lw.router}) {
      PrefaultWeightPages(*w);
    }
  }
  return m;
}

absl::Status ModelWeights::Embed(int32_t token, float* out) const {
  if (token < 0 || token >= config_.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token id ", token, " is outside the vocabulary [0, ", config_.vocab_size, ")"));
  }
  DequantizeRow(embedding_, token, out);
  return absl::OkStatus();
}

}  // namespace afd::attention
