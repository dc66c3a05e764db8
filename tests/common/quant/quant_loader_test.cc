// Tests for common/quant/quant_loader.h and the generator's AWQ / MLX output: per-module
// detection and params on the golden-quant fixtures, stacked-expert slices, each loader error
// (wrong packed shape for the declared bits, missing qzeros / biases / scales, group sizes that
// do not divide the dimensions, unsupported AWQ versions and MLX modes), and generated
// checkpoints whose packed weights dequantize to the bf16 generator's values within half a
// quantization step.
#include "common/quant/quant_loader.h"

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/checkpoint_gen.h"
#include "common/kernels/matmul.h"
#include "common/model_config.h"
#include "common/quant/quant_pack.h"
#include "common/safetensors.h"
#include "common/safetensors_writer.h"
#include "common/weights.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/quant/quant_test_util.h"
#include "tests/common/test_util.h"

namespace afd::quant {
namespace {

using ::testing::HasSubstr;
using testing_util::MakeTempDir;
using testing_util::ReadFile;
using testing_util::TestDataDir;
using testing_util::WriteFile;

struct Loaded {
  ModelConfig config;
  std::unique_ptr<Checkpoint> ckpt;
};

Loaded Load(const std::string& dir) {
  Loaded l;
  absl::StatusOr<ModelConfig> c = LoadModelConfig(dir);
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok()) return l;
  l.config = *c;
  absl::StatusOr<std::unique_ptr<Checkpoint>> ck = Checkpoint::Open(dir);
  EXPECT_TRUE(ck.ok()) << ck.status();
  if (ck.ok()) l.ckpt = std::move(*ck);
  return l;
}

ModelConfig SmallM2() { return quant_testing::SmallM2(/*experts=*/4); }

std::string Generate(const ModelConfig& c, GenQuant quant, int bits, int group,
                     bool quantize_attention = true, uint64_t seed = 5) {
  const std::string dir = MakeTempDir();
  const absl::Status s =
      quant_testing::GenerateQuantized(c, {quant, bits, group, quantize_attention, ""}, seed, dir);
  EXPECT_TRUE(s.ok()) << s;
  return dir;
}

// Rewrites the checkpoint in `dir` (model.safetensors) through `mutate` over name -> (spec,
// bytes), keeping the metadata.
void Rewrite(
    const std::string& dir,
    const std::function<void(std::map<std::string, std::pair<TensorSpec, std::string>>&)>& mutate) {
  std::map<std::string, std::pair<TensorSpec, std::string>> tensors;
  std::map<std::string, std::string> metadata;
  {
    std::unique_ptr<SafetensorsFile> f = SafetensorsFile::Open(dir + "/model.safetensors").value();
    metadata = f->metadata();
    for (const auto& [name, t] : f->tensors()) {
      tensors[name] = {TensorSpec{name, t.dtype, t.shape},
                       std::string(reinterpret_cast<const char*>(t.data), t.bytes)};
    }
  }
  mutate(tensors);
  std::vector<std::pair<TensorSpec, absl::Span<const uint8_t>>> out;
  for (auto& [name, st] : tensors) {
    st.second.resize(static_cast<size_t>(st.first.bytes()));
    out.emplace_back(st.first,
                     absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(st.second.data()),
                                               st.second.size()));
  }
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", out, metadata).ok());
}

// Edits config.json as JSON.
void EditConfig(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = nlohmann::json::parse(ReadFile(dir + "/config.json"));
  edit(j);
  WriteFile(dir + "/config.json", j.dump(2));
}

absl::Status Validate(const std::string& dir) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(dir);
  if (!c.ok()) return c.status();
  absl::StatusOr<std::unique_ptr<Checkpoint>> ck = Checkpoint::Open(dir);
  if (!ck.ok()) return ck.status();
  return ValidateCheckpoint(*c, **ck);
}

