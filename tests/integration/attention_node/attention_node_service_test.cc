// afd-attention-node as a real process with real afd-expert-node processes on loopback:
// command-line handling; readiness (NOT_SERVING until its expert nodes are up); 16 concurrent
// requests of different lengths; a replica killed mid-generation, with either replica choice
// (no request fails); the only host of some experts killed (exactly the requests needing them
// fail with UNAVAILABLE naming them; service resumes when the node is back); client
// cancellation and Abort freeing the KV blocks; malformed requests and expert batches getting
// INVALID_ARGUMENT with servers up.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "afd/v1/expert.grpc.pb.h"
#include "attention_node/service/generate_codec.h"
#include "attention_node/step_profile.h"
#include "common/model_config.h"
#include "common/rpc/channel.h"
#include "common/rpc/status_codec.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "tests/integration/common/local_cluster.h"

namespace afd::integration {
namespace {

// Runs a command to completion: its exit code and output.
int RunToExit(const std::vector<std::string>& args, std::string* output) {
  const std::string out_path = ::testing::TempDir() + "/afd_attention_node_main_test.out";
  std::string command = BinaryPath("afd-attention-node");
  for (const std::string& a : args) command += " '" + a + "'";
  command += " > " + out_path + " 2>&1";
  const int status = std::system(command.c_str());
  std::ifstream in(out_path);
  output->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::vector<int32_t> RandomPrompt(std::mt19937& rng, int length, int vocab) {
  std::uniform_int_distribution<int32_t> id(3, vocab - 1);
  std::vector<int32_t> p(length);
  for (int32_t& t : p) t = id(rng);
  return p;
}

absl::StatusOr<v1::AttentionNodeInfo> Describe(v1::AttentionNode::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  v1::AttentionNodeInfo info;
  grpc::Status s = stub.Describe(&context, v1::DescribeAttentionNodeRequest(), &info);
  if (!s.ok()) return rpc::FromGrpcStatus(s);
  return info;
}

// Polls Describe until every KV block is free and nothing runs or waits.
::testing::AssertionResult EventuallyIdle(v1::AttentionNode::Stub& stub) {
  v1::AttentionNodeInfo info;
  for (int i = 0; i < 200; ++i) {
    absl::StatusOr<v1::AttentionNodeInfo> got = Describe(stub);
    if (!got.ok()) return ::testing::AssertionFailure() << got.status();
    info = *got;
    if (info.free_kv_blocks() == info.total_kv_blocks() && info.running_sequences() == 0 &&
        info.waiting_sequences() == 0) {
      return ::testing::AssertionSuccess();
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return ::testing::AssertionFailure() << "still busy: " << info.ShortDebugString();
}

ClusterSpec Spec(const std::string& model, int nodes, int replicas) {
  ClusterSpec spec;
  spec.model_dir = GoldenModelDir(model);
  spec.num_expert_nodes = nodes;
  spec.replicas = replicas;
  spec.limits.kv_blocks = 256;
  spec.limits.max_sequences = 32;
  spec.limits.max_batch_tokens = 256;
  spec.limits.micro_batches = 2;
  spec.deadlines.expert_call_ms = 3000;
  spec.deadlines.reconnect_initial_backoff_ms = 20;
  spec.deadlines.reconnect_max_backoff_ms = 200;
  spec.deadlines.startup_timeout_ms = 30000;
  return spec;
}

// Runs `requests` concurrently, one thread each.
std::vector<GenerateResult> RunConcurrently(v1::AttentionNode::Stub& stub,
                                            const std::vector<v1::GenerateRequest>& requests) {
  std::vector<GenerateResult> results(requests.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < requests.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = RunGenerate(stub, requests[i]); });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

TEST(AttentionNodeMainTest, PrintsUsageAndRejectsBadArguments) {
  std::string out;
  EXPECT_EQ(RunToExit({"--help"}, &out), 0);
  EXPECT_NE(out.find("usage: afd-attention-node"), std::string::npos) << out;
  EXPECT_EQ(RunToExit({"--bogus"}, &out), 2);
  EXPECT_NE(out.find("unknown argument --bogus"), std::string::npos) << out;
  EXPECT_EQ(RunToExit({"--port", "x"}, &out), 2);
  EXPECT_EQ(RunToExit({"--port", "0"}, &out), 1);
  EXPECT_NE(out.find("no model"), std::string::npos) << out;
  EXPECT_EQ(RunToExit({"--model", "/nonexistent", "--port", "0"}, &out), 1);
  EXPECT_NE(out.find("/nonexistent"), std::string::npos) << out;
  const std::string config = ::testing::TempDir() + "/afd_attention_main_test.yaml";
  std::ofstream(config) << "model: " << GoldenModelDir("m2-tiny")
                        << "\nattention_nodes:\n  - {name: a0, address: 'localhost:1'}\n";
  EXPECT_EQ(RunToExit({"--config", config, "--node", "a7"}, &out), 1);
  EXPECT_NE(out.find("no attention node named \"a7\" (attention nodes: a0)"), std::string::npos)
      << out;
  EXPECT_EQ(RunToExit({"--config", config}, &out), 1);
  EXPECT_NE(out.find("--config needs --node"), std::string::npos) << out;
}

TEST(AttentionNodeServiceTest, NotServingUntilItsExpertNodesAreUp) {
  absl::StatusOr<std::unique_ptr<LocalCluster>> cluster =
      LocalCluster::Create(Spec("m2-tiny", 1, 1));
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  ASSERT_TRUE((*cluster)->StartAttentionNode(/*wait=*/false, absl::ZeroDuration()).ok());
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      rpc::MakeChannel((*cluster)->attention_address(), TlsConfig(), rpc::ChannelOptions{10, 100});
  ASSERT_TRUE(channel.ok());
  ASSERT_TRUE(rpc::WaitUntilServing(**channel, "", absl::Seconds(20)).ok());  // liveness
  absl::Status ready = rpc::CheckServing(**channel, "afd.v1.AttentionNode", absl::Seconds(2));
  EXPECT_EQ(ready.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(ready.message().find("NOT_SERVING"), std::string::npos) << ready;
  auto stub = (*cluster)->AttentionStub();
  absl::StatusOr<v1::AttentionNodeInfo> info = Describe(*stub);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(info->ready());
  EXPECT_EQ(info->node_name(), "attn0");
  const GenerateResult early = RunGenerate(*stub, GreedyRequest("early", {5, 6}, 2, false));
  EXPECT_EQ(early.status.code(), absl::StatusCode::kUnavailable) << early.status;

  ASSERT_TRUE((*cluster)->StartExpertNode(0, /*wait=*/true, absl::Seconds(20)).ok());
  ASSERT_TRUE(rpc::WaitUntilServing(**channel, "afd.v1.AttentionNode", absl::Seconds(20)).ok());
  info = Describe(*stub);
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->ready());
  EXPECT_EQ(info->model_type(), "minimax_m2");
  EXPECT_EQ(info->vocab_size(), 1000u);
  EXPECT_EQ(info->total_kv_blocks(), 256u);
  EXPECT_EQ(info->free_kv_blocks(), 256u);
  EXPECT_EQ(info->kv_block_tokens(), 16u);
  EXPECT_EQ(info->max_sequences(), 32u);
  ASSERT_EQ(info->expert_nodes_size(), 1);
  EXPECT_EQ(info->expert_nodes(0), "expert0");
  const GenerateResult late = RunGenerate(*stub, GreedyRequest("late", {5, 6}, 2, false));
  EXPECT_TRUE(late.status.ok()) << late.status;
  EXPECT_EQ(late.tokens.size(), 2u);
  // SIGTERM stops it cleanly.
  const int status = (*cluster)->StopAttentionNode(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

class AttentionNodeClusterTest : public ::testing::Test {
 protected:
  void StartCluster(const ClusterSpec& spec) {
    absl::StatusOr<std::unique_ptr<LocalCluster>> cluster =
        LocalCluster::Start(spec, absl::Seconds(30));
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
    stub_ = cluster_->AttentionStub();
    absl::StatusOr<std::unique_ptr<ReferenceEngine>> reference =
        ReferenceEngine::Create(spec.model_dir);
    ASSERT_TRUE(reference.ok()) << reference.status();
    reference_ = std::move(*reference);
  }
  ReferenceRun Reference(const std::vector<int32_t>& prompt, int max_tokens) {
    absl::StatusOr<ReferenceRun> run = reference_->Greedy(prompt, max_tokens);
    EXPECT_TRUE(run.ok()) << run.status();
    return run.ok() ? *run : ReferenceRun();
  }
  // Each result OK with the tokens of the lone in-process run and logprobs within float noise.
  void ExpectMatchesReference(const std::vector<v1::GenerateRequest>& requests,
                              const std::vector<GenerateResult>& results) {
    for (size_t i = 0; i < requests.size(); ++i) {
      SCOPED_TRACE(requests[i].request_id());
      ASSERT_TRUE(results[i].status.ok()) << results[i].status;
      const std::vector<int32_t> prompt(requests[i].prompt_token_ids().begin(),
                                        requests[i].prompt_token_ids().end());
      const ReferenceRun ref =
          Reference(prompt, static_cast<int>(requests[i].sampling().max_tokens()));
      EXPECT_EQ(results[i].tokens, ref.tokens);
      ASSERT_EQ(results[i].logprobs.size(), ref.logprobs.size());
      for (size_t t = 0; t < ref.logprobs.size(); ++t) {
        EXPECT_NEAR(results[i].logprobs[t], ref.logprobs[t], 1e-5) << "token " << t;
      }
      EXPECT_EQ(results[i].finish, v1::FINISH_REASON_LENGTH);
      EXPECT_EQ(results[i].usage.completion_tokens(), ref.tokens.size());
    }
  }

  void KillOneReplicaMidGeneration(const std::string& replica_choice);

  std::unique_ptr<LocalCluster> cluster_;
  std::unique_ptr<v1::AttentionNode::Stub> stub_;
  std::unique_ptr<ReferenceEngine> reference_;
};

TEST_F(AttentionNodeClusterTest, SixteenConcurrentRequestsOfDifferentLengthsAreAllCorrect) {
  StartCluster(Spec("m2-medium", 2, 1));
  std::mt19937 rng(21);
  std::vector<v1::GenerateRequest> requests;
  for (int i = 0; i < 16; ++i) {
    requests.push_back(GreedyRequest(absl::StrCat("c", i),
                                     RandomPrompt(rng, 1 + static_cast<int>(rng() % 80), 1024),
                                     4 + static_cast<int>(rng() % 20), false));
  }
  const std::vector<GenerateResult> results = RunConcurrently(*stub_, requests);
  ExpectMatchesReference(requests, results);
  EXPECT_TRUE(EventuallyIdle(*stub_));
  // Describe says where the steps' time went: the expert nodes' compute and the RPC around it.
  absl::StatusOr<v1::AttentionNodeInfo> info = Describe(*stub_);
  ASSERT_TRUE(info.ok()) << info.status();
  absl::StatusOr<attention::StepProfile> times = attention::DecodeStepTimes(info->step_times());
  ASSERT_TRUE(times.ok()) << times.status();
  EXPECT_GT(times->steps, 0);
  int64_t tokens = 0;
  for (const GenerateResult& r : results) tokens += r.usage.prompt_tokens();
  for (const GenerateResult& r : results) tokens += r.usage.completion_tokens() - 1;
  // Each prompt token and each fed-back token at least once (a preempted sequence recomputes).
  EXPECT_GE(times->tokens, tokens);
  EXPECT_GT(times->Get(attention::ProfileStage::kExpertFfn), 0);
  EXPECT_GT(times->Get(attention::ProfileStage::kExpertOther), 0);
  EXPECT_GT(times->Get(attention::ProfileStage::kSampling), 0);
  // And which node served what: each of the two nodes (half the experts each) some pairs, in
  // all at least top-k pairs per token run, and computed for them.
  ASSERT_EQ(info->expert_traffic_size(), 2);
  uint64_t pairs = 0;
  for (int n = 0; n < 2; ++n) {
    EXPECT_EQ(info->expert_traffic(n).node(), absl::StrCat("expert", n));
    EXPECT_GT(info->expert_traffic(n).pairs(), 0u);
    EXPECT_GT(info->expert_traffic(n).compute_ns(), 0u);
    pairs += info->expert_traffic(n).pairs();
  }
  absl::StatusOr<ModelConfig> config = LoadModelConfig(GoldenModelDir("m2-medium"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_GE(pairs, static_cast<uint64_t>(tokens) * config->num_experts_per_tok);
}

// Every expert on both nodes; expert0 (the one `pack` uses) is killed after 24 tokens.
void AttentionNodeClusterTest::KillOneReplicaMidGeneration(const std::string& replica_choice) {
  ClusterSpec spec = Spec("m2-medium", 2, 2);
  spec.limits.replica_choice = replica_choice;
  StartCluster(spec);
  std::mt19937 rng(22);
  std::vector<v1::GenerateRequest> requests;
  for (int i = 0; i < 8; ++i) {
    requests.push_back(GreedyRequest(absl::StrCat("k", i),
                                     RandomPrompt(rng, 4 + static_cast<int>(rng() % 30), 1024), 40,
                                     false));
  }
  std::vector<GenerateResult> results(requests.size());
  std::atomic<int> responses{0};
  std::vector<std::thread> threads;
  for (size_t i = 0; i < requests.size(); ++i) {
    threads.emplace_back([&, i] {
      results[i] =
          RunGenerate(*stub_, requests[i], absl::Seconds(30),
                      [&](const v1::GenerateResponse&, grpc::ClientContext&) { ++responses; });
    });
  }
  while (responses.load() < 24) absl::SleepFor(absl::Milliseconds(1));
  const int status = cluster_->StopExpertNode(0, SIGKILL);
  const int at_kill = responses.load();
  for (std::thread& t : threads) t.join();
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_LT(at_kill, 8 * 40) << "the kill came after every token";
  ExpectMatchesReference(requests, results);
  EXPECT_TRUE(EventuallyIdle(*stub_));
  // Both nodes served pairs: with spread from the start, with pack expert0 until it died and
  // expert1 after.
  absl::StatusOr<v1::AttentionNodeInfo> info = Describe(*stub_);
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_EQ(info->expert_traffic_size(), 2);
  EXPECT_GT(info->expert_traffic(0).pairs(), 0u);
  EXPECT_GT(info->expert_traffic(1).pairs(), 0u);
}

TEST_F(AttentionNodeClusterTest, KillingOneReplicaMidGenerationFailsNoRequest) {
  KillOneReplicaMidGeneration("spread");
}

TEST_F(AttentionNodeClusterTest, KillingThePackedReplicaMidGenerationFailsNoRequest) {
  KillOneReplicaMidGeneration("pack");
}

TEST_F(AttentionNodeClusterTest, LosingTheOnlyHostFailsExactlyTheRequestsThatNeedIt) {
  // Short candidate requests and the (layer, expert)s each one's lone run routes to.
  const std::string model = GoldenModelDir("m2-tiny");
  absl::StatusOr<std::unique_ptr<ReferenceEngine>> probe = ReferenceEngine::Create(model);
  ASSERT_TRUE(probe.ok());
  const int num_experts = (*probe)->num_experts();
  std::mt19937 rng(23);
  std::vector<v1::GenerateRequest> requests;
  std::vector<std::vector<int>> used;
  for (int i = 0; i < 16; ++i) {
    const std::vector<int32_t> prompt = RandomPrompt(rng, 1 + static_cast<int>(rng() % 2), 1000);
    requests.push_back(GreedyRequest(absl::StrCat("h", i), prompt, 2, false));
    absl::StatusOr<ReferenceRun> run = (*probe)->Greedy(prompt, 2);
    ASSERT_TRUE(run.ok());
    used.push_back(run->experts_used);
  }
  // The (layer, expert) that splits the requests most evenly.
  int best = -1, best_score = 1 << 30;
  for (int le = 0; le < 3 * num_experts; ++le) {
    int users = 0;
    for (const auto& u : used) users += std::count(u.begin(), u.end(), le) ? 1 : 0;
    const int score = std::abs(2 * users - 16);
    if (users > 0 && users < 16 && score < best_score) {
      best = le;
      best_score = score;
    }
  }
  ASSERT_GE(best, 0);
  const int layer = best / num_experts, expert = best % num_experts;
  std::vector<std::string> rest;
  for (int l = 0; l < 3; ++l) {
    if (l != layer) rest.push_back(absl::StrCat(l, ":all"));
  }
  std::vector<int> others;
  for (int e = 0; e < num_experts; ++e) {
    if (e != expert) others.push_back(e);
  }
  rest.push_back(absl::StrCat(layer, ":", absl::StrJoin(others, ",")));
  ClusterSpec spec = Spec("m2-tiny", 2, 1);
  spec.expert_specs = {absl::StrJoin(rest, ";"), absl::StrCat(layer, ":", expert)};
  StartCluster(spec);
  const std::string missing = absl::StrCat("layer ", layer, " experts ", expert);

  // Everything works while both nodes are up.
  ExpectMatchesReference(requests, RunConcurrently(*stub_, requests));
  // The only host of (layer, expert) dies: exactly the requests routed there fail.
  cluster_->StopExpertNode(1, SIGKILL);
  const std::vector<GenerateResult> results = RunConcurrently(*stub_, requests);
  int failed = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    SCOPED_TRACE(requests[i].request_id());
    const bool needs = std::count(used[i].begin(), used[i].end(), best) > 0;
    if (needs) {
      ++failed;
      EXPECT_EQ(results[i].status.code(), absl::StatusCode::kUnavailable) << results[i].status;
      EXPECT_NE(results[i].status.message().find(missing), std::string::npos) << results[i].status;
    } else {
      ASSERT_TRUE(results[i].status.ok()) << results[i].status;
      const std::vector<int32_t> prompt(requests[i].prompt_token_ids().begin(),
                                        requests[i].prompt_token_ids().end());
      EXPECT_EQ(results[i].tokens, Reference(prompt, 2).tokens);
    }
  }
  EXPECT_GT(failed, 0);
  EXPECT_TRUE(EventuallyIdle(*stub_));
  // The node comes back (same address): service resumes without restarting anything else.
  // Each micro-batch lane's backend notices the new node on its own (a lane whose stream to
  // the old process was never used fails its first call on it), so allow a few rounds.
  ASSERT_TRUE(cluster_->StartExpertNode(1, /*wait=*/true, absl::Seconds(20)).ok());
  std::vector<GenerateResult> resumed;
  for (int attempt = 0; attempt < 100; ++attempt) {
    resumed = RunConcurrently(*stub_, requests);
    if (std::all_of(resumed.begin(), resumed.end(),
                    [](const GenerateResult& r) { return r.status.ok(); })) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  ExpectMatchesReference(requests, resumed);
  EXPECT_TRUE(cluster_->attention_process()->Running());
}

TEST_F(AttentionNodeClusterTest, CancelAndAbortFreeTheKvBlocks) {
  StartCluster(Spec("m2-tiny", 1, 1));
  std::mt19937 rng(24);
  const std::vector<int32_t> prompt = RandomPrompt(rng, 40, 1000);

  // A client that cancels its stream.
  int seen = 0;
  const GenerateResult cancelled =
      RunGenerate(*stub_, GreedyRequest("cancel-me", prompt, 4000, false), absl::Seconds(30),
                  [&](const v1::GenerateResponse&, grpc::ClientContext& context) {
                    if (++seen == 3) {
                      absl::StatusOr<v1::AttentionNodeInfo> info = Describe(*stub_);
                      EXPECT_TRUE(info.ok());
                      EXPECT_LT(info->free_kv_blocks(), info->total_kv_blocks());
                      EXPECT_EQ(info->running_sequences(), 1u);
                      context.TryCancel();
                    }
                  });
  EXPECT_EQ(cancelled.status.code(), absl::StatusCode::kCancelled) << cancelled.status;
  EXPECT_TRUE(EventuallyIdle(*stub_));

  // Abort by request id from another client.
  std::atomic<bool> started{false};
  GenerateResult aborted;
  std::thread runner([&] {
    aborted =
        RunGenerate(*stub_, GreedyRequest("abort-me", prompt, 4000, false), absl::Seconds(30),
                    [&](const v1::GenerateResponse&, grpc::ClientContext&) { started = true; });
  });
  while (!started.load()) absl::SleepFor(absl::Milliseconds(1));
  grpc::ClientContext context;
  v1::AbortRequest abort;
  abort.set_request_id("abort-me");
  v1::AbortResponse response;
  EXPECT_TRUE(stub_->Abort(&context, abort, &response).ok());
  runner.join();
  EXPECT_TRUE(aborted.status.ok()) << aborted.status;
  EXPECT_EQ(aborted.finish, v1::FINISH_REASON_ABORT);
  EXPECT_LT(aborted.tokens.size(), 4000u);
  EXPECT_TRUE(EventuallyIdle(*stub_));
  grpc::ClientContext again;
  EXPECT_EQ(stub_->Abort(&again, abort, &response).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(AttentionNodeClusterTest, MalformedInputGetsInvalidArgumentAndServersStayUp) {
  StartCluster(Spec("m2-tiny", 1, 1));
  auto code = [&](const v1::GenerateRequest& r) { return RunGenerate(*stub_, r).status; };
  absl::Status s = code(GreedyRequest("oov", {5, 1000, 6}, 3, false));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("1000"), std::string::npos) << s;
  EXPECT_EQ(code(GreedyRequest("neg", {-4}, 3, false)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(GreedyRequest("empty", {}, 3, false)).code(), absl::StatusCode::kInvalidArgument);
  v1::GenerateRequest bad_sampling = GreedyRequest("topp", {5}, 3, false);
  bad_sampling.mutable_sampling()->set_top_p(2.0f);
  EXPECT_EQ(code(bad_sampling).code(), absl::StatusCode::kInvalidArgument);
  v1::GenerateRequest bad_forced = GreedyRequest("forced", {5}, 3, false);
  bad_forced.add_forced_token_ids(123456);
  EXPECT_EQ(code(bad_forced).code(), absl::StatusCode::kInvalidArgument);

  // Malformed batches straight to the expert node, then a good one on the same stream.
  auto expert = v1::ExpertNode::NewStub(
      grpc::CreateChannel(cluster_->expert_address(0), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  auto stream = expert->Forward(&context);
  v1::ExpertBatch wrong_hidden;
  wrong_hidden.set_id(1);
  wrong_hidden.set_num_tokens(1);
  wrong_hidden.set_hidden_dim(7);
  wrong_hidden.set_dtype(v1::DTYPE_F32);
  wrong_hidden.set_hidden(std::string(7 * 4, '\0'));
  wrong_hidden.add_offsets(0);
  wrong_hidden.add_offsets(1);
  wrong_hidden.add_expert_ids(0);
  wrong_hidden.add_weights(1.0f);
  v1::ExpertBatch bad_offsets = wrong_hidden;
  bad_offsets.set_id(2);
  bad_offsets.set_hidden_dim(64);
  bad_offsets.set_hidden(std::string(64 * 4, '\0'));
  bad_offsets.set_offsets(1, 5);  // beyond the pairs
  v1::ExpertBatch good = bad_offsets;
  good.set_id(3);
  good.set_offsets(1, 1);
  v1::ExpertResult result;
  for (const v1::ExpertBatch* batch : {&wrong_hidden, &bad_offsets}) {
    ASSERT_TRUE(stream->Write(*batch));
    ASSERT_TRUE(stream->Read(&result));
    EXPECT_EQ(result.id(), batch->id());
    EXPECT_EQ(result.status().code(), static_cast<int>(absl::StatusCode::kInvalidArgument))
        << result.status().message();
  }
  ASSERT_TRUE(stream->Write(good));
  ASSERT_TRUE(stream->Read(&result));
  EXPECT_EQ(result.status().code(), 0) << result.status().message();
  EXPECT_EQ(result.num_rows(), 1u);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());

  // Both servers still serve.
  const GenerateResult fine = RunGenerate(*stub_, GreedyRequest("fine", {5, 6, 7}, 4, false));
  EXPECT_TRUE(fine.status.ok()) << fine.status;
  EXPECT_EQ(fine.tokens, Reference({5, 6, 7}, 4).tokens);
  EXPECT_TRUE(cluster_->attention_process()->Running());
  EXPECT_TRUE(cluster_->expert_process(0)->Running());
}

}  // namespace
}  // namespace afd::integration
