// The request's tool definitions as the output parser needs them: whether tool parsing is on, and
// the JSON-schema type set of each declared parameter, used to turn a parameter's text into a typed
// JSON value (PARSING.md §5). Immutable after construction; safe to share across threads.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {

// A parameter's type set (§5) as bits. kOther stands for every other name ("null", "date", ...),
// which converts nothing but makes the set non-empty. An empty set means {string}.
enum TypeBits : uint32_t {
  kTypeInteger = 1u << 0,  // "integer", "int"
  kTypeNumber = 1u << 1,   // "number", "float"
  kTypeBoolean = 1u << 2,  // "boolean", "bool"
  kTypeObject = 1u << 3,   // "object"
  kTypeArray = 1u << 4,    // "array"
  kTypeString = 1u << 5,   // "string", "str", "text"
  kTypeOther = 1u << 6,
};

// Type set of a JSON schema: its lower-cased `type` (string or list), the JSON type of each `enum`
// value, and the type sets of its `anyOf`/`oneOf`/`allOf` entries; {string} when that is empty or
// the schema is not an object.
uint32_t SchemaTypeSet(const nlohmann::ordered_json& schema);

// Converts a parameter VALUE (already stripped of leading/trailing '\n') under a type set (§5):
// null words, then integer, number, boolean, object/array, string in that order, then JSON, then
// the string itself.
nlohmann::ordered_json ConvertArgumentValue(std::string_view value, uint32_t type_set);

// Strict RFC 8259 JSON as §5 defines it: no BOM, comments, NaN/Infinity or trailing data; integers
// in [-2^63, 2^64-1] stay integers, other numbers are finite doubles. Returns false if `text` is
// not such JSON. Never throws.
bool ParseStrictJson(std::string_view text, nlohmann::ordered_json* out);

class ToolSchemas {
 public:
  // No tools: tool parsing is off.
  ToolSchemas() = default;

  // From the request's `tools` (the OpenAI list of {"type": "function", "function": {...}}).
  // null, a non-list or [] turns tool parsing off. Malformed entries are skipped for lookup.
  explicit ToolSchemas(const nlohmann::ordered_json& tools);

  // False when the request declared no tools (§1): the text after `</think>` is all content.
  bool tool_parsing_enabled() const { return enabled_; }

  // Type set of parameter `key` of tool `tool_name` (the first tool with that name); {string}
  // (i.e. 0) for undeclared tools and parameters.
  uint32_t ParameterTypeSet(std::string_view tool_name, std::string_view key) const;

  // ConvertArgumentValue(value, ParameterTypeSet(tool_name, key)).
  nlohmann::ordered_json ConvertValue(std::string_view tool_name, std::string_view key,
                                      std::string_view value) const;

 private:
  bool enabled_ = false;
  // tool name -> parameter name -> type set; only the first tool of each name.
  std::map<std::string, std::map<std::string, uint32_t, std::less<>>, std::less<>> types_;
};

}  // namespace afd::gateway
