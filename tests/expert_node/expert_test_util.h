// Helpers for the expert node tests: fixture paths, deterministic routed batches, and a real
// expert node (ExpertStore + ExpertNodeService + NodeServer) running in this process on a
// loopback port or unix socket. Not thread-safe.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "afd/v1/expert.grpc.pb.h"
#include "attention_node/expert_backend.h"
#include "common/cluster/expert_set.h"
#include "common/rpc/server.h"
#include "expert_node/expert_executor.h"
#include "expert_node/expert_node_service.h"
#include "expert_node/expert_store.h"
#include "gtest/gtest.h"

namespace afd::expert_test {

inline std::string TestDataDir() {
  const char* env = std::getenv("AFD_TEST_DATA");
  return env != nullptr ? std::string(env) : std::string("tests/data");
}

inline std::string GoldenModel(const std::string& name) {
  return TestDataDir() + "/golden/" + name;
}

// A unique unix socket path for this process.
inline std::string SocketPath(const std::string& tag) {
  static int counter = 0;
  return absl::StrCat("unix:", ::testing::TempDir(), "/afd_", tag, "_", getpid(), "_", counter++,
                      ".sock");
}

// A routed batch like the router makes: per token top_k distinct experts ascending, positive
// weights summing to 1, hidden states uniform in [-2, 2]. Deterministic in `seed`.
struct RoutedBatch {
  int layer = 0;
  int64_t num_tokens = 0;
  int hidden_dim = 0;
  int top_k = 0;
  std::vector<float> hidden;        // [T, D]
  std::vector<int32_t> expert_ids;  // [T, K]
  std::vector<float> weights;       // [T, K]

  attention::ExpertRequest Request() const {
    attention::ExpertRequest r;
    r.layer = layer;
    r.num_tokens = num_tokens;
    r.hidden_dim = hidden_dim;
    r.top_k = top_k;
    r.hidden = hidden.data();
    r.expert_ids = expert_ids.data();
    r.weights = weights.data();
    return r;
  }
};

inline RoutedBatch MakeRoutedBatch(int layer, int64_t num_tokens, int hidden_dim, int top_k,
                                   int num_experts, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> value(-2.0f, 2.0f);
  std::uniform_real_distribution<float> weight(0.05f, 1.0f);
  RoutedBatch b;
  b.layer = layer;
  b.num_tokens = num_tokens;
  b.hidden_dim = hidden_dim;
  b.top_k = top_k;
  b.hidden.resize(num_tokens * hidden_dim);
  for (float& v : b.hidden) v = value(rng);
  std::vector<int32_t> all(num_experts);
  for (int e = 0; e < num_experts; ++e) all[e] = e;
  for (int64_t t = 0; t < num_tokens; ++t) {
    std::shuffle(all.begin(), all.end(), rng);
    std::vector<int32_t> chosen(all.begin(), all.begin() + top_k);
    std::sort(chosen.begin(), chosen.end());
    float sum = 0;
    std::vector<float> w(top_k);
    for (float& x : w) sum += (x = weight(rng));
    for (int k = 0; k < top_k; ++k) {
      b.expert_ids.push_back(chosen[k]);
      b.weights.push_back(w[k] / sum);
    }
  }
  return b;
}

// A real expert node in this process.
class LocalExpertNode {
 public:
  // listen: "127.0.0.1:0" (any port) or a "unix:" address.
  static absl::StatusOr<std::unique_ptr<LocalExpertNode>> Start(const std::string& name,
                                                                const std::string& model_dir,
                                                                const std::string& spec,
                                                                const std::string& listen,
                                                                int threads = 1) {
    std::unique_ptr<LocalExpertNode> node(new LocalExpertNode(name, threads));
    absl::StatusOr<ExpertSpec> parsed = ParseExpertSpec(spec);
    if (!parsed.ok()) return parsed.status();
    absl::StatusOr<std::unique_ptr<expert::ExpertStore>> store =
        expert::ExpertStore::Load(model_dir, *parsed, {});
    if (!store.ok()) return store.status();
    node->store_ = *std::move(store);
    node->service_.SetStore(node->store_.get());
    absl::Status s = node->Listen(listen);
    if (!s.ok()) return s;
    return node;
  }

  // Stops serving (as a crash would, from the clients' view: streams are cancelled).
  void Stop() {
    if (server_ != nullptr) server_->Shutdown(absl::ZeroDuration());
    server_.reset();
  }
  // Serves again on the same address.
  absl::Status Restart() { return Listen(address_); }

  const std::string& address() const { return address_; }
  const std::string& name() const { return name_; }
  expert::ExpertNodeService& service() { return service_; }
  const expert::ExpertStore& store() const { return *store_; }

 private:
  LocalExpertNode(const std::string& name, int threads)
      : name_(name), compute_(threads), service_(name, &compute_) {}

  absl::Status Listen(const std::string& listen) {
    const std::string service_name = v1::ExpertNode::service_full_name();
    absl::StatusOr<std::unique_ptr<rpc::NodeServer>> server =
        rpc::NodeServer::Start({listen, {}}, {{service_name, &service_}});
    if (!server.ok()) return server.status();
    server_ = *std::move(server);
    server_->SetServing(service_name, true);
    address_ = listen.rfind("unix", 0) == 0 ? listen : absl::StrCat("127.0.0.1:", server_->port());
    return absl::OkStatus();
  }

  std::string name_;
  std::string address_;
  expert::ComputePool compute_;
  expert::ExpertNodeService service_;
  std::unique_ptr<expert::ExpertStore> store_;
  std::unique_ptr<rpc::NodeServer> server_;
};

}  // namespace afd::expert_test
