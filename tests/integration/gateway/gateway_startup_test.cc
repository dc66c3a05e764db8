// afd-gateway's startup checks of the model directory: a chat template the native renderer does
// not implement (in chat_template.jinja or tokenizer_config.json) stops the gateway with a clear
// message naming the file, instead of silently rendering the MiniMax-M2 format; the MiniMax-M2
// template itself passes the check.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/integration/gateway/gateway_cluster.h"

namespace afd {
namespace {

namespace fs = std::filesystem;

struct RunResult {
  int exit_code = -1;
  std::string output;
};

// Runs afd-gateway on `model_dir` with an attention node that is not there.
RunResult RunGateway(const std::string& model_dir) {
  const std::string command = gateway_testing::BuildDir() + "/bin/afd-gateway --model '" +
                              model_dir + "' --attention 127.0.0.1:1 --no-http --port 0 2>&1";
  RunResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) result.output.append(buf, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class GatewayStartupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/afd-gw-startup-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    // A model directory whose tokenizer.json cannot be loaded: startup fails at the tokenizer
    // unless the chat-template check, which comes first, fails before it.
    fs::copy_file(gateway_testing::TestDataDir() + "/golden/m2-tiny/config.json",
                  dir_ + "/config.json");
    std::ofstream(dir_ + "/tokenizer.json") << "{}";
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  std::string dir_;
};

TEST_F(GatewayStartupTest, UnknownChatTemplateFileStopsStartupNamingIt) {
  std::ofstream(dir_ + "/chat_template.jinja")
      << "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}";
  const RunResult r = RunGateway(dir_);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(dir_ + "/chat_template.jinja"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("not the MiniMax-M2 template"), std::string::npos) << r.output;
}

TEST_F(GatewayStartupTest, UnknownTemplateInTokenizerConfigStopsStartup) {
  std::ofstream(dir_ + "/tokenizer_config.json")
      << R"({"chat_template": "{{ bos_token }}{{ messages[0].content }}"})";
  const RunResult r = RunGateway(dir_);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("tokenizer_config.json"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("chat template"), std::string::npos) << r.output;
}

TEST_F(GatewayStartupTest, MiniMaxTemplatePassesTheCheck) {
  std::ofstream(dir_ + "/chat_template.jinja")
      << ReadFile(gateway_testing::TestDataDir() + "/chat/minimax-m2.jinja");
  const RunResult r = RunGateway(dir_);
  // It gets past the template to the (unloadable) tokenizer.
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.find("chat template"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tokenizer.json"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace afd
