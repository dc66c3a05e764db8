// The quantized golden cases through the real processes: afd-attention-node with 2 or 3
// afd-expert-node processes, each expert node loading only its share of the packed experts
// (for MLX, its byte ranges of the stacked tensors). Every golden prompt's greedy tokens,
// logprobs and logits must equal the in-process engine's bit for bit and land within 1e-4 of
// the transformers reference with the same greedy continuation.
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/common/local_cluster.h"

namespace afd::integration {
namespace {

struct Layout {
  const char* model;
  int expert_nodes;
  int replicas;
};

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

class QuantClusterTest : public ::testing::TestWithParam<Layout> {};

TEST_P(QuantClusterTest, GreedyRunsEqualTheInProcessEngineBitwise) {
  const Layout& layout = GetParam();
  const std::string model = TestDataDir() + "/golden-quant/" + layout.model;
  ClusterSpec spec;
  spec.model_dir = model;
  spec.num_expert_nodes = layout.expert_nodes;
  spec.replicas = layout.replicas;
  spec.limits.kv_blocks = 64;
  spec.limits.max_sequences = 8;
  spec.limits.micro_batches = 2;
  absl::StatusOr<std::unique_ptr<LocalCluster>> cluster =
      LocalCluster::Start(spec, absl::Seconds(30));
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  absl::StatusOr<std::unique_ptr<ReferenceEngine>> reference = ReferenceEngine::Create(model);
  ASSERT_TRUE(reference.ok()) << reference.status();
  absl::StatusOr<std::vector<GoldenPrompt>> golden = LoadGoldenPrompts(model);
  ASSERT_TRUE(golden.ok()) << golden.status();
  ASSERT_FALSE(golden->empty());
  auto stub = (*cluster)->AttentionStub();
  for (size_t k = 0; k < golden->size(); ++k) {
    SCOPED_TRACE(absl::StrCat(layout.model, " prompt ", k));
    const GoldenPrompt& g = (*golden)[k];
    const int steps = static_cast<int>(g.greedy_ids.size());
    absl::StatusOr<ReferenceRun> ref = (*reference)->Greedy(g.input_ids, steps);
    ASSERT_TRUE(ref.ok()) << ref.status();
    const GenerateResult got =
        RunGenerate(*stub, GreedyRequest(absl::StrCat("quant", k), g.input_ids, steps, true));
    ASSERT_TRUE(got.status.ok()) << got.status;
    EXPECT_EQ(got.tokens, ref->tokens);
    EXPECT_EQ(got.tokens, g.greedy_ids);
    EXPECT_TRUE(BitwiseEqual(got.prompt_logits, ref->prompt_logits)) << "prompt logits";
    EXPECT_TRUE(BitwiseEqual(got.logits, ref->logits)) << "decode logits";
    EXPECT_TRUE(BitwiseEqual(got.logprobs, ref->logprobs)) << "logprobs";
    EXPECT_LE(MaxAbsDiff(got.prompt_logits, g.prefill_logits), 1e-4f);
    EXPECT_LE(MaxAbsDiff(got.logits, g.decode_logits), 1e-4f);
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, QuantClusterTest,
                         ::testing::Values(Layout{"m2-awq", 2, 1}, Layout{"m2-awq", 3, 2},
                                           Layout{"m2-mlx4", 2, 1}, Layout{"m2-mlx4", 3, 2}),
                         [](const ::testing::TestParamInfo<Layout>& info) {
                           std::string name =
                               absl::StrCat(info.param.model, "_", info.param.expert_nodes,
                                            "nodes_", info.param.replicas, "replicas");
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace afd::integration
