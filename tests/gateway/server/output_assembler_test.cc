// Canned model outputs through the detokenizer and the MiniMax-M2 parsers, token by token, as
// the gateway assembles them for non-streaming and streaming responses.
#include "gateway/server/output_assembler.h"

#include <string>
#include <vector>

#include "gateway/parsing/tool_schemas.h"
#include "gateway/tokenizer/utf8.h"
#include "gtest/gtest.h"
#include "tests/gateway/server/gateway_test_util.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;

const char kToolOutput[] =
    "Need data.\n</think>\n\nChecking.\n<minimax:tool_call>\n<invoke name=\"get_weather\">\n"
    "<parameter name=\"city\">Paris</parameter>\n<parameter name=\"days\">3</parameter>\n"
    "</invoke>\n</minimax:tool_call>";

Json WeatherTools() {
  return Json::parse(R"([{"type": "function", "function": {"name": "get_weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"},
      "days": {"type": "integer"}}}}}])");
}

// Everything a stream sent, concatenated.
struct Collected {
  std::string content, reasoning;
  std::vector<std::string> ids, names, arguments;
  size_t logprobs = 0;
  void Add(const OutputDelta& d) {
    content += d.content;
    reasoning += d.reasoning;
    logprobs += d.logprobs.size();
    for (const ToolCallDelta& c : d.tool_calls) {
      if (static_cast<int>(arguments.size()) <= c.index) {
        ids.resize(c.index + 1);
        names.resize(c.index + 1);
        arguments.resize(c.index + 1);
      }
      if (!c.id.empty()) ids[c.index] = c.id;
      names[c.index] += c.name;
      arguments[c.index] += c.arguments;
    }
  }
};

class OutputAssemblerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tokenizer_ = testing::MiniTokenizer();
    ASSERT_NE(tokenizer_, nullptr);
  }
  std::vector<int32_t> Ids(const std::string& text) { return *tokenizer_->Encode(text); }

  // Feeds `text`'s ids one at a time; returns what was streamed.
  Collected Stream(OutputAssembler* a, const std::string& text) {
    Collected c;
    for (int32_t id : Ids(text)) {
      c.Add(a->Feed({&id, 1}, {}));
      if (a->stopped()) break;
    }
    c.Add(a->Finish());
    return c;
  }

  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(OutputAssemblerTest, SplitModeToolCallWhole) {
  OutputOptions options;
  options.reasoning_mode = ReasoningMode::kSplit;
  options.tools = WeatherTools();
  OutputAssembler a(tokenizer_.get(), options);
  const std::vector<int32_t> ids = Ids(kToolOutput);
  EXPECT_TRUE(a.Feed(ids, {}).empty());  // non-streaming: nothing until the end
  a.Finish();
  const AssembledOutput& out = a.result();
  EXPECT_EQ(out.reasoning_content, "Need data.");
  EXPECT_EQ(out.content, "Checking.\n");
  ASSERT_EQ(out.tool_calls.size(), 1u);
  EXPECT_EQ(out.tool_calls[0].name, "get_weather");
  EXPECT_EQ(out.tool_calls[0].arguments, Json::parse(R"({"city": "Paris", "days": 3})"));
  ASSERT_EQ(out.tool_call_ids.size(), 1u);
  EXPECT_EQ(out.tool_call_ids[0].rfind("call_", 0), 0u);
  EXPECT_EQ(a.FinishReason("stop"), "tool_calls");
  EXPECT_EQ(a.completion_tokens(), static_cast<int64_t>(ids.size()));
}

TEST_F(OutputAssemblerTest, SplitModeToolCallStreamsToTheSameMessage) {
  OutputOptions options;
  options.reasoning_mode = ReasoningMode::kSplit;
  options.tools = WeatherTools();
  options.stream = true;
  OutputAssembler a(tokenizer_.get(), options);
  const Collected c = Stream(&a, kToolOutput);
  EXPECT_EQ(c.reasoning, "Need data.");
  EXPECT_EQ(c.content, "Checking.\n");
  ASSERT_EQ(c.names.size(), 1u);
  EXPECT_EQ(c.names[0], "get_weather");
  EXPECT_EQ(c.ids[0].rfind("call_", 0), 0u);
  EXPECT_EQ(Json::parse(c.arguments[0]), Json::parse(R"({"city": "Paris", "days": 3})"));
  EXPECT_EQ(a.FinishReason("stop"), "tool_calls");
}

TEST_F(OutputAssemblerTest, AppendThinkKeepsReasoningInContent) {
  OutputOptions options;
  options.reasoning_mode = ReasoningMode::kAppendThink;
  OutputAssembler whole(tokenizer_.get(), options);
  whole.Feed(Ids("Hmm.\n</think>\n\nHello!"), {});
  whole.Finish();
  EXPECT_EQ(whole.result().content, "<think>Hmm.\n</think>\n\nHello!");
  EXPECT_FALSE(whole.result().reasoning_content.has_value());

  options.stream = true;
  OutputAssembler streamed(tokenizer_.get(), options);
  const Collected c = Stream(&streamed, "Hmm.\n</think>\n\nHello!");
  EXPECT_EQ(c.content, "<think>Hmm.\n</think>\n\nHello!");
  EXPECT_EQ(c.reasoning, "");
}

