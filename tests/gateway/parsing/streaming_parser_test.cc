// Streaming parser (PARSING.md §6): for realistic outputs and each edge case, every byte-level
// cutting streams to the non-streaming result; arguments stream per parameter; markers split across
// chunks are held back; cut-off invokes leave unclosed arguments; and a seeded differential test
// against ParseModelOutput over generated texts.
#include "gateway/parsing/streaming_parser.h"

#include <random>
#include <string>
#include <vector>

#include "gateway/chat/py_json.h"
#include "gateway/parsing/output_parser.h"
#include "gateway/parsing/parser_conformance.h"
#include "gtest/gtest.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;
using Kind = StreamEvent::Kind;

const char* kTools = R"([
  {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                   "units": {"enum": ["celsius", "fahrenheit"]}}}}},
  {"type": "function", "function": {"name": "write_file", "parameters": {"type": "object",
    "properties": {"path": {"type": "string"}, "content": {"type": "string"},
                   "overwrite": {"type": "boolean"}, "meta": {"type": "object"}}}}}])";

bool IsValidUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

std::vector<StreamEvent> StreamAll(const std::vector<std::string>& chunks, ReasoningMode mode,
                                   const char* tools, bool* inside_call = nullptr) {
  StreamingOutputParser parser(mode, ToolSchemas(Json::parse(tools)));
  std::vector<StreamEvent> events;
  for (const std::string& chunk : chunks) {
    for (StreamEvent& e : parser.Feed(chunk)) events.push_back(std::move(e));
  }
  for (StreamEvent& e : parser.Finish()) events.push_back(std::move(e));
  if (inside_call != nullptr) *inside_call = parser.finished_inside_tool_call();
  return events;
}

// Events as one comparable line: kind:index:text joined.
std::string Concat(const std::vector<StreamEvent>& events) {
  std::string content, reasoning, calls;
  for (const StreamEvent& e : events) {
    if (e.kind == Kind::kContent) content += e.text;
    if (e.kind == Kind::kReasoning) reasoning += e.text;
    if (e.kind == Kind::kToolCallName)
      calls += "|" + std::to_string(e.tool_call_index) + "=" + e.text;
    if (e.kind == Kind::kToolCallArguments) calls += e.text;
  }
  return "C[" + content + "] R[" + reasoning + "] T[" + calls + "]";
}

// Checks that every two-chunk byte cutting and the one-byte-per-chunk cutting stream to the
// non-streaming result, with each event valid UTF-8.
void ExpectEveryByteCutMatches(const std::string& text, ReasoningMode mode, const char* tools) {
  SCOPED_TRACE(text);
  ParserCase c;
  c.name = "edge";
  c.mode = mode;
  c.tools = Json::parse(tools);
  c.text = text;
  c.expected = ParsedOutputToJson(ParseModelOutput(text, mode, ToolSchemas(c.tools)));
  std::vector<std::vector<std::string>> cuttings;
  cuttings.push_back({text});
  for (size_t k = 1; k < text.size(); ++k) cuttings.push_back(CutText(text, {k}));
  std::vector<std::string> bytes;
  for (char ch : text) bytes.emplace_back(1, ch);
  cuttings.push_back(bytes);
  for (const std::vector<std::string>& chunks : cuttings) {
    const std::vector<std::string> errors = CheckStreamedChunks(c, chunks);
    ASSERT_TRUE(errors.empty()) << "first chunk " << chunks.front().size()
                                << " bytes: " << errors.front();
    const bool splits_utf8 =
        chunks.size() > 2 || (chunks.size() == 2 && !chunks[1].empty() &&
                              (static_cast<unsigned char>(chunks[1][0]) & 0xC0) == 0x80);
    if (!splits_utf8) continue;
    for (const StreamEvent& e : StreamAll(chunks, mode, tools)) {
      ASSERT_TRUE(IsValidUtf8(e.text)) << "event splits a UTF-8 sequence: " << e.text;
    }
  }
}

const std::string kCall =
    "<invoke name=\"get_weather\">\n<parameter name=\"city\">Zürich</parameter>\n"
    "<parameter name=\"days\">3</parameter>\n<parameter name=\"units\">celsius</parameter>\n"
    "</invoke>";

