// Token-id generation through the real processes: gRPC Gateway.Generate -> afd-gateway ->
// afd-attention-node -> 3 afd-expert-nodes holding every expert twice, on the golden m2-tiny
// checkpoint. Greedy tokens equal the in-process engine's (and the golden reference's), alone
// and with 16 concurrent requests of different lengths; the client's deadline, cancellation
// and Gateway.Abort reach the attention node and free its KV blocks. With two attention nodes,
// a new request goes to the node with more free KV blocks.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "afd/v1/attention.grpc.pb.h"
#include "afd/v1/gateway.grpc.pb.h"
#include "common/rpc/channel.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "tests/integration/common/local_cluster.h"
#include "tests/integration/gateway/gateway_cluster.h"

namespace afd {
namespace {

std::string ModelDir() { return gateway_testing::TestDataDir() + "/golden/m2-tiny"; }

// Greedy continuation of `prompt` with the whole model in this process (the integration
// harness's reference engine, shared by all cases).
std::vector<int32_t> InProcessGreedy(const std::vector<int32_t>& prompt, int max_tokens) {
  static integration::ReferenceEngine* engine =
      integration::ReferenceEngine::Create(ModelDir())->release();
  absl::StatusOr<integration::ReferenceRun> run = engine->Greedy(prompt, max_tokens);
  return run.ok() ? run->tokens : std::vector<int32_t>();
}

class GatewayTokenTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    gateway_testing::ClusterSpec spec;
    spec.model_dir = ModelDir();
    spec.expert_nodes = 3;
    spec.replicas = 2;
    spec.http = false;
    absl::StatusOr<std::unique_ptr<gateway_testing::GatewayCluster>> started =
        gateway_testing::GatewayCluster::Start(spec);
    ASSERT_TRUE(started.ok()) << started.status();
    cluster_ = started->release();
    absl::StatusOr<std::vector<integration::GoldenPrompt>> golden =
        integration::LoadGoldenPrompts(ModelDir());
    ASSERT_TRUE(golden.ok()) << golden.status();
    for (const integration::GoldenPrompt& p : *golden) {
      prompts_.push_back(p.input_ids);
      golden_greedy_.push_back(p.greedy_ids);
    }
    ASSERT_FALSE(prompts_.empty());
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(cluster_, nullptr);
    gateway_ = v1::Gateway::NewStub(*rpc::MakeChannel(cluster_->gateway_address(), {}, {}));
  }

  static v1::GenerateRequest Greedy(const std::vector<int32_t>& prompt, int max_tokens,
                                    const std::string& id = "") {
    v1::GenerateRequest request;
    request.set_request_id(id);
    request.mutable_prompt_token_ids()->Assign(prompt.begin(), prompt.end());
    request.mutable_sampling()->set_temperature(0);
    request.mutable_sampling()->set_max_tokens(max_tokens);
    request.mutable_sampling()->set_ignore_eos(true);
    return request;
  }

  // Runs a request through the gateway; returns its tokens and status.
  grpc::Status Run(const v1::GenerateRequest& request, std::vector<int32_t>* tokens,
                   v1::FinishReason* reason = nullptr) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto reader = gateway_->Generate(&context, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) {
      tokens->insert(tokens->end(), response.token_ids().begin(), response.token_ids().end());
      if (reason != nullptr && response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
        *reason = response.finish_reason();
      }
    }
    return reader->Finish();
  }

  static gateway_testing::GatewayCluster* cluster_;
  static std::vector<std::vector<int32_t>> prompts_;
  static std::vector<std::vector<int32_t>> golden_greedy_;
  std::unique_ptr<v1::Gateway::Stub> gateway_;
};

gateway_testing::GatewayCluster* GatewayTokenTest::cluster_ = nullptr;
std::vector<std::vector<int32_t>> GatewayTokenTest::prompts_;
std::vector<std::vector<int32_t>> GatewayTokenTest::golden_greedy_;

TEST_F(GatewayTokenTest, GreedyTokensEqualInProcessEngine) {
  for (size_t k = 0; k < prompts_.size(); ++k) {
    const int n = static_cast<int>(golden_greedy_[k].size());
    const std::vector<int32_t> expected = InProcessGreedy(prompts_[k], n);
    EXPECT_EQ(expected, golden_greedy_[k]) << "in-process engine vs golden, prompt " << k;
    std::vector<int32_t> tokens;
    v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
    const grpc::Status status = Run(Greedy(prompts_[k], n), &tokens, &reason);
    ASSERT_TRUE(status.ok()) << status.error_message() << "\n" << cluster_->AllLogs();
    EXPECT_EQ(tokens, expected) << "prompt " << k;
    EXPECT_EQ(reason, v1::FINISH_REASON_LENGTH);
  }
}

TEST_F(GatewayTokenTest, SixteenConcurrentRequestsOfDifferentLengths) {
  struct Job {
    std::vector<int32_t> prompt;
    int max_tokens;
    std::vector<int32_t> expected, got;
    grpc::Status status;
  };
  std::vector<Job> jobs(16);
  for (size_t i = 0; i < jobs.size(); ++i) {
    const std::vector<int32_t>& base = prompts_[i % prompts_.size()];
    // Different lengths: prefixes of the golden prompts, and different output lengths.
    const size_t len = std::max<size_t>(1, base.size() - (i / prompts_.size()) % base.size());
    jobs[i].prompt.assign(base.begin(), base.begin() + len);
    jobs[i].max_tokens = 4 + static_cast<int>(i % 5) * 3;
    jobs[i].expected = InProcessGreedy(jobs[i].prompt, jobs[i].max_tokens);
  }
  std::vector<std::thread> threads;
  for (Job& job : jobs) {
    threads.emplace_back(
        [&job, this] { job.status = Run(Greedy(job.prompt, job.max_tokens), &job.got); });
  }
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_TRUE(jobs[i].status.ok()) << i << ": " << jobs[i].status.error_message();
    EXPECT_EQ(jobs[i].got, jobs[i].expected) << "request " << i;
  }
  EXPECT_TRUE(cluster_->WaitAttentionIdle());
}

