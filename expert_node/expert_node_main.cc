// afd-expert-node: serves the experts cluster.yaml assigns to one expert node (or the --experts
// override) over the afd.v1.ExpertNode gRPC service. Binds first (liveness SERVING, readiness
// NOT_SERVING), loads and prefaults the hosted experts from the checkpoint shards, then reports
// ready. SIGINT/SIGTERM stop it cleanly.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/cluster/cluster_config.h"
#include "common/cluster/expert_set.h"
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
  std::string config_path, node_name, model_dir, listen, experts_text;
  int port = -1, threads = -1;
  bool prefault = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "afd-expert-node: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto number = [&](int* out) {
      const std::string v = value();
      if (!absl::SimpleAtoi(v, out) || *out < 0) {
        std::fprintf(stderr, "afd-expert-node: bad value for %s: %s\n", arg.c_str(), v.c_str());
        std::exit(2);
      }
    };
    if (arg == "--help" || arg == "-h") {
      Usage(stdout);
      return 0;
    } else if (arg == "--config") {
      config_path = value();
    } else if (arg == "--node") {
      node_name = value();
    } else if (arg == "--model") {
      model_dir = value();
    } else if (arg == "--port") {
      number(&port);
    } else if (arg == "--listen") {
      listen = value();
    } else if (arg == "--experts") {
      experts_text = value();
    } else if (arg == "--threads") {
      number(&threads);
    } else if (arg == "--no-prefault") {
      prefault = false;
    } else {
      std::fprintf(stderr, "afd-expert-node: unknown argument %s\n\n", arg.c_str());
      Usage(stderr);
      return 2;
    }
  }

  // Flags -> node settings: the config's entry, then the overrides.
  afd::TlsConfig tls;
  afd::ExpertSpec spec = afd::ExpertSpec::All();
  int node_threads = 0;
  if (!config_path.empty()) {
    if (node_name.empty()) return Fail("--config needs --node NAME");
    absl::StatusOr<afd::ClusterConfig> config = afd::LoadClusterConfig(config_path);
    if (!config.ok()) return Fail(std::string(config.status().message()));
    const afd::ExpertNodeConfig* node = config->FindExpertNode(node_name);
    if (node == nullptr) {
      std::string names;
      for (const auto& n : config->expert_nodes) absl::StrAppend(&names, " ", n.node.name);
      return Fail(absl::StrCat(config_path, ": no expert node named \"", node_name,
                               "\" (expert nodes:", names.empty() ? " none" : names, ")"));
    }
    if (model_dir.empty()) model_dir = config->model_dir;
    if (listen.empty() && port < 0) listen = afd::ListenAddress(node->node);
    spec = node->experts;
    node_threads = node->node.threads;
    tls = config->tls;
  } else if (node_name.empty()) {
    node_name = "expert";
  }
  if (model_dir.empty()) return Fail("no model: pass --model DIR or a --config with `model`");
  if (port >= 0) listen = absl::StrCat("[::]:", port);
  if (listen.empty()) return Fail("no listen address: pass --port N, --listen ADDR or --config");
  if (!experts_text.empty()) {
    absl::StatusOr<afd::ExpertSpec> parsed = afd::ParseExpertSpec(experts_text);
    if (!parsed.ok()) return Fail(absl::StrCat("--experts: ", parsed.status().message()));
    spec = *parsed;
  }
  if (threads >= 0) node_threads = threads;
  if (node_threads == 0) node_threads = static_cast<int>(std::thread::hardware_concurrency());

  // SIGINT/SIGTERM are taken by sigwait below; block them before gRPC starts its threads.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  afd::expert::ComputePool compute(node_threads);
  afd::expert::ExpertNodeService service(node_name, &compute);
  const std::string service_name = afd::v1::ExpertNode::service_full_name();
  absl::StatusOr<std::unique_ptr<afd::rpc::NodeServer>> server =
      afd::rpc::NodeServer::Start({listen, tls}, {{service_name, &service}});
  if (!server.ok()) return Fail(std::string(server.status().message()));
  std::printf("afd-expert-node: %s listening on %s port %d (loading experts %s)\n",
              node_name.c_str(), listen.c_str(), (*server)->port(),
              afd::FormatExpertSpec(spec).c_str());
  std::fflush(stdout);

  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<afd::expert::ExpertStore>> store =
      afd::expert::ExpertStore::Load(model_dir, spec, {prefault});
  if (!store.ok()) {
    (*server)->Shutdown(absl::ZeroDuration());
    return Fail(absl::StrCat(node_name, ": ", store.status().message()));
  }
  service.SetStore(store->get());
  (*server)->SetServing(service_name, true);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "afd-expert-node: %s ready: %s, %.1f MiB of %s expert weights, %d threads, "
      "loaded in %.2f s\n",
      node_name.c_str(), (*store)->hosted().ToString().c_str(),
      (*store)->hosted_bytes() / 1048576.0, (*store)->weight_dtype().c_str(), node_threads,
      seconds);
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::printf("afd-expert-node: %s stopping (signal %d)\n", node_name.c_str(), signal_number);
  std::fflush(stdout);
  (*server)->Shutdown(absl::Seconds(1));
  (*server)->Wait();
  return 0;
}
