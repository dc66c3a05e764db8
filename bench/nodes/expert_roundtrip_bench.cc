// expert_roundtrip_bench: the attention-node side of one MoE layer over the network. Times
// RemoteExpertBackend::Run (the real client: CSR grouping, encode, gRPC stream to an expert
// node, decode, combine) for a batch of T tokens (default 1) on loopback over TCP and over a
// unix socket, next to InProcessExpertBackend on the same inputs and thread count, and prints
// p50/p90/p99, the node's compute share, and the traffic per call. With --traffic it also
// compares the result traffic of per-pair terms (what bitwise equality needs), per-pair terms
// with the leading run folded (what afd sends), and a hypothetical one-partial-sum-per-token-
// per-node design, for 1, 2 and 4 expert nodes.
//
// Run (inputs are fixed; the node runs inside this process, on its own threads):
//   expert_roundtrip_bench --model tests/data/golden/m2-tiny            # RPC overhead
//   expert_roundtrip_bench --model /tmp/m2-perf --iterations 2000 --traffic
//   expert_roundtrip_bench --model /tmp/m2-perf --target unix:/tmp/e0.sock   # external node
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "afd/v1/expert.grpc.pb.h"
#include "attention_node/in_process_expert_backend.h"
#include "bench/nodes/bench_util.h"
#include "common/kernels/thread_pool.h"
#include "common/model_config.h"
#include "common/rpc/server.h"
#include "common/safetensors.h"
#include "expert_node/client/remote_expert_backend.h"
#include "expert_node/expert_executor.h"
#include "expert_node/expert_node_service.h"
#include "expert_node/expert_store.h"