TEST_F(GatewayTokenTest, ClientDeadlinePropagatesAndFreesTheSequence) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  auto reader = gateway_->Generate(&context, Greedy(prompts_[0], 4000));
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(cluster_->WaitAttentionIdle());
}

TEST_F(GatewayTokenTest, ClientCancellationFreesTheSequence) {
  grpc::ClientContext context;
  auto reader = gateway_->Generate(&context, Greedy(prompts_[0], 4000));
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));
  context.TryCancel();
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(cluster_->WaitAttentionIdle());
}

TEST_F(GatewayTokenTest, AbortThroughTheGatewayEndsTheStream) {
  grpc::ClientContext context;
  auto reader = gateway_->Generate(&context, Greedy(prompts_[0], 4000, "abort-me"));
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));
  grpc::ClientContext abort_context;
  v1::AbortRequest abort;
  abort.set_request_id("abort-me");
  v1::AbortResponse ignored;
  const grpc::Status aborted = gateway_->Abort(&abort_context, abort, &ignored);
  ASSERT_TRUE(aborted.ok()) << aborted.error_message();
  v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
  while (reader->Read(&response)) {
    if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED)
      reason = response.finish_reason();
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(reason, v1::FINISH_REASON_ABORT);
  EXPECT_TRUE(cluster_->WaitAttentionIdle());

  grpc::ClientContext unknown_context;
  abort.set_request_id("no-such-request");
  EXPECT_EQ(gateway_->Abort(&unknown_context, abort, &ignored).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(GatewayTokenTest, InvalidRequestsAreRejectedAndTheSystemStaysUp) {
  std::vector<int32_t> tokens;
  EXPECT_EQ(Run(Greedy({1, 2, 1 << 20}, 4), &tokens).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Run(Greedy({}, 4), &tokens).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Text requests need a tokenizer, which m2-tiny does not ship.
  grpc::ClientContext context;
  v1::TextGenerateRequest text;
  text.set_prompt("hello");
  auto reader = gateway_->GenerateText(&context, text);
  v1::TextGenerateResponse ignored;
  while (reader->Read(&ignored)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNIMPLEMENTED);
  tokens.clear();
  EXPECT_TRUE(Run(Greedy(prompts_[0], 3), &tokens).ok());
  EXPECT_EQ(tokens.size(), 3u);
}

TEST_F(GatewayTokenTest, DescribeListsTheAttentionNodes) {
  grpc::ClientContext context;
  v1::GatewayInfo info;
  ASSERT_TRUE(gateway_->Describe(&context, {}, &info).ok());
  ASSERT_EQ(info.attention_nodes_size(), 1);
  EXPECT_TRUE(info.attention_nodes(0).ready());
  EXPECT_EQ(info.attention_nodes(0).node_name(), "attn0");
  EXPECT_EQ(info.served_model_name(), "m2-tiny");
}

TEST(GatewayRoutingTest, NewRequestsGoToTheNodeWithMoreFreeKvBlocks) {
  gateway_testing::ClusterSpec spec;
  spec.model_dir = ModelDir();
  spec.expert_nodes = 1;
  spec.attention_nodes = 2;
  spec.http = false;
  absl::StatusOr<std::unique_ptr<gateway_testing::GatewayCluster>> cluster =
      gateway_testing::GatewayCluster::Start(spec);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  auto gateway = v1::Gateway::NewStub(*rpc::MakeChannel((*cluster)->gateway_address(), {}, {}));
  std::unique_ptr<v1::AttentionNode::Stub> nodes[2] = {
      v1::AttentionNode::NewStub(*rpc::MakeChannel((*cluster)->attention_address(0), {}, {})),
      v1::AttentionNode::NewStub(*rpc::MakeChannel((*cluster)->attention_address(1), {}, {}))};
  auto running = [&](int node) {
    grpc::ClientContext context;
    v1::AttentionNodeInfo info;
    return nodes[node]->Describe(&context, {}, &info).ok() ? info.running_sequences() : 99u;
  };
  v1::GenerateRequest request;
  for (int32_t id : {11, 12, 13, 14, 15, 16, 17}) request.add_prompt_token_ids(id);
  request.mutable_sampling()->set_temperature(0);
  request.mutable_sampling()->set_max_tokens(4000);
  request.mutable_sampling()->set_ignore_eos(true);

  // The first long request lands on one node...
  grpc::ClientContext first_context;
  auto first = gateway->Generate(&first_context, request);
  v1::GenerateResponse response;
  ASSERT_TRUE(first->Read(&response));
  const int busy = running(0) == 1 ? 0 : 1;
  ASSERT_EQ(running(busy), 1u);
  EXPECT_EQ(running(1 - busy), 0u);
  // ... and once the gateway has polled its load, the next one goes to the other node.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  grpc::ClientContext second_context;
  auto second = gateway->Generate(&second_context, request);
  ASSERT_TRUE(second->Read(&response));
  EXPECT_EQ(running(1 - busy), 1u);
  EXPECT_EQ(running(busy), 1u);
  first_context.TryCancel();
  second_context.TryCancel();
  while (first->Read(&response)) {
  }
  while (second->Read(&response)) {
  }
  first->Finish();
  second->Finish();
}

}  // namespace
}  // namespace afd
