// GatewayCluster: starts real afd-expert-node, afd-attention-node and afd-gateway processes from
// the build tree on loopback (gRPC on unix sockets in a temporary folder, HTTP on a free TCP
// port), waits until each reports SERVING on grpc.health.v1, waits for an attention node to be
// idle, and stops them in order when destroyed. For the gateway integration tests. Not thread-safe.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "afd/v1/attention.grpc.pb.h"
#include "common/cluster/cluster_config.h"
#include "common/model_config.h"
#include "common/rpc/channel.h"
#include "grpcpp/client_context.h"

namespace afd::gateway_testing {

inline std::string BuildDir() {
  const char* dir = std::getenv("AFD_BUILD_DIR");
  return dir != nullptr ? dir : ".";
}

inline std::string TestDataDir() {
  const char* dir = std::getenv("AFD_TEST_DATA");
  return dir != nullptr ? dir : "tests/data";
}

// A TCP port on 127.0.0.1 that was free a moment ago.
inline int FreeTcpPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

struct ClusterSpec {
  std::string model_dir;
  int expert_nodes = 2;
  int replicas = 1;
  int attention_nodes = 1;
  bool http = true;
  std::vector<std::string> gateway_args;  // extra afd-gateway flags
  int threads = 1;                        // per node
  int kv_blocks = 256;
  int max_new_tokens = 4096;
  int max_prompt_tokens = 0;
};

class GatewayCluster {
 public:
  static absl::StatusOr<std::unique_ptr<GatewayCluster>> Start(const ClusterSpec& spec) {
    auto cluster = std::unique_ptr<GatewayCluster>(new GatewayCluster());
    char dir[] = "/tmp/afd-gw-XXXXXX";
    if (mkdtemp(dir) == nullptr) return absl::InternalError("mkdtemp failed");
    cluster->dir_ = dir;
    absl::StatusOr<ModelConfig> model = LoadModelConfig(spec.model_dir);
    if (!model.ok()) return model.status();
    LocalClusterOptions options;
    options.model_dir = spec.model_dir;
    options.num_experts = model->num_local_experts;
    options.num_expert_nodes = spec.expert_nodes;
    options.replicas = spec.replicas;
    options.num_attention_nodes = spec.attention_nodes;
    options.socket_dir = cluster->dir_;
    options.http_port = spec.http ? FreeTcpPort() : 0;
    options.threads_per_node = spec.threads;
    absl::StatusOr<ClusterConfig> config = MakeLocalClusterConfig(options);
    if (!config.ok()) return config.status();
    config->limits.kv_blocks = spec.kv_blocks;
    config->limits.max_new_tokens = spec.max_new_tokens;
    config->limits.max_prompt_tokens = spec.max_prompt_tokens;
    config->deadlines.startup_timeout_ms = 60000;
    cluster->config_ = *config;
    cluster->http_port_ = options.http_port;
    const std::string file = cluster->dir_ + "/cluster.yaml";
    std::ofstream(file) << ClusterConfigToYaml(cluster->config_);
    const std::string bin = BuildDir() + "/bin/";
    for (const ExpertNodeConfig& e : cluster->config_.expert_nodes) {
      cluster->Spawn(e.node, "afd.v1.ExpertNode",
                     {bin + "afd-expert-node", "--config", file, "--node", e.node.name});
    }
    for (const AttentionNodeConfig& a : cluster->config_.attention_nodes) {
      cluster->Spawn(a.node, "afd.v1.AttentionNode",
                     {bin + "afd-attention-node", "--config", file, "--node", a.node.name});
    }
    for (const GatewayConfig& g : cluster->config_.gateways) {
      std::vector<std::string> args = {bin + "afd-gateway", "--config", file, "--node",
                                       g.node.name};
      args.insert(args.end(), spec.gateway_args.begin(), spec.gateway_args.end());
      cluster->Spawn(g.node, "afd.v1.Gateway", args);
    }
    if (absl::Status s = cluster->WaitReady(absl::Seconds(120)); !s.ok()) return s;
    return cluster;
  }

  ~GatewayCluster() {
    // Gateway first, then attention nodes, then expert nodes.
    for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) Stop(&*it);
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  const ClusterConfig& config() const { return config_; }
  int http_port() const { return http_port_; }
  std::string gateway_address() const { return config_.gateways[0].node.address; }
  std::string attention_address(int index = 0) const {
    return config_.attention_nodes[index].node.address;
  }

  // The log of node `name` (for failure messages).
  std::string Log(const std::string& name) const {
    std::ifstream in(dir_ + "/" + name + ".log");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  std::string AllLogs() const {
    std::string out;
    for (const Node& n : nodes_) absl::StrAppend(&out, "---- ", n.name, "\n", Log(n.name));
    return out;
  }

  // Waits up to 6 s until attention node `index` holds no sequence and all its KV blocks are
  // free; false if it never does.
  bool WaitAttentionIdle(int index = 0) const {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
        rpc::MakeChannel(attention_address(index), TlsConfig(), {});
    if (!channel.ok()) return false;
    std::unique_ptr<v1::AttentionNode::Stub> stub = v1::AttentionNode::NewStub(*channel);
    for (int i = 0; i < 300; ++i) {
      grpc::ClientContext context;
      v1::AttentionNodeInfo info;
      if (stub->Describe(&context, {}, &info).ok() && info.running_sequences() == 0 &&
          info.waiting_sequences() == 0 && info.free_kv_blocks() == info.total_kv_blocks()) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  // Sends SIGKILL to node `name` (failure tests).
  void Kill(const std::string& name) {
    for (Node& n : nodes_) {
      if (n.name == name && n.pid > 0) {
        kill(n.pid, SIGKILL);
        waitpid(n.pid, nullptr, 0);
        n.pid = -1;
      }
    }
  }

 private:
  struct Node {
    std::string name;
    std::string service;
    std::string address;
    pid_t pid = -1;
  };

  GatewayCluster() = default;

  void Spawn(const NodeConfig& config, const std::string& service,
             const std::vector<std::string>& args) {
    const std::string log = dir_ + "/" + config.name + ".log";
    const pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (std::freopen(log.c_str(), "w", stdout) != nullptr) dup2(fileno(stdout), 2);
      std::vector<char*> argv;
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      std::perror("execv");
      _exit(127);
    }
    nodes_.push_back({config.name, service, config.address, pid});
  }

  absl::Status WaitReady(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    for (const Node& n : nodes_) {
      absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
          rpc::MakeChannel(n.address, TlsConfig(), {});
      if (!channel.ok()) return channel.status();
      while (true) {
        int status = 0;
        if (waitpid(n.pid, &status, WNOHANG) == n.pid) {
          return absl::InternalError(
              absl::StrCat(n.name, " exited during startup:\n", Log(n.name)));
        }
        if (rpc::CheckServing(**channel, n.service, absl::Milliseconds(200)).ok()) break;
        if (absl::Now() > deadline) {
          return absl::DeadlineExceededError(
              absl::StrCat(n.name, " not ready in time:\n", AllLogs()));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    return absl::OkStatus();
  }

  void Stop(Node* n) {
    if (n->pid <= 0) return;
    kill(n->pid, SIGTERM);
    for (int i = 0; i < 500; ++i) {
      if (waitpid(n->pid, nullptr, WNOHANG) == n->pid) {
        n->pid = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill(n->pid, SIGKILL);
    waitpid(n->pid, nullptr, 0);
    n->pid = -1;
  }

  std::string dir_;
  ClusterConfig config_;
  int http_port_ = 0;
  std::vector<Node> nodes_;
};

}  // namespace afd::gateway_testing
