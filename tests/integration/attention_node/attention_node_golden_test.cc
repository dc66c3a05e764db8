// Golden cases through the real processes: afd-attention-node with 1, 2 or 3 afd-expert-node
// processes (with and without replicas). Each golden prompt's greedy tokens, logprobs, prompt
// logits and per-token logits must equal the in-process engine's bit for bit, and land within
// 1e-4 of the transformers reference with the same greedy continuation. The same with the
// opt-in bf16 KV cache on one layout.
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

// Runs golden prompt g greedily through the cluster's attention node and through `reference`
// and checks that the tokens, the prompt and decode logits and the logprobs are the reference's,
// bit for bit, and the golden's greedy tokens. Returns the cluster's run.
GenerateResult GreedyEqualsReference(v1::AttentionNode::Stub& stub, ReferenceEngine& reference,
                                     const GoldenPrompt& g, const std::string& request_id) {
  const int steps = static_cast<int>(g.greedy_ids.size());
  absl::StatusOr<ReferenceRun> ref = reference.Greedy(g.input_ids, steps);
  EXPECT_TRUE(ref.ok()) << ref.status();
  GenerateResult got = RunGenerate(stub, GreedyRequest(request_id, g.input_ids, steps, true));
  EXPECT_TRUE(got.status.ok()) << got.status;
  if (!ref.ok() || !got.status.ok()) return got;
  EXPECT_EQ(got.tokens, ref->tokens);
  EXPECT_EQ(got.tokens, g.greedy_ids);
  EXPECT_TRUE(BitwiseEqual(got.prompt_logits, ref->prompt_logits)) << "prompt logits";
  EXPECT_TRUE(BitwiseEqual(got.logits, ref->logits)) << "decode logits";
  EXPECT_TRUE(BitwiseEqual(got.logprobs, ref->logprobs)) << "logprobs";
  return got;
}

class AttentionNodeGoldenTest : public ::testing::TestWithParam<Layout> {};

TEST_P(AttentionNodeGoldenTest, GreedyRunsEqualTheInProcessEngineBitwise) {
  const Layout& layout = GetParam();
  const std::string model = GoldenModelDir(layout.model);
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
    const GenerateResult got =
        GreedyEqualsReference(*stub, **reference, g, absl::StrCat("golden", k));
    ASSERT_TRUE(got.status.ok());
    EXPECT_EQ(got.finish, v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(got.usage.prompt_tokens(), g.input_ids.size());
    EXPECT_EQ(got.usage.completion_tokens(), g.greedy_ids.size());
    EXPECT_LE(MaxAbsDiff(got.prompt_logits, g.prefill_logits), 1e-4f);
    EXPECT_LE(MaxAbsDiff(got.logits, g.decode_logits), 1e-4f);
  }
}

// The opt-in bf16 KV cache through the real processes: the attention node started with
// limits.kv_cache_dtype bf16 gives the in-process engine's bits with the same cache, and stays
// near the reference (the golden suite bounds its error; here the greedy tokens must hold).
TEST(AttentionNodeGoldenBf16KvTest, GreedyRunsEqualTheInProcessEngineBitwise) {
  const std::string model = GoldenModelDir("m2-medium");
  ClusterSpec spec;
  spec.model_dir = model;
  spec.num_expert_nodes = 2;
  spec.limits.kv_blocks = 64;
  spec.limits.max_sequences = 8;
  spec.limits.kv_cache_dtype = "bf16";
  absl::StatusOr<std::unique_ptr<LocalCluster>> cluster =
      LocalCluster::Start(spec, absl::Seconds(30));
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  absl::StatusOr<std::unique_ptr<ReferenceEngine>> reference =
      ReferenceEngine::Create(model, /*kv_bf16=*/true);
  ASSERT_TRUE(reference.ok()) << reference.status();
  absl::StatusOr<std::unique_ptr<ReferenceEngine>> fp32 = ReferenceEngine::Create(model);
  ASSERT_TRUE(fp32.ok()) << fp32.status();
  absl::StatusOr<std::vector<GoldenPrompt>> golden = LoadGoldenPrompts(model);
  ASSERT_TRUE(golden.ok()) << golden.status();
  auto stub = (*cluster)->AttentionStub();
  for (size_t k = 0; k < 2; ++k) {  // prompts 0 and 1 keep their greedy tokens in bf16
    SCOPED_TRACE(absl::StrCat("prompt ", k));
    const GoldenPrompt& g = (*golden)[k];
    const GenerateResult got =
        GreedyEqualsReference(*stub, **reference, g, absl::StrCat("bf16kv", k));
    ASSERT_TRUE(got.status.ok());
    absl::StatusOr<ReferenceRun> ref32 =
        (*fp32)->Greedy(g.input_ids, static_cast<int>(g.greedy_ids.size()));
    ASSERT_TRUE(ref32.ok()) << ref32.status();
    // The cache's rounding shows: the fp32 cache's logits differ.
    EXPECT_GT(MaxAbsDiff(got.logits, ref32->logits), 0.0f);
    EXPECT_LE(MaxAbsDiff(got.logits, g.decode_logits), 5e-2f);
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, AttentionNodeGoldenTest,
                         ::testing::Values(Layout{"m2-tiny", 1, 1}, Layout{"m2-tiny", 2, 1},
                                           Layout{"m2-tiny", 3, 2}, Layout{"m2-medium", 1, 1},
                                           Layout{"m2-medium", 2, 2}, Layout{"m2-medium", 3, 1},
                                           Layout{"m2-fp8", 2, 1}, Layout{"text01-tiny", 3, 2}),
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
