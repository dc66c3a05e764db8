// The afd-expert-node binary: usage and argument errors, and two real processes serving as
// replicas from one cluster.yaml, one of them killed with SIGKILL mid-run (no call fails), the
// other stopped cleanly with SIGTERM; and a node killed and restarted while the attention
// side's streams sat idle (the next call of every backend succeeds, over TCP and unix sockets).
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include "attention_node/in_process_expert_backend.h"
#include "common/cluster/cluster_config.h"
#include "common/rpc/channel.h"
#include "common/safetensors.h"
#include "expert_node/client/remote_expert_backend.h"
#include "expert_test_util.h"
#include "gtest/gtest.h"

namespace afd {
namespace {

using expert_test::GoldenModel;
using expert_test::MakeRoutedBatch;
using expert_test::RoutedBatch;

std::string Binary() {
  const char* dir = std::getenv("AFD_BUILD_DIR");
  return std::string(dir != nullptr ? dir : ".") + "/bin/afd-expert-node";
}

// Runs the binary to completion; returns its exit code and output (stdout + stderr).
int RunToExit(const std::vector<std::string>& args, std::string* output) {
  const std::string out_path = ::testing::TempDir() + "/afd_expert_node_main_test.out";
  std::string command = Binary();
  for (const std::string& a : args) command += " '" + a + "'";
  command += " > " + out_path + " 2>&1";
  const int status = std::system(command.c_str());
  std::ifstream in(out_path);
  output->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A running afd-expert-node process.
class NodeProcess {
 public:
  explicit NodeProcess(const std::vector<std::string>& args) {
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<std::string> all = {Binary()};
      all.insert(all.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (std::string& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~NodeProcess() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // Sends `signal` and returns the exit status (as waitpid reports it).
  int Stop(int signal) {
    kill(pid_, signal);
    int status = 0;
    waitpid(pid_, &status, 0);
    reaped_ = true;
    return status;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
};

TEST(ExpertNodeMainTest, PrintsUsageAndRejectsBadArguments) {
  std::string out;
  EXPECT_EQ(RunToExit({"--help"}, &out), 0);
  EXPECT_NE(out.find("usage: afd-expert-node"), std::string::npos) << out;
  EXPECT_EQ(RunToExit({"--bogus"}, &out), 2);
  EXPECT_NE(out.find("unknown argument --bogus"), std::string::npos) << out;
  EXPECT_EQ(RunToExit({"--port", "x"}, &out), 2);
  EXPECT_EQ(RunToExit({"--port", "0"}, &out), 1);
  EXPECT_NE(out.find("no model"), std::string::npos) << out;

  const std::string config = ::testing::TempDir() + "/afd_main_test_cluster.yaml";
  std::ofstream(config) << "model: " << GoldenModel("m2-tiny")
                        << "\nexpert_nodes:\n  - {name: e0, address: 'localhost:1'}\n";
  EXPECT_EQ(RunToExit({"--config", config, "--node", "e5"}, &out), 1);
  EXPECT_NE(out.find("no expert node named \"e5\" (expert nodes: e0)"), std::string::npos) << out;
  EXPECT_EQ(RunToExit({"--config", "/nonexistent.yaml", "--node", "e0"}, &out), 1);
  EXPECT_EQ(
      RunToExit({"--model", GoldenModel("m2-tiny"), "--port", "0", "--experts", "0-99"}, &out), 1);
  EXPECT_NE(out.find("expert 99 does not exist"), std::string::npos) << out;
}

TEST(ExpertNodeMainTest, ReplicaProcessesSurviveAKill) {
  const std::string model = GoldenModel("m2-medium");
  LocalClusterOptions local;
  local.model_dir = model;
  local.num_experts = 16;
  local.num_expert_nodes = 2;
  local.replicas = 2;
  local.socket_dir = ::testing::TempDir();
  absl::StatusOr<ClusterConfig> cluster = MakeLocalClusterConfig(local);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  for (auto& node : cluster->expert_nodes) {
    node.node.address = expert_test::SocketPath(node.node.name);
  }
  cluster->deadlines.reconnect_initial_backoff_ms = 10;
  const std::string config_path = ::testing::TempDir() + "/afd_main_test_replicas.yaml";
  std::ofstream(config_path) << ClusterConfigToYaml(*cluster);

  NodeProcess e0({"--config", config_path, "--node", "expert0", "--threads", "1"});
  NodeProcess e1({"--config", config_path, "--node", "expert1", "--threads", "1"});

  absl::StatusOr<ModelConfig> config = LoadModelConfig(model);
  ASSERT_TRUE(config.ok());
  absl::StatusOr<std::unique_ptr<attention::RemoteExpertBackend>> remote =
      attention::RemoteExpertBackend::Create(*config, *cluster);
  ASSERT_TRUE(remote.ok()) << remote.status();
  ASSERT_TRUE((*remote)->WaitForNodes(absl::Seconds(30)).ok());
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(model);
  ASSERT_TRUE(checkpoint.ok());
  absl::StatusOr<std::unique_ptr<attention::InProcessExpertBackend>> local_backend =
      attention::InProcessExpertBackend::Create(*config, **checkpoint, nullptr);
  ASSERT_TRUE(local_backend.ok());

  std::vector<RoutedBatch> batches;
  std::vector<std::vector<float>> expected;
  for (int call = 0; call < 200; ++call) {
    batches.push_back(MakeRoutedBatch(call % 3, 1 + call % 5, config->hidden_size,
                                      config->num_experts_per_tok, config->num_local_experts,
                                      call));
    expected.emplace_back(batches.back().num_tokens * config->hidden_size);
    ASSERT_TRUE((*local_backend)->Run(batches.back().Request(), expected.back().data()).ok());
  }
  std::atomic<int> done{0};
  int kill_status = 0;
  std::thread killer([&] {
    while (done.load() < 20) std::this_thread::yield();
    kill_status = e1.Stop(SIGKILL);
  });
  for (size_t call = 0; call < batches.size(); ++call) {
    std::vector<float> out(expected[call].size());
    absl::Status s = (*remote)->Run(batches[call].Request(), out.data());
    ASSERT_TRUE(s.ok()) << "call " << call << ": " << s;
    ASSERT_EQ(std::memcmp(out.data(), expected[call].data(), out.size() * 4), 0) << call;
    done.store(static_cast<int>(call) + 1);
  }
  killer.join();
  EXPECT_TRUE(WIFSIGNALED(kill_status));
  EXPECT_GE((*remote)->stats().node_failures, 1u);
  const int term_status = e0.Stop(SIGTERM);
  EXPECT_TRUE(WIFEXITED(term_status) && WEXITSTATUS(term_status) == 0) << term_status;
}

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

absl::Status WaitServing(const std::string& address) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      rpc::MakeChannel(address, TlsConfig{}, {10, 100});
  if (!channel.ok()) return channel.status();
  return rpc::WaitUntilServing(**channel, v1::ExpertNode::service_full_name(), absl::Seconds(30));
}

// The only host of every expert is killed and restarted on the same address while the two
// backends' streams are idle: the first call of each backend afterwards must succeed (the dead
// stream is reopened and the batch sent again), bitwise equal to the in-process result.
TEST(ExpertNodeMainTest, FirstCallAfterAnIdleRestartSucceedsOnEveryLane) {
  const std::string model = GoldenModel("m2-tiny");
  absl::StatusOr<ModelConfig> config = LoadModelConfig(model);
  ASSERT_TRUE(config.ok());
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(model);
  ASSERT_TRUE(checkpoint.ok());
  absl::StatusOr<std::unique_ptr<attention::InProcessExpertBackend>> local =
      attention::InProcessExpertBackend::Create(*config, **checkpoint, nullptr);
  ASSERT_TRUE(local.ok());

  const int port = FreePort();
  ASSERT_NE(port, 0);
  const std::vector<std::string> addresses = {absl::StrCat("127.0.0.1:", port),
                                              expert_test::SocketPath("restart")};
  for (const std::string& address : addresses) {
    SCOPED_TRACE(address);
    const std::vector<std::string> args = {"--model", model, "--listen", address, "--threads", "1"};
    auto node = std::make_unique<NodeProcess>(args);
    ASSERT_TRUE(WaitServing(address).ok());
    attention::RemoteExpertBackendOptions options;
    options.call_deadline_ms = 10000;
    options.reconnect_initial_backoff_ms = 10;
    options.reconnect_max_backoff_ms = 100;
    std::vector<std::unique_ptr<attention::RemoteExpertBackend>> lanes;
    for (int lane = 0; lane < 2; ++lane) {
      absl::StatusOr<std::unique_ptr<attention::RemoteExpertBackend>> remote =
          attention::RemoteExpertBackend::Create(*config, {{"e0", address, ExpertSpec::All()}},
                                                 options);
      ASSERT_TRUE(remote.ok()) << remote.status();
      ASSERT_TRUE((*remote)->WaitForNodes(absl::Seconds(30)).ok());
      lanes.push_back(*std::move(remote));
    }
    auto check = [&](attention::RemoteExpertBackend& remote, uint32_t seed) {
      const RoutedBatch b =
          MakeRoutedBatch(seed % 3, 1 + seed % 4, config->hidden_size, config->num_experts_per_tok,
                          config->num_local_experts, seed);
      std::vector<float> expected(b.num_tokens * config->hidden_size);
      std::vector<float> out(expected.size(), -1.0f);
      ASSERT_TRUE((*local)->Run(b.Request(), expected.data()).ok());
      const absl::Status s = remote.Run(b.Request(), out.data());
      ASSERT_TRUE(s.ok()) << "seed " << seed << ": " << s;
      EXPECT_EQ(std::memcmp(out.data(), expected.data(), out.size() * 4), 0) << seed;
    };
    for (auto& lane : lanes) check(*lane, 1);

    const int kill_status = node->Stop(SIGKILL);
    EXPECT_TRUE(WIFSIGNALED(kill_status));
    node = std::make_unique<NodeProcess>(args);
    ASSERT_TRUE(WaitServing(address).ok());
    for (size_t lane = 0; lane < lanes.size(); ++lane) {
      const uint64_t reconnects = lanes[lane]->stats().reconnects;
      check(*lanes[lane], 10 + lane);
      EXPECT_EQ(lanes[lane]->stats().reconnects, reconnects + 1) << "lane " << lane;
      check(*lanes[lane], 20 + lane);
    }
    const int term_status = node->Stop(SIGTERM);
    EXPECT_TRUE(WIFEXITED(term_status) && WEXITSTATUS(term_status) == 0) << term_status;
  }
}

}  // namespace
}  // namespace afd
