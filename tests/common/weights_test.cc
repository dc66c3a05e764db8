// ValidateCheckpoint and LoadLinear against every golden checkpoint (plain, FP8 with ragged
// blocks, sharded, Text-01, AWQ, MLX), and the views they hand to kernels.
#include "common/weights.h"

#include <cmath>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/test_util.h"

namespace afd {
namespace {

using ::testing::HasSubstr;
using testing_util::TestDataDir;

struct Loaded {
  ModelConfig config;
  std::unique_ptr<Checkpoint> ckpt;
};

Loaded Load(const std::string& case_dir) {
  Loaded l;
  const std::string dir = TestDataDir() + "/" + case_dir;
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  EXPECT_TRUE(config.ok()) << config.status();
  if (config.ok()) l.config = *config;
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  if (ckpt.ok()) l.ckpt = std::move(*ckpt);
  return l;
}

float Bf16(const void* p, int64_t i) {
  uint16_t h;
  std::memcpy(&h, static_cast<const uint8_t*>(p) + 2 * i, 2);
  const uint32_t bits = uint32_t{h} << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

class WeightsTest : public ::testing::TestWithParam<std::string> {};

TEST_P(WeightsTest, GoldenCheckpointValidates) {
  Loaded l = Load(GetParam());
  ASSERT_NE(l.ckpt, nullptr);
  absl::Status s = ValidateCheckpoint(l.config, *l.ckpt);
  EXPECT_TRUE(s.ok()) << s;
}

INSTANTIATE_TEST_SUITE_P(Golden, WeightsTest,
                         ::testing::Values("golden/m2-tiny", "golden/m2-fp8", "golden/m2-medium",
                                           "golden/text01-tiny", "golden-quant/m2-awq",
                                           "golden-quant/m2-mlx4"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param.substr(info.param.find('/') + 1);
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

TEST(LoadLinearTest, GivesBf16ViewIntoTheMapping) {
  Loaded l = Load("golden/m2-tiny");
  ASSERT_NE(l.ckpt, nullptr);
  const std::string prefix = "model.layers.2.self_attn.o_proj";
  absl::StatusOr<kernels::WeightView> w = LoadLinear(*l.ckpt, l.config, prefix, 64, 128);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->type, kernels::WeightType::kBF16);
  EXPECT_EQ(w->rows, 64);
  EXPECT_EQ(w->cols, 128);
  EXPECT_EQ(w->scales, nullptr);
  absl::StatusOr<TensorView> raw = l.ckpt->Get(prefix + ".weight");
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(w->data, raw->data);  // no copy
  EXPECT_EQ(w->Bytes(), 64u * 128 * 2);
  // Random-init weights: not all zero, finite.
  double sum_sq = 0;
  for (int64_t i = 0; i < 64 * 128; ++i) sum_sq += Bf16(w->data, i) * Bf16(w->data, i);
  EXPECT_GT(sum_sq, 0);
  EXPECT_TRUE(std::isfinite(sum_sq));
}

TEST(LoadLinearTest, GivesFp8ViewWithRaggedEdgeBlockScales) {
  Loaded l = Load("golden/m2-fp8");
  ASSERT_NE(l.ckpt, nullptr);
  // w1 is [192, 256]: 192 = one full 128-row block plus a ragged 64-row block.
  const std::string prefix = ExpertLinearName(0, 3, "w1");
  EXPECT_EQ(prefix, "model.layers.0.block_sparse_moe.experts.3.w1");
  absl::StatusOr<kernels::WeightView> w = LoadLinear(*l.ckpt, l.config, prefix, 192, 256);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->type, kernels::WeightType::kFp8E4M3);
  EXPECT_EQ(w->block_rows, 128);
  EXPECT_EQ(w->block_cols, 128);
  ASSERT_NE(w->scales, nullptr);
  absl::StatusOr<TensorView> scales = l.ckpt->Get(prefix + ".weight_scale_inv");
  ASSERT_TRUE(scales.ok());
  EXPECT_EQ(scales->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(static_cast<const void*>(w->scales), static_cast<const void*>(scales->data));
  for (int i = 0; i < 4; ++i) EXPECT_GT(w->scales[i], 0.0f);
  EXPECT_EQ(w->Bytes(), 192u * 256 + 4 * 4);
  // The fp32 router gate of an FP8 checkpoint is a plain linear too (bf16 in this fixture).
  absl::StatusOr<kernels::WeightView> gate =
      LoadLinear(*l.ckpt, l.config, LayerTensorName(1, "block_sparse_moe.gate"), 8, 256);
  ASSERT_TRUE(gate.ok()) << gate.status();
  EXPECT_EQ(gate->scales, nullptr);
}

TEST(LoadLinearTest, ReportsShapeMismatchAndMissingWeight) {
  Loaded l = Load("golden/m2-tiny");
  ASSERT_NE(l.ckpt, nullptr);
  absl::StatusOr<kernels::WeightView> w =
      LoadLinear(*l.ckpt, l.config, "model.layers.0.self_attn.q_proj", 128, 32);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(w.status().message()),
              HasSubstr("'model.layers.0.self_attn.q_proj.weight': shape [128, 64], expected "
                        "[128, 32]"));
  w = LoadLinear(*l.ckpt, l.config, "model.layers.9.self_attn.q_proj", 128, 64);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(w.status().message()),
              HasSubstr("'model.layers.9.self_attn.q_proj.weight' not found"));
  // A non-float tensor is not a linear weight.
  w = LoadLinear(*l.ckpt, l.config, "model.layers.0.block_sparse_moe.e_score_correction_bias", 8,
                 1);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
}

TEST(LoadLinearTest, ViewsPackedQuantizedModules) {
  Loaded awq = Load("golden-quant/m2-awq");
  ASSERT_NE(awq.ckpt, nullptr);
  absl::StatusOr<kernels::WeightView> w =
      LoadLinear(*awq.ckpt, awq.config, ExpertLinearName(0, 0, "w1"), 128, 256);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->type, kernels::WeightType::kAwqInt4);
  EXPECT_EQ(w->group_size, 128);
  EXPECT_NE(w->zeros, nullptr);
  // Its unquantized lm_head loads as bf16.
  w = LoadLinear(*awq.ckpt, awq.config, "lm_head", 640, 256);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->type, kernels::WeightType::kBF16);

