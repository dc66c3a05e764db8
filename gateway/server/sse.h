// Server-sent events framing for streamed OpenAI responses: each chunk is one `data:` event
// holding a JSON object on a single line, and the stream ends with `data: [DONE]`. Stateless
// functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "nlohmann/json.hpp"

namespace afd::gateway {

// "data: <json>\n\n". JSON text never contains a raw newline (they are escaped in strings), so
// the event is a single data line. Invalid UTF-8 in strings is replaced by U+FFFD.
std::string SseData(const nlohmann::ordered_json& chunk);
// "data: [DONE]\n\n", the end of an OpenAI stream.
std::string SseDone();
// ": <text>\n\n", a comment line clients ignore (used to probe whether the client is still there).
std::string SseComment(std::string_view text);

// JSON text of `value` on one line with invalid UTF-8 replaced (nlohmann's dump would throw).
std::string DumpJson(const nlohmann::ordered_json& value);

}  // namespace afd::gateway
