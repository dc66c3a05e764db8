// RemoteExpertBackend against real expert nodes on loopback: bitwise equal to the in-process
// backend for 1, 2 and 3 nodes with and without replicas (golden m2-tiny, m2-medium, m2-fp8),
// failover when a replica dies or hangs, UNAVAILABLE naming the experts when none is left, and
// recovery when the node returns.
#include "expert_node/client/remote_expert_backend.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "attention_node/in_process_expert_backend.h"
#include "attention_node/step_profile.h"
#include "common/kernels/thread_pool.h"
#include "common/safetensors.h"
#include "expert_test_util.h"
#include "gtest/gtest.h"

namespace afd::attention {
namespace {

using expert_test::GoldenModel;
using expert_test::LocalExpertNode;
using expert_test::MakeRoutedBatch;
using expert_test::RoutedBatch;
using expert_test::SocketPath;

struct Cluster {
  std::vector<std::unique_ptr<LocalExpertNode>> nodes;
  std::vector<RemoteExpertNode> endpoints;
};

// Starts one node per spec; unix sockets when `unix_sockets`, else loopback TCP.
Cluster StartCluster(const std::string& model, const std::vector<std::string>& specs,
                     bool unix_sockets, int threads = 1) {
  Cluster c;
  for (size_t i = 0; i < specs.size(); ++i) {
    const std::string name = "e" + std::to_string(i);
    absl::StatusOr<std::unique_ptr<LocalExpertNode>> node = LocalExpertNode::Start(
        name, model, specs[i], unix_sockets ? SocketPath(name) : "127.0.0.1:0", threads);
    EXPECT_TRUE(node.ok()) << node.status();
    if (!node.ok()) continue;
    c.endpoints.push_back({name, (*node)->address(), *ParseExpertSpec(specs[i])});
    c.nodes.push_back(*std::move(node));
  }
  return c;
}

class RemoteExpertBackendTest : public ::testing::Test {
 protected:
  void Load(const std::string& model) {
    model_dir_ = GoldenModel(model);
    absl::StatusOr<ModelConfig> config = LoadModelConfig(model_dir_);
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
    absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(model_dir_);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    checkpoint_ = *std::move(checkpoint);
    absl::StatusOr<std::unique_ptr<InProcessExpertBackend>> local =
        InProcessExpertBackend::Create(config_, *checkpoint_, nullptr);
    ASSERT_TRUE(local.ok()) << local.status();
    local_ = *std::move(local);
  }

  RoutedBatch Batch(int layer, int64_t tokens, uint32_t seed) const {
    return MakeRoutedBatch(layer, tokens, config_.hidden_size, config_.num_experts_per_tok,
                           config_.num_local_experts, seed);
  }

