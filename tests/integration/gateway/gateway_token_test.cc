// Token-id generation through the real processes: gRPC Gateway.Generate -> afd-gateway ->
// afd-attention-node -> 3 afd-expert-nodes holding every expert twice, on the golden m2-tiny
// checkpoint. Greedy tokens equal the in-process engine's (and the golden reference's), alone
// and with 16 concurrent requests of different lengths; the client's deadline, cancellation
// and Gateway.Abort reach the attention node and free its KV blocks.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "afd/v1/attention.grpc.pb.h"
#include "afd/v1/gateway.grpc.pb.h"
#include "attention_node/engine.h"
#include "attention_node/in_process_expert_backend.h"
#include "attention_node/kv_cache.h"
#include "attention_node/model_weights.h"
#include "common/kernels/thread_pool.h"
#include "common/model_config.h"
#include "common/rpc/channel.h"
#include "common/safetensors.h"
#include "common/weights.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "tests/integration/gateway/local_cluster.h"

namespace afd {
namespace {

std::string ModelDir() { return testing::TestDataDir() + "/golden/m2-tiny"; }

std::vector<int32_t> ReadIds(const SafetensorsFile& file, const std::string& name) {
  std::vector<int32_t> ids;
  const TensorView* t = file.Find(name);
  if (t == nullptr) return ids;
  const int64_t* data = reinterpret_cast<const int64_t*>(t->data);
  for (int64_t i = 0; i < t->shape[0]; ++i) ids.push_back(static_cast<int32_t>(data[i]));
  return ids;
}

// Greedy continuation of `prompt` with the whole model in this process.
std::vector<int32_t> InProcessGreedy(const std::vector<int32_t>& prompt, int max_tokens) {
  ModelConfig config = *LoadModelConfig(ModelDir());
  std::unique_ptr<Checkpoint> checkpoint = *Checkpoint::Open(ModelDir());
  std::unique_ptr<attention::ModelWeights> weights =
      *attention::ModelWeights::Load(config, *checkpoint);
  kernels::ThreadPool pool(1);
  std::unique_ptr<attention::InProcessExpertBackend> backend =
      *attention::InProcessExpertBackend::Create(config, *checkpoint, &pool);
  attention::KvCacheOptions options;
  options.block_size = 16;
  options.max_sequences = 1;
  options.num_blocks = (static_cast<int64_t>(prompt.size()) + max_tokens + 15) / 16;
  std::unique_ptr<attention::KvCache> cache = *attention::KvCache::Create(config, options);
  attention::Engine engine(weights.get(), cache.get(), backend.get(), &pool);
  const int seq = *cache->AddSequence();
  std::vector<int32_t> out;
  std::vector<int32_t> input = prompt;
  for (int step = 0; step < max_tokens; ++step) {
    attention::StepOutput result;
    attention::StepInput in{seq, input, attention::LogitsMode::kLast};
    if (!engine.Step({&in, 1}, &result).ok()) break;
    const float* row = result.Row(result.first_row[0], config.vocab_size);
    int32_t best = 0;
    for (int v = 1; v < config.vocab_size; ++v) {
      if (row[v] > row[best]) best = v;
    }
    out.push_back(best);
    input = {best};
  }
  return out;
}

class GatewayTokenTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testing::ClusterSpec spec;
    spec.model_dir = ModelDir();
    spec.expert_nodes = 3;
    spec.replicas = 2;
    spec.http = false;
    absl::StatusOr<std::unique_ptr<testing::LocalCluster>> started =
        testing::LocalCluster::Start(spec);
    ASSERT_TRUE(started.ok()) << started.status();
    cluster_ = started->release();
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> golden =
        SafetensorsFile::Open(ModelDir() + "/golden.safetensors");
    ASSERT_TRUE(golden.ok()) << golden.status();
    for (int k = 0;; ++k) {
      std::vector<int32_t> prompt = ReadIds(**golden, absl::StrCat("prompt", k, ".input_ids"));
      if (prompt.empty()) break;
      prompts_.push_back(prompt);
      golden_greedy_.push_back(ReadIds(**golden, absl::StrCat("prompt", k, ".greedy_ids")));
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
    attention_ =
        v1::AttentionNode::NewStub(*rpc::MakeChannel(cluster_->attention_address(), {}, {}));
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

  // Waits until the attention node holds no sequence and all KV blocks are free.
  bool NodeIdle() {
    for (int i = 0; i < 200; ++i) {
      grpc::ClientContext context;
      v1::AttentionNodeInfo info;
      if (attention_->Describe(&context, {}, &info).ok() && info.running_sequences() == 0 &&
          info.waiting_sequences() == 0 && info.free_kv_blocks() == info.total_kv_blocks()) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  static testing::LocalCluster* cluster_;
  static std::vector<std::vector<int32_t>> prompts_;
  static std::vector<std::vector<int32_t>> golden_greedy_;
  std::unique_ptr<v1::Gateway::Stub> gateway_;
  std::unique_ptr<v1::AttentionNode::Stub> attention_;
};

testing::LocalCluster* GatewayTokenTest::cluster_ = nullptr;
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
    threads.emplace_back([&job, this] {
      job.status = Run(Greedy(job.prompt, job.max_tokens), &job.got);
    });
  }
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_TRUE(jobs[i].status.ok()) << i << ": " << jobs[i].status.error_message();
    EXPECT_EQ(jobs[i].got, jobs[i].expected) << "request " << i;
  }
  EXPECT_TRUE(NodeIdle());
}

TEST_F(GatewayTokenTest, ClientDeadlinePropagatesAndFreesTheSequence) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  auto reader = gateway_->Generate(&context, Greedy(prompts_[0], 4000));
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(NodeIdle());
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
  EXPECT_TRUE(NodeIdle());
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
    if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) reason = response.finish_reason();
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(reason, v1::FINISH_REASON_ABORT);
  EXPECT_TRUE(NodeIdle());

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

}  // namespace
}  // namespace afd
