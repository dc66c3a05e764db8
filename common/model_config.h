// ModelConfig: what the checkpoint's config.json fixes (llama.cpp's hparams), for both
// MiniMax-M2 (`minimax_m2`) and MiniMax-Text-01/M1 (`minimax`, `minimax_text_01`,
// `minimax_m1`), accepting the original and the transformers spellings (MODEL.md decisions).
// Plain value type.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace afd {

enum class Architecture { kMiniMaxM2, kMiniMaxText01 };
enum class LayerType { kFullAttention, kLinearAttention };
enum class RouterScoring { kSigmoidWithBias, kSoftmax };
enum class WeightFormat { kPlain, kFp8Block, kAwq, kMlx };

struct ModelConfig {
  Architecture arch = Architecture::kMiniMaxM2;
  std::string model_type;
  int vocab_size = 0;
  int hidden_size = 0;              // D
  int intermediate_size = 0;        // per-expert FFN width
  int num_hidden_layers = 0;
  int num_attention_heads = 0;      // H
  int num_key_value_heads = 0;      // Hkv
  int head_dim = 0;                 // d
  int rotary_dim = 0;               // r: rotated dims per head (NeoX half-split inside them)
  double rope_theta = 0;
  double rms_norm_eps = 1e-6;
  int num_local_experts = 0;        // E
  int num_experts_per_tok = 0;      // K
  RouterScoring scoring = RouterScoring::kSigmoidWithBias;
  bool use_qk_norm = false;         // M2: one RMSNorm over the whole q / k projection
  bool use_routing_bias = false;    // M2: e_score_correction_bias for selection only
  bool tie_word_embeddings = false;
  int bos_token_id = -1;
  int eos_token_id = -1;
  int max_position_embeddings = 0;

  // Text-01 only.
  std::vector<LayerType> layer_types;  // size num_hidden_layers (M2: all full attention)
  int block_size = 256;                // lightning prefill block
  double full_attn_alpha = 1, full_attn_beta = 1;
  double linear_attn_alpha = 1, linear_attn_beta = 1;
  double mlp_alpha = 1, mlp_beta = 1;
  double lightning_norm_eps = 1e-6;

  // Weight format (quantization_config / quantization).
  WeightFormat weight_format = WeightFormat::kPlain;
  int fp8_block_rows = 128, fp8_block_cols = 128;

  bool IsLinearLayer(int layer) const {
    return arch == Architecture::kMiniMaxText01 &&
           layer_types[layer] == LayerType::kLinearAttention;
  }
};

// Parses config.json text; `source` names the file in error messages.
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& source = "config.json");
// Reads <dir>/config.json.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir);

}  // namespace afd
