// afd-gateway: the client-facing node. Serves the OpenAI-compatible HTTP API and the
// afd.v1.Gateway gRPC service, tokenizes and renders chat prompts, and routes each request to
// the least loaded attention node of cluster.yaml. Binds first (liveness SERVING, readiness
// NOT_SERVING), loads the tokenizer, then reports ready while at least one attention node is.
// SIGINT/SIGTERM stop it cleanly.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/cluster/cluster_config.h"
#include "common/model_config.h"
#include "common/rpc/node_bootstrap.h"
#include "common/rpc/server.h"
#include "gateway/chat/chat_template.h"
#include "gateway/server/gateway_core.h"
#include "gateway/server/gateway_service.h"
#include "gateway/server/http_server.h"
#include "gateway/server/prompt_encoder.h"
#include "gateway/tokenizer/tokenizer.h"

namespace {

void Usage(FILE* f) {
  std::fprintf(
      f,
      "usage: afd-gateway --config cluster.yaml --node NAME [overrides]\n"
      "       afd-gateway --model DIR --attention ADDR[,ADDR...] [--port N] [--http-port N]\n\n"
      "Serves the OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions,\n"
      "/v1/models, /health, /metrics) and the afd.v1.Gateway gRPC service, routing each\n"
      "request to the attention node with the most free KV blocks.\n"
      "  --config FILE          cluster.yaml (nodes, limits, TLS)\n"
      "  --node NAME            which gateway of the config this process is\n"
      "  --model DIR            model directory (tokenizer, config.json, chat template)\n"
      "  --tokenizer DIR        tokenizer directory (default: the model directory)\n"
      "  --attention LIST       attention nodes without a config: [NAME=]ADDR,...\n"
      "  --port N | --listen A  gRPC listen address (default: config)\n"
      "  --http-port N          HTTP port on 0.0.0.0 (0 = any free port; default: config\n"
      "                         http_listen, else 8080)\n"
      "  --http-listen HOST:PORT  HTTP listen address\n"
      "  --no-http              serve gRPC only\n"
      "  --served-model-name S  the model name clients use (default: model directory name)\n"
      "  --api-key KEY          require `Authorization: Bearer KEY` (default: $AFD_API_KEY)\n"
      "  --reasoning-mode M     append_think (default) or split; requests may override\n"
      "  --model-identity TEXT  system text when a chat has no system message\n"
      "  --http-threads N       concurrent HTTP requests (default 64)\n"
      "  --max-in-flight N      requests in the gateway before 429 (default 1024)\n"
      "  --request-timeout-s S  deadline of each request on the attention node (default none)\n"
      "  --enable-forced-output accept the afd_forced_output test field (tests only)\n"
      "  --log-requests         one line per HTTP request on stdout\n");
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "afd-gateway: %s\n", message.c_str());
  return 1;
}

std::string BaseName(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool SplitHostPort(const std::string& address, std::string* host, int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  *host = address.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  return absl::SimpleAtoi(address.substr(colon + 1), port) && *port >= 0 && *port <= 65535;
}

}  // namespace