TEST_F(OutputAssemblerTest, StopStringEndsTheOutputAndCountsTokensToIt) {
  OutputOptions options;
  options.chat = false;
  options.stop = {"STOP"};
  options.stream = true;
  OutputAssembler a(tokenizer_.get(), options);
  const Collected c = Stream(&a, "Hello STOP world");
  EXPECT_TRUE(a.stopped());
  EXPECT_EQ(c.content, "Hello ");
  EXPECT_EQ(a.completion_tokens(), static_cast<int64_t>(Ids("Hello STOP").size()));
  EXPECT_EQ(a.FinishReason("abort"), "stop");
}

TEST_F(OutputAssemblerTest, NamedToolChoicePrefixIsParsedFirst) {
  OutputOptions options;
  options.reasoning_mode = ReasoningMode::kSplit;
  options.tools = WeatherTools();
  options.forced_prefix = "</think>\n\n<minimax:tool_call>\n<invoke name=\"get_weather\">\n";
  const std::string generated =
      "<parameter name=\"city\">Oslo</parameter>\n</invoke>\n</minimax:tool_call>";
  OutputAssembler whole(tokenizer_.get(), options);
  whole.Feed(Ids(generated), {});
  whole.Finish();
  ASSERT_EQ(whole.result().tool_calls.size(), 1u);
  EXPECT_EQ(whole.result().tool_calls[0].arguments, Json::parse(R"({"city": "Oslo"})"));
  EXPECT_FALSE(whole.result().reasoning_content.has_value());

  options.stream = true;
  OutputAssembler streamed(tokenizer_.get(), options);
  // A response without tokens first (the prefix must still be parsed exactly once).
  Collected c;
  c.Add(streamed.Feed({}, {}));
  const Collected rest = Stream(&streamed, generated);
  c.names.insert(c.names.end(), rest.names.begin(), rest.names.end());
  for (size_t i = 0; i < rest.arguments.size(); ++i) {
    if (c.arguments.size() <= i) c.arguments.resize(i + 1);
    c.arguments[i] += rest.arguments[i];
  }
  ASSERT_EQ(rest.names.size(), 1u);
  EXPECT_EQ(rest.names[0], "get_weather");
  EXPECT_EQ(Json::parse(c.arguments[0]), Json::parse(R"({"city": "Oslo"})"));
}

TEST_F(OutputAssemblerTest, CutOffInsideAToolCallFinishesWithLength) {
  OutputOptions options;
  options.reasoning_mode = ReasoningMode::kSplit;
  options.tools = WeatherTools();
  options.stream = true;
  OutputAssembler a(tokenizer_.get(), options);
  Stream(&a,
         "ok\n</think>\n<minimax:tool_call>\n<invoke name=\"get_weather\">\n"
         "<parameter name=\"city\">Paris</parameter>\n<parameter name=\"days\">");
  EXPECT_TRUE(a.finished_inside_tool_call());
  EXPECT_EQ(a.FinishReason("length"), "length");
}

TEST_F(OutputAssemblerTest, CompletionTextIsNotParsedAndSpecialTokensAreSkipped) {
  OutputOptions options;
  options.chat = false;
  OutputAssembler a(tokenizer_.get(), options);
  std::vector<int32_t> ids = Ids("<think>x</think>");
  ids.push_back(testing::kEndId);
  a.Feed(ids, {});
  a.Finish();
  EXPECT_EQ(a.result().text, "<think>x</think>");
  EXPECT_EQ(a.FinishReason("stop"), "stop");
}

TEST_F(OutputAssemblerTest, StreamedTextNeverSplitsUtf8) {
  OutputOptions options;
  options.chat = false;
  options.stream = true;
  OutputAssembler a(tokenizer_.get(), options);
  std::string all;
  for (int32_t id : Ids("é😀ü")) {  // byte tokens: every character spans several ids
    const OutputDelta d = a.Feed({&id, 1}, {});
    EXPECT_TRUE(IsValidUtf8(d.content)) << d.content;
    all += d.content;
  }
  all += a.Finish().content;
  EXPECT_EQ(all, "é😀ü");
}

TEST_F(OutputAssemblerTest, LogprobsFollowTheKeptTokens) {
  OutputOptions options;
  options.chat = false;
  options.stop = {"b"};
  OutputAssembler a(tokenizer_.get(), options);
  const std::vector<int32_t> ids = Ids("abc");
  std::vector<TokenLogprobEntry> logprobs(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) logprobs[i] = {ids[i], -0.5f * i, {}};
  a.Feed(ids, logprobs);
  a.Finish();
  EXPECT_EQ(a.result().text, "a");
  EXPECT_EQ(a.result().logprobs.size(), 2u);  // "a" and the token completing the stop string
  EXPECT_EQ(a.completion_tokens(), 2);
}

}  // namespace
}  // namespace afd::gateway