TEST(StreamingParserTest, RealisticOutputsStreamToTheNonStreamingResultAtEveryByteCut) {
  const std::vector<std::string> texts = {
      "The user greets me.\n</think>\n\nHello! 👋 How can I help?",
      "Weather needed.\n</think>\n\nLet me check.\n<minimax:tool_call>\n" + kCall +
          "\n</minimax:tool_call>",
      "Write it.\n</think>\n\n<minimax:tool_call>\n<invoke name=\"write_file\">\n"
      "<parameter name=\"path\">a.py</parameter>\n<parameter name=\"content\">\n"
      "def f():\n    return \"</parameter>\"\n\n</parameter>\n"
      "<parameter name=\"overwrite\">yes</parameter>\n"
      "<parameter name=\"meta\">{\"mode\": 420, \"tags\": [\"x\", 1.0]}</parameter>\n</invoke>\n"
      "</minimax:tool_call>\nSaved.",
      "Two.\n</think>\n\n<minimax:tool_call>\n" + kCall + "\n" + kCall +
          "\n</minimax:tool_call>\nthen\n<minimax:tool_call>\n" + kCall + "\n</minimax:tool_call>",
  };
  for (const std::string& text : texts) {
    ExpectEveryByteCutMatches(text, ReasoningMode::kSplit, kTools);
    ExpectEveryByteCutMatches(text, ReasoningMode::kAppendThink, kTools);
    ExpectEveryByteCutMatches(text, ReasoningMode::kSplit, "null");
  }
}

TEST(StreamingParserTest, EdgeCasesStreamToTheNonStreamingResultAtEveryByteCut) {
  const std::vector<std::string> texts = {
      "",
      "\n\n<think>\n\nreasoning\n\n",   // cut off while thinking
      "<thi",                           // a reasoning start that never became <think>
      "abc\n</thi",                     // a partial marker at the end
      "  \n</think>\n\n  \n",           // blank reasoning and content
      "r</think>\n\n    indented\n\n",  // content keeps spaces and trailing newlines
      "r</think><minimax:tool_call>\nNo tool fits.\n</minimax:tool_call>",
      "r</think>Done.</minimax:tool_call><minimax:tool_c",
      "r</think><minimax:tool_call>\n" + kCall + "\n",                // unclosed, blank tail
      "r</think><minimax:tool_call>\n" + kCall + "\ntrailing words",  // unclosed tail
      "r</think><minimax:tool_call>\n gap \n<invoke name=\"\"></invoke>\n" + kCall +
          "</minimax:tool_call>",  // empty name
      "r</think><minimax:tool_call><invoke name=\"get_time\">\n</invoke></minimax:tool_call>",
      "r</think><minimax:tool_call><invoke name=\"get_weather\"><parameter name=\"city\">"
      "a</parameter>b</parameter> \t\n</invoke></minimax:tool_call>",  // close tag in value
      "r</think><minimax:tool_call><invoke name=\"get_weather\"><parameter name=\"city\">"
      "<parameter name=\"x\"></invoke></minimax:tool_call></parameter></invoke>"
      "</minimax:tool_call>",  // markup in value
      "r</think><minimax:tool_call><invoke name=\"get_weather\">\n<parameter name=\"city\">Paris"
      "</parameter>\nthanks\n</invoke>\n</minimax:tool_call>",  // stray text
      "r</think><invoke name=\"get_weather\"></invoke>",        // no block
      "I could call <minimax:tool_call>" + kCall + "</minimax:tool_call>\n</think>\n\nNo.",
  };
  for (const std::string& text : texts) {
    ExpectEveryByteCutMatches(text, ReasoningMode::kSplit, kTools);
    ExpectEveryByteCutMatches(text, ReasoningMode::kAppendThink, kTools);
  }
}

TEST(StreamingParserTest, ArgumentsStreamAsEachParameterIsConfirmed) {
  StreamingOutputParser parser(ReasoningMode::kSplit, ToolSchemas(Json::parse(kTools)));
  EXPECT_EQ(
      Concat(parser.Feed("r</think>\n\nOK.\n<minimax:tool_call>\n<invoke name=\"get_weather\">"
                         "\n<parameter name=\"city\">Paris</parameter>\n<parameter na")),
      "C[OK.\n] R[r] T[]");
  // `<parameter name=` confirms city; the name goes out with its first fragment.
  EXPECT_EQ(Concat(parser.Feed("me=\"days\">3</parameter")),
            "C[] R[] T[|0=get_weather{\"city\": \"Paris\"]");
  EXPECT_EQ(Concat(parser.Feed(">\n</inv")), "C[] R[] T[]");
  EXPECT_EQ(Concat(parser.Feed("oke>")), "C[] R[] T[, \"days\": 3}]");
  EXPECT_EQ(Concat(parser.Feed("\n</minimax:tool_call>")), "C[] R[] T[]");
  EXPECT_EQ(Concat(parser.Finish()), "C[] R[] T[]");
  EXPECT_FALSE(parser.finished_inside_tool_call());
  EXPECT_EQ(parser.tool_calls_started(), 1);
}