TEST(QuantLoaderTest, DetectsModulesOfTheGoldenFixtures) {
  Loaded awq = Load(TestDataDir() + "/golden-quant/m2-awq");
  ASSERT_NE(awq.ckpt, nullptr);
  EXPECT_EQ(DetectModuleFormat(*awq.ckpt, ExpertLinearName(1, 15, "w2")), ModuleFormat::kAwq);
  EXPECT_EQ(DetectModuleFormat(*awq.ckpt, "model.layers.0.self_attn.q_proj"), ModuleFormat::kAwq);
  EXPECT_EQ(DetectModuleFormat(*awq.ckpt, "lm_head"), ModuleFormat::kFloat);
  EXPECT_EQ(DetectModuleFormat(*awq.ckpt, "model.layers.0.block_sparse_moe.gate"),
            ModuleFormat::kFloat);
  absl::StatusOr<kernels::QuantMatrix> w1 =
      LoadAwqLinear(*awq.ckpt, awq.config, ExpertLinearName(0, 3, "w1"), 128, 256);
  ASSERT_TRUE(w1.ok()) << w1.status();
  EXPECT_EQ(w1->group_size, 128);
  EXPECT_EQ(w1->scale_type, kernels::WeightType::kF16);
  EXPECT_NE(w1->zeros, nullptr);
  EXPECT_EQ(kernels::QuantMatrixProblem(*w1), nullptr);
  EXPECT_EQ(LoadQuantizedLinear(*awq.ckpt, awq.config, "lm_head", 640, 256).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(ValidateCheckpoint(awq.config, *awq.ckpt).ok());

  Loaded mlx = Load(TestDataDir() + "/golden-quant/m2-mlx4");
  ASSERT_NE(mlx.ckpt, nullptr);
  EXPECT_EQ(DetectModuleFormat(*mlx.ckpt, "model.embed_tokens"), ModuleFormat::kMlx);
  EXPECT_EQ(DetectModuleFormat(*mlx.ckpt, "lm_head"), ModuleFormat::kMlx);
  EXPECT_TRUE(HasStackedExperts(*mlx.ckpt, 1));
  EXPECT_FALSE(HasStackedExperts(*awq.ckpt, 1));
  // The router gate takes its 8-bit / 64 override; everything else the global 4 / 64.
  const MlxModuleParams gate = MlxParamsFor(mlx.config, "model.layers.1.block_sparse_moe.gate");
  EXPECT_EQ(gate.bits, 8);
  EXPECT_EQ(gate.group_size, 64);
  absl::StatusOr<kernels::QuantMatrix> g =
      LoadMlxLinear(*mlx.ckpt, mlx.config, "model.layers.1.block_sparse_moe.gate", 16, 256);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->bits, 8);
  absl::StatusOr<kernels::QuantMatrix> e =
      LoadMlxLinear(*mlx.ckpt, mlx.config, "model.embed_tokens", 640, 256);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->bits, 4);
  EXPECT_EQ(e->group_size, 64);
  EXPECT_EQ(e->scale_type, kernels::WeightType::kBF16);
  ASSERT_TRUE(ValidateCheckpoint(mlx.config, *mlx.ckpt).ok());
}

TEST(QuantLoaderTest, MlxExpertIsItsSliceOfTheStack) {
  Loaded mlx = Load(TestDataDir() + "/golden-quant/m2-mlx4");
  ASSERT_NE(mlx.ckpt, nullptr);
  const std::string down = MlxExpertStackName(0, "w2");
  EXPECT_EQ(down, "model.layers.0.block_sparse_moe.switch_mlp.down_proj");
  EXPECT_EQ(MlxExpertStackName(0, "w3"), "model.layers.0.block_sparse_moe.switch_mlp.up_proj");
  const TensorView weight = mlx.ckpt->Get(down + ".weight").value();
  const TensorView scales = mlx.ckpt->Get(down + ".scales").value();
  ASSERT_EQ(weight.shape, (std::vector<int64_t>{16, 256, 16}));
  for (int expert : {0, 7, 15}) {
    absl::StatusOr<kernels::QuantMatrix> m =
        LoadMlxLinear(*mlx.ckpt, mlx.config, down, 256, 128, expert, 16);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(static_cast<const uint8_t*>(m->data), weight.data + expert * 256 * 16 * 4);
    EXPECT_EQ(static_cast<const uint8_t*>(m->scales), scales.data + expert * 256 * 2 * 2);
    // Byte range of this expert only: the next expert starts right after.
    EXPECT_EQ(m->PackedBytes(), size_t{256} * 16 * 4);
  }
  EXPECT_EQ(LoadMlxLinear(*mlx.ckpt, mlx.config, down, 256, 128, 16, 16).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A stack with the wrong expert count.
  EXPECT_THAT(
      std::string(LoadMlxLinear(*mlx.ckpt, mlx.config, down, 256, 128, 0, 8).status().message()),
      HasSubstr("expected [8, 256, 16]"));
}

TEST(QuantLoaderTest, AwqWrongPackedShapeNamesTheDeclaredLayout) {
  const std::string dir = Generate(SmallM2(), GenQuant::kAwq, 4, 64);
  const std::string name = ExpertLinearName(0, 1, "w3") + ".qweight";
  Rewrite(dir, [&](auto& t) { t[name].first.shape = {128, 32}; });  // 8 codes per word: [128, 16]
  const absl::Status s = Validate(dir);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("'" + name + "' is [128, 32], expected [128, 16] for 4-bit AWQ codes"));
  std::filesystem::remove_all(dir);
}

