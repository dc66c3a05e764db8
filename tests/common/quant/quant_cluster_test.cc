// Quantized checkpoints through the real processes: afd-attention-node with 2 or 3
// afd-expert-node processes, each expert node loading only its share of the packed experts
// (for MLX, its byte ranges of the stacked tensors).
// - The golden-quant cases: every golden prompt's greedy tokens, logprobs and logits equal the
//   in-process engine's bit for bit and land within 1e-4 of the transformers reference with the
//   same greedy continuation.
// - Generated checkpoints of the other MLX widths (3, 5, 6, 8), groups 32 / 64 / 128 and AWQ
//   with attention left float: the same bitwise equality, and within 1e-4 (same greedy tokens)
//   of the float engine on the checkpoint's dequantized float32 twin (quant_test_util.h).
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "gtest/gtest.h"
#include "tests/common/quant/quant_test_util.h"
#include "tests/integration/common/local_cluster.h"

namespace afd::integration {
namespace {

using quant_testing::MaxAbsDiff;
using quant_testing::QuantCase;

absl::StatusOr<std::unique_ptr<LocalCluster>> StartCluster(const std::string& model,
                                                           int expert_nodes, int replicas) {
  ClusterSpec spec;
  spec.model_dir = model;
  spec.num_expert_nodes = expert_nodes;
  spec.replicas = replicas;
  spec.limits.kv_blocks = 64;
  spec.limits.max_sequences = 8;
  spec.limits.micro_batches = 2;
  return LocalCluster::Start(spec, absl::Seconds(30));
}

// What a cluster run of one prompt must reproduce: the in-process engine bit for bit, and the
// reference's greedy tokens and logits within 1e-4.
struct Expected {
  std::vector<int32_t> tokens;
  std::vector<float> prefill_logits;  // [prompt, vocab]
  std::vector<float> decode_logits;   // [tokens, vocab]
};

void ExpectClusterRun(v1::AttentionNode::Stub& stub, ReferenceEngine& engine,
                      const std::vector<int32_t>& prompt, const Expected& want,
                      const std::string& id) {
  const int steps = static_cast<int>(want.tokens.size());
  absl::StatusOr<ReferenceRun> ref = engine.Greedy(prompt, steps);
  ASSERT_TRUE(ref.ok()) << ref.status();
  const GenerateResult got = RunGenerate(stub, GreedyRequest(id, prompt, steps, true));
  ASSERT_TRUE(got.status.ok()) << got.status;
  EXPECT_EQ(got.tokens, ref->tokens);
  EXPECT_EQ(got.tokens, want.tokens);
  EXPECT_TRUE(BitwiseEqual(got.prompt_logits, ref->prompt_logits)) << "prompt logits";
  EXPECT_TRUE(BitwiseEqual(got.logits, ref->logits)) << "decode logits";
  EXPECT_TRUE(BitwiseEqual(got.logprobs, ref->logprobs)) << "logprobs";
  EXPECT_LE(MaxAbsDiff(got.prompt_logits, want.prefill_logits), 1e-4f);
  EXPECT_LE(MaxAbsDiff(got.logits, want.decode_logits), 1e-4f);
}

std::string TestName(std::string name) {
  for (char& c : name) {
    if (c == '-') c = '_';
  }
  return name;
}

struct GoldenLayout {
  const char* model;
  int expert_nodes;
  int replicas;
};

class QuantClusterTest : public ::testing::TestWithParam<GoldenLayout> {};

TEST_P(QuantClusterTest, GreedyRunsEqualTheInProcessEngineBitwise) {
  const GoldenLayout& layout = GetParam();
  const std::string model = TestDataDir() + "/golden-quant/" + layout.model;
  auto cluster = StartCluster(model, layout.expert_nodes, layout.replicas);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  absl::StatusOr<std::unique_ptr<ReferenceEngine>> engine = ReferenceEngine::Create(model);
  ASSERT_TRUE(engine.ok()) << engine.status();
  absl::StatusOr<std::vector<GoldenPrompt>> golden = LoadGoldenPrompts(model);
  ASSERT_TRUE(golden.ok()) << golden.status();
  ASSERT_FALSE(golden->empty());
  auto stub = (*cluster)->AttentionStub();
  for (size_t k = 0; k < golden->size(); ++k) {
    SCOPED_TRACE(absl::StrCat(layout.model, " prompt ", k));
    const GoldenPrompt& g = (*golden)[k];
    ExpectClusterRun(*stub, **engine, g.input_ids,
                     {g.greedy_ids, g.prefill_logits, g.decode_logits}, absl::StrCat("quant", k));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, QuantClusterTest,
    ::testing::Values(GoldenLayout{"m2-awq", 2, 1}, GoldenLayout{"m2-awq", 3, 2},
                      GoldenLayout{"m2-mlx4", 2, 1}, GoldenLayout{"m2-mlx4", 3, 2}),
    [](const ::testing::TestParamInfo<GoldenLayout>& info) {
      return TestName(absl::StrCat(info.param.model, "_", info.param.expert_nodes, "nodes_",
                                   info.param.replicas, "replicas"));
    });

struct GeneratedLayout {
  QuantCase quant;
  int expert_nodes;
  int replicas;
};

class QuantClusterGeneratedTest : public ::testing::TestWithParam<GeneratedLayout> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/afd_quant_cluster_XXXXXX";
    const char* dir = mkdtemp(tmpl);
    ASSERT_NE(dir, nullptr);
    dir_ = dir;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_P(QuantClusterGeneratedTest, MatchesTheDequantizedTwinThroughExpertNodes) {
  const GeneratedLayout& layout = GetParam();
  const std::string quantized = dir_ + "/q", twin = dir_ + "/f";
  const absl::Status generated = quant_testing::GenerateQuantized(
      quant_testing::SmallM2(/*experts=*/8), layout.quant, /*seed=*/91, quantized);
  ASSERT_TRUE(generated.ok()) << generated;
  {
    const ModelConfig config = LoadModelConfig(quantized).value();
    const std::unique_ptr<Checkpoint> checkpoint = Checkpoint::Open(quantized).value();
    const absl::Status written = quant_testing::WriteDequantizedTwin(config, *checkpoint, twin);
    ASSERT_TRUE(written.ok()) << written;
  }
  auto cluster = StartCluster(quantized, layout.expert_nodes, layout.replicas);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  absl::StatusOr<std::unique_ptr<ReferenceEngine>> engine = ReferenceEngine::Create(quantized);
  ASSERT_TRUE(engine.ok()) << engine.status();
  absl::StatusOr<std::unique_ptr<ReferenceEngine>> reference = ReferenceEngine::Create(twin);
  ASSERT_TRUE(reference.ok()) << reference.status();
  auto stub = (*cluster)->AttentionStub();
  const std::vector<std::vector<int32_t>> prompts = {{5, 17, 42, 88, 3},
                                                     {90, 1, 2, 60, 61, 33, 7, 45, 12, 77, 30}};
  for (size_t k = 0; k < prompts.size(); ++k) {
    SCOPED_TRACE(absl::StrCat(layout.quant.name, " prompt ", k));
    absl::StatusOr<ReferenceRun> want = (*reference)->Greedy(prompts[k], /*max_tokens=*/6);
    ASSERT_TRUE(want.ok()) << want.status();
    ExpectClusterRun(*stub, **engine, prompts[k], {want->tokens, want->prompt_logits, want->logits},
                     absl::StrCat("gen", k));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Formats, QuantClusterGeneratedTest,
    ::testing::Values(
        GeneratedLayout{{GenQuant::kMlx, 3, 32, true, "mlx3_g32"}, 2, 1},
        GeneratedLayout{{GenQuant::kMlx, 5, 128, false, "mlx5_g128_float_attention"}, 3, 1},
        GeneratedLayout{{GenQuant::kMlx, 6, 64, true, "mlx6_g64"}, 2, 2},
        GeneratedLayout{{GenQuant::kMlx, 8, 32, false, "mlx8_g32_float_attention"}, 2, 1},
        GeneratedLayout{{GenQuant::kAwq, 4, 64, false, "awq_g64_float_attention"}, 3, 2}),
    [](const ::testing::TestParamInfo<GeneratedLayout>& info) {
      return TestName(absl::StrCat(info.param.quant.name, "_", info.param.expert_nodes, "nodes_",
                                   info.param.replicas, "replicas"));
    });

}  // namespace
}  // namespace afd::integration
