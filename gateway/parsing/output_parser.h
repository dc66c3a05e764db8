// Turns a finished MiniMax-M2 generation into an OpenAI chat message: content, reasoning_content
// and typed tool calls, per shared spec PARSING.md (§2 reasoning, §3 tool calls, §4 truncated and
// malformed output, §5 argument types). Stateless free functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "gateway/parsing/tool_schemas.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {

enum class ReasoningMode {
  // reasoning_content holds the text before `</think>`; content the text after it.
  kSplit,
  // MiniMax's `minimax_m2_append_think`: no reasoning_content; content is "<think>" + the text
  // up to and including `</think>` + the content after it.
  kAppendThink,
};

// "split" or "append_think"; anything else is INVALID_ARGUMENT.
absl::StatusOr<ReasoningMode> ParseReasoningMode(std::string_view name);

struct ParsedToolCall {
  std::string name;
  // A JSON object: parameters in order of first appearance, each typed per §5.
  nlohmann::ordered_json arguments = nlohmann::ordered_json::object();
};

struct ParsedOutput {
  std::optional<std::string> content;            // nullopt: JSON null
  std::optional<std::string> reasoning_content;  // nullopt: JSON null
  std::vector<ParsedToolCall> tool_calls;        // in generation order
};

// Parses `text`, the decoded generation that followed the prompt's `<think>\n`, as one finished
// output. Tool calls are parsed only when `tools.tool_parsing_enabled()`. Never fails: malformed
// or truncated markup becomes content (§4).
ParsedOutput ParseModelOutput(std::string_view text, ReasoningMode mode, const ToolSchemas& tools);

// A tool call's arguments as the OpenAI `function.arguments` string: Python json.dumps style
// (`{"city": "Paris", "days": 3}`), keys in order. The streaming fragments of the same call parse
// to the same object (they equal this text unless a parameter name repeats).
std::string ToolArgumentsJson(const nlohmann::ordered_json& arguments);

}  // namespace afd::gateway