TEST(QuantLoaderTest, MlxWrongPackedShapeForTheDeclaredBits) {
  // Declared 4 bits, stored 8: the message says what the shape implies.
  const std::string dir = Generate(SmallM2(), GenQuant::kMlx, 8, 64);
  EditConfig(dir, [](nlohmann::json& j) {
    j["quantization"]["bits"] = 4;
    j["quantization_config"]["bits"] = 4;
  });
  const absl::Status s = Validate(dir);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("is [96, 32], expected [96, 16] for 4-bit MLX codes of a [96, 128] "
                        "linear; its last dimension implies 8 bits"));
  std::filesystem::remove_all(dir);

  // The router gate is 8-bit through its override; drop the override and it no longer fits.
  const std::string dir2 = Generate(SmallM2(), GenQuant::kMlx, 4, 64);
  ASSERT_TRUE(Validate(dir2).ok());
  EditConfig(dir2, [](nlohmann::json& j) {
    j["quantization"].erase("model.layers.0.block_sparse_moe.gate");
    j["quantization_config"].erase("model.layers.0.block_sparse_moe.gate");
  });
  const absl::Status s2 = Validate(dir2);
  EXPECT_THAT(std::string(s2.message()),
              HasSubstr("'model.layers.0.block_sparse_moe.gate.weight' is [4, 32], expected "
                        "[4, 16] for 4-bit MLX codes"));
  std::filesystem::remove_all(dir2);
}

TEST(QuantLoaderTest, MissingZeroPointsBiasesAndScalesAreNamed) {
  const std::string awq = Generate(SmallM2(), GenQuant::kAwq, 4, 32);
  const std::string qzeros = ExpertLinearName(1, 2, "w2") + ".qzeros";
  Rewrite(awq, [&](auto& t) { t.erase(qzeros); });
  absl::Status s = Validate(awq);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("AWQ module '" + ExpertLinearName(1, 2, "w2") +
                                                  "' has no qzeros but zero_point is true"));
  // zero_point false: no qzeros is fine and every zero point is 8.
  EditConfig(awq, [](nlohmann::json& j) { j["quantization_config"]["zero_point"] = false; });
  Loaded l = Load(awq);
  ASSERT_TRUE(ValidateCheckpoint(l.config, *l.ckpt).ok());
  absl::StatusOr<kernels::QuantMatrix> m =
      LoadAwqLinear(*l.ckpt, l.config, ExpertLinearName(1, 2, "w2"), 128, 128);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->zeros, nullptr);
  EXPECT_EQ(kernels::AwqZeroAt(*m, 5, 5), 8u);
  const std::string scales = ExpertLinearName(0, 0, "w1") + ".scales";
  Rewrite(awq, [&](auto& t) { t.erase(scales); });
  s = Validate(awq);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("has a qweight but no scales"));
  std::filesystem::remove_all(awq);

  const std::string mlx = Generate(SmallM2(), GenQuant::kMlx, 4, 32);
  Rewrite(mlx, [](auto& t) { t.erase("model.layers.1.self_attn.o_proj.biases"); });
  s = Validate(mlx);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("MLX module 'model.layers.1.self_attn.o_proj' has scales but no biases"));
  Rewrite(mlx,
          [](auto& t) { t.erase("model.layers.0.block_sparse_moe.switch_mlp.up_proj.scales"); });
  s = Validate(mlx);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("has a packed weight but no scales"));
  std::filesystem::remove_all(mlx);
}

