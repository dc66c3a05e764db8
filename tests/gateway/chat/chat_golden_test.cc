// Golden test: every conversation of tests/data/chat/golden.json (rendered by Python Jinja2 from
// the MiniMax-M2 template) renders byte-identical, also as segments and with tool-call arguments
// given as OpenAI JSON strings; every error case is rejected.
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gateway/chat/chat_template.h"
#include "gateway/chat/py_json.h"
#include "gtest/gtest.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;

class ChatGoldenTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* data = std::getenv("AFD_TEST_DATA");
    ASSERT_NE(data, nullptr) << "AFD_TEST_DATA is not set (run through ctest)";
    std::ifstream in(std::string(data) + "/chat/golden.json", std::ios::binary);
    ASSERT_TRUE(in) << "cannot read chat/golden.json";
    std::stringstream ss;
    ss << in.rdbuf();
    absl::StatusOr<Json> doc = ParseJsonExact(ss.str());
    ASSERT_TRUE(doc.ok()) << doc.status();
    golden_ = new Json(*std::move(doc));
  }
  static void TearDownTestSuite() {
    delete golden_;
    golden_ = nullptr;
  }
  static const Json& Cases() { return (*golden_)["cases"]; }
  static const Json& ErrorCases() { return (*golden_)["error_cases"]; }

  static Json* golden_;
};

Json* ChatGoldenTest::golden_ = nullptr;

TEST_F(ChatGoldenTest, HasAllCases) {
  EXPECT_EQ(Cases().size(), 45u);
  EXPECT_EQ(ErrorCases().size(), 2u);
}

TEST_F(ChatGoldenTest, EveryCaseRendersByteIdentical) {
  for (const Json& c : Cases()) {
    SCOPED_TRACE(c["name"].get<std::string>());
    absl::StatusOr<std::string> prompt =
        RenderChatPrompt(c["messages"], c["tools"], c["add_generation_prompt"].get<bool>());
    ASSERT_TRUE(prompt.ok()) << prompt.status();
    EXPECT_EQ(*prompt, c["prompt"].get<std::string>());
  }
}

TEST_F(ChatGoldenTest, SegmentsConcatenateToTheGoldenPrompt) {
  for (const Json& c : Cases()) {
    SCOPED_TRACE(c["name"].get<std::string>());
    absl::StatusOr<std::vector<PromptSegment>> segments =
        RenderChatPromptSegments(c["messages"], c["tools"], c["add_generation_prompt"].get<bool>());
    ASSERT_TRUE(segments.ok()) << segments.status();
    std::string joined;
    for (size_t i = 0; i < segments->size(); ++i) {
      const PromptSegment& s = (*segments)[i];
      EXPECT_FALSE(s.text.empty());
      if (i > 0) {
        EXPECT_NE(s.is_trusted_markup, (*segments)[i - 1].is_trusted_markup);
      }
      joined += s.text;
    }
    EXPECT_EQ(joined, c["prompt"].get<std::string>());
    ASSERT_FALSE(segments->empty());
    EXPECT_TRUE(segments->front().is_trusted_markup);
    EXPECT_EQ(segments->front().text.rfind("]~!b[]~b]system\n", 0), 0u);
  }
}

// The OpenAI wire format sends arguments as a JSON string; parsing it must give the same prompt.
TEST_F(ChatGoldenTest, ArgumentsAsJsonStringsRenderTheSame) {
  int converted = 0;
  for (const Json& c : Cases()) {
    Json messages = c["messages"];
    bool any = false;
    for (Json& m : messages) {
      if (!m.contains("tool_calls")) continue;
      for (Json& call : m["tool_calls"]) {
        Json& args = call["function"]["arguments"];
        args = PyJsonDumps(args);
        any = true;
      }
    }
    if (!any) continue;
    ++converted;
    SCOPED_TRACE(c["name"].get<std::string>());
    absl::StatusOr<std::string> prompt =
        RenderChatPrompt(messages, c["tools"], c["add_generation_prompt"].get<bool>());
    ASSERT_TRUE(prompt.ok()) << prompt.status();
    EXPECT_EQ(*prompt, c["prompt"].get<std::string>());
  }
  EXPECT_GE(converted, 10);
}

TEST_F(ChatGoldenTest, EveryErrorCaseIsRejectedWithTheTemplateMessage) {
  for (const Json& c : ErrorCases()) {
    SCOPED_TRACE(c["name"].get<std::string>());
    absl::StatusOr<std::string> prompt =
        RenderChatPrompt(c["messages"], c["tools"], c["add_generation_prompt"].get<bool>());
    ASSERT_FALSE(prompt.ok());
    EXPECT_EQ(prompt.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(prompt.status().message().find(c["error"].get<std::string>()), std::string::npos)
        << prompt.status();
  }
}

}  // namespace
}  // namespace afd::gateway
