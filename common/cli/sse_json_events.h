// SseJsonEvents: splits an OpenAI-style server-sent-event stream (`data: {...}\n\n` events,
// ending with `data: [DONE]`) into its JSON payloads, as the bytes arrive in any chunking.
// One instance per stream; not thread-safe.
#ifndef AFD_COMMON_CLI_SSE_JSON_EVENTS_H_
#define AFD_COMMON_CLI_SSE_JSON_EVENTS_H_

#include <cstddef>
#include <string>

#include "nlohmann/json.hpp"

namespace afd {

class SseJsonEvents {
 public:
  // Appends `size` bytes and calls visit(const nlohmann::json&) for every complete event whose
  // data is a JSON object; other events ([DONE], comments, malformed JSON) are skipped.
  template <class Visit>
  void Feed(const char* data, size_t size, Visit&& visit) {
    pending_.append(data, size);
    size_t end;
    while ((end = pending_.find("\n\n")) != std::string::npos) {
      const std::string event = pending_.substr(0, end);
      pending_.erase(0, end + 2);
      if (event.rfind("data: {", 0) != 0) continue;
      const nlohmann::json chunk = nlohmann::json::parse(event.substr(6), nullptr, false);
      if (!chunk.is_discarded()) visit(chunk);
    }
  }

 private:
  std::string pending_;
};

}  // namespace afd

#endif  // AFD_COMMON_CLI_SSE_JSON_EVENTS_H_
