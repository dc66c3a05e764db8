// Non-streaming parsing of MiniMax-M2 output (PARSING.md §2-§4): reasoning modes, blocks, gaps,
// values containing markup, truncated and malformed output (the §4 table), names.
#include "gateway/parsing/output_parser.h"

#include <string>

#include "gateway/chat/py_json.h"
#include "gtest/gtest.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;

const char* kWeatherTools = R"([{"type": "function", "function": {"name": "get_weather",
  "parameters": {"type": "object", "properties": {"city": {"type": "string"},
  "days": {"type": "integer"}}}}}])";

// The result as one JSON line: {"content", "reasoning_content", "tool_calls": [[name, args]]}.
std::string Parse(const std::string& text, ReasoningMode mode = ReasoningMode::kSplit,
                  const char* tools = kWeatherTools) {
  const ParsedOutput out = ParseModelOutput(text, mode, ToolSchemas(Json::parse(tools)));
  Json calls = Json::array();
  for (const ParsedToolCall& c : out.tool_calls)
    calls.push_back(Json::array({c.name, c.arguments}));
  Json j = Json::object();
  j["content"] = out.content.has_value() ? Json(*out.content) : Json(nullptr);
  j["reasoning_content"] =
      out.reasoning_content.has_value() ? Json(*out.reasoning_content) : Json(nullptr);
  j["tool_calls"] = calls;
  return PyJsonDumps(j);
}

std::string Result(const Json& content, const Json& reasoning, const Json& calls = Json::array()) {
  Json j = Json::object();
  j["content"] = content;
  j["reasoning_content"] = reasoning;
  j["tool_calls"] = calls;
  return PyJsonDumps(j);
}

const std::string kInvoke =
    "<invoke name=\"get_weather\">\n<parameter name=\"city\">Paris</parameter>\n"
    "<parameter name=\"days\">3</parameter>\n</invoke>";
const Json kCall = Json::array({"get_weather", {{"city", "Paris"}, {"days", 3}}});

TEST(OutputParserTest, SpecExample) {
  EXPECT_EQ(Parse("Need data.\n</think>\n\nChecking.\n<minimax:tool_call>\n" + kInvoke +
                  "\n</minimax:tool_call>\nDone."),
            Result("Checking.\n\nDone.", "Need data.", Json::array({kCall})));
}

TEST(OutputParserTest, SplitReasoningTrimsOnlyNewlinesAndOneThinkTag) {
  EXPECT_EQ(Parse("\n<think>\n\n  r  \n\n</think>\n\n  c \n"), Result("  c \n", "  r  "));
  EXPECT_EQ(Parse("<think><think>x</think>y"), Result("y", "<think>x"));
  EXPECT_EQ(Parse(" \t\n</think>\n\n"), Result(nullptr, nullptr));
  EXPECT_EQ(Parse("cut off while thinking\n"), Result(nullptr, "cut off while thinking"));
  EXPECT_EQ(Parse("a</think>b</think>c"), Result("b</think>c", "a"));
  EXPECT_EQ(Parse(""), Result(nullptr, nullptr));
}

TEST(OutputParserTest, AppendThinkKeepsTheReasoningInContent) {
  EXPECT_EQ(Parse("r\n</think>\n\nc", ReasoningMode::kAppendThink),
            Result("<think>r\n</think>\n\nc", nullptr));
  EXPECT_EQ(Parse("", ReasoningMode::kAppendThink), Result("<think>", nullptr));
  EXPECT_EQ(Parse("no end <minimax:tool_call>\n" + kInvoke, ReasoningMode::kAppendThink),
            Result("<think>no end <minimax:tool_call>\n" + kInvoke, nullptr));
  EXPECT_EQ(Parse("r</think>\n<minimax:tool_call>\n" + kInvoke + "\n</minimax:tool_call>\n",
                  ReasoningMode::kAppendThink),
            Result("<think>r</think>\n\n", nullptr, Json::array({kCall})));
}

TEST(OutputParserTest, NoToolsMeansEverythingIsContent) {
  const std::string block = "<minimax:tool_call>\n" + kInvoke + "\n</minimax:tool_call>";
  EXPECT_EQ(Parse("r</think>" + block, ReasoningMode::kSplit, "null"), Result(block, "r"));
  EXPECT_EQ(Parse("r</think>" + block, ReasoningMode::kSplit, "[]"), Result(block, "r"));
}

