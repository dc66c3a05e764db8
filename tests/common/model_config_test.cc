// ModelConfig parsing: every golden config.json, both key spellings, defaults from MODEL.md's
// decision table, and one test per config error.
#include "common/model_config.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/checkpoint_gen.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/test_util.h"

namespace afd {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
using testing_util::ReadFile;
using testing_util::TestDataDir;

constexpr LayerType kFull = LayerType::kFullAttention;
constexpr LayerType kLinear = LayerType::kLinearAttention;

class ModelConfigTest : public ::testing::Test {
 protected:
  static json Golden(const std::string& name) {
    json j = json::parse(ReadFile(TestDataDir() + "/" + name + "/config.json"), nullptr,
                         /*allow_exceptions=*/false);
    EXPECT_TRUE(j.is_object()) << name;
    return j;
  }
  static absl::StatusOr<ModelConfig> Parse(const json& j) {
    return ParseModelConfig(j.dump(), "cfg.json");
  }
  // Expects INVALID_ARGUMENT whose message holds the file name and `substring`.
  static void ExpectError(const json& j, const std::string& substring) {
    absl::StatusOr<ModelConfig> c = Parse(j);
    ASSERT_FALSE(c.ok()) << "parsed unexpectedly: " << j.dump();
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
    EXPECT_THAT(std::string(c.status().message()), HasSubstr("cfg.json: "));
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(substring));
  }
};

TEST_F(ModelConfigTest, ParsesGoldenM2Tiny) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(TestDataDir() + "/golden/m2-tiny");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kMiniMaxM2);
  EXPECT_EQ(c->model_type, "minimax_m2");
  EXPECT_EQ(c->vocab_size, 1000);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->intermediate_size, 48);
  EXPECT_EQ(c->num_hidden_layers, 3);
  EXPECT_EQ(c->num_attention_heads, 4);
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_EQ(c->head_dim, 32);
  EXPECT_EQ(c->q_dim(), 128);  // H*d != D
  EXPECT_EQ(c->kv_dim(), 64);
  EXPECT_EQ(c->rotary_dim, 16);
  EXPECT_EQ(c->rope_theta, 5e6);
  EXPECT_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_EQ(c->num_local_experts, 8);
  EXPECT_EQ(c->num_experts_per_tok, 2);
  EXPECT_EQ(c->scoring, RouterScoring::kSigmoidWithBias);
  EXPECT_TRUE(c->use_qk_norm);
  EXPECT_TRUE(c->use_routing_bias);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_id, 2);
  EXPECT_EQ(c->max_position_embeddings, 4096);
  EXPECT_EQ(c->weight_format, WeightFormat::kPlain);
  EXPECT_EQ(c->layer_types, std::vector<LayerType>(3, kFull));
  EXPECT_FALSE(c->IsLinearLayer(0));
}

TEST_F(ModelConfigTest, ParsesGoldenM2MediumWithPartialRotary) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(TestDataDir() + "/golden/m2-medium");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->rotary_dim, 64);
  EXPECT_EQ(c->num_local_experts, 16);
  EXPECT_EQ(c->num_experts_per_tok, 8);
  EXPECT_EQ(c->hidden_size, 256);
}

TEST_F(ModelConfigTest, ParsesGoldenM2Fp8) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(TestDataDir() + "/golden/m2-fp8");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->weight_format, WeightFormat::kFp8Block);
  EXPECT_EQ(c->fp8_block_rows, 128);
  EXPECT_EQ(c->fp8_block_cols, 128);
  EXPECT_EQ(c->intermediate_size, 192);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->rotary_dim, 32);
}

TEST_F(ModelConfigTest, ParsesGoldenText01TinyWithFullHeadRotary) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(TestDataDir() + "/golden/text01-tiny");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kMiniMaxText01);
  EXPECT_EQ(c->model_type, "minimax");
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->rotary_dim, 16);  // no rotary_dim key: the full head
  EXPECT_EQ(c->rope_theta, 10000.0);
  EXPECT_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_EQ(c->lightning_norm_eps, 1e-6);
  EXPECT_EQ(c->scoring, RouterScoring::kSoftmax);
  EXPECT_FALSE(c->use_qk_norm);
  EXPECT_FALSE(c->use_routing_bias);
  EXPECT_EQ(c->block_size, 16);
  EXPECT_EQ(c->layer_types, (std::vector<LayerType>{kLinear, kLinear, kFull, kLinear}));
  EXPECT_TRUE(c->IsLinearLayer(0));
  EXPECT_FALSE(c->IsLinearLayer(2));
  EXPECT_EQ(c->full_attn_alpha, 1.7);
  EXPECT_EQ(c->full_attn_beta, 0.9);
  EXPECT_EQ(c->linear_attn_alpha, 1.3);
  EXPECT_EQ(c->linear_attn_beta, 1.1);
  EXPECT_EQ(c->mlp_alpha, 1.5);
  EXPECT_EQ(c->mlp_beta, 0.8);
  EXPECT_EQ(c->num_local_experts, 4);
  EXPECT_EQ(c->num_experts_per_tok, 2);
}