int main(int argc, char** argv) {
  afd::rpc::NodeFlags args;
  std::string tokenizer_dir, attention_list;
  std::string http_listen, served_name, reasoning = "append_think", identity;
  std::string api_key = std::getenv("AFD_API_KEY") != nullptr ? std::getenv("AFD_API_KEY") : "";
  int http_port = -1, http_threads = 64, max_in_flight = 1024, timeout_s = 0;
  bool no_http = false, forced_output = false, log_requests = false, identity_set = false;
  afd::rpc::FlagReader flags("afd-gateway", argc, argv, Usage);
  while (flags.Next()) {
    if (args.Parse(flags)) {
    } else if (flags.Is("--tokenizer")) {
      tokenizer_dir = flags.Value();
    } else if (flags.Is("--attention")) {
      attention_list = flags.Value();
    } else if (flags.Is("--http-port")) {
      flags.Int(&http_port, 0);
    } else if (flags.Is("--http-listen")) {
      http_listen = flags.Value();
    } else if (flags.Is("--no-http")) {
      no_http = true;
    } else if (flags.Is("--served-model-name")) {
      served_name = flags.Value();
    } else if (flags.Is("--api-key")) {
      api_key = flags.Value();
    } else if (flags.Is("--reasoning-mode")) {
      reasoning = flags.Value();
    } else if (flags.Is("--model-identity")) {
      identity = flags.Value();
      identity_set = true;
    } else if (flags.Is("--http-threads")) {
      flags.Int(&http_threads, 0);
    } else if (flags.Is("--max-in-flight")) {
      flags.Int(&max_in_flight, 0);
    } else if (flags.Is("--request-timeout-s")) {
      flags.Int(&timeout_s, 0);
    } else if (flags.Is("--enable-forced-output")) {
      forced_output = true;
    } else if (flags.Is("--log-requests")) {
      log_requests = true;
    } else {
      flags.Unknown();
    }
  }

  // Flags -> settings: the config's entry, then the overrides.
  afd::ClusterConfig cluster;
  std::vector<afd::gateway::AttentionEndpoint> endpoints;
  const afd::NodeConfig* entry = nullptr;
  if (!args.config_path.empty()) {
    absl::StatusOr<const afd::GatewayConfig*> node =
        afd::rpc::LoadNodeEntry(&args, &afd::ClusterConfig::FindGateway,
                                &afd::ClusterConfig::gateways, "gateway", &cluster);
    if (!node.ok()) return Fail(std::string(node.status().message()));
    entry = &(*node)->node;
    if (http_listen.empty() && http_port < 0) http_listen = (*node)->http_listen;
    for (const afd::AttentionNodeConfig& a : cluster.attention_nodes) {
      endpoints.push_back({a.node.name, a.node.address});
    }
  } else if (args.node_name.empty()) {
    args.node_name = "gateway";
  }
  if (!attention_list.empty()) {
    endpoints.clear();
    int index = 0;
    for (absl::string_view item : absl::StrSplit(attention_list, ',', absl::SkipEmpty())) {
      const std::string entry(item);
      const size_t eq = entry.find('=');
      if (eq == std::string::npos) {
        endpoints.push_back({absl::StrCat("attn", index), entry});
      } else {
        endpoints.push_back({entry.substr(0, eq), entry.substr(eq + 1)});
      }
      ++index;
    }
  }
  if (args.model_dir.empty()) return Fail("no model: pass --model DIR or a --config with `model`");
  if (endpoints.empty()) return Fail("no attention nodes: pass --attention or a --config");
  if (tokenizer_dir.empty()) tokenizer_dir = args.model_dir;
  absl::StatusOr<afd::rpc::NodeListen> resolved =
      afd::rpc::ResolveNodeListen(entry, args.listen, args.port, /*threads=*/-1);
  if (!resolved.ok()) return Fail(absl::StrCat("gRPC: ", resolved.status().message()));
  args.listen = resolved->listen;
  std::string http_host = "0.0.0.0";
  if (!no_http) {
    if (http_port >= 0) {
      http_listen = absl::StrCat("0.0.0.0:", http_port);
    } else if (http_listen.empty()) {
      http_listen = "0.0.0.0:8080";
    }
    if (!SplitHostPort(http_listen, &http_host, &http_port)) {
      return Fail(absl::StrCat("bad HTTP listen address \"", http_listen, "\""));
    }
  }

  afd::gateway::GatewayOptions options;
  options.node_name = args.node_name;
  options.served_model_name = served_name.empty() ? BaseName(args.model_dir) : served_name;
  options.api_key = api_key;
  absl::StatusOr<afd::gateway::ReasoningMode> mode = afd::gateway::ParseReasoningMode(reasoning);
  if (!mode.ok()) return Fail("--reasoning-mode must be append_think or split");
  options.reasoning_mode = *mode;
  if (identity_set) options.chat_template.model_identity = identity;
  options.enable_forced_output = forced_output;
  options.max_prompt_tokens = cluster.limits.max_prompt_tokens;
  options.max_new_tokens = cluster.limits.max_new_tokens;
  options.kv_block_tokens = cluster.limits.kv_block_tokens;
  options.max_in_flight = max_in_flight;
  if (timeout_s > 0) options.request_timeout = absl::Seconds(timeout_s);

  // SIGINT/SIGTERM are taken by WaitFor below; blocked before any thread starts.
  afd::rpc::StopSignals stop_signals;

  // The model's facts the gateway needs: context length, sampling defaults, chat template.
  absl::StatusOr<afd::ModelConfig> model = afd::LoadModelConfig(args.model_dir);
  if (!model.ok()) return Fail(std::string(model.status().message()));
  options.context_length = model->max_position_embeddings;
  absl::StatusOr<afd::gateway::SamplingSettings> defaults =
      afd::gateway::LoadGenerationDefaults(args.model_dir);
  if (!defaults.ok()) return Fail(std::string(defaults.status().message()));
  options.default_sampling = *defaults;
  // Without a tokenizer the gateway serves token-id requests only (e.g. golden checks of a
  // checkpoint that ships none).
  const bool has_tokenizer = access((tokenizer_dir + "/tokenizer.json").c_str(), R_OK) == 0;
  std::string template_text = "no";
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<afd::gateway::Tokenizer> tokenizer;
  std::unique_ptr<afd::gateway::PromptEncoder> encoder;
  if (has_tokenizer) {
    absl::StatusOr<afd::gateway::ChatTemplateSource> chat_template =
        afd::gateway::CheckModelChatTemplate(tokenizer_dir);
    if (!chat_template.ok()) return Fail(std::string(chat_template.status().message()));
    template_text = chat_template->built_in ? "built-in" : chat_template->path;
    absl::StatusOr<std::unique_ptr<afd::gateway::Tokenizer>> loaded =
        afd::gateway::Tokenizer::LoadFromDirectory(tokenizer_dir);
    if (!loaded.ok()) return Fail(std::string(loaded.status().message()));  // names the file
    tokenizer = *std::move(loaded);
    encoder = std::make_unique<afd::gateway::PromptEncoder>(tokenizer.get());
    if (std::optional<int32_t> eos = tokenizer->eos_token_id(); eos.has_value()) {
      options.chat_stop_token_ids.push_back(*eos);
    }
  } else {
    std::printf("afd-gateway: no tokenizer.json in %s: serving token-id requests only\n",
                tokenizer_dir.c_str());
  }

  afd::gateway::AttentionPoolOptions pool_options;
  pool_options.tls = cluster.tls;
  pool_options.reconnect_initial_backoff_ms = cluster.deadlines.reconnect_initial_backoff_ms;
  pool_options.reconnect_max_backoff_ms = cluster.deadlines.reconnect_max_backoff_ms;
  absl::StatusOr<std::unique_ptr<afd::gateway::AttentionPool>> pool =
      afd::gateway::AttentionPool::Create(endpoints, pool_options);
  if (!pool.ok()) return Fail(std::string(pool.status().message()));

  afd::gateway::GatewayCore core(options, std::move(tokenizer), std::move(encoder),
                                 *std::move(pool));
  afd::gateway::GatewayService service(&core);
  const std::string service_name = afd::v1::Gateway::service_full_name();
  absl::StatusOr<std::unique_ptr<afd::rpc::NodeServer>> server =
      afd::rpc::NodeServer::Start({args.listen, cluster.tls}, {{service_name, &service}});
  if (!server.ok()) return Fail(std::string(server.status().message()));

  std::unique_ptr<afd::gateway::HttpServer> http;
  if (!no_http) {
    afd::gateway::HttpOptions http_options;
    http_options.host = http_host;
    http_options.port = http_port;
    http_options.threads = std::max(4, http_threads);
    http_options.log_requests = log_requests;
    http = std::make_unique<afd::gateway::HttpServer>(&core, http_options);
    if (absl::Status s = http->Start(); !s.ok()) {
      (*server)->Shutdown(absl::ZeroDuration());
      return Fail(std::string(s.message()));
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string http_text =
      http == nullptr ? "(off)" : absl::StrCat(http_host, ":", http->port());
  std::printf(
      "afd-gateway: %s gRPC on %s port %d, HTTP on %s, model \"%s\" (tokenizer %s, %s "
      "chat template, loaded in %.2f s), %zu attention node(s)\n",
      args.node_name.c_str(), args.listen.c_str(), (*server)->port(), http_text.c_str(),
      options.served_model_name.c_str(), has_tokenizer ? tokenizer_dir.c_str() : "none",
      template_text.c_str(), seconds, endpoints.size());
  std::fflush(stdout);

  // Ready while some attention node is; re-checked until a stop signal arrives.
  bool serving = false;
  int signal_number = 0;
  while (true) {
    const bool ready = core.pool().AnyReady();
    if (ready != serving) {
      serving = ready;
      (*server)->SetServing(service_name, serving);
      std::printf("afd-gateway: %s %s\n", args.node_name.c_str(),
                  serving ? "ready" : "not ready (no attention node is ready)");
      std::fflush(stdout);
    }
    signal_number = stop_signals.WaitFor(absl::Milliseconds(200));
    if (signal_number > 0) break;
  }
  std::printf("afd-gateway: %s stopping (signal %d)\n", args.node_name.c_str(), signal_number);
  std::fflush(stdout);
  (*server)->SetServing(service_name, false);
  if (http != nullptr) http->Stop();
  (*server)->Shutdown(absl::Seconds(1));
  (*server)->Wait();
  return 0;
}