TEST(OutputParserTest, TruncatedAndMalformedOutputTable) {
  const std::string open = "<minimax:tool_call>\n";
  const std::string partial =
      "Hi.\n<minimax:tool_call>\n<invoke name=\"get_weather\">\n"
      "<parameter name=\"city\">Par";
  EXPECT_EQ(Parse("r</think>" + partial), Result(partial, "r"));
  EXPECT_EQ(Parse("r</think>" + open + kInvoke + "\n"), Result(nullptr, "r", Json::array({kCall})));
  EXPECT_EQ(Parse("r</think>" + open + kInvoke + "\n<invoke name=\"get_weather\">\n<par"),
            Result("<minimax:tool_call>\n<invoke name=\"get_weather\">\n<par", "r",
                   Json::array({kCall})));
  const std::string after_close =
      open + "<invoke name=\"get_weather\">\n<parameter name=\"city\">Paris</parameter>\n";
  EXPECT_EQ(Parse("r</think>" + after_close), Result(after_close, "r"));
  const std::string stray = open +
                            "<invoke name=\"get_weather\">\n<parameter name=\"city\">Paris"
                            "</parameter>\nthanks\n</invoke>\n</minimax:tool_call>";
  EXPECT_EQ(Parse("r</think>" + stray), Result(stray, "r"));
  const std::string no_invoke = "<minimax:tool_call>\nNo tool fits.\n</minimax:tool_call>";
  EXPECT_EQ(Parse("r</think>" + no_invoke), Result(no_invoke, "r"));
  EXPECT_EQ(Parse("r</think>" + kInvoke), Result(kInvoke, "r"));
  EXPECT_EQ(Parse("r</think>Done.</minimax:tool_call>"), Result("Done.</minimax:tool_call>", "r"));
}

TEST(OutputParserTest, GapsAndTextAroundBlocks) {
  const std::string text = "r</think>A<minimax:tool_call>\n gap one \n" + kInvoke + "\n \n" +
                           kInvoke + "gap two</minimax:tool_call>B<minimax:tool_call>" + kInvoke +
                           "</minimax:tool_call>\nC";
  EXPECT_EQ(Parse(text),
            Result("A\n gap one \ngap twoB\nC", "r", Json::array({kCall, kCall, kCall})));
}

TEST(OutputParserTest, EmptyNameInvokeIsGapText) {
  const std::string empty = "<invoke name=\"\">\n<parameter name=\"x\">1</parameter>\n</invoke>";
  EXPECT_EQ(
      Parse("r</think><minimax:tool_call>\n" + empty + "\n" + kInvoke + "\n</minimax:tool_call>"),
      Result("\n" + empty + "\n", "r", Json::array({kCall})));
  // A second block marker and a two-space invoke are gap text too.
  EXPECT_EQ(Parse("r</think><minimax:tool_call><minimax:tool_call><invoke  name=\"x\">" + kInvoke +
                  "</minimax:tool_call>"),
            Result("<minimax:tool_call><invoke  name=\"x\">", "r", Json::array({kCall})));
}

TEST(OutputParserTest, ParameterCloseInsideValues) {
  const std::string call =
      "<invoke name=\"w\">\n<parameter name=\"code\">\na</parameter>b\n</parameter>  \t\n"
      "<parameter name=\"n\">x</parameter></invoke>";
  EXPECT_EQ(Parse("r</think><minimax:tool_call>" + call + "</minimax:tool_call>"),
            Result(nullptr, "r",
                   Json::array({Json::array({"w", {{"code", "a</parameter>b"}, {"n", "x"}}})})));
  // `</parameter>` followed by whitespace and then the end of text: incomplete.
  const std::string open =
      "<minimax:tool_call><invoke name=\"w\"><parameter name=\"v\">1</parameter> \n";
  EXPECT_EQ(Parse("r</think>" + open), Result(open, "r"));
}

TEST(OutputParserTest, NamesAreTrimmedAndUnquoted) {
  const std::string call =
      "<minimax:tool_call><invoke name= ' get_weather ' ><parameter name=\"x'>v</parameter>"
      "<parameter name=  days>4</parameter></invoke></minimax:tool_call>";
  EXPECT_EQ(Parse("r</think>" + call),
            Result(nullptr, "r",
                   Json::array({Json::array({"get_weather", {{"\"x'", "v"}, {"days", 4}}})})));
}

TEST(OutputParserTest, RepeatedKeyKeepsFirstPositionAndLastValue) {
  const std::string call =
      "<minimax:tool_call><invoke name=\"get_weather\"><parameter name=\"city\">A</parameter>"
      "<parameter name=\"days\">1</parameter><parameter name=\"city\">B</parameter></invoke>"
      "</minimax:tool_call>";
  EXPECT_EQ(Parse("r</think>" + call),
            Result(nullptr, "r",
                   Json::array({Json::array({"get_weather", {{"city", "B"}, {"days", 1}}})})));
}

TEST(OutputParserTest, ArgumentsJsonUsesPythonSeparators) {
  Json args = {{"city", "Paris"}, {"days", 3}, {"ratio", 2.0}};
  EXPECT_EQ(ToolArgumentsJson(args), R"({"city": "Paris", "days": 3, "ratio": 2.0})");
  EXPECT_EQ(ToolArgumentsJson(Json::object()), "{}");
}

TEST(OutputParserTest, ReasoningModeNames) {
  EXPECT_EQ(*ParseReasoningMode("split"), ReasoningMode::kSplit);
  EXPECT_EQ(*ParseReasoningMode("append_think"), ReasoningMode::kAppendThink);
  EXPECT_EQ(ParseReasoningMode("deepseek").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace afd::gateway