TEST_F(ModelConfigTest, DetectsAwqAndMlxGoldenQuantFormats) {
  absl::StatusOr<ModelConfig> awq = LoadModelConfig(TestDataDir() + "/golden-quant/m2-awq");
  ASSERT_TRUE(awq.ok()) << awq.status();
  EXPECT_EQ(awq->weight_format, WeightFormat::kAwq);
  EXPECT_EQ(awq->quant_bits, 4);
  EXPECT_EQ(awq->quant_group_size, 128);
  absl::StatusOr<ModelConfig> mlx = LoadModelConfig(TestDataDir() + "/golden-quant/m2-mlx4");
  ASSERT_TRUE(mlx.ok()) << mlx.status();
  EXPECT_EQ(mlx->weight_format, WeightFormat::kMlx);
  EXPECT_EQ(mlx->quant_bits, 4);
  EXPECT_EQ(mlx->quant_group_size, 64);
  // MLX detected from quantization_config alone when it has no quant_method.
  json j = Golden("golden-quant/m2-mlx4");
  j.erase("quantization");
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->weight_format, WeightFormat::kMlx);
}

TEST_F(ModelConfigTest, AppliesRotaryDefaultsAndSpellings) {
  json j = Golden("golden/m2-tiny");
  j.erase("rotary_dim");
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rotary_dim, 16);  // M2 default: head_dim / 2

  j["partial_rotary_factor"] = 0.25;
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rotary_dim, 8);

  // transformers spelling: everything inside rope_parameters.
  j.erase("partial_rotary_factor");
  j.erase("rope_theta");
  j["rope_parameters"] = {
      {"rope_type", "default"}, {"rope_theta", 1e6}, {"partial_rotary_factor", 0.5}};
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rotary_dim, 16);
  EXPECT_EQ(c->rope_theta, 1e6);

  // Both spellings present and agreeing is fine.
  j["rotary_dim"] = 16;
  j["rope_theta"] = 1e6;
  EXPECT_TRUE(Parse(j).ok());

  json t = Golden("golden/text01-tiny");
  t["rope_parameters"]["partial_rotary_factor"] = 0.5;
  c = Parse(t);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rotary_dim, 8);
}

TEST_F(ModelConfigTest, DefaultsHeadDimToHiddenOverHeads) {
  json j = Golden("golden/m2-tiny");
  j.erase("head_dim");
  j.erase("rotary_dim");
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 16);  // 64 / 4
  EXPECT_EQ(c->rotary_dim, 8);
  j["head_dim"] = nullptr;  // null counts as missing
  EXPECT_EQ(Parse(j)->head_dim, 16);
}

TEST_F(ModelConfigTest, ParsesText01OriginalSpelling) {
  json j = Golden("golden/text01-tiny");
  j["model_type"] = "minimax_text_01";
  j.erase("layer_types");
  j["attn_type_list"] = {0, 0, 1, 0};
  j.erase("rope_parameters");
  j["rope_theta"] = 1e7;
  j["rotary_dim"] = 8;
  j["postnorm"] = true;
  for (const char* k :
       {"full_attn_alpha_factor", "full_attn_beta_factor", "linear_attn_alpha_factor",
        "linear_attn_beta_factor", "mlp_alpha_factor", "mlp_beta_factor"}) {
    j.erase(k);
  }
  j["layernorm_full_attention_alpha"] = 3.5565588200778455;
  j["layernorm_full_attention_beta"] = 1.0;
  j["layernorm_linear_attention_alpha"] = 2.5;
  j["layernorm_linear_attention_beta"] = 0.5;
  j["layernorm_mlp_alpha"] = 1.25;
  j["layernorm_mlp_beta"] = 0.75;
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kMiniMaxText01);
  EXPECT_EQ(c->layer_types, (std::vector<LayerType>{kLinear, kLinear, kFull, kLinear}));
  EXPECT_EQ(c->rope_theta, 1e7);
  EXPECT_EQ(c->rotary_dim, 8);
  EXPECT_EQ(c->full_attn_alpha, 3.5565588200778455);
  EXPECT_EQ(c->linear_attn_alpha, 2.5);
  EXPECT_EQ(c->linear_attn_beta, 0.5);
  EXPECT_EQ(c->mlp_alpha, 1.25);
  EXPECT_EQ(c->mlp_beta, 0.75);
  j["model_type"] = "minimax_m1";
  EXPECT_EQ(Parse(j)->arch, Architecture::kMiniMaxText01);
  // Both layer spellings, agreeing.
  j["layer_types"] = {"linear_attention", "linear_attention", "full_attention", "linear_attention"};
  EXPECT_TRUE(Parse(j).ok());
}

