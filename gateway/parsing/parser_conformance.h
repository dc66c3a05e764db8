// Conformance check of the output parsers against golden cases (tests/data/parsing/golden.json
// format): the non-streaming result, and the streaming check of tests/data/parsing/README.md (whole
// text, every single cut, one code point per chunk, seeded random cuttings). Used by
// afd-eval-parser and the golden tests. Stateless free functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "gateway/parsing/output_parser.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {

struct ParserCase {
  std::string name;
  ReasoningMode mode = ReasoningMode::kSplit;
  nlohmann::ordered_json tools;  // null or the OpenAI tools list
  std::string text;
  // {"content": str|null, "reasoning_content": str|null, "tool_calls": [{"name", "arguments"}]}
  nlohmann::ordered_json expected;
  bool cut_inside_invoke = false;  // the text ends inside an invoke
  // Name the cut-off call must have when streamed; nullopt: the last `<invoke name=…>` tag's.
  std::optional<std::string> cut_off_call_name;
};

// Reads the "cases" of a golden document; INVALID_ARGUMENT naming the first malformed case.
absl::StatusOr<std::vector<ParserCase>> LoadParserCases(const nlohmann::ordered_json& doc);

// JSON equality that tells integers from floats (3 != 3.0), compares doubles exactly, treats
// signed and unsigned integers alike, and requires object keys in the same order.
bool ExactJsonEqual(const nlohmann::ordered_json& a, const nlohmann::ordered_json& b);

// A parse result as the golden "expected" object.
nlohmann::ordered_json ParsedOutputToJson(const ParsedOutput& output);

// Chunks of `text` cut at the given byte offsets (ascending, inside the text).
std::vector<std::string> CutText(std::string_view text, const std::vector<size_t>& cuts);

// Byte offsets of the code-point boundaries strictly inside `text` (where cuts may fall).
std::vector<size_t> CodePointBoundaries(std::string_view text);

struct StreamCheckOptions {
  int random_cuttings = 5;  // per case, each with 1-12 cut points
  uint64_t seed = 20240611;
};

// Feeds `chunks` to a StreamingOutputParser (with an empty chunk after each one), and returns the
// mismatches between the rebuilt message and the case's expectation (per the README's rules,
// including cut_inside_invoke). Empty when it conforms.
std::vector<std::string> CheckStreamedChunks(const ParserCase& c,
                                             const std::vector<std::string>& chunks);

// The whole check of one case: non-streaming, then every cutting. Returns the mismatches, each
// prefixed with the case name and the cutting.
std::vector<std::string> CheckParserCase(const ParserCase& c, const StreamCheckOptions& options);

}  // namespace afd::gateway