TEST(QuantLoaderTest, GroupSizesThatDoNotDivideTheDimensions) {
  const std::string awq = Generate(SmallM2(), GenQuant::kAwq, 4, 64);
  EditConfig(awq, [](nlohmann::json& j) { j["quantization_config"]["group_size"] = 48; });
  absl::Status s = Validate(awq);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("AWQ group_size 48 does not divide the 128"));
  std::filesystem::remove_all(awq);

  const std::string mlx = Generate(SmallM2(), GenQuant::kMlx, 4, 64);
  EditConfig(mlx, [](nlohmann::json& j) {
    for (const char* key : {"quantization", "quantization_config"}) {
      j[key]["model.layers.0.block_sparse_moe.gate"]["group_size"] = 96;
    }
  });
  s = Validate(mlx);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("MLX group_size 96 does not divide the 128 input features of "
                        "'model.layers.0.block_sparse_moe.gate'"));
  // A group that divides but disagrees with the scales' shape.
  EditConfig(mlx, [](nlohmann::json& j) {
    for (const char* key : {"quantization", "quantization_config"}) j[key]["group_size"] = 32;
  });
  s = Validate(mlx);
  EXPECT_THAT(std::string(s.message()), HasSubstr("its last dimension implies group_size 64"));
  std::filesystem::remove_all(mlx);
}

TEST(QuantLoaderTest, UnsupportedFormatsAreRefusedByName) {
  const std::string dir = MakeTempDir();
  const std::string golden = ReadFile(TestDataDir() + "/golden-quant/m2-awq/config.json");
  auto parse_with = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = nlohmann::json::parse(golden);
    edit(j);
    return ParseModelConfig(j.dump(), "config.json").status();
  };
  for (const char* version : {"gemv", "gemv_fast", "marlin", "exllama", "GEMV"}) {
    const absl::Status s =
        parse_with([&](nlohmann::json& j) { j["quantization_config"]["version"] = version; });
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << version;
    EXPECT_THAT(std::string(s.message()),
                HasSubstr(std::string("AWQ version '") + version + "' is not supported"));
  }
  absl::Status s = parse_with([](nlohmann::json& j) { j["quantization_config"]["bits"] = 8; });
  EXPECT_THAT(std::string(s.message()), HasSubstr("AWQ GEMM packs only 4 bits"));
  s = parse_with([](nlohmann::json& j) {
    j["quantization_config"] = {{"quant_method", "compressed-tensors"}};
  });
  EXPECT_THAT(std::string(s.message()), HasSubstr("compressed-tensors checkpoints are not"));
  s = parse_with([](nlohmann::json& j) {
    j.erase("quantization_config");
    j["quantization"] = {
        {"bits", 4}, {"group_size", 64}, {"model.embed_tokens", {{"mode", "nvfp4"}}}};
  });
  EXPECT_THAT(std::string(s.message()), HasSubstr("MLX mode 'nvfp4' is not supported"));
  // Per-module entries: overrides and `false` (left float) are read.
  absl::StatusOr<ModelConfig> c = [&] {
    nlohmann::json j = nlohmann::json::parse(golden);
    j.erase("quantization_config");
    j["quantization"] = {{"bits", 3},
                         {"group_size", 32},
                         {"lm_head", false},
                         {"model.layers.0.block_sparse_moe.gate", {{"bits", 8}}}};
    return ParseModelConfig(j.dump(), "config.json");
  }();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(MlxParamsFor(*c, "lm_head").quantized);
  EXPECT_EQ(MlxParamsFor(*c, "model.layers.0.block_sparse_moe.gate").bits, 8);
  EXPECT_EQ(MlxParamsFor(*c, "model.layers.0.block_sparse_moe.gate").group_size, 32);
  EXPECT_EQ(MlxParamsFor(*c, "model.layers.0.self_attn.q_proj").bits, 3);
  std::filesystem::remove_all(dir);
}

// A checkpoint directory holding only `specs` (zero bytes).
std::unique_ptr<Checkpoint> WriteTensors(const std::string& dir,
                                         const std::vector<TensorSpec>& specs) {
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<std::pair<TensorSpec, absl::Span<const uint8_t>>> tensors;
  for (const TensorSpec& spec : specs) bytes.emplace_back(static_cast<size_t>(spec.bytes()), 0);
  for (size_t i = 0; i < specs.size(); ++i) tensors.emplace_back(specs[i], bytes[i]);
  EXPECT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors).ok());
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

