// The all-in-one launcher as the README runs it: afd-up starts gateway + attention node + expert
// nodes on the default model, sends one chat request through the HTTP API, prints the reply and
// stops everything; a node that dies at startup is named with its log.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/integration/gateway/gateway_cluster.h"

namespace afd {
namespace {

// Runs a command; returns its exit status and combined output.
int RunCommand(const std::string& command, std::string* output) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof(buf), pipe)) output->append(buf, n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string Up() { return gateway_testing::BuildDir() + "/bin/afd-up"; }

TEST(AfdUpTest, StartsTheClusterAnswersOnePromptAndStops) {
  const int port = gateway_testing::FreeTcpPort();
  std::string output;
  const int status =
      RunCommand(Up() + " --experts 2 --port " + std::to_string(port) +
                     " --threads 1 --max-tokens 6 --exit-after-prompt --prompt 'Hi there'",
                 &output);
  EXPECT_EQ(status, 0) << output;
  EXPECT_NE(output.find("all 4 nodes are ready"), std::string::npos) << output;
  EXPECT_NE(output.find("http://127.0.0.1:" + std::to_string(port) + "/v1"), std::string::npos);
  EXPECT_NE(output.find("> Hi there"), std::string::npos) << output;
  EXPECT_NE(output.find("tokens in"), std::string::npos) << output;
  EXPECT_NE(output.find("afd-up: stopped"), std::string::npos) << output;
}

TEST(AfdUpTest, ANodeThatDiesAtStartupIsNamedWithItsLog) {
  // expert1 is told to host experts the model does not have: it exits while loading.
  char dir[] = "/tmp/afd-up-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string config = std::string(dir) + "/cluster.yaml";
  const int base = gateway_testing::FreeTcpPort();
  std::ofstream(config) << "model: " << gateway_testing::BuildDir() << "/models/default\n"
                        << "gateways:\n  - {name: gw0, address: 127.0.0.1:" << base
                        << ", http_listen: 127.0.0.1:" << gateway_testing::FreeTcpPort() << "}\n"
                        << "attention_nodes:\n  - {name: attn0, address: 127.0.0.1:"
                        << gateway_testing::FreeTcpPort() << ", threads: 1}\n"
                        << "expert_nodes:\n  - {name: expert0, address: 127.0.0.1:"
                        << gateway_testing::FreeTcpPort() << ", threads: 1, experts: \"all\"}\n"
                        << "  - {name: expert1, address: 127.0.0.1:"
                        << gateway_testing::FreeTcpPort()
                        << ", threads: 1, experts: \"500-600\"}\n";
  std::string output;
  const int status =
      RunCommand(Up() + " --config " + config + " --run-dir " + dir + "/run", &output);
  EXPECT_NE(status, 0) << output;
  EXPECT_NE(output.find("expert1 (expert node) exited"), std::string::npos) << output;
  EXPECT_NE(output.find(std::string(dir) + "/run/logs/expert1.log"), std::string::npos) << output;
  EXPECT_NE(output.find("stopping the other nodes"), std::string::npos) << output;
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

TEST(AfdUpTest, BadArgumentsPrintUsage) {
  std::string output;
  EXPECT_EQ(RunCommand(Up() + " --experts", &output), 2);
  output.clear();
  EXPECT_EQ(RunCommand(Up() + " --bogus", &output), 2);
  EXPECT_NE(output.find("usage: afd-up"), std::string::npos);
  output.clear();
  EXPECT_EQ(RunCommand(Up() + " --help", &output), 0);
  EXPECT_NE(output.find("--experts N"), std::string::npos);
}

}  // namespace
}  // namespace afd