namespace {

using afd::attention::ExpertRequest;
using afd::attention::RemoteExpertBackend;

void Usage(FILE* f) {
  std::fprintf(f,
               "usage: expert_roundtrip_bench --model DIR [--tokens T] [--iterations N]\n"
               "                              [--node-threads N] [--target ADDR] [--traffic]\n"
               "  --tokens T        tokens per call (default 1)\n"
               "  --iterations N    timed calls per transport (default 5000)\n"
               "  --node-threads N  compute threads of the in-process node (default 1)\n"
               "  --target ADDR     time against a running afd-expert-node hosting all experts\n"
               "  --traffic         also tabulate result traffic for 1, 2 and 4 nodes\n");
}

// An expert node inside this process.
struct LocalNode {
  std::unique_ptr<afd::expert::ExpertStore> store;
  std::unique_ptr<afd::expert::ComputePool> compute;
  std::unique_ptr<afd::expert::ExpertNodeService> service;
  std::unique_ptr<afd::rpc::NodeServer> server;
  std::string address;
};

std::unique_ptr<LocalNode> StartNode(const std::string& model, const std::string& spec_text,
                                     const std::string& listen, int threads) {
  auto node = std::make_unique<LocalNode>();
  absl::StatusOr<std::unique_ptr<afd::expert::ExpertStore>> store =
      afd::expert::ExpertStore::Load(model, *afd::ParseExpertSpec(spec_text), {});
  if (!store.ok()) {
    std::fprintf(stderr, "expert_roundtrip_bench: %s\n", store.status().ToString().c_str());
    std::exit(1);
  }
  node->store = *std::move(store);
  node->compute = std::make_unique<afd::expert::ComputePool>(threads);
  node->service = std::make_unique<afd::expert::ExpertNodeService>("bench", node->compute.get());
  node->service->SetStore(node->store.get());
  absl::StatusOr<std::unique_ptr<afd::rpc::NodeServer>> server = afd::rpc::NodeServer::Start(
      {listen, {}}, {{afd::v1::ExpertNode::service_full_name(), node->service.get()}});
  if (!server.ok()) {
    std::fprintf(stderr, "expert_roundtrip_bench: %s\n", server.status().ToString().c_str());
    std::exit(1);
  }
  node->server = *std::move(server);
  node->server->SetServing(afd::v1::ExpertNode::service_full_name(), true);
  node->address =
      listen.rfind("unix", 0) == 0 ? listen : absl::StrCat("127.0.0.1:", node->server->port());
  return node;
}

struct Inputs {
  std::vector<afd::bench::SyntheticBatch> batches;  // 16, cycling over the layers
  std::vector<int> layers;
  ExpertRequest Request(size_t i, int64_t tokens, const afd::ModelConfig& c) const {
    const afd::bench::SyntheticBatch& b = batches[i % batches.size()];
    ExpertRequest r;
    r.layer = layers[i % layers.size()];
    r.num_tokens = tokens;
    r.hidden_dim = c.hidden_size;
    r.top_k = c.num_experts_per_tok;
    r.hidden = b.hidden.data();
    r.expert_ids = b.expert_ids.data();
    r.weights = b.weights.data();
    return r;
  }
};

struct Timing {
  std::vector<double> us;
  double node_us_per_call = 0;
};

template <typename Backend>
Timing Time(Backend& backend, const Inputs& in, int64_t tokens, const afd::ModelConfig& c,
            int iterations, std::vector<float>* out) {
  for (int i = 0; i < 200; ++i) {
    absl::Status s = backend.Run(in.Request(i, tokens, c), out->data());
    if (!s.ok()) {
      std::fprintf(stderr, "expert_roundtrip_bench: %s\n", s.ToString().c_str());
      std::exit(1);
    }
  }
  Timing t;
  t.us.reserve(iterations);
  for (int i = 0; i < iterations; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    absl::Status s = backend.Run(in.Request(i, tokens, c), out->data());
    const auto t1 = std::chrono::steady_clock::now();
    if (!s.ok()) {
      std::fprintf(stderr, "expert_roundtrip_bench: %s\n", s.ToString().c_str());
      std::exit(1);
    }
    t.us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  return t;
}

void PrintRow(const char* name, Timing t, const std::string& extra) {
  double sum = 0;
  for (double v : t.us) sum += v;
  const double mean = sum / t.us.size();
  std::printf("%-28s %9.1f %9.1f %9.1f %9.1f %s\n", name, afd::bench::Percentile(&t.us, 0.5),
              afd::bench::Percentile(&t.us, 0.9), afd::bench::Percentile(&t.us, 0.99), mean,
              extra.c_str());
}

std::unique_ptr<RemoteExpertBackend> Remote(
    const afd::ModelConfig& config, const std::vector<afd::attention::RemoteExpertNode>& nodes,
    bool fold) {
  afd::attention::RemoteExpertBackendOptions options;
  options.fold_prefix = fold;
  absl::StatusOr<std::unique_ptr<RemoteExpertBackend>> remote =
      RemoteExpertBackend::Create(config, nodes, options);
  if (!remote.ok() || !(*remote)->WaitForNodes(absl::Seconds(30)).ok()) {
    std::fprintf(stderr, "expert_roundtrip_bench: cannot reach the expert nodes\n");
    std::exit(1);
  }
  return *std::move(remote);
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, target;
  int64_t tokens = 1;
  int iterations = 5000, node_threads = 1;
  bool traffic = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "expert_roundtrip_bench: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto bad = [&]() {
      std::fprintf(stderr, "expert_roundtrip_bench: bad value for %s\n", arg.c_str());
      std::exit(2);
    };
    if (arg == "--help" || arg == "-h") {
      Usage(stdout);
      return 0;
    } else if (arg == "--model") {
      model = value();
    } else if (arg == "--target") {
      target = value();
    } else if (arg == "--tokens") {
      if (!absl::SimpleAtoi(value(), &tokens) || tokens < 1) bad();
    } else if (arg == "--iterations") {
      if (!absl::SimpleAtoi(value(), &iterations) || iterations < 1) bad();
    } else if (arg == "--node-threads") {
      if (!absl::SimpleAtoi(value(), &node_threads) || node_threads < 1) bad();
    } else if (arg == "--traffic") {
      traffic = true;
    } else {
      std::fprintf(stderr, "expert_roundtrip_bench: unknown argument %s\n\n", arg.c_str());
      Usage(stderr);
      return 2;
    }
  }
  if (model.empty()) {
    Usage(stderr);
    return 2;
  }
  absl::StatusOr<afd::ModelConfig> loaded = afd::LoadModelConfig(model);
  if (!loaded.ok()) {
    std::fprintf(stderr, "expert_roundtrip_bench: %s\n", loaded.status().ToString().c_str());
    return 1;
  }
  const afd::ModelConfig config = *loaded;
  std::vector<int> all_experts;
  for (int e = 0; e < config.num_local_experts; ++e) all_experts.push_back(e);
  Inputs in;
  for (int l = 0; l < config.num_hidden_layers; ++l) in.layers.push_back(l);
  for (uint32_t seed = 0; seed < 16; ++seed) {
    in.batches.push_back(afd::bench::MakeSyntheticBatch(
        tokens, config.hidden_size, config.num_experts_per_tok, all_experts, seed));
  }
  std::vector<float> out(tokens * config.hidden_size);
  std::printf(
      "model %s: hidden %d, intermediate %d, top-%d of %d experts, %d layers; "
      "%lld token(s) per call, %d calls\n\n",
      model.c_str(), config.hidden_size, config.intermediate_size, config.num_experts_per_tok,
      config.num_local_experts, config.num_hidden_layers, static_cast<long long>(tokens),
      iterations);
  std::printf("%-28s %9s %9s %9s %9s %s\n", "backend (1 expert node)", "p50 us", "p90 us", "p99 us",
              "mean us", "node compute / traffic per call");

