// ModelConfig: what the checkpoint's config.json fixes (llama.cpp's hparams), for both
// MiniMax-M2 (`minimax_m2`) and MiniMax-Text-01/M1 (`minimax`, `minimax_text_01`,
// `minimax_m1`), accepting the original and the transformers spellings (MODEL.md decisions).
// Plain value type.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace afd {

enum class Architecture { kMiniMaxM2, kMiniMaxText01 };
enum class LayerType { kFullAttention, kLinearAttention };
enum class RouterScoring { kSigmoidWithBias, kSoftmax };
enum class WeightFormat { kPlain, kFp8Block, kAwq, kMlx };

// One MLX per-module entry of `quantization` (keyed by the MLX module path, e.g.
// "model.layers.0.block_sparse_moe.gate"): its own bits / group size, or `false` (kept float).
struct QuantOverride {
  bool quantized = true;
  int bits = 0;
  int group_size = 0;
};

struct ModelConfig {
  Architecture arch = Architecture::kMiniMaxM2;
  std::string model_type;
  int vocab_size = 0;
  int hidden_size = 0;        // D
  int intermediate_size = 0;  // per-expert FFN width
  int num_hidden_layers = 0;
  int num_attention_heads = 0;  // H
  int num_key_value_heads = 0;  // Hkv
  int head_dim = 0;             // d
  int rotary_dim = 0;           // r: rotated dims per head (NeoX half-split inside them)
  double rope_theta = 0;
  double rms_norm_eps = 1e-6;
  int num_local_experts = 0;    // E
  int num_experts_per_tok = 0;  // K
  RouterScoring scoring = RouterScoring::kSigmoidWithBias;
  bool use_qk_norm = false;       // M2: one RMSNorm over the whole q / k projection
  bool use_routing_bias = false;  // M2: e_score_correction_bias for selection only
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
  // AWQ / MLX only (detection; per-module values come from the tensors): global bits and
  // input-channel group size (AWQ: -1 = the whole input row). 0 otherwise.
  int quant_bits = 0;
  int quant_group_size = 0;
  // MLX: per-module overrides (QUANT.md §2.1; the router gate is 8-bit / 64 in every repo).
  std::map<std::string, QuantOverride> quant_overrides;
  // AWQ: zero_point (false: no qzeros, every zero point is 8) and modules_to_not_convert
  // (substrings of module paths left unquantized; only a cross-check, the tensors decide).
  bool quant_zero_point = true;
  std::vector<std::string> quant_skip_modules;

  int64_t q_dim() const { return int64_t{num_attention_heads} * head_dim; }   // H * d
  int64_t kv_dim() const { return int64_t{num_key_value_heads} * head_dim; }  // Hkv * d

  bool IsLinearLayer(int layer) const {
    return arch == Architecture::kMiniMaxText01 &&
           layer_types[layer] == LayerType::kLinearAttention;
  }
};

// Parses config.json text; `source` names the file in error messages. INVALID_ARGUMENT (with
// `source` and the key) for malformed JSON, unknown model_type, a missing required key, or a
// value afd cannot serve (see MODEL.md's decision table).
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& source = "config.json");
// Reads <dir>/config.json (NOT_FOUND when absent).
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir);

// Which key names ModelConfigToJson writes.
enum class ConfigSpelling {
  kOriginal,      // MiniMax's own: rotary_dim, rope_theta, attn_type_list, layernorm_*_alpha
  kTransformers,  // transformers v5: rope_parameters, layer_types, *_alpha_factor
};
// Serializes `config` as a config.json that ParseModelConfig reads back to the same values
// (pretty-printed, keys in the order the released files use).
std::string ModelConfigToJson(const ModelConfig& config, ConfigSpelling spelling);

}  // namespace afd