TEST(QuantLoaderTest, BitsThatDoNotPackTheDimensions) {
  // AWQ packs 8 output columns per int32: 12 outputs do not.
  const std::string dir = MakeTempDir();
  ModelConfig awq;
  awq.weight_format = WeightFormat::kAwq;
  awq.quant_bits = 4;
  awq.quant_group_size = 32;
  std::unique_ptr<Checkpoint> c = WriteTensors(dir, {{"m.qweight", DType::kI32, {64, 1}},
                                                     {"m.qzeros", DType::kI32, {2, 1}},
                                                     {"m.scales", DType::kF16, {2, 12}}});
  ASSERT_NE(c, nullptr);
  absl::Status s = LoadAwqLinear(*c, awq, "m", 12, 64).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("12 output features are not a multiple of 8"));

  // MLX 3-bit codes of 80 inputs are 7.5 words per row (group 16 divides 80).
  ModelConfig mlx;
  mlx.weight_format = WeightFormat::kMlx;
  mlx.quant_bits = 3;
  mlx.quant_group_size = 16;
  c = WriteTensors(dir, {{"m.weight", DType::kU32, {4, 7}},
                         {"m.scales", DType::kBF16, {4, 5}},
                         {"m.biases", DType::kBF16, {4, 5}}});
  ASSERT_NE(c, nullptr);
  s = LoadMlxLinear(*c, mlx, "m", 4, 80).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("3 bits x 80 input features is not a whole number of uint32 words"));
  // Widths MLX does not have.
  mlx.quant_bits = 7;
  mlx.quant_group_size = 32;
  s = LoadMlxLinear(*c, mlx, "m", 4, 64).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("bits 7 is not 2, 3, 4, 5, 6 or 8"));
  std::filesystem::remove_all(dir);
}

TEST(QuantLoaderTest, AwqGemvLayoutUnderAGemmConfigIsAWrongShape) {
  // GEMV stores qweight [out, in/8] (packed along the input): k_proj [64, 128] as [64, 16]
  // where GEMM has [128, 8].
  const std::string dir = Generate(SmallM2(), GenQuant::kAwq, 4, 64);
  const std::string name = "model.layers.1.self_attn.k_proj.qweight";
  Rewrite(dir, [&](auto& t) { t[name].first.shape = {64, 16}; });
  const absl::Status s = Validate(dir);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("'" + name +
                        "' is [64, 16], expected [128, 8] for 4-bit AWQ codes (8 per "
                        "int32 along the 64 outputs)"));
  std::filesystem::remove_all(dir);
}

TEST(QuantLoaderTest, AwqGroupSizeMinusOneIsTheWholeInput) {
  // group 128 = the whole 128-wide input of every module: the same checkpoint read as -1.
  const std::string dir = Generate(SmallM2(), GenQuant::kAwq, 4, 128);
  Loaded before = Load(dir);
  ASSERT_NE(before.ckpt, nullptr);
  const std::string w3 = ExpertLinearName(1, 2, "w3");
  const kernels::QuantMatrix a = LoadAwqLinear(*before.ckpt, before.config, w3, 128, 128).value();
  EditConfig(dir, [](nlohmann::json& j) { j["quantization_config"]["group_size"] = -1; });
  Loaded after = Load(dir);
  ASSERT_NE(after.ckpt, nullptr);
  EXPECT_EQ(after.config.quant_group_size, -1);
  ASSERT_TRUE(ValidateCheckpoint(after.config, *after.ckpt).ok());
  absl::StatusOr<kernels::QuantMatrix> b = LoadAwqLinear(*after.ckpt, after.config, w3, 128, 128);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->group_size, 128);
  for (int64_t r : {0, 77, 127}) {
    for (int64_t col : {0, 64, 127}) {
      EXPECT_EQ(kernels::QuantWeightAt(*b, r, col), kernels::QuantWeightAt(a, r, col));
    }
  }
  std::filesystem::remove_all(dir);
}

