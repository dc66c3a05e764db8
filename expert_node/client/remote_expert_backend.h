// RemoteExpertBackend: the attention node's ExpertBackend over gRPC. Keeps one persistent
// Forward stream per expert node, routes with a placement table (expert -> nodes hosting it),
// sends each token to a node at most once per call (carrying the pairs that node serves), sends
// every node's batch before waiting, and combines the returned per-pair fp32 terms by the rule
// in expert_backend.h, so results are bitwise those of InProcessExpertBackend for any number of
// nodes and replicas. All pairs of one expert in a call go to one node, so each expert's product
// sees the same rows as in process. A node that fails, answers with an error, or misses the
// per-call deadline has its pairs retried on other replicas; when none is left the call returns
// UNAVAILABLE naming the (layer, expert)s. A stream that broke rather than timed out (say, it
// died while idle because the node restarted) is reopened once per call and the batch sent
// again, so a restarted node costs no call. Lost nodes are reconnected in the background (a
// thread drives their gRPC channels, which retry with backoff) and rejoin on a later call.
// Thread-safety: one Run at a time per instance (the caller's thread drives the streams, so a
// call's path has no thread hand-off). For micro-batch ping-pong, use one instance per micro-
// batch in flight, each on its own thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "attention_node/expert_backend.h"
#include "common/cluster/cluster_config.h"
#include "common/cluster/placement.h"
#include "common/model_config.h"

namespace grpc {
class CompletionQueue;
}  // namespace grpc

namespace afd::attention {

// One expert node as the backend sees it.
struct RemoteExpertNode {
  std::string name;
  std::string address;  // "host:port" or "unix:/path"
  ExpertSpec experts;   // what it hosts
};

struct RemoteExpertBackendOptions {
  int call_deadline_ms = 10000;           // per expert-node call (one round of a Run), ms
  int reconnect_initial_backoff_ms = 50;  // first reconnect delay after a node is lost, ms
  int reconnect_max_backoff_ms = 1000;    // cap of the doubling reconnect delay, ms
  TlsConfig tls;
  // Ask nodes to sum each token's leading pairs into one row (exact; see ExpertBatchView.fold).
  // Off: one row per pair. Only the traffic changes, never the result.
  bool fold_prefix = true;
  // Which replica serves an expert (cluster.yaml limits.replica_choice): spread a call's
  // experts over the least loaded replicas (ties rotating from call to call), or pack them
  // onto as few nodes as possible, the same ones every call (the first live replicas in the
  // config's order; a lost node's share moves to the next).
  enum class ReplicaChoice { kSpread, kPack };
  ReplicaChoice replica_choice = ReplicaChoice::kSpread;
};

class RemoteExpertBackend : public ExpertBackend {
 public:
  // Counters since creation (for benchmarks and tests).
  struct Stats {
    uint64_t calls = 0;            // Run calls
    uint64_t batches = 0;          // ExpertBatch messages sent
    uint64_t retried_pairs = 0;    // (token, expert) pairs sent again after a failure
    uint64_t tokens_sent = 0;      // sum over batches of their tokens
    uint64_t pairs_sent = 0;       // sum over batches of their pairs
    uint64_t rows_received = 0;    // result rows (one per pair, or per folded prefix)
    uint64_t bytes_sent = 0;       // serialized ExpertBatch bytes
    uint64_t bytes_received = 0;   // serialized ExpertResult bytes
    uint64_t node_failures = 0;    // streams lost or timed out
    uint64_t reconnects = 0;       // streams (re)opened
    uint64_t node_compute_ns = 0;  // compute time the nodes reported for the batches
    std::vector<uint64_t> node_pairs;  // [nodes] pairs sent to each node
    std::vector<uint64_t> node_compute_ns_each;  // [nodes] compute each node reported
  };

  // nodes: the expert nodes; every expert of the model must be hosted by at least one
  // (UNAVAILABLE naming the rest otherwise). INVALID_ARGUMENT for a bad address or a spec
  // outside the model. Connects lazily; see WaitForNodes.
  static absl::StatusOr<std::unique_ptr<RemoteExpertBackend>> Create(
      const ModelConfig& model, const std::vector<RemoteExpertNode>& nodes,
      const RemoteExpertBackendOptions& options);
  // The expert nodes, deadlines and TLS files of a cluster config.
  static absl::StatusOr<std::unique_ptr<RemoteExpertBackend>> Create(const ModelConfig& model,
                                                                     const ClusterConfig& cluster);
  ~RemoteExpertBackend() override;