  // The in-process reference on the same inputs.
  {
    absl::StatusOr<std::unique_ptr<afd::Checkpoint>> checkpoint = afd::Checkpoint::Open(model);
    if (!checkpoint.ok()) {
      std::fprintf(stderr, "expert_roundtrip_bench: %s\n", checkpoint.status().ToString().c_str());
      return 1;
    }
    // As many threads as the node gets, so the two differ only by the distribution.
    afd::kernels::ThreadPool pool(node_threads);
    absl::StatusOr<std::unique_ptr<afd::attention::InProcessExpertBackend>> local =
        afd::attention::InProcessExpertBackend::Create(config, **checkpoint,
                                                       node_threads > 1 ? &pool : nullptr);
    if (!local.ok()) {
      std::fprintf(stderr, "expert_roundtrip_bench: %s\n", local.status().ToString().c_str());
      return 1;
    }
    PrintRow("in-process", Time(**local, in, tokens, config, iterations, &out), "");
  }

  struct Transport {
    const char* name;
    std::string listen;
  };
  std::vector<Transport> transports;
  if (target.empty()) {
    transports = {
        {"remote, loopback TCP", "127.0.0.1:0"},
        {"remote, unix socket", absl::StrCat("unix:/tmp/afd_roundtrip_bench_", getpid(), ".sock")}};
  } else {
    transports = {{"remote, --target", target}};
  }
  for (const Transport& transport : transports) {
    std::unique_ptr<LocalNode> node;
    std::string address = transport.listen;
    if (target.empty()) {
      node = StartNode(model, "all", transport.listen, node_threads);
      address = node->address;
    }
    std::unique_ptr<RemoteExpertBackend> remote =
        Remote(config, {{"e0", address, afd::ExpertSpec::All()}}, true);
    const RemoteExpertBackend::Stats before = remote->stats();
    Timing t = Time(*remote, in, tokens, config, iterations, &out);
    const RemoteExpertBackend::Stats after = remote->stats();
    const double calls = static_cast<double>(after.calls - before.calls);
    PrintRow(
        transport.name, t,
        absl::StrCat("node ", (after.node_compute_ns - before.node_compute_ns) / calls / 1e3,
                     " us; sent ", (after.bytes_sent - before.bytes_sent) / calls, " B, received ",
                     (after.bytes_received - before.bytes_received) / calls, " B"));
  }

  if (traffic) {
    std::printf("\nresult traffic per token (rows of %d floats = %d B); %lld tokens per call\n",
                config.hidden_size, config.hidden_size * 4, static_cast<long long>(tokens));
    std::printf("%-6s %-26s %14s %14s %14s\n", "nodes", "layout", "per-pair rows", "folded rows",
                "per-node sums");
    for (int n : {1, 2, 4}) {
      if (n > config.num_local_experts) continue;
      absl::StatusOr<std::vector<afd::ExpertSpec>> specs =
          afd::GenerateExpertPlacement(config.num_local_experts, n, 1);
      std::vector<std::unique_ptr<LocalNode>> nodes;
      std::vector<afd::attention::RemoteExpertNode> endpoints;
      for (int i = 0; i < n; ++i) {
        const std::string spec = afd::FormatExpertSpec((*specs)[i]);
        nodes.push_back(StartNode(
            model, spec,
            absl::StrCat("unix:/tmp/afd_roundtrip_bench_", getpid(), "_", n, "_", i, ".sock"), 1));
        endpoints.push_back({absl::StrCat("e", i), nodes.back()->address, (*specs)[i]});
      }
      double rows[2] = {0, 0}, per_node_sums = 0;
      for (int fold = 0; fold < 2; ++fold) {
        std::unique_ptr<RemoteExpertBackend> remote = Remote(config, endpoints, fold == 1);
        const int calls = 64;
        for (int i = 0; i < calls; ++i) {
          if (!remote->Run(in.Request(i, tokens, config), out.data()).ok()) return 1;
        }
        const RemoteExpertBackend::Stats s = remote->stats();
        rows[fold] = static_cast<double>(s.rows_received) / (calls * tokens);
        per_node_sums = static_cast<double>(s.tokens_sent) / (calls * tokens);
      }
      std::printf("%-6d %-26s %14.2f %14.2f %14.2f\n", n,
                  n == 1 ? "all experts" : "contiguous expert ranges", rows[0], rows[1],
                  per_node_sums);
    }
    std::printf(
        "(per-pair rows = top-k; folded = the token's leading run of experts on one node "
        "sent as one exact fp32 prefix sum; per-node sums = the lower bound, which would "
        "not be bitwise placement-independent)\n");
  }
  return 0;
}