  std::vector<float> Expected(const RoutedBatch& b) {
    std::vector<float> out(b.num_tokens * b.hidden_dim);
    absl::Status s = local_->Run(b.Request(), out.data());
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  std::unique_ptr<RemoteExpertBackend> Remote(
      const Cluster& c, int deadline_ms = 10000, bool fold = true,
      RemoteExpertBackendOptions::ReplicaChoice choice =
          RemoteExpertBackendOptions::ReplicaChoice::kSpread) {
    RemoteExpertBackendOptions options;
    options.replica_choice = choice;
    options.call_deadline_ms = deadline_ms;
    options.reconnect_initial_backoff_ms = 10;
    options.reconnect_max_backoff_ms = 100;
    options.fold_prefix = fold;
    absl::StatusOr<std::unique_ptr<RemoteExpertBackend>> remote =
        RemoteExpertBackend::Create(config_, c.endpoints, options);
    EXPECT_TRUE(remote.ok()) << remote.status();
    if (!remote.ok()) return nullptr;
    EXPECT_TRUE((*remote)->WaitForNodes(absl::Seconds(10)).ok());
    return *std::move(remote);
  }

  // Runs `b` remotely and checks the result is bitwise the in-process one.
  void ExpectBitwiseEqual(RemoteExpertBackend& remote, const RoutedBatch& b,
                          const std::string& what) {
    const std::vector<float> expected = Expected(b);
    std::vector<float> out(expected.size(), -1.0f);
    absl::Status s = remote.Run(b.Request(), out.data());
    ASSERT_TRUE(s.ok()) << what << ": " << s;
    EXPECT_EQ(std::memcmp(out.data(), expected.data(), expected.size() * sizeof(float)), 0)
        << what << ": layer " << b.layer << ", " << b.num_tokens << " tokens";
  }

  std::string model_dir_;
  ModelConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<InProcessExpertBackend> local_;
};

struct Layout {
  const char* name;
  std::vector<std::string> specs;
};

// Placements over E experts: one node, splits, replicas, and an irregular per-layer one.
std::vector<Layout> Layouts(int num_experts) {
  const int e = num_experts;
  auto range = [](int a, int b) { return std::to_string(a) + "-" + std::to_string(b); };
  return {
      {"1 node", {"all"}},
      {"2 nodes", {range(0, e / 2 - 1), range(e / 2, e - 1)}},
      {"3 nodes", {range(0, e / 3 - 1), range(e / 3, 2 * e / 3 - 1), range(2 * e / 3, e - 1)}},
      {"2 nodes, 2 replicas", {"all", "all"}},
      {"3 nodes, 2 replicas",
       {range(0, 2 * e / 3 - 1), range(e / 3, e - 1),
        range(0, e / 3 - 1) + "," + range(2 * e / 3, e - 1)}},
      {"3 nodes, interleaved and uneven",
       {"0:0,3,5;1:all;2:" + range(0, e / 2), "0:1-2,4;2:" + range(e / 2 + 1, e - 1),
        "0:" + range(6, e - 1) + ";2:" + range(e / 4, e - 1)}},
  };
}

TEST_F(RemoteExpertBackendTest, BitwiseEqualToInProcessOnM2Tiny) {
  Load("m2-tiny");
  for (const Layout& layout : Layouts(config_.num_local_experts)) {
    Cluster cluster = StartCluster(model_dir_, layout.specs, /*unix_sockets=*/false);
    std::unique_ptr<RemoteExpertBackend> remote = Remote(cluster);
    ASSERT_NE(remote, nullptr) << layout.name;
    uint32_t seed = 1;
    for (int layer = 0; layer < config_.num_hidden_layers; ++layer) {
      for (int64_t tokens : {1, 3, 17, 64}) {
        ExpectBitwiseEqual(*remote, Batch(layer, tokens, seed++), layout.name);
      }
    }
  }
}

TEST_F(RemoteExpertBackendTest, BitwiseEqualToInProcessOnM2MediumOverUnixSockets) {
  Load("m2-medium");  // top-8 of 16 experts
  for (const Layout& layout : Layouts(config_.num_local_experts)) {
    Cluster cluster = StartCluster(model_dir_, layout.specs, /*unix_sockets=*/true, 2);
    std::unique_ptr<RemoteExpertBackend> remote = Remote(cluster);
    ASSERT_NE(remote, nullptr) << layout.name;
    uint32_t seed = 100;
    for (int layer = 0; layer < config_.num_hidden_layers; ++layer) {
      for (int64_t tokens : {1, 5, 33}) {
        ExpectBitwiseEqual(*remote, Batch(layer, tokens, seed++), layout.name);
      }
    }
    const RemoteExpertBackend::Stats stats = remote->stats();
    // Each token goes to a node at most once per call, and at most one batch per node.
    EXPECT_LE(stats.batches, stats.calls * cluster.nodes.size()) << layout.name;
    EXPECT_EQ(stats.retried_pairs, 0u) << layout.name;
  }
}

TEST_F(RemoteExpertBackendTest, BitwiseEqualOnFp8WeightsAndWithoutFolding) {
  Load("m2-fp8");
  Cluster cluster = StartCluster(model_dir_, {"0-3", "2-7"}, false);
  std::unique_ptr<RemoteExpertBackend> folded = Remote(cluster);
  std::unique_ptr<RemoteExpertBackend> unfolded = Remote(cluster, 10000, /*fold=*/false);
  ASSERT_NE(folded, nullptr);
  ASSERT_NE(unfolded, nullptr);
  for (int layer = 0; layer < config_.num_hidden_layers; ++layer) {
    const RoutedBatch b = Batch(layer, 24, 50 + layer);
    ExpectBitwiseEqual(*folded, b, "fp8, folded");
    ExpectBitwiseEqual(*unfolded, b, "fp8, one row per pair");
  }
  // Folding only ever removes rows.
  EXPECT_EQ(unfolded->stats().rows_received, unfolded->stats().pairs_sent);
  EXPECT_LT(folded->stats().rows_received, unfolded->stats().rows_received);
}

TEST_F(RemoteExpertBackendTest, OneNodeWithFoldingSendsOneRowPerToken) {
  Load("m2-medium");
  Cluster cluster = StartCluster(model_dir_, {"all"}, true);
  std::unique_ptr<RemoteExpertBackend> remote = Remote(cluster);
  ASSERT_NE(remote, nullptr);
  ExpectBitwiseEqual(*remote, Batch(0, 10, 1), "1 node");
  EXPECT_EQ(remote->stats().rows_received, 10u);
  EXPECT_EQ(remote->stats().pairs_sent, 10u * config_.num_experts_per_tok);
}

TEST_F(RemoteExpertBackendTest, ReplicasShareEachCallsExpertsEvenly) {
  Load("m2-medium");
  const int k = config_.num_experts_per_tok;
  ASSERT_EQ(k % 2, 0);
  // Every expert on every node: a single token's k experts (each one pair, equal work) are
  // placed on the least loaded node in turn, so no node gets more than ceil(k / 3), every
  // call, whatever the routing; and the bits are those of the in-process backend.
  Cluster cluster = StartCluster(model_dir_, {"all", "all", "all"}, true);
  std::unique_ptr<RemoteExpertBackend> remote = Remote(cluster);
  ASSERT_NE(remote, nullptr);
  const uint64_t most = (k + 2) / 3;
  for (int call = 0; call < 24; ++call) {
    const std::vector<uint64_t> before = remote->stats().node_pairs;
    ExpectBitwiseEqual(*remote, Batch(call % 3, 1, 500 + call), "3 full replicas");
    const std::vector<uint64_t>& after = remote->stats().node_pairs;
    ASSERT_EQ(after.size(), 3u);
    uint64_t total = 0;
    for (int n = 0; n < 3; ++n) {
      const uint64_t pairs = after[n] - before[n];
      EXPECT_LE(pairs, most) << "call " << call << ", node " << n;
      total += pairs;
    }
    EXPECT_EQ(total, static_cast<uint64_t>(k)) << "call " << call;
  }
  // Two replicas over two nodes, many tokens: the experts' rows split about evenly.
  Cluster pair = StartCluster(model_dir_, {"all", "all"}, true);
  std::unique_ptr<RemoteExpertBackend> two = Remote(pair);
  ASSERT_NE(two, nullptr);
  ExpectBitwiseEqual(*two, Batch(0, 32, 7), "2 full replicas, 32 tokens");
  const std::vector<uint64_t>& split = two->stats().node_pairs;
  const uint64_t all = 32u * k;
  EXPECT_EQ(split[0] + split[1], all);
  EXPECT_GE(split[0], all / 4);
  EXPECT_GE(split[1], all / 4);
}

TEST_F(RemoteExpertBackendTest, PackKeepsEveryCallOnOneReplica) {
  Load("m2-medium");
  // Nodes sharing one machine's cores: every expert of a call on one node, the first in the
  // config's order, every call; when it is lost, the next one; the same bits throughout.
  Cluster cluster = StartCluster(model_dir_, {"all", "all", "all"}, true);
  std::unique_ptr<RemoteExpertBackend> remote =
      Remote(cluster, 10000, true, RemoteExpertBackendOptions::ReplicaChoice::kPack);
  ASSERT_NE(remote, nullptr);
  auto calls_on = [&](int node, int calls, uint32_t seed) {
    for (int call = 0; call < calls; ++call) {
      const std::vector<uint64_t> before = remote->stats().node_pairs;
      ExpectBitwiseEqual(*remote, Batch(call % 3, 4, seed + call), "3 full replicas, pack");
      for (int n = 0; n < 3; ++n) {
        EXPECT_EQ(remote->stats().node_pairs[n] > before[n], n == node)
            << "call " << call << ", node " << n;
      }
    }
  };
  calls_on(0, 6, 600);
  cluster.nodes[0]->Stop();
  // The call that finds node 0 gone retries on node 1; every later one starts there.
  std::vector<float> out(Batch(0, 4, 650).num_tokens * config_.hidden_size);
  ASSERT_TRUE(remote->Run(Batch(0, 4, 650).Request(), out.data()).ok());
  calls_on(1, 6, 700);
}

TEST_F(RemoteExpertBackendTest, ProfileTakesTheSlowestNodesComputePerCall) {
  Load("m2-medium");
  Cluster cluster = StartCluster(model_dir_, {"0-7", "8-15"}, true);
  std::unique_ptr<RemoteExpertBackend> remote = Remote(cluster);
  ASSERT_NE(remote, nullptr);
  StepProfile profile;
  remote->set_profile(&profile);
  const RoutedBatch b = Batch(1, 12, 3);
  std::vector<float> out(b.num_tokens * b.hidden_dim);
  const RemoteExpertBackend::Stats before = remote->stats();
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(remote->Run(b.Request(), out.data()).ok());
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double all_nodes = (remote->stats().node_compute_ns - before.node_compute_ns) * 1e-9;
  // Both nodes computed (top-8 of 16 over 12 tokens); the profile holds the slower one's
  // share: more than half of the sum, at most all of it, within the call. A node computing
  // while later batches were still being sent has that part counted in the sending (gather).
  const double ffn = profile.Get(ProfileStage::kExpertFfn);
  const double gather = profile.Get(ProfileStage::kExpertGather);
  const double combine = profile.Get(ProfileStage::kExpertCombine);
  EXPECT_GT(ffn, 0.0);
  EXPECT_GT(gather, 0.0);
  EXPECT_GT(combine, 0.0);
  EXPECT_GE(ffn + gather, all_nodes / 2);
  EXPECT_LE(ffn, all_nodes);
  EXPECT_LE(gather + ffn + combine, wall);
  // Each node's own compute, as Traffic reports it: both computed, and they add up to the sum.
  const std::vector<ExpertNodeTraffic> traffic = remote->Traffic();
  ASSERT_EQ(traffic.size(), 2u);
  EXPECT_GT(traffic[0].compute_ns, 0u);
  EXPECT_GT(traffic[1].compute_ns, 0u);
  EXPECT_EQ(traffic[0].compute_ns + traffic[1].compute_ns, remote->stats().node_compute_ns);
  // Off again: nothing more is added.
  remote->set_profile(nullptr);
  ASSERT_TRUE(remote->Run(b.Request(), out.data()).ok());
  EXPECT_EQ(profile.Get(ProfileStage::kExpertFfn), ffn);
  EXPECT_EQ(profile.Get(ProfileStage::kExpertGather), gather);
}

// With the caller's threads (ExpertRequest::pool) the terms are combined in parallel: the
// same bits.
TEST_F(RemoteExpertBackendTest, ThePoolsThreadsGiveTheSameBits) {
  Load("m2-medium");
  Cluster cluster = StartCluster(model_dir_, {"0-3", "4-9", "10-15"}, true);
  std::unique_ptr<RemoteExpertBackend> remote = Remote(cluster);
  ASSERT_NE(remote, nullptr);
  kernels::ThreadPool pool(3);
  uint32_t seed = 900;
  for (int layer = 0; layer < config_.num_hidden_layers; ++layer) {
    for (int64_t tokens : {1, 9, 40}) {
      const RoutedBatch b = Batch(layer, tokens, seed++);
      const std::vector<float> expected = Expected(b);
      ExpertRequest request = b.Request();
      request.pool = &pool;
      std::vector<float> out(expected.size(), -1.0f);
      ASSERT_TRUE(remote->Run(request, out.data()).ok());
      EXPECT_EQ(std::memcmp(out.data(), expected.data(), expected.size() * sizeof(float)), 0)
          << "layer " << layer << ", " << tokens << " tokens";
    }
  }
}

TEST_F(RemoteExpertBackendTest, KillingAReplicaMidRunFailsNoCall) {
  Load("m2-medium");
  const int e = config_.num_local_experts;
  // Every expert on exactly two of three nodes.
  Cluster cluster = StartCluster(
      model_dir_,
      {"0-" + std::to_string(2 * e / 3 - 1), std::to_string(e / 3) + "-" + std::to_string(e - 1),
       "0-" + std::to_string(e / 3 - 1) + "," + std::to_string(2 * e / 3) + "-" +
           std::to_string(e - 1)},
      false);
  std::unique_ptr<RemoteExpertBackend> remote = Remote(cluster);
  ASSERT_NE(remote, nullptr);
  // Precompute the batches and expected outputs so the loop is nothing but remote calls, and
  // stop a node from another thread while they run.
  std::vector<RoutedBatch> batches;
  std::vector<std::vector<float>> expected;
  for (int call = 0; call < 300; ++call) {
    batches.push_back(Batch(call % 3, 1 + call % 7, 200 + call));
    expected.push_back(Expected(batches.back()));
  }
  std::atomic<int> calls_done{0};
  std::thread killer([&] {
    while (calls_done.load() < 20) std::this_thread::yield();
    cluster.nodes[1]->Stop();
  });
  for (size_t call = 0; call < batches.size(); ++call) {
    std::vector<float> out(expected[call].size());
    absl::Status s = remote->Run(batches[call].Request(), out.data());
    ASSERT_TRUE(s.ok()) << "call " << call << ": " << s;
    ASSERT_EQ(std::memcmp(out.data(), expected[call].data(), out.size() * sizeof(float)), 0)
        << "call " << call;
    calls_done.store(static_cast<int>(call) + 1);
  }
  killer.join();
  EXPECT_GE(remote->stats().node_failures, 1u);
}

TEST_F(RemoteExpertBackendTest, LosingTheOnlyHostIsUnavailableUntilItReturns) {
  Load("m2-tiny");
  Cluster cluster = StartCluster(model_dir_, {"0-3", "4-7"}, /*unix_sockets=*/true);
  std::unique_ptr<RemoteExpertBackend> remote = Remote(cluster);
  ASSERT_NE(remote, nullptr);
  ExpectBitwiseEqual(*remote, Batch(1, 8, 1), "before");

  cluster.nodes[1]->Stop();
  // A batch that needs experts 4-7 of layer 1 fails, naming them.
  RoutedBatch b = Batch(1, 16, 2);
  std::vector<float> out(b.num_tokens * b.hidden_dim);
  absl::Status s = remote->Run(b.Request(), out.data());
  ASSERT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("layer 1 experts 4-7"), std::string::npos) << s;
  EXPECT_NE(s.message().find("e1 (unix:"), std::string::npos) << s;
  // Calls that only need the live node still work.
  RoutedBatch low = b;
  for (int64_t t = 0; t < low.num_tokens; ++t) {
    low.expert_ids[t * 2] = static_cast<int32_t>(t % 3);
    low.expert_ids[t * 2 + 1] = 3;
  }
  ExpectBitwiseEqual(*remote, low, "only experts 0-3");