  Loaded mlx = Load("golden-quant/m2-mlx4");
  ASSERT_NE(mlx.ckpt, nullptr);
  w = LoadLinear(*mlx.ckpt, mlx.config, "model.layers.0.self_attn.q_proj", 256, 256);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->type, kernels::WeightType::kMlxAffine);
  EXPECT_EQ(w->bits, 4);
  // A packed shape that does not fit is still an error naming the tensor.
  w = LoadLinear(*mlx.ckpt, mlx.config, "model.layers.0.self_attn.q_proj", 256, 512);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(w.status().message()), HasSubstr("q_proj.weight"));
}

TEST(LoadVectorTest, LoadsNormsAndChecksLength) {
  Loaded l = Load("golden/text01-tiny");
  ASSERT_NE(l.ckpt, nullptr);
  absl::StatusOr<TensorView> norm =
      LoadVector(*l.ckpt, LayerTensorName(0, "self_attn.norm.weight"), 64);
  ASSERT_TRUE(norm.ok()) << norm.status();
  EXPECT_EQ(norm->dtype, DType::kBF16);
  EXPECT_EQ(LoadVector(*l.ckpt, "model.norm.weight", 65).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<TensorView> embed = LoadMatrix(*l.ckpt, "model.embed_tokens.weight", 1000, 64);
  EXPECT_TRUE(embed.ok()) << embed.status();
}

TEST(ValidateCheckpointTest, RejectsConfigThatDisagreesWithWeights) {
  Loaded l = Load("golden/m2-tiny");
  ASSERT_NE(l.ckpt, nullptr);
  ModelConfig c = l.config;
  c.intermediate_size = 64;
  absl::Status s = ValidateCheckpoint(c, *l.ckpt);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("'model.layers.0.block_sparse_moe.experts.0.w1.weight': shape [48, 64], "
                        "expected [64, 64]"));
  c = l.config;
  c.num_hidden_layers = 4;
  c.layer_types.push_back(LayerType::kFullAttention);
  s = ValidateCheckpoint(c, *l.ckpt);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("model.layers.3."));
  // Text-01 weights under an M2 config: the attention tensors are the wrong kind.
  Loaded t = Load("golden/text01-tiny");
  ASSERT_NE(t.ckpt, nullptr);
  c = t.config;
  c.layer_types.assign(c.num_hidden_layers, LayerType::kFullAttention);
  s = ValidateCheckpoint(c, *t.ckpt);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("'model.layers.0.self_attn.q_proj.weight'"));
}

}  // namespace
}  // namespace afd