TEST(StreamingParserTest, HoldsBackWhatMayStillChange) {
  StreamingOutputParser parser(ReasoningMode::kSplit, ToolSchemas(Json::parse(kTools)));
  EXPECT_EQ(Concat(parser.Feed("\n<thi")), "C[] R[] T[]");            // may become <think>
  EXPECT_EQ(Concat(parser.Feed("nk>\n  ")), "C[] R[] T[]");           // blank so far
  EXPECT_EQ(Concat(parser.Feed("plan\n\n")), "C[] R[  plan] T[]");    // trailing \n held
  EXPECT_EQ(Concat(parser.Feed("more</th")), "C[] R[\n\nmore] T[]");  // partial marker held
  EXPECT_EQ(Concat(parser.Feed("ink>\n\n \t")), "C[] R[] T[]");       // blank content held
  EXPECT_EQ(Concat(parser.Feed("x<minimax:tool")), "C[ \tx] R[] T[]");
  EXPECT_EQ(Concat(parser.Feed("_call>gap")), "C[] R[] T[]");  // block gaps held
  EXPECT_EQ(Concat(parser.Finish()), "C[<minimax:tool_call>gap] R[] T[]");
}

TEST(StreamingParserTest, CutOffInvokeLeavesUnclosedArguments) {
  bool inside = false;
  const std::vector<StreamEvent> events = StreamAll(
      {"r</think><minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"city\">Paris"
       "</parameter>\n<parameter name=\"days\">3"},
      ReasoningMode::kSplit, kTools, &inside);
  EXPECT_TRUE(inside);
  EXPECT_EQ(Concat(events), "C[] R[r] T[|0=get_weather{\"city\": \"Paris\"]");
}

TEST(StreamingParserTest, InvokeCutBeforeItsFirstParameterIsText) {
  bool inside = true;
  const std::string block =
      "<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"city\">Par";
  EXPECT_EQ(Concat(StreamAll({"r</think>", block}, ReasoningMode::kSplit, kTools, &inside)),
            "C[" + block + "] R[r] T[]");
  EXPECT_FALSE(inside);
}

TEST(StreamingParserTest, SplitUtf8SequencesAreNeverEmittedHalfway) {
  const std::string text = "é</think>\n\n日本";
  StreamingOutputParser parser(ReasoningMode::kSplit, ToolSchemas());
  std::string all;
  for (char ch : text) {
    for (const StreamEvent& e : parser.Feed(std::string(1, ch))) {
      EXPECT_TRUE(IsValidUtf8(e.text));
      all += e.text;
    }
  }
  for (const StreamEvent& e : parser.Finish()) all += e.text;
  EXPECT_EQ(all, "é日本");
}

TEST(StreamingParserTest, EmptyChunksAndCallsAfterFinishEmitNothing) {
  StreamingOutputParser parser(ReasoningMode::kAppendThink, ToolSchemas());
  EXPECT_TRUE(parser.Feed("").empty());
  EXPECT_EQ(Concat(parser.Feed("a")), "C[<think>a] R[] T[]");
  EXPECT_TRUE(parser.Feed("").empty());
  EXPECT_EQ(Concat(parser.Finish()), "C[] R[] T[]");
  EXPECT_TRUE(parser.Feed("more").empty());
  EXPECT_TRUE(parser.Finish().empty());
}

const std::vector<std::string>& Pieces() {
  static const std::vector<std::string> kPieces = {"</think>",
                                                   "<think>",
                                                   "\n",
                                                   "\n\n",
                                                   " ",
                                                   "\t",
                                                   "text",
                                                   "é",
                                                   "🙂",
                                                   "<minimax:tool_call>",
                                                   "</minimax:tool_call>",
                                                   "<invoke name=\"get_weather\">",
                                                   "<invoke name=\"\">",
                                                   "<invoke name='write_file'>",
                                                   "<invoke name=x>",
                                                   "</invoke>",
                                                   "<parameter name=\"city\">",
                                                   "<parameter name=\"days\">",
                                                   "<parameter name=\"overwrite\">",
                                                   "<parameter name=meta>",
                                                   "</parameter>",
                                                   "3",
                                                   "yes",
                                                   "{\"a\": [1, 2.0]}",
                                                   "null",
                                                   "<",
                                                   "</",
                                                   "<minimax:tool_",
                                                   "</param",
                                                   "<parameter name=",
                                                   ">",
                                                   "\"",
                                                   "'"};
  return kPieces;
}