TEST(QuantLoaderTest, UnsupportedConfigsAreRefusedByName) {
  const std::string golden = ReadFile(TestDataDir() + "/golden-quant/m2-mlx4/config.json");
  auto parse_with = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = nlohmann::json::parse(golden);
    edit(j);
    return ParseModelConfig(j.dump(), "config.json").status();
  };
  // Non-affine MLX modes globally (mxfp4 / nvfp4 / mxfp8 have uint8 scales and no biases).
  for (const char* mode : {"mxfp4", "nvfp4", "mxfp8"}) {
    const absl::Status s = parse_with([&](nlohmann::json& j) { j["quantization"]["mode"] = mode; });
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()),
                HasSubstr(std::string("MLX mode '") + mode + "' is not supported (only affine)"));
  }
  absl::Status s = parse_with([](nlohmann::json& j) { j["quantization"]["bits"] = 7; });
  EXPECT_THAT(std::string(s.message()), HasSubstr("MLX bits must be 2-6 or 8, got 7"));
  // The MLX quantization_config copy alone (no quant_method) is MLX too.
  absl::StatusOr<ModelConfig> copy = [&] {
    nlohmann::json j = nlohmann::json::parse(golden);
    j.erase("quantization");
    return ParseModelConfig(j.dump(), "config.json");
  }();
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ(copy->weight_format, WeightFormat::kMlx);
  EXPECT_EQ(MlxParamsFor(*copy, "model.layers.1.block_sparse_moe.gate").bits, 8);
  s = parse_with([](nlohmann::json& j) {
    j.erase("quantization");
    j["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}};
  });
  EXPECT_THAT(std::string(s.message()), HasSubstr("unsupported quant_method 'gptq'"));
}

