// The OpenAI-compatible request bodies the gateway accepts (/v1/chat/completions and
// /v1/completions), parsed and validated into plain structs. Invalid requests become
// INVALID_ARGUMENT naming the field (ApiError `param`). Stateless functions; thread-safe.
//
// Accepted beyond OpenAI's fields (vLLM/SGLang conventions): top_k, min_p, repetition_penalty,
// stop_token_ids, ignore_eos, skip_special_tokens; per-request reasoning mode as
// `"reasoning_mode": "split" | "append_think"` or SGLang's `"separate_reasoning": true | false`
// (reasoning_mode wins when both are given); `chat_template_kwargs` (an object; the MiniMax-M2
// template reads no extra variables, so its keys are accepted and ignored, as Jinja would).
// Not supported (400): n > 1, best_of > 1, echo, suffix, tool_choice "required", a
// response_format other than text, a non-empty logit_bias, several prompts in one request.
// Other unknown fields are ignored.
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

// Decoding controls; unset fields take the deployment's defaults (then the node's).
struct SamplingSettings {
  std::optional<float> temperature;         // [0, 2]; 0 = greedy
  std::optional<float> top_p;               // (0, 1]
  std::optional<int32_t> top_k;             // >= 1, or 0 / -1 = off
  std::optional<float> min_p;               // [0, 1]
  std::optional<float> repetition_penalty;  // > 0
  std::optional<float> presence_penalty;    // [-2, 2]
  std::optional<float> frequency_penalty;   // [-2, 2]
  std::optional<uint64_t> seed;             // negative JSON seeds wrap to uint64
};

// What chat and text completions share.
struct GenerationSettings {
  SamplingSettings sampling;
  std::optional<int64_t> max_tokens;  // max_completion_tokens, else max_tokens; >= 1
  std::vector<std::string> stop;      // stop strings (not included in the output)
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  bool skip_special_tokens = true;
  bool logprobs = false;  // chat: logprobs; completions: logprobs != null
  int top_logprobs = 0;   // chat: top_logprobs (0..20); completions: logprobs (0..20)
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

enum class ToolChoice {
  kAuto,      // tools rendered into the prompt, tool calls parsed (the default)
  kNone,      // tools not rendered and not parsed: the model answers in text
  kFunction,  // the named function: the output is started with a call to it (see README)
};

struct ChatCompletionRequest {
  std::string model;                // empty: the served model
  nlohmann::ordered_json messages;  // JSON array of OpenAI messages (validated by the template)
  nlohmann::ordered_json tools;     // null or a non-empty array of function tools
  ToolChoice tool_choice = ToolChoice::kAuto;
  std::string tool_choice_function;  // kFunction: the declared function's name
  std::optional<ReasoningMode> reasoning_mode;
  GenerationSettings generation;
  // Test switch (`afd_forced_output`): the text the model is made to generate (teacher forcing on
  // the attention node). Honoured only by gateways started with --enable-forced-output.
  std::optional<std::string> forced_output;
};

struct CompletionRequest {
  std::string model;
  // Exactly one is set: a text prompt, or token ids.
  std::optional<std::string> prompt_text;
  std::vector<int32_t> prompt_token_ids;
  GenerationSettings generation;  // max_tokens defaults to 16 here (OpenAI's default)
};

// Parses a request body. INVALID_ARGUMENT (with the field as param) for malformed JSON, wrong
// types, out-of-range values and unsupported options.
absl::StatusOr<ChatCompletionRequest> ParseChatCompletionRequest(std::string_view body);
absl::StatusOr<CompletionRequest> ParseCompletionRequest(std::string_view body);

// Default max_tokens of a text completion when the request sets none.
inline constexpr int64_t kDefaultCompletionMaxTokens = 16;

}  // namespace afd::gateway