  ASSERT_TRUE(cluster.nodes[1]->Restart().ok());
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    s = remote->Run(b.Request(), out.data());
    if (s.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < give_up);
  ASSERT_TRUE(s.ok()) << "service did not resume: " << s;
  ExpectBitwiseEqual(*remote, b, "after the node returned");
}

// A TCP listener that accepts connections and never answers: a hung node.
class BlackHole {
 public:
  BlackHole() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 16);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~BlackHole() { close(fd_); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST_F(RemoteExpertBackendTest, AHungReplicaCostsOneDeadlineThenIsAvoided) {
  Load("m2-tiny");
  Cluster cluster = StartCluster(model_dir_, {"all"}, false);
  BlackHole hole;
  cluster.endpoints.insert(cluster.endpoints.begin(), {"hung", hole.address(), ExpertSpec::All()});
  RemoteExpertBackendOptions options;
  options.call_deadline_ms = 500;
  options.reconnect_initial_backoff_ms = 10;
  options.reconnect_max_backoff_ms = 100;
  absl::StatusOr<std::unique_ptr<RemoteExpertBackend>> remote =
      RemoteExpertBackend::Create(config_, cluster.endpoints, options);
  ASSERT_TRUE(remote.ok()) << remote.status();
  const auto start = std::chrono::steady_clock::now();
  for (int call = 0; call < 20; ++call) {
    ExpectBitwiseEqual(**remote, Batch(call % 3, 4, 300 + call), "hung replica");
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ((*remote)->stats().node_failures, 1u);
  EXPECT_LT(seconds, 5.0);  // one 0.5 s deadline, not one per call (20 x 0.5 s)
}

TEST_F(RemoteExpertBackendTest, AHungOnlyHostIsUnavailableAfterTheDeadline) {
  Load("m2-tiny");
  Cluster cluster = StartCluster(model_dir_, {"0-5"}, false);
  BlackHole hole;
  cluster.endpoints.push_back({"hung", hole.address(), *ParseExpertSpec("6-7")});
  RemoteExpertBackendOptions options;
  options.call_deadline_ms = 200;
  absl::StatusOr<std::unique_ptr<RemoteExpertBackend>> remote =
      RemoteExpertBackend::Create(config_, cluster.endpoints, options);
  ASSERT_TRUE(remote.ok());
  RoutedBatch b = Batch(0, 1, 1);
  b.expert_ids = {2, 7};
  std::vector<float> out(b.hidden_dim);
  absl::Status s = (*remote)->Run(b.Request(), out.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("layer 0 experts 7"), std::string::npos) << s;
  EXPECT_NE(s.message().find("no reply within 200 ms"), std::string::npos) << s;
}

TEST_F(RemoteExpertBackendTest, ANodeMissingAnExpertIsRetriedOnAReplica) {
  Load("m2-tiny");
  // e0 is configured (wrongly) to host everything but only loaded experts 0-3.
  Cluster cluster = StartCluster(model_dir_, {"0-3", "all"}, false);
  cluster.endpoints[0].experts = ExpertSpec::All();
  std::unique_ptr<RemoteExpertBackend> remote = Remote(cluster);
  ASSERT_NE(remote, nullptr);
  for (int call = 0; call < 6; ++call) {
    ExpectBitwiseEqual(*remote, Batch(0, 8, 400 + call), "misconfigured replica");
  }
  // With no replica the node's NOT_FOUND surfaces.
  Cluster alone = StartCluster(model_dir_, {"0-3"}, false);
  alone.endpoints[0].experts = ExpertSpec::All();
  std::unique_ptr<RemoteExpertBackend> lonely = Remote(alone);
  ASSERT_NE(lonely, nullptr);
  RoutedBatch b = Batch(2, 1, 1);
  b.expert_ids = {1, 6};
  std::vector<float> out(b.hidden_dim);
  absl::Status s = lonely->Run(b.Request(), out.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("does not host layer 2 experts 6"), std::string::npos) << s;
}

TEST_F(RemoteExpertBackendTest, RejectsMalformedRequestsAndIncompletePlacements) {
  Load("m2-tiny");
  Cluster cluster = StartCluster(model_dir_, {"all"}, false);
  std::unique_ptr<RemoteExpertBackend> remote = Remote(cluster);
  ASSERT_NE(remote, nullptr);
  RoutedBatch b = Batch(0, 2, 1);
  std::vector<float> out(2 * b.hidden_dim);
  b.expert_ids[1] = b.expert_ids[0];  // not strictly ascending
  EXPECT_EQ(remote->Run(b.Request(), out.data()).code(), absl::StatusCode::kInvalidArgument);
  b = Batch(0, 2, 1);
  b.layer = config_.num_hidden_layers;
  EXPECT_EQ(remote->Run(b.Request(), out.data()).code(), absl::StatusCode::kInvalidArgument);
  b = Batch(0, 2, 1);
  b.hidden_dim = 32;
  EXPECT_EQ(remote->Run(b.Request(), out.data()).code(), absl::StatusCode::kInvalidArgument);

  absl::StatusOr<std::unique_ptr<RemoteExpertBackend>> partial = RemoteExpertBackend::Create(
      config_, {{"e0", cluster.endpoints[0].address, *ParseExpertSpec("0-5")}}, {});
  EXPECT_EQ(partial.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(partial.status().message().find("all layers experts 6-7"), std::string::npos)
      << partial.status();
  absl::StatusOr<std::unique_ptr<RemoteExpertBackend>> bad_address =
      RemoteExpertBackend::Create(config_, {{"e0", "nowhere", ExpertSpec::All()}}, {});
  EXPECT_EQ(bad_address.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace afd::attention
