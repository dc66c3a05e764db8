// Test harness for the integration tests: the real afd-* binaries started as child processes on
// loopback ports chosen free, from a cluster.yaml written for the test; gRPC helpers to run a
// Generate call to completion; golden fixtures; and the in-process reference run (Engine with
// every expert local) that distributed results must equal bit for bit. Not thread-safe, except
// RunGenerate (one call per thread).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "afd/v1/attention.grpc.pb.h"
#include "common/cluster/cluster_config.h"
#include "grpcpp/channel.h"
#include "gtest/gtest.h"

namespace afd::integration {

// $AFD_TEST_DATA (set by ctest) or tests/data.
std::string TestDataDir();
// $AFD_TEST_DATA/golden/<name>.
std::string GoldenModelDir(const std::string& name);
// $AFD_BUILD_DIR/bin/<name>.
std::string BinaryPath(const std::string& name);
// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();
// `count` distinct such ports: each stays bound until all are chosen, so the kernel cannot hand
// out one twice (separate FreePort calls can, and two nodes then clash on one address).
std::vector<int> FreePorts(int count);

// A child process running `argv` with stdout and stderr appended to `log_path`. The destructor
// kills it (SIGKILL) if it still runs.
class ChildProcess {
 public:
  ChildProcess(std::vector<std::string> argv, std::string log_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Sends `signal` and waits: the waitpid status.
  int Stop(int signal);
  // Still running (not exited, not reaped).
  bool Running();
  const std::string& log_path() const { return log_path_; }
  std::string Log() const;

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  std::string log_path_;
};

// What a test cluster looks like. Expert nodes get `expert_specs` when given (one per node),
// else GenerateExpertPlacement(num_experts, num_expert_nodes, replicas).
struct ClusterSpec {
  std::string model_dir;
  int num_expert_nodes = 1;
  int replicas = 1;
  std::vector<std::string> expert_specs;  // ExpertSpec text per node; overrides the placement
  int expert_threads = 1;
  int attention_threads = 1;
  LimitsConfig limits;
  DeadlinesConfig deadlines;
};

// The processes of one cluster: attn0 and expert0..N-1, all on 127.0.0.1. Their logs and
// cluster.yaml live in a folder under the test temp dir, removed at the end unless the test
// failed or AFD_KEEP_LOGS is set.
class LocalCluster {
 public:
  // Writes cluster.yaml (ports chosen free) without starting anything.
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Create(const ClusterSpec& spec);
  // Create + start every expert node, then the attention node, and wait until all are ready.
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Start(const ClusterSpec& spec,
                                                             absl::Duration timeout);
  ~LocalCluster();

  const ClusterConfig& config() const { return config_; }
  const std::string& config_path() const { return config_path_; }
  int num_expert_nodes() const { return static_cast<int>(config_.expert_nodes.size()); }

  // Starts the process (again) and, when `wait`, waits for its readiness.
  absl::Status StartExpertNode(int index, bool wait, absl::Duration timeout);
  absl::Status StartAttentionNode(bool wait, absl::Duration timeout);
  // Sends `signal` to the process and reaps it: the waitpid status.
  int StopExpertNode(int index, int signal);
  int StopAttentionNode(int signal);
  ChildProcess* attention_process() { return attention_.get(); }
  ChildProcess* expert_process(int index) { return experts_[index].get(); }

  const std::string& attention_address() const { return config_.attention_nodes[0].node.address; }
  const std::string& expert_address(int index) const {
    return config_.expert_nodes[index].node.address;
  }
  std::shared_ptr<grpc::Channel> AttentionChannel();
  std::unique_ptr<v1::AttentionNode::Stub> AttentionStub();

 private:
  LocalCluster() = default;
  // Polls grpc.health.v1 `service` at `address` until SERVING; fails early if `process` exits.
  absl::Status WaitReady(const std::string& address, const std::string& service,
                         ChildProcess* process, absl::Duration timeout);

  ClusterSpec spec_;
  ClusterConfig config_;
  std::string dir_;
  std::string config_path_;
  std::unique_ptr<ChildProcess> attention_;
  std::vector<std::unique_ptr<ChildProcess>> experts_;
  std::shared_ptr<grpc::Channel> attention_channel_;
};

// Everything one Generate call streamed back.
struct GenerateResult {
  absl::Status status;  // the call's final status
  std::string request_id;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;                // per token, when requested
  std::vector<std::vector<int32_t>> top_ids;  // per token, when requested
  std::vector<float> prompt_logits;           // [prompt, vocab] when requested
  std::vector<float> logits;                  // [tokens, vocab] when requested
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  v1::Usage usage;
  int responses = 0;
};

// Runs one Generate call to the end. `on_response` (optional) sees each response as it comes,
// with the call's context (e.g. to cancel it).
GenerateResult RunGenerate(v1::AttentionNode::Stub& stub, const v1::GenerateRequest& request,
                           absl::Duration timeout = absl::Seconds(30),
                           const std::function<void(const v1::GenerateResponse&,
                                                    grpc::ClientContext&)>& on_response = nullptr);

// A greedy request: temperature 0, ignore_eos, max_tokens, logprobs; optionally all logits.
v1::GenerateRequest GreedyRequest(const std::string& id, const std::vector<int32_t>& prompt,
                                  int max_tokens, bool with_logits);

// One prompt of a golden case (tests/data/golden/<case>/golden.safetensors).
struct GoldenPrompt {
  std::vector<int32_t> input_ids;
  std::vector<int32_t> greedy_ids;
  std::vector<float> prefill_logits;  // [L, vocab]
  std::vector<float> decode_logits;   // [T, vocab]
};
absl::StatusOr<std::vector<GoldenPrompt>> LoadGoldenPrompts(const std::string& model_dir);

// The in-process engine's greedy run of `prompt` (the whole prompt as one prefill step, then
// one token per step, every expert local, one thread): what a lone sequence on an attention
// node must reproduce bit for bit.
struct ReferenceRun {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<float> prompt_logits;  // [prompt, vocab]
  std::vector<float> logits;         // [tokens, vocab]
  // (layer, expert) pairs the run's tokens were routed to: layer * num_experts + expert.
  std::vector<int> experts_used;
};
class ReferenceEngine {
 public:
  // kv_bf16: the opt-in bf16 KV cache (cluster.yaml limits.kv_cache_dtype: bfloat16).
  static absl::StatusOr<std::unique_ptr<ReferenceEngine>> Create(const std::string& model_dir,
                                                                 bool kv_bf16 = false);
  ~ReferenceEngine();
  absl::StatusOr<ReferenceRun> Greedy(const std::vector<int32_t>& prompt, int max_tokens);
  int vocab_size() const;
  int num_experts() const;

 private:
  struct Impl;
  explicit ReferenceEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Bitwise equality of two float arrays; on mismatch, a message naming the first differing index.
::testing::AssertionResult BitwiseEqual(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace afd::integration