  // See ExpertBackend::Run. INVALID_ARGUMENT for a malformed request (layer, hidden size, top_k,
  // expert ids outside the model or not strictly ascending per token) or one an expert node
  // rejected as malformed; UNAVAILABLE naming the (layer, expert)s no live node could serve and
  // why.
  absl::Status Run(const ExpertRequest& request, float* out) override;
  // Profiled calls add the slowest node's reported compute time of each round to kExpertFfn
  // (the nodes work in parallel, so that is the compute on the call's critical path; at most
  // the time waited for the replies, as a node may start while later batches are encoded), the
  // time spent placing, grouping, encoding and sending the batches to kExpertGather, and the
  // time spent taking the replies apart and combining them to kExpertCombine; the Engine
  // counts the rest of the call, transport and waiting, as kExpertOther.
  void set_profile(StepProfile* profile) override { profile_ = profile; }
  // Pairs sent to each node and its reported compute (Stats::node_pairs and
  // node_compute_ns_each with the nodes' names), in config order.
  std::vector<ExpertNodeTraffic> Traffic() const override;

  // Blocks until every node reports its ExpertNode service SERVING (grpc.health.v1), or
  // DEADLINE_EXCEEDED naming the nodes that do not.
  absl::Status WaitForNodes(absl::Duration timeout);

  const Placement& placement() const { return placement_; }
  Stats stats() const { return stats_; }

 private:
  struct Node;
  struct Stream;
  struct Op;

  RemoteExpertBackend(const ModelConfig& model, const RemoteExpertBackendOptions& options);
  absl::Status ValidateRequest(const ExpertRequest& request) const;
  void ReviveNodes();
  void OpenStream(Node& node);
  // After `node` failed this round: opens a new stream to it (once per call) unless it timed
  // out or its channel is in TRANSIENT_FAILURE. True when the node may serve the next round.
  bool Reopen(Node& node);
  void FailNode(Node& node, const std::string& reason);
  void MaybeReap(Stream* stream);
  // Background thread: polls the channels of lost nodes so they reconnect without a call.
  void ReconnectLoop();
  bool ReconnectShouldWake() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(reconnect_mu_);
  // Handles one completion-queue event; false when the deadline passed first.
  bool Pump(absl::Time deadline);
  void HandleEvent(Op* op, bool ok);
  // Sends one round of batches for the missing pairs and waits for the replies (or the
  // deadline). Fills the slot table for what came back.
  absl::Status RunRound(const ExpertRequest& request);
  // Over the request's threads where it has some.
  void Combine(const ExpertRequest& request, float* out) const;
  void CombineTokens(const ExpertRequest& request, int64_t begin, int64_t end, float* out) const;

  ModelConfig model_;
  RemoteExpertBackendOptions options_;
  Placement placement_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::unique_ptr<grpc::CompletionQueue> cq_;
  std::vector<std::unique_ptr<Stream>> zombies_;  // cancelled streams draining their ops
  uint64_t next_batch_id_ = 1;
  uint64_t call_counter_ = 0;
  Stats stats_;
  StepProfile* profile_ = nullptr;

  // Per call (reused between calls).
  std::vector<uint8_t> received_;        // [T * K] slot has its term
  std::vector<const float*> slot_rows_;  // [T * K] term row (or prefix row at slot 0)
  std::vector<int32_t> prefix_len_;      // [T] slots covered by a folded prefix row
  std::vector<int32_t> chosen_node_;     // [E] node serving each expert this round, -1 none
  std::vector<int32_t> expert_rows_;     // [E] pairs of each expert missing this round
  std::vector<int32_t> needed_;          // experts with missing pairs, most pairs first
  std::vector<int64_t> node_load_;       // [nodes] work placed on each node this round
  std::vector<uint8_t> excluded_;        // [nodes] failed during this call
  std::vector<uint8_t> reopened_;        // [nodes] stream reopened during this call
  std::vector<Node*> round_;             // nodes sent a batch in the current round

  absl::Mutex reconnect_mu_;
  bool stopping_ ABSL_GUARDED_BY(reconnect_mu_) = false;
  std::vector<uint8_t> lost_ ABSL_GUARDED_BY(reconnect_mu_);  // [nodes] channel to drive
  std::thread reconnector_;
};

}  // namespace afd::attention
