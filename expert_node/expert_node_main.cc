// afd-expert-node: serves the experts cluster.yaml assigns to one expert node (or the --experts
// override) over the afd.v1.ExpertNode gRPC service. Binds first (liveness SERVING, readiness
// NOT_SERVING), loads and prefaults the hosted experts from the checkpoint shards, then reports
// ready. SIGINT/SIGTERM stop it cleanly.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/cluster/cluster_config.h"
#include "common/cluster/expert_set.h"
#include "common/rpc/node_bootstrap.h"
#include "common/rpc/server.h"
#include "expert_node/expert_executor.h"
#include "expert_node/expert_node_service.h"
#include "expert_node/expert_store.h"

namespace {

void Usage(FILE* f) {
  std::fprintf(
      f,
      "usage: afd-expert-node --config cluster.yaml --node NAME [overrides]\n"
      "       afd-expert-node --model DIR --port N [overrides]\n\n"
      "Serves MoE experts of one checkpoint over gRPC (afd.v1.ExpertNode), loading only the\n"
      "experts it hosts straight from the safetensors shards.\n"
      "  --config FILE    cluster.yaml naming the nodes, placement, limits and TLS files\n"
      "  --node NAME      which expert node of the config this process is\n"
      "  --model DIR      checkpoint directory (overrides the config's `model`)\n"
      "  --port N         listen on [::]:N (0 = any free port, printed at start)\n"
      "  --listen ADDR    listen address, e.g. 127.0.0.1:50061 or unix:/tmp/e0.sock\n"
      "  --experts SPEC   hosted experts, e.g. all, 0-63, \"0-2:0-7;3:all\" (default: config,\n"
      "                   else all)\n"
      "  --threads N      compute threads (default: config, else all cores)\n"
      "  --no-prefault    do not read the hosted weights into memory before reporting ready\n");
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "afd-expert-node: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  afd::rpc::NodeFlags args;
  std::string experts_text;
  int threads = -1;
  bool prefault = true;
  afd::rpc::FlagReader flags("afd-expert-node", argc, argv, Usage);
  while (flags.Next()) {
    if (args.Parse(flags)) {
    } else if (flags.Is("--experts")) {
      experts_text = flags.Value();
    } else if (flags.Is("--threads")) {
      flags.Int(&threads, 0);
    } else if (flags.Is("--no-prefault")) {
      prefault = false;
    } else {
      flags.Unknown();
    }
  }

  // Flags -> node settings: the config's entry, then the overrides.
  afd::TlsConfig tls;
  afd::ExpertSpec spec = afd::ExpertSpec::All();
  const afd::NodeConfig* entry = nullptr;
  afd::ClusterConfig cluster;
  if (!args.config_path.empty()) {
    absl::StatusOr<const afd::ExpertNodeConfig*> node =
        afd::rpc::LoadNodeEntry(&args, &afd::ClusterConfig::FindExpertNode,
                                &afd::ClusterConfig::expert_nodes, "expert node", &cluster);
    if (!node.ok()) return Fail(std::string(node.status().message()));
    entry = &(*node)->node;
    spec = (*node)->experts;
    tls = cluster.tls;
  } else if (args.node_name.empty()) {
    args.node_name = "expert";
  }
  if (args.model_dir.empty()) return Fail("no model: pass --model DIR or a --config with `model`");
  absl::StatusOr<afd::rpc::NodeListen> resolved =
      afd::rpc::ResolveNodeListen(entry, args.listen, args.port, threads);
  if (!resolved.ok()) return Fail(std::string(resolved.status().message()));
  args.listen = resolved->listen;
  const int node_threads = resolved->threads;
  if (!experts_text.empty()) {
    absl::StatusOr<afd::ExpertSpec> parsed = afd::ParseExpertSpec(experts_text);
    if (!parsed.ok()) return Fail(absl::StrCat("--experts: ", parsed.status().message()));
    spec = *parsed;
  }

  // SIGINT/SIGTERM are taken by Wait below; blocked before gRPC starts its threads.
  afd::rpc::StopSignals stop_signals;

  afd::expert::ComputePool compute(node_threads);
  afd::expert::ExpertNodeService service(args.node_name, &compute);
  const std::string service_name = afd::v1::ExpertNode::service_full_name();
  absl::StatusOr<std::unique_ptr<afd::rpc::NodeServer>> server =
      afd::rpc::NodeServer::Start({args.listen, tls}, {{service_name, &service}});
  if (!server.ok()) return Fail(std::string(server.status().message()));
  std::printf("afd-expert-node: %s listening on %s port %d (loading experts %s)\n",
              args.node_name.c_str(), args.listen.c_str(), (*server)->port(),
              afd::FormatExpertSpec(spec).c_str());
  std::fflush(stdout);

  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<afd::expert::ExpertStore>> store =
      afd::expert::ExpertStore::Load(args.model_dir, spec, {prefault});
  if (!store.ok()) {
    (*server)->Shutdown(absl::ZeroDuration());
    return Fail(absl::StrCat(args.node_name, ": ", store.status().message()));
  }
  service.SetStore(store->get());
  (*server)->SetServing(service_name, true);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t rss = afd::rpc::ResidentBytes();
  std::printf(
      "afd-expert-node: %s ready: %s, %.1f MiB of %s expert weights, %d threads, "
      "loaded in %.2f s, resident %.1f MiB (%.3fx the hosted weights)\n",
      args.node_name.c_str(), (*store)->hosted().ToString().c_str(),
      (*store)->hosted_bytes() / 1048576.0, (*store)->weight_dtype().c_str(), node_threads, seconds,
      rss / 1048576.0,
      (*store)->hosted_bytes() > 0 ? static_cast<double>(rss) / (*store)->hosted_bytes() : 0.0);
  std::fflush(stdout);

  const int signal_number = stop_signals.Wait();
  std::printf("afd-expert-node: %s stopping (signal %d)\n", args.node_name.c_str(), signal_number);
  std::fflush(stdout);
  (*server)->Shutdown(absl::Seconds(1));
  (*server)->Wait();
  return 0;
}
