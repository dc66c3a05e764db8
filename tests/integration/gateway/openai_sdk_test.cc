// Runs openai_sdk_test.mjs (the official `openai` npm package) against a running cluster on the
// default model, and checks that the tool-call round trip's prompt is the reference rendering of
// the chat fixture `tool_call_simple`.
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "gateway/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/gateway/gateway_cluster.h"

namespace afd {
namespace {

TEST(OpenAiSdkTest, OfficialClientDrivesTheGateway) {
  const std::string prefix = gateway_testing::BuildDir() + "/npm/openai-sdk";
  if (!std::ifstream(prefix + "/node_modules/openai/package.json")) {
    GTEST_SKIP() << "the openai npm package is not installed in " << prefix
                 << " (the openai_sdk_install fixture needs the npm registry)";
  }
  const std::string model_dir = gateway_testing::BuildDir() + "/models/default";
  gateway_testing::ClusterSpec spec;
  spec.model_dir = model_dir;
  spec.expert_nodes = 2;
  spec.kv_blocks = 512;
  spec.gateway_args = {"--enable-forced-output", "--api-key", "test-key"};
  absl::StatusOr<std::unique_ptr<gateway_testing::GatewayCluster>> cluster =
      gateway_testing::GatewayCluster::Start(spec);
  ASSERT_TRUE(cluster.ok()) << cluster.status();

  const std::string script =
      std::string(AFD_SOURCE_DIR) + "/tests/integration/gateway/openai_sdk_test.mjs";
  const std::string command =
      "AFD_BASE_URL=http://127.0.0.1:" + std::to_string((*cluster)->http_port()) +
      "/v1 AFD_API_KEY=test-key AFD_MODEL=default AFD_OPENAI_PREFIX='" + prefix +
      "' AFD_TEST_DATA='" + gateway_testing::TestDataDir() + "' node '" + script + "' 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof(buf), pipe)) output.append(buf, n);
  const int status = pclose(pipe);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output << "\n"
                                                             << (*cluster)->Log("gw0");

  const std::string last = output.substr(output.rfind('{'));
  const nlohmann::json results = nlohmann::json::parse(last, nullptr, false);
  ASSERT_TRUE(results.is_object()) << output;
  EXPECT_EQ(results["ok"], true);

  // The round trip's prompt: the reference (Jinja) rendering of the same conversation.
  std::ifstream in(gateway_testing::TestDataDir() + "/chat/golden.json");
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json fixtures = nlohmann::json::parse(text.str(), nullptr, false);
  std::string reference;
  for (const auto& c : fixtures["cases"]) {
    if (c["name"] == "tool_call_simple") reference = c["prompt"].get<std::string>();
  }
  ASSERT_FALSE(reference.empty());
  absl::StatusOr<std::unique_ptr<gateway::Tokenizer>> tokenizer =
      gateway::Tokenizer::LoadFromDirectory(model_dir);
  ASSERT_TRUE(tokenizer.ok());
  EXPECT_EQ(results["round_trip_prompt_tokens"], (*tokenizer)->Encode(reference)->size());
}

}  // namespace
}  // namespace afd