TEST_F(ModelConfigTest, AcceptsMixtralModelTypeForM2ArchitectureAndTokenLists) {
  json j = Golden("golden/m2-tiny");
  j["model_type"] = "mixtral";  // AWQ re-exports (QUANT.md §1.1)
  j["eos_token_id"] = {7, 8};
  j["bos_token_id"] = nullptr;
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kMiniMaxM2);
  EXPECT_EQ(c->eos_token_id, 7);
  EXPECT_EQ(c->bos_token_id, -1);
  j["use_qk_norm"] = false;
  j["use_routing_bias"] = false;
  j["qk_norm_type"] = "per_head";  // irrelevant without qk norm
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->use_qk_norm);
  EXPECT_FALSE(c->use_routing_bias);
}

TEST_F(ModelConfigTest, RejectsMalformedJson) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig("{\"model_type\": ", "cfg.json");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("cfg.json: malformed JSON"));
  EXPECT_EQ(LoadModelConfig("/nonexistent-afd-dir").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ModelConfigTest, RejectsUnknownModelType) {
  json j = Golden("golden/m2-tiny");
  j["model_type"] = "llama";
  ExpectError(j, "unknown model_type 'llama'");
  j.erase("model_type");
  j["architectures"] = {"LlamaForCausalLM"};
  ExpectError(j, "model_type: required key is missing");
}

TEST_F(ModelConfigTest, RejectsMissingOrNonIntegerRequiredKeys) {
  for (const char* key :
       {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "num_key_value_heads", "num_local_experts", "num_experts_per_tok"}) {
    SCOPED_TRACE(key);
    json j = Golden("golden/m2-tiny");
    j.erase(key);
    ExpectError(j, std::string(key) + ": required key is missing");
  }
  json j = Golden("golden/m2-tiny");
  j["hidden_size"] = "64";
  ExpectError(j, "hidden_size: expected an integer");
  j["hidden_size"] = 0;
  ExpectError(j, "hidden_size: must be a positive integer");
  j = Golden("golden/m2-tiny");
  j["num_experts"] = 9;
  ExpectError(j, "num_local_experts: is 8 but num_experts is 9");
}

TEST_F(ModelConfigTest, RejectsHeadsNotDivisibleByKvHeads) {
  json j = Golden("golden/m2-tiny");
  j["num_key_value_heads"] = 3;
  ExpectError(j, "num_attention_heads: 4 is not divisible by num_key_value_heads 3");
}

TEST_F(ModelConfigTest, RejectsBadRotaryDims) {
  json j = Golden("golden/m2-tiny");
  j["rotary_dim"] = 48;
  ExpectError(j, "rotary_dim: rotary dims 48 not in (0, head_dim 32]");
  j["rotary_dim"] = 15;
  ExpectError(j, "rotary_dim: rotary dims 15 is odd");
  j["rotary_dim"] = 16;
  j["partial_rotary_factor"] = 1.0;
  ExpectError(j, "partial_rotary_factor: implies 32 rotary dims but rotary_dim implies 16");
  j.erase("partial_rotary_factor");
  j["rope_parameters"] = {{"partial_rotary_factor", 0.25}};
  ExpectError(j,
              "rope_parameters.partial_rotary_factor: implies 8 rotary dims but rotary_dim "
              "implies 16");
  j["rope_parameters"] = {{"partial_rotary_factor", 1.5}};
  ExpectError(j, "must be in (0, 1]");
}

TEST_F(ModelConfigTest, RejectsDisagreeingRopeTheta) {
  json j = Golden("golden/m2-tiny");
  j["rope_parameters"] = {{"rope_theta", 10000.0}};
  ExpectError(j, "rope_theta: is 5e+06 but rope_parameters.rope_theta is 10000");
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 5e6}};
  ExpectError(j, "rope type \"yarn\" is not supported");
}

TEST_F(ModelConfigTest, RejectsUnsupportedM2Variants) {
  json j = Golden("golden/m2-tiny");
  j["scoring_func"] = "softmax";
  ExpectError(j, "scoring_func: 'softmax' is not supported for minimax_m2");
  j = Golden("golden/m2-tiny");
  j["qk_norm_type"] = "per_head";
  ExpectError(j, "qk_norm_type: 'per_head' is not supported");
  j = Golden("golden/m2-tiny");
  j["hidden_act"] = "gelu";
  ExpectError(j, "hidden_act: 'gelu' is not supported");
  j = Golden("golden/m2-tiny");
  j["shared_intermediate_size"] = 128;
  ExpectError(j, "shared experts are not supported");
}

