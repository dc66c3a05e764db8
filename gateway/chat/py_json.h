// Python-compatible JSON: text identical to Python's `json.dumps(x, ensure_ascii=False)` (what the
// Hugging Face `tojson` filter produces), and a parser that keeps each number's JSON kind so `3.0`
// prints back as `3.0` and 64-bit integers stay exact. Stateless free functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {

// `json.dumps(value, ensure_ascii=False)`: separators ", " and ": ", object keys in insertion
// order, strings escaped as Python does (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other C0
// controls as lowercase `\u00xx`; DEL, U+2028 and all other non-ASCII bytes written raw), integers
// exact (signed and unsigned 64-bit), floats as `PyFloatRepr`. Never fails; string bytes are copied
// as they are (invalid UTF-8 included). nlohmann binary values, which JSON text never produces,
// are written as `null`.
std::string PyJsonDumps(const nlohmann::ordered_json& value);

// Appends `PyJsonDumps(value)` to `*out`.
void AppendPyJson(const nlohmann::ordered_json& value, std::string* out);

// `json.dumps(value, indent=indent, ensure_ascii=False)` (indent >= 0): each array item and object
// member on its own line, indented by `indent` spaces per level, separators "," and ": ", empty
// containers as `[]` / `{}`, no trailing newline. Scalars are written as by PyJsonDumps. Used to
// rewrite tokenizer.json files byte-for-byte as Python's json module would.
std::string PyJsonDumpsIndented(const nlohmann::ordered_json& value, int indent);

// Appends the quoted, escaped JSON string literal of `text` (as `json.dumps(text)`).
void AppendPyJsonString(std::string_view text, std::string* out);

// A float the way `json.dumps` writes it, i.e. Python's `repr(float)`: the shortest digits that
// round-trip, in positional notation with at least one fractional digit (`3.0`, `0.0001`,
// `1234567890123456.0`, `-0.0`) when the decimal exponent is in [-4, 16), otherwise in scientific
// notation with a signed exponent of at least two digits (`1e+16`, `1e-07`, `-1.5e-05`).
// Non-finite values are written `NaN`, `Infinity`, `-Infinity` (json.dumps' allow_nan spelling).
std::string PyFloatRepr(double value);

// Parses RFC 8259 JSON text into an ordered_json without throwing. Keeps each number's kind:
// literals with a fraction or exponent are floats (`3.0` stays a float), integer literals are
// exact int64/uint64. An integer literal outside [-2^63, 2^64-1] is rejected with
// INVALID_ARGUMENT rather than rounded to a double, because Python would print it back exactly
// and afd cannot. Duplicate object keys keep their first position and take the last value (as
// Python's dict). Malformed text, invalid UTF-8, lone surrogate escapes and numbers that overflow
// a double are INVALID_ARGUMENT with the parser's message. Linear in the text size, also for
// objects with hundreds of thousands of members (a tokenizer.json vocabulary).
absl::StatusOr<nlohmann::ordered_json> ParseJsonExact(std::string_view text);

}  // namespace afd::gateway
