// AttentionPool: the gateway's view of its attention nodes. Polls each node's Describe in the
// background, routes every new request to the ready node with the most free KV blocks (minus the
// blocks of requests routed to it since its last poll), and remembers which node runs which
// request id (for Abort). GenerateCall is one request's Generate stream on a node: it propagates
// the client's deadline and cancellation and retries on another node when the chosen one cannot
// be reached before it sent anything. Thread-safe (GenerateCall: Read/Finish from one thread,
// Cancel from any).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "afd/v1/attention.grpc.pb.h"
#include "common/cluster/cluster_config.h"
#include "gateway/server/metrics.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/server_context.h"

namespace afd::gateway {

struct AttentionEndpoint {
  std::string name;
  std::string address;
};

struct AttentionPoolOptions {
  TlsConfig tls;
  int poll_interval_ms = 250;      // Describe period per node, ms
  int describe_timeout_ms = 1000;  // deadline of one Describe, ms
  int reconnect_initial_backoff_ms = 50;
  int reconnect_max_backoff_ms = 1000;
  int max_attempts = 3;  // nodes tried for a request whose node is unreachable
};

class AttentionPool {
 public:
  // INVALID_ARGUMENT for an empty list or a malformed address. Polling starts at once.
  static absl::StatusOr<std::unique_ptr<AttentionPool>> Create(
      const std::vector<AttentionEndpoint>& endpoints, const AttentionPoolOptions& options);
  ~AttentionPool();

  // Blocks until at least one node is ready: OK, or DEADLINE_EXCEEDED listing each node's state.
  absl::Status WaitUntilReady(absl::Duration timeout);
  // True when some node was ready at its last poll.
  bool AnyReady() const;

  // The ready node with the most free KV blocks after subtracting the blocks charged to it since
  // its last poll; `kv_blocks` is charged to it. Nodes in `exclude` are skipped. UNAVAILABLE when
  // none is ready.
  struct Choice {
    int node = -1;
    std::string name;
  };
  absl::StatusOr<Choice> Pick(int64_t kv_blocks, const std::set<int>& exclude);
  // A call to `node` failed with UNAVAILABLE before any response: when its channel cannot
  // connect, treat the node as not ready until its next good poll.
  void MarkUnreachable(int node);

  v1::AttentionNode::Stub* stub(int node) const { return nodes_[node]->stub.get(); }
  int size() const { return static_cast<int>(nodes_.size()); }

  // Last polled state of every node (for /metrics and Gateway.Describe).
  std::vector<NodeLoad> Loads() const;
  std::vector<v1::AttentionNodeInfo> Infos() const;
  // The Describe answer of some ready node (model shape and limits), if any.
  std::optional<v1::AttentionNodeInfo> ReadyInfo() const;

  // Request id -> node, for Abort.
  void Register(const std::string& request_id, int node);
  void Unregister(const std::string& request_id);
  std::optional<int> Find(const std::string& request_id) const;

  const AttentionPoolOptions& options() const { return options_; }

 private:
  struct Node {
    AttentionEndpoint endpoint;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::AttentionNode::Stub> stub;
    // Guarded by AttentionPool::mu_.
    bool polled = false;
    bool ready = false;
    std::string last_error;
    v1::AttentionNodeInfo info;
    int64_t charged_blocks = 0;  // routed since the last poll
    int64_t in_flight = 0;
  };

  AttentionPool() = default;
  void PollLoop();
  void PollOnce();

  AttentionPoolOptions options_;
  std::vector<std::unique_ptr<Node>> nodes_;
  mutable absl::Mutex mu_;
  absl::CondVar changed_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<std::string, int> running_ ABSL_GUARDED_BY(mu_);
  std::thread poller_;
};

struct CallOptions {
  std::optional<absl::Time> deadline;           // none: no deadline
  const grpc::ServerContext* parent = nullptr;  // propagate its deadline and cancellation
  int64_t kv_blocks = 0;                        // charged to the chosen node while routing
};

class GenerateCall {
 public:
  // Picks a node and starts `request` there. UNAVAILABLE when no node is ready.
  static absl::StatusOr<std::unique_ptr<GenerateCall>> Start(AttentionPool* pool,
                                                             v1::GenerateRequest request,
                                                             const CallOptions& options);
  ~GenerateCall();

  // Next response; false at the end of the stream (then call Finish). A node that fails before
  // its first response is replaced by another one transparently (up to max_attempts nodes).
  bool Read(v1::GenerateResponse* response);
  // The stream's final status (after Read returned false).
  absl::Status Finish();
  // Cancels the call (the node frees the sequence); safe from any thread, any time.
  void Cancel();
  bool cancelled() const;

  const std::string& node_name() const { return node_name_; }

 private:
  GenerateCall(AttentionPool* pool, v1::GenerateRequest request, const CallOptions& options);
  absl::Status StartOn(int node);  // (re)creates the context and the reader

  AttentionPool* pool_;
  v1::GenerateRequest request_;
  CallOptions options_;
  std::set<int> tried_;
  int node_ = -1;
  std::string node_name_;
  bool got_response_ = false;
  bool finished_ = false;
  absl::Status final_status_;
  mutable absl::Mutex mu_;  // guards context_ swaps against Cancel
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader_;
};

}  // namespace afd::gateway
