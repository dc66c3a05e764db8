// expert_node_bench: load generator for one expert node. Drives afd.v1.ExpertNode.Forward with
// synthetic routed batches (fixed seeds) from C concurrent streams, each sending a batch and
// waiting for its result, for every (batch size, concurrency) cell, and prints calls/s,
// tokens/s, GB/s of expert weights touched (each distinct expert of a batch is read once),
// latency p50/p99 as the client sees it, and the node's own compute time p50.
//
// Run against a node process (the numbers that matter: client and node in separate processes):
//   afd-gen-checkpoint --preset m2-perf --out /tmp/m2-perf
//   afd-expert-node --model /tmp/m2-perf --listen unix:/tmp/e0.sock --threads 2 &
//   expert_node_bench --target unix:/tmp/e0.sock --batch-tokens 1,8,64 --concurrency 1,2
// or with a node started inside the bench:
//   expert_node_bench --model /tmp/m2-perf --node-threads 2 --batch-tokens 1,8,64
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "afd/v1/expert.grpc.pb.h"
#include "bench/nodes/bench_util.h"
#include "common/cluster/expert_set.h"
#include "common/rpc/channel.h"
#include "common/rpc/expert_codec.h"
#include "common/rpc/server.h"
#include "common/rpc/status_codec.h"
#include "expert_node/expert_executor.h"
#include "expert_node/expert_node_service.h"
#include "expert_node/expert_store.h"
#include "grpcpp/client_context.h"

namespace {

void Usage(FILE* f) {
  std::fprintf(
      f,
      "usage: expert_node_bench (--target ADDR | --model DIR [--node-threads N] [--experts SPEC])\n"
      "                         [--batch-tokens 1,8,64] [--concurrency 1,2] [--seconds S]\n"
      "                         [--layer L] [--top-k K] [--bf16]\n"
      "  --target ADDR       a running afd-expert-node (host:port or unix:/path)\n"
      "  --model DIR         start a node in this process on a unix socket instead\n"
      "  --node-threads N    its compute threads (default 2)\n"
      "  --batch-tokens LIST tokens per batch (default 1,8,64)\n"
      "  --concurrency LIST  concurrent streams, each one batch in flight (default 1,2)\n"
      "  --seconds S         measured time per cell (default 3)\n"
      "  --layer L           layer to route to (default: every hosted layer in turn)\n"
      "  --top-k K           experts per token (default: the model's)\n"
      "  --bf16              send hidden states as bf16 (default fp32)\n");
}

struct Shape {
  int hidden_dim = 0;
  int top_k = 0;
  std::vector<std::vector<int>> experts_of_layer;  // hosted experts per layer
  double bytes_per_expert = 0;
};

struct Cell {
  int64_t calls = 0;
  int64_t tokens = 0;
  double weight_bytes = 0;
  std::vector<double> latency_ms;
  std::vector<double> compute_ms;
  std::string error;
};

// One stream's loop: pre-encoded batches, send one, wait for its result, repeat.
void StreamLoop(const std::shared_ptr<grpc::Channel>& channel, const Shape& shape, int layer_choice,
                int tokens, bool bf16, int stream_index,
                std::chrono::steady_clock::time_point start,
                std::chrono::steady_clock::time_point end, Cell* cell) {
  // Eight distinct batches per stream, cycling over the hosted layers.
  struct Prepared {
    afd::v1::ExpertBatch proto;
    double weight_bytes;
  };
  std::vector<Prepared> prepared;
  std::vector<int> layers;
  for (size_t l = 0; l < shape.experts_of_layer.size(); ++l) {
    if (static_cast<int>(shape.experts_of_layer[l].size()) >= shape.top_k &&
        (layer_choice < 0 || layer_choice == static_cast<int>(l))) {
      layers.push_back(static_cast<int>(l));
    }
  }
  if (layers.empty()) {
    cell->error = "no layer hosts top-k experts";
    return;
  }
  for (int i = 0; i < 8; ++i) {
    const int layer = layers[(stream_index + i) % layers.size()];
    afd::bench::SyntheticBatch b =
        afd::bench::MakeSyntheticBatch(tokens, shape.hidden_dim, shape.top_k,
                                       shape.experts_of_layer[layer], 1000u * stream_index + i);
    std::vector<uint32_t> offsets, ids(b.expert_ids.begin(), b.expert_ids.end());
    for (int t = 0; t <= tokens; ++t) offsets.push_back(t * shape.top_k);
    afd::ExpertBatchView v;
    v.id = i + 1;
    v.layer = layer;
    v.num_tokens = tokens;
    v.hidden_dim = shape.hidden_dim;
    v.hidden = b.hidden.data();
    v.offsets = offsets.data();
    v.expert_ids = ids.data();
    v.weights = b.weights.data();
    Prepared p;
    afd::rpc::EncodeExpertBatch(v, bf16 ? afd::v1::DTYPE_BF16 : afd::v1::DTYPE_F32, &p.proto);
    const std::set<int32_t> distinct(b.expert_ids.begin(), b.expert_ids.end());
    p.weight_bytes = distinct.size() * shape.bytes_per_expert;
    prepared.push_back(std::move(p));
  }

  auto stub = afd::v1::ExpertNode::NewStub(channel);
  grpc::ClientContext context;
  auto stream = stub->Forward(&context);
  afd::v1::ExpertResult result;
  // Warm up (first calls fault in pages and grow buffers).
  for (int i = 0; i < 4; ++i) {
    if (!stream->Write(prepared[i % 8].proto) || !stream->Read(&result)) break;
  }
  int64_t i = 0;
  while (std::chrono::steady_clock::now() < end) {
    const Prepared& p = prepared[i++ % prepared.size()];
    const auto t0 = std::chrono::steady_clock::now();
    if (!stream->Write(p.proto) || !stream->Read(&result)) {
      cell->error = afd::rpc::FromGrpcStatus(stream->Finish()).ToString();
      return;
    }
    const auto t1 = std::chrono::steady_clock::now();
    if (result.status().code() != 0) {
      cell->error = result.status().message();
      return;
    }
    if (t0 < start) continue;  // still ramping up the other streams
    cell->calls++;
    cell->tokens += tokens;
    cell->weight_bytes += p.weight_bytes;
    cell->latency_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    cell->compute_ms.push_back(result.compute_ns() / 1e6);
  }
  stream->WritesDone();
  stream->Finish();
}

}  // namespace