TEST(QuantPackTest, WorkedExamplesPackAsQuantMdSays) {
  const uint8_t cols[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  EXPECT_EQ(PackAwqWord(cols), 0x75316420u);
  const uint8_t eights[8] = {8, 8, 8, 8, 8, 8, 8, 8};
  EXPECT_EQ(PackAwqWord(eights), 0x88888888u);
  std::vector<uint8_t> codes(32);
  for (int j = 0; j < 32; ++j) codes[j] = static_cast<uint8_t>(j % 8);
  EXPECT_EQ(PackMlxRow(codes.data(), 32, 3),
            (std::vector<uint32_t>{0x88fac688u, 0xc688fac6u, 0xfac688fau}));
  for (int j = 0; j < 32; ++j) codes[j] = static_cast<uint8_t>(j);
  EXPECT_EQ(
      PackMlxRow(codes.data(), 32, 5),
      (std::vector<uint32_t>{0x8a418820u, 0xc5a92839u, 0xca307b9au, 0x38bdab49u, 0xffbbcdebu}));
  EXPECT_EQ(PackMlxRow(codes.data(), 32, 6),
            (std::vector<uint32_t>{0x440c2040u, 0xa2481c61u, 0x3ce34c2cu, 0x544d2450u, 0xa6585d65u,
                                   0x7de75c6du}));
  for (float v : {0.0f, 1.0f, -2.5f, 0.1f, 65504.0f, 6.1e-5f, 3e-7f}) {
    EXPECT_NEAR(kernels::F16ToFloat(EncodeF16(v)), v, std::fabs(v) * 1e-3 + 6e-8) << v;
  }
  // mlx's rule: a group whose largest magnitude is its maximum gets a negative scale and
  // q = 0 maps to that maximum.
  const float group[4] = {-0.1f, 0.2f, 0.9f, 0.4f};
  uint8_t q[4];
  const MlxGroup g = QuantizeMlxGroup(group, 4, 4, q);
  EXPECT_LT(kernels::Bf16ToFloat(g.scale_bf16), 0.0f);
  EXPECT_EQ(q[2], 0);
  EXPECT_NEAR(kernels::Bf16ToFloat(g.bias_bf16), 0.9f, 0.004f);
}

// Generated AWQ / MLX checkpoints hold the bf16 generator's weights within a quantization step.
class GeneratedQuantTest : public ::testing::TestWithParam<std::tuple<GenQuant, int, int>> {};

TEST_P(GeneratedQuantTest, DequantizesToTheBf16Weights) {
  const auto [quant, bits, group] = GetParam();
  const ModelConfig c = SmallM2();
  const std::string qdir = Generate(c, quant, bits, group, /*quantize_attention=*/bits != 6);
  const std::string fdir = MakeTempDir();
  GenCheckpointOptions bf16;
  bf16.seed = 5;
  ASSERT_TRUE(GenerateCheckpoint(c, fdir, bf16).ok());
  Loaded q = Load(qdir), f = Load(fdir);
  ASSERT_TRUE(ValidateCheckpoint(q.config, *q.ckpt).ok()) << ValidateCheckpoint(q.config, *q.ckpt);
  EXPECT_EQ(q.config.weight_format,
            quant == GenQuant::kAwq ? WeightFormat::kAwq : WeightFormat::kMlx);
  const bool mlx = quant == GenQuant::kMlx;
  if (mlx) {
    EXPECT_EQ(q.ckpt->files()[0]->metadata().at("format"), "mlx");
  }
  struct Module {
    std::string name, source;
    int64_t out, in;
    int expert;
  };
  std::vector<Module> modules = {
      {mlx ? MlxExpertStackName(1, "w2") : ExpertLinearName(1, 3, "w2"),
       ExpertLinearName(1, 3, "w2"), 128, 128, mlx ? 3 : -1},
      {mlx ? MlxExpertStackName(0, "w1") : ExpertLinearName(0, 0, "w1"),
       ExpertLinearName(0, 0, "w1"), 128, 128, mlx ? 0 : -1},
      {"model.layers.1.self_attn.k_proj", "model.layers.1.self_attn.k_proj", 64, 128, -1}};
  if (mlx) {
    modules.push_back({"model.embed_tokens", "model.embed_tokens", 96, 128, -1});
    modules.push_back({"lm_head", "lm_head", 96, 128, -1});
    modules.push_back({"model.layers.0.block_sparse_moe.gate",
                       "model.layers.0.block_sparse_moe.gate", 4, 128, -1});
  }
  for (const Module& m : modules) {
    SCOPED_TRACE(m.name);
    const bool attention = m.name.find("self_attn") != std::string::npos;
    if (attention && bits == 6) {
      EXPECT_EQ(DetectModuleFormat(*q.ckpt, m.name), ModuleFormat::kFloat);
      continue;
    }
    absl::StatusOr<kernels::QuantMatrix> w =
        m.expert >= 0 ? LoadMlxLinear(*q.ckpt, q.config, m.name, m.out, m.in, m.expert, 4)
                      : LoadQuantizedLinear(*q.ckpt, q.config, m.name, m.out, m.in);
    ASSERT_TRUE(w.ok()) << w.status();
    const bool gate = m.name == "model.layers.0.block_sparse_moe.gate";
    EXPECT_EQ(w->bits, gate ? 8 : bits);
    EXPECT_EQ(w->group_size, gate ? 64 : group);
    const TensorView ref = f.ckpt->Get(m.source + ".weight").value();
    const int levels = (1 << w->bits) - 1;
    int bad = 0;
    for (int64_t r = 0; r < m.out && bad < 3; ++r) {
      for (int64_t col = 0; col < m.in && bad < 3; ++col) {
        float want;
        if (ref.dtype == DType::kF32) {
          std::memcpy(&want, ref.data + 4 * (r * m.in + col), 4);
          want = kernels::Bf16ToFloat(kernels::FloatToBf16(want));  // mlx casts it to bf16
        } else {
          uint16_t h;
          std::memcpy(&h, ref.data + 2 * (r * m.in + col), 2);
          want = kernels::Bf16ToFloat(h);
        }
        // One step of the group (its scale), plus bf16 rounding of the stored scale and bias.
        float step = 0, bias = 0;
        const int64_t g = col / w->group_size;
        if (mlx) {
          uint16_t sb, bb;
          std::memcpy(&sb, static_cast<const uint8_t*>(w->scales) + 2 * (r * w->groups() + g), 2);
          std::memcpy(&bb, static_cast<const uint8_t*>(w->biases) + 2 * (r * w->groups() + g), 2);
          step = std::fabs(kernels::Bf16ToFloat(sb));
          bias = std::fabs(kernels::Bf16ToFloat(bb));
        } else {
          uint16_t sh;
          std::memcpy(&sh, static_cast<const uint8_t*>(w->scales) + 2 * (g * m.out + r), 2);
          step = kernels::F16ToFloat(sh);
        }
        const float got = kernels::QuantWeightAt(*w, r, col);
        const float bound = step * (1.0f + levels / 128.0f) + bias / 128.0f + 1e-6f;
        if (!(std::fabs(got - want) <= bound)) {
          ADD_FAILURE() << "[" << r << ", " << col << "]: " << got << " vs " << want << " (step "
                        << step << ")";
          ++bad;
        }
      }
    }
  }
  std::filesystem::remove_all(qdir);
  std::filesystem::remove_all(fdir);
}

INSTANTIATE_TEST_SUITE_P(Formats, GeneratedQuantTest,
                         ::testing::Values(std::make_tuple(GenQuant::kAwq, 4, 32),
                                           std::make_tuple(GenQuant::kAwq, 4, 128),
                                           std::make_tuple(GenQuant::kMlx, 2, 64),
                                           std::make_tuple(GenQuant::kMlx, 3, 32),
                                           std::make_tuple(GenQuant::kMlx, 4, 64),
                                           std::make_tuple(GenQuant::kMlx, 5, 128),
                                           std::make_tuple(GenQuant::kMlx, 6, 64),
                                           std::make_tuple(GenQuant::kMlx, 8, 32)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) == GenQuant::kAwq ? "awq"
                                                                                        : "mlx") +
                                  std::to_string(std::get<1>(info.param)) + "_g" +
                                  std::to_string(std::get<2>(info.param));
                         });

