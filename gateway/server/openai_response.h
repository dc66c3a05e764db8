// JSON bodies of the OpenAI-compatible responses: chat.completion and chat.completion.chunk,
// text_completion (whole and streamed), logprobs in both endpoints' formats, usage, and the model
// list. Stateless functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gateway/server/output_assembler.h"
#include "gateway/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {

struct ResponseHeader {
  std::string id;       // "chatcmpl-..." / "cmpl-..."
  int64_t created = 0;  // unix seconds
  std::string model;
};

struct UsageCounts {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

nlohmann::ordered_json UsageJson(const UsageCounts& usage);

// Chat logprobs: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}, ...]}.
nlohmann::ordered_json ChatLogprobsJson(const Tokenizer& tokenizer,
                                        const std::vector<TokenLogprobEntry>& entries,
                                        int top_logprobs);
// Completions logprobs: {"tokens", "token_logprobs", "top_logprobs", "text_offset"};
// `text_offset_base` is the offset of the first token's text in the completion.
nlohmann::ordered_json CompletionLogprobsJson(const Tokenizer& tokenizer,
                                              const std::vector<TokenLogprobEntry>& entries,
                                              int top_logprobs, int64_t text_offset_base);

// A whole chat.completion.
nlohmann::ordered_json ChatCompletionJson(const ResponseHeader& header,
                                          const AssembledOutput& output,
                                          const std::string& finish_reason,
                                          const UsageCounts& usage,
                                          const nlohmann::ordered_json& logprobs);
// A chat.completion.chunk with one choice. `role` adds "role": "assistant" (first chunk);
// `finish_reason` empty means null; `logprobs` null leaves it null.
nlohmann::ordered_json ChatChunkJson(const ResponseHeader& header, const OutputDelta& delta,
                                     bool role, const std::string& finish_reason,
                                     const nlohmann::ordered_json& logprobs);
// The final usage-only chunk of a stream (stream_options.include_usage): "choices": [] and
// usage; a chat.completion.chunk for chat, else a text_completion.
nlohmann::ordered_json UsageChunkJson(const ResponseHeader& header, bool chat,
                                      const UsageCounts& usage);

// A whole text_completion, and one streamed piece of it (same object type, as OpenAI does).
nlohmann::ordered_json CompletionJson(const ResponseHeader& header, const std::string& text,
                                      const std::string& finish_reason,
                                      const std::optional<UsageCounts>& usage,
                                      const nlohmann::ordered_json& logprobs);

// GET /v1/models.
nlohmann::ordered_json ModelListJson(const std::string& model, int64_t created,
                                     int64_t max_model_len);

// A token's text for logprobs (lossy UTF-8 of its bytes) and its bytes.
std::string TokenText(const Tokenizer& tokenizer, int32_t id);

}  // namespace afd::gateway