int main(int argc, char** argv) {
  std::string target, model_dir, experts_text = "all";
  std::vector<int> batch_tokens = {1, 8, 64}, concurrency = {1, 2};
  int node_threads = 2, layer = -1, top_k = 0;
  double seconds = 3;
  bool bf16 = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "expert_node_bench: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto bad = [&]() {
      std::fprintf(stderr, "expert_node_bench: bad value for %s\n", arg.c_str());
      std::exit(2);
    };
    if (arg == "--help" || arg == "-h") {
      Usage(stdout);
      return 0;
    } else if (arg == "--target") {
      target = value();
    } else if (arg == "--model") {
      model_dir = value();
    } else if (arg == "--experts") {
      experts_text = value();
    } else if (arg == "--node-threads") {
      if (!absl::SimpleAtoi(value(), &node_threads) || node_threads < 1) bad();
    } else if (arg == "--batch-tokens") {
      if (!afd::bench::ParseIntList(value(), &batch_tokens)) bad();
    } else if (arg == "--concurrency") {
      if (!afd::bench::ParseIntList(value(), &concurrency)) bad();
    } else if (arg == "--seconds") {
      if (!absl::SimpleAtod(value(), &seconds) || seconds <= 0) bad();
    } else if (arg == "--layer") {
      if (!absl::SimpleAtoi(value(), &layer) || layer < 0) bad();
    } else if (arg == "--top-k") {
      if (!absl::SimpleAtoi(value(), &top_k) || top_k < 1) bad();
    } else if (arg == "--bf16") {
      bf16 = true;
    } else {
      std::fprintf(stderr, "expert_node_bench: unknown argument %s\n\n", arg.c_str());
      Usage(stderr);
      return 2;
    }
  }
  if (target.empty() == model_dir.empty()) {
    Usage(stderr);
    return 2;
  }

  // A node in this process when no target is given.
  std::unique_ptr<afd::expert::ExpertStore> store;
  std::unique_ptr<afd::expert::ComputePool> compute;
  std::unique_ptr<afd::expert::ExpertNodeService> service;
  std::unique_ptr<afd::rpc::NodeServer> server;
  if (target.empty()) {
    absl::StatusOr<afd::ExpertSpec> spec = afd::ParseExpertSpec(experts_text);
    if (!spec.ok()) {
      std::fprintf(stderr, "expert_node_bench: %s\n", spec.status().ToString().c_str());
      return 2;
    }
    absl::StatusOr<std::unique_ptr<afd::expert::ExpertStore>> loaded =
        afd::expert::ExpertStore::Load(model_dir, *spec, {});
    if (!loaded.ok()) {
      std::fprintf(stderr, "expert_node_bench: %s\n", loaded.status().ToString().c_str());
      return 1;
    }
    store = *std::move(loaded);
    compute = std::make_unique<afd::expert::ComputePool>(node_threads);
    service = std::make_unique<afd::expert::ExpertNodeService>("bench", compute.get());
    service->SetStore(store.get());
    target = absl::StrCat("unix:/tmp/afd_expert_node_bench_", getpid(), ".sock");
    absl::StatusOr<std::unique_ptr<afd::rpc::NodeServer>> started = afd::rpc::NodeServer::Start(
        {target, {}}, {{afd::v1::ExpertNode::service_full_name(), service.get()}});
    if (!started.ok()) {
      std::fprintf(stderr, "expert_node_bench: %s\n", started.status().ToString().c_str());
      return 1;
    }
    server = *std::move(started);
    server->SetServing(afd::v1::ExpertNode::service_full_name(), true);
  }

  // The node's shape from Describe.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> describe_channel =
      afd::rpc::MakeChannel(target, {}, {});
  if (!describe_channel.ok()) {
    std::fprintf(stderr, "expert_node_bench: %s\n", describe_channel.status().ToString().c_str());
    return 2;
  }
  afd::v1::ExpertNodeInfo info;
  {
    auto stub = afd::v1::ExpertNode::NewStub(*describe_channel);
    grpc::ClientContext context;
    context.set_wait_for_ready(true);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    const grpc::Status s = stub->Describe(&context, afd::v1::DescribeExpertNodeRequest(), &info);
    if (!s.ok() || !info.ready()) {
      std::fprintf(stderr, "expert_node_bench: %s is not ready: %s\n", target.c_str(),
                   s.error_message().c_str());
      return 1;
    }
  }
  Shape shape;
  shape.hidden_dim = static_cast<int>(info.hidden_dim());
  shape.experts_of_layer.resize(info.num_layers());
  int64_t hosted = 0;
  for (const afd::v1::ExpertRange& r : info.hosted()) {
    for (uint32_t l : r.layers()) {
      for (uint32_t e : r.experts()) {
        shape.experts_of_layer[l].push_back(static_cast<int>(e));
        ++hosted;
      }
    }
  }
  shape.bytes_per_expert =
      hosted > 0 ? static_cast<double>(info.hosted_weight_bytes()) / hosted : 0;
  if (top_k == 0 && !model_dir.empty()) top_k = store->config().num_experts_per_tok;
  shape.top_k = top_k > 0 ? top_k : 8;

  std::printf(
      "expert node %s at %s: %s, hidden %u, intermediate %u, %lld experts hosted "
      "(%.1f MiB each, %s), %u threads; top-%d, %s hidden states\n\n",
      info.node_name().c_str(), target.c_str(), info.model_type().c_str(), info.hidden_dim(),
      info.intermediate_dim(), static_cast<long long>(hosted), shape.bytes_per_expert / 1048576.0,
      info.weight_dtype().c_str(), info.threads(), shape.top_k, bf16 ? "bf16" : "fp32");
  std::printf("%7s %5s %10s %11s %12s %9s %9s %11s\n", "tokens", "conc", "calls/s", "tokens/s",
              "weights GB/s", "p50 ms", "p99 ms", "node p50 ms");
  for (int tokens : batch_tokens) {
    for (int conc : concurrency) {
      std::vector<Cell> cells(conc);
      std::vector<std::shared_ptr<grpc::Channel>> channels;
      for (int c = 0; c < conc; ++c) {
        // A connection per stream, like separate attention nodes.
        channels.push_back(*afd::rpc::MakeChannel(target, {}, {}));
      }
      const auto start = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
      const auto end = start + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
      std::vector<std::thread> threads;
      for (int c = 0; c < conc; ++c) {
        threads.emplace_back(StreamLoop, channels[c], std::cref(shape), layer, tokens, bf16, c,
                             start, end, &cells[c]);
      }
      for (auto& t : threads) t.join();
      Cell all;
      for (Cell& c : cells) {
        if (!c.error.empty()) {
          std::fprintf(stderr, "expert_node_bench: %s\n", c.error.c_str());
          return 1;
        }
        all.calls += c.calls;
        all.tokens += c.tokens;
        all.weight_bytes += c.weight_bytes;
        all.latency_ms.insert(all.latency_ms.end(), c.latency_ms.begin(), c.latency_ms.end());
        all.compute_ms.insert(all.compute_ms.end(), c.compute_ms.begin(), c.compute_ms.end());
      }
      std::printf("%7d %5d %10.1f %11.1f %12.2f %9.3f %9.3f %11.3f\n", tokens, conc,
                  all.calls / seconds, all.tokens / seconds, all.weight_bytes / seconds / 1e9,
                  afd::bench::Percentile(&all.latency_ms, 0.5),
                  afd::bench::Percentile(&all.latency_ms, 0.99),
                  afd::bench::Percentile(&all.compute_ms, 0.5));
      std::fflush(stdout);
    }
  }
  if (server != nullptr) server->Shutdown(absl::ZeroDuration());
  return 0;
}