TEST(GeneratedQuantTest, RefusesShapesAndOptionsItCannotPack) {
  const std::string dir = MakeTempDir();
  GenCheckpointOptions o;
  o.quant = GenQuant::kMlx;
  o.quant_bits = 7;
  EXPECT_THAT(std::string(GenerateCheckpoint(SmallM2(), dir, o).status().message()),
              HasSubstr("MLX bits must be"));
  o.quant_bits = 4;
  o.quant_group = 256;
  EXPECT_THAT(std::string(GenerateCheckpoint(SmallM2(), dir, o).status().message()),
              HasSubstr("MLX group must be 32, 64 or 128"));
  o.quant = GenQuant::kAwq;
  o.quant_group = 256;
  EXPECT_THAT(std::string(GenerateCheckpoint(SmallM2(), dir, o).status().message()),
              HasSubstr("does not divide hidden 128"));
  o.quant_group = 64;
  o.dtype = GenWeightDType::kFp8;
  EXPECT_FALSE(GenerateCheckpoint(SmallM2(), dir, o).ok());
  std::filesystem::remove_all(dir);
}

int RunGen(const std::string& args, std::string* output) {
  const char* build = std::getenv("AFD_BUILD_DIR");
  const std::string cmd =
      std::string(build != nullptr ? build : ".") + "/bin/afd-gen-checkpoint " + args + " 2>&1";
  std::FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) output->append(buf, n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(GenQuantCommandTest, WritesAwqAndMlxAndRefusesBadFlags) {
  const std::string dir = MakeTempDir();
  std::string out;
  ASSERT_EQ(RunGen("--help", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("--quant awq|mlx"));
  out.clear();
  ASSERT_EQ(RunGen("--preset tiny --out " + dir +
                       "/mlx --quant mlx --bits 5 --group 32 "
                       "--quantize-attention 0 --shards 2",
                   &out),
            0)
      << out;
  Loaded mlx = Load(dir + "/mlx");
  ASSERT_NE(mlx.ckpt, nullptr);
  EXPECT_EQ(mlx.config.weight_format, WeightFormat::kMlx);
  EXPECT_EQ(mlx.config.quant_bits, 5);
  EXPECT_EQ(DetectModuleFormat(*mlx.ckpt, "model.layers.0.self_attn.q_proj"), ModuleFormat::kFloat);
  EXPECT_TRUE(HasStackedExperts(*mlx.ckpt, 1));
  out.clear();
  ASSERT_EQ(RunGen("--preset tiny --out " + dir + "/awq --quant=awq --group 32", &out), 0) << out;
  Loaded awq = Load(dir + "/awq");
  ASSERT_NE(awq.ckpt, nullptr);
  EXPECT_EQ(awq.config.weight_format, WeightFormat::kAwq);
  EXPECT_EQ(DetectModuleFormat(*awq.ckpt, "model.layers.0.self_attn.q_proj"), ModuleFormat::kAwq);
  for (const char* bad :
       {"--quant gptq", "--quant awq --bits 3 --group 32", "--quant mlx --quantize-attention 2",
        "--quant awq --dtype fp8", "--quant mlx --group 0"}) {
    out.clear();
    EXPECT_NE(RunGen("--preset tiny --out " + dir + "/bad " + bad, &out), 0) << bad;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace afd::quant