TEST_F(ModelConfigTest, RejectsTopKAboveExperts) {
  json j = Golden("golden/m2-tiny");
  j["num_experts_per_tok"] = 9;
  ExpectError(j, "num_experts_per_tok: 9 exceeds num_local_experts 8");
}

TEST_F(ModelConfigTest, RejectsBadText01LayerTypes) {
  json j = Golden("golden/text01-tiny");
  j["layer_types"] = {"linear_attention", "full_attention", "linear_attention"};
  ExpectError(j, "layer_types: has 3 entries but num_hidden_layers is 4");
  j["layer_types"] = {"linear_attention", "sliding_attention", "full_attention",
                      "linear_attention"};
  ExpectError(j, "unknown layer type \"sliding_attention\"");
  j.erase("layer_types");
  ExpectError(j, "layer_types: required key is missing");
  j["attn_type_list"] = {0, 0, 1, 2};
  ExpectError(j, "attn_type_list: entries must be 0 (linear) or 1 (full)");
  j["attn_type_list"] = {0, 0, 1, 1};
  j["layer_types"] = {"linear_attention", "linear_attention", "full_attention", "linear_attention"};
  ExpectError(j, "layer_types: disagrees with attn_type_list");
}

TEST_F(ModelConfigTest, RejectsDisagreeingResidualFactorsAndPreNorm) {
  json j = Golden("golden/text01-tiny");
  j["layernorm_mlp_alpha"] = 2.0;
  ExpectError(j, "layernorm_mlp_alpha: is 2 but mlp_alpha_factor is 1.5");
  j = Golden("golden/text01-tiny");
  j["postnorm"] = false;
  ExpectError(j, "postnorm: false");
}

TEST_F(ModelConfigTest, RejectsUnsupportedQuantization) {
  json j = Golden("golden/m2-fp8");
  j["quantization_config"].erase("weight_block_size");
  ExpectError(j, "quantization_config.weight_block_size: fp8 needs a [rows, cols] block size");
  j = Golden("golden/m2-fp8");
  j["quantization_config"]["fmt"] = "float8_e5m2";
  ExpectError(j, "only float8_e4m3fn is supported");
  j = Golden("golden/m2-fp8");
  j["quantization_config"] = {{"quant_method", "compressed-tensors"}};
  ExpectError(j, "compressed-tensors checkpoints are not supported");
  j["quantization_config"] = {{"quant_method", "gptq"}};
  ExpectError(j, "unsupported quant_method 'gptq'");
  j["quantization_config"] = {{"quant_method", "awq"}, {"version", "gemv"}};
  ExpectError(j, "AWQ version 'gemv' is not supported");
  j["quantization_config"] = {{"activation_scheme", "dynamic"}};
  ExpectError(j, "has no quant_method");
  j.erase("quantization_config");
  j["quantization"] = {{"bits", 4}, {"group_size", 64}, {"mode", "mxfp4"}};
  ExpectError(j, "MLX mode 'mxfp4' is not supported");
}

TEST_F(ModelConfigTest, SerializesBothSpellingsAndParsesBack) {
  for (const CheckpointPreset& preset : CheckpointPresets()) {
    for (ConfigSpelling spelling : {ConfigSpelling::kOriginal, ConfigSpelling::kTransformers}) {
      for (WeightFormat format : {WeightFormat::kPlain, WeightFormat::kFp8Block}) {
        SCOPED_TRACE(preset.name +
                     (spelling == ConfigSpelling::kOriginal ? " original" : " transformers"));
        ModelConfig in = preset.config;
        in.weight_format = format;
        const std::string text = ModelConfigToJson(in, spelling);
        absl::StatusOr<ModelConfig> out = ParseModelConfig(text, "roundtrip");
        ASSERT_TRUE(out.ok()) << out.status() << "\n" << text;
        EXPECT_EQ(ModelConfigToJson(*out, spelling), text);
        EXPECT_EQ(out->arch, in.arch);
        EXPECT_EQ(out->rotary_dim, in.rotary_dim);
        EXPECT_EQ(out->rope_theta, in.rope_theta);
        EXPECT_EQ(out->layer_types, in.layer_types);
        EXPECT_EQ(out->head_dim, in.head_dim);
        EXPECT_EQ(out->mlp_beta, in.mlp_beta);
        EXPECT_EQ(out->bos_token_id, in.bos_token_id);
        EXPECT_EQ(out->weight_format, format);
        const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
        if (spelling == ConfigSpelling::kOriginal) {
          EXPECT_TRUE(j.contains("rotary_dim"));
          EXPECT_TRUE(j.contains("attn_type_list"));
          EXPECT_FALSE(j.contains("rope_parameters"));
        } else {
          EXPECT_TRUE(j.contains("rope_parameters"));
          EXPECT_FALSE(j.contains("rotary_dim"));
        }
      }
    }
  }
}

}  // namespace
}  // namespace afd