// Texts assembled from markup fragments, partial markers, whitespace and words.
std::string RandomText(std::mt19937_64& rng) {
  std::string text;
  const size_t n = rng() % 40;
  for (size_t i = 0; i < n; ++i) text += Pieces()[rng() % Pieces().size()];
  return text;
}

// A well-formed output (reasoning, content, blocks of invokes), then maybe cut off at a random
// point and/or with a random fragment inserted.
std::string StructuredText(std::mt19937_64& rng) {
  static const std::vector<std::string> kNames = {"get_weather", "write_file", "\"get_weather\"",
                                                  " 'x' ", ""};
  static const std::vector<std::string> kKeys = {"city", "days", "overwrite", "meta", "\"k\""};
  static const std::vector<std::string> kValues = {
      "Paris", "3",      "\n  code </parameter> here\n", "yes", "{\"a\": 1}", "",
      "null",  "é🙂", "<parameter name=\"z\">"};
  std::string text = rng() % 4 ? "thinking\n" : "";
  if (rng() % 5) text += "</think>\n\n";
  if (rng() % 2) text += "Sure.\n";
  const int blocks = static_cast<int>(rng() % 3);
  for (int b = 0; b < blocks; ++b) {
    text += "<minimax:tool_call>\n";
    const int invokes = static_cast<int>(rng() % 3);
    for (int i = 0; i < invokes; ++i) {
      text += "<invoke name=" + kNames[rng() % kNames.size()] + ">\n";
      const int params = static_cast<int>(rng() % 4);
      for (int p = 0; p < params; ++p) {
        text += "<parameter name=" + kKeys[rng() % kKeys.size()] + ">" +
                kValues[rng() % kValues.size()] + "</parameter>" + (rng() % 2 ? "\n" : "");
      }
      text += "</invoke>\n";
    }
    text += "</minimax:tool_call>";
    if (rng() % 2) text += "\nMore text.";
  }
  if (rng() % 3 == 0) {
    const std::vector<size_t> b = CodePointBoundaries(text);
    if (!b.empty()) text.insert(b[rng() % b.size()], Pieces()[rng() % Pieces().size()]);
  }
  if (rng() % 2) {
    const std::vector<size_t> b = CodePointBoundaries(text);
    if (!b.empty()) text.resize(b[rng() % b.size()]);
  }
  return text;
}

#ifdef __SANITIZE_ADDRESS__
constexpr int kGeneratedTexts = 1000;  // the sanitizer build is ~10x slower
#else
constexpr int kGeneratedTexts = 4000;
#endif

TEST(StreamingParserTest, MatchesNonStreamingOnGeneratedTexts) {
  std::mt19937_64 rng(7);
  int compared = 0;
  int cut_inside = 0;
  for (int iter = 0; iter < kGeneratedTexts; ++iter) {
    const std::string text = iter % 3 ? StructuredText(rng) : RandomText(rng);
    const ReasoningMode mode = iter % 2 ? ReasoningMode::kSplit : ReasoningMode::kAppendThink;
    const char* tools = iter % 7 == 0 ? "null" : kTools;
    SCOPED_TRACE(text);
    bool inside = false;
    const std::vector<StreamEvent> whole = StreamAll({text}, mode, tools, &inside);
    // The same events for a random cutting.
    const std::vector<size_t> boundaries = CodePointBoundaries(text);
    std::vector<size_t> cuts;
    for (size_t b : boundaries) {
      if (rng() % 3 == 0) cuts.push_back(b);
    }
    bool inside_cut = false;
    ASSERT_EQ(Concat(StreamAll(CutText(text, cuts), mode, tools, &inside_cut)), Concat(whole));
    ASSERT_EQ(inside_cut, inside);

    ParserCase c;
    c.name = "generated";
    c.mode = mode;
    c.tools = Json::parse(tools);
    c.text = text;
    c.expected = ParsedOutputToJson(ParseModelOutput(text, mode, ToolSchemas(c.tools)));
    c.cut_inside_invoke = inside;
    if (inside) {  // the started call is the last one; its name is checked across cuttings above
      for (const StreamEvent& e : whole) {
        if (e.kind == Kind::kToolCallName) c.cut_off_call_name = e.text;
      }
    }
    const std::vector<std::string> errors = CheckStreamedChunks(c, CutText(text, cuts));
    ASSERT_TRUE(errors.empty()) << errors.front();
    if (inside) {
      ++cut_inside;
    } else {
      ++compared;
    }
  }
  EXPECT_GT(compared, kGeneratedTexts / 2);
  EXPECT_GT(cut_inside, kGeneratedTexts / 80);
}

}  // namespace
}  // namespace afd::gateway
