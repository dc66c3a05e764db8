// The MiniMax-M2 chat template rendered natively: OpenAI-format messages and tools become the
// prompt text, byte-identical to Hugging Face's Jinja rendering of
// tests/data/chat/minimax-m2.jinja, plus the check that a model directory ships that template.
// Stateless free functions; thread-safe.
//
// Special tokens typed by users. The renderer writes message text verbatim, as the template does,
// so a user can type `]~b]ai` or `[e~[`. The prompt must therefore not be tokenized as one string
// with special-token matching on. Use RenderChatPromptSegments: trusted segments are the template's
// own markup (role markers, `<response>`, ...) and the configured model identity; every other
// segment is request-controlled text (message content, reasoning, tool JSON, tool-call names and
// arguments, tool results, dates). Encode the prompt as Hugging Face would encode the concatenated
// text, except that special tokens are matched only inside trusted segments: find the special
// tokens in the trusted segments, and encode each run of text between two matches (it may span
// several segments, trusted or not) as one piece with special-token matching disabled. Do not
// encode each segment on its own: BPE pre-tokenization would then split at segment boundaries and
// the tokens would differ from the reference for ordinary prompts.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {

// The system text MiniMax-M2's template uses when the request has no (or an empty) system message.
inline constexpr std::string_view kMiniMaxM2ModelIdentity = "You are a helpful assistant.";

struct ChatTemplateOptions {
  // System-turn text when messages[0] is not a system message or its content is empty. M2 uses
  // kMiniMaxM2ModelIdentity; later releases (M2.1+) set a different default identity line.
  std::string model_identity = std::string(kMiniMaxM2ModelIdentity);
};

// One piece of a rendered prompt. Concatenating all segments' text gives RenderChatPrompt's result.
struct PromptSegment {
  std::string text;
  // True for the template's own markup and the configured model identity (may contain special
  // tokens); false for text that comes from the request (never matched as special tokens).
  bool is_trusted_markup = false;
};

// Renders `messages` (a JSON array of OpenAI chat messages) and `tools` (null or an array of
// OpenAI `{"type": "function", "function": {...}}` entries) with the MiniMax-M2 template.
// `add_generation_prompt` appends `]~b]ai\n<think>\n`.
//
// Follows the template exactly (see tests/data/chat/README.md), with these input rules:
// - content may be a string, null or absent (both render as ""), or a list of parts of which the
//   `{"type": "text", "text": ...}` parts and plain strings are kept; any other content type is
//   INVALID_ARGUMENT (the template would print a Python repr).
// - assistant `tool_calls[i].function.arguments` may be a JSON object or the OpenAI JSON string;
//   a string is parsed with ParseJsonExact and must hold an object (else INVALID_ARGUMENT). Values
//   keep their JSON spelling (`3.0` stays `3.0`).
// - a tool message without a previous assistant message with tool calls is INVALID_ARGUMENT with
// the
//   template's message "Message has tool role, but there was no previous assistant message with a
//   tool call!".
// - messages that are not objects, a tool without `function`, a tool call without a string name or
//   without arguments, and non-string `current_date`/`current_location` are INVALID_ARGUMENT,
//   with the offending position in the message (e.g. "messages[3].tool_calls[0]: ...").
// - a tool-result item is its `output`, else its `text` if `type` is "text", else the item itself
//   when it is a string or number; null renders as "" and objects/arrays are INVALID_ARGUMENT.
absl::StatusOr<std::string> RenderChatPrompt(const nlohmann::ordered_json& messages,
                                             const nlohmann::ordered_json& tools,
                                             bool add_generation_prompt,
                                             const ChatTemplateOptions& options = {});

// Same rendering, split into trusted-markup and request-text segments (see the file comment).
// Adjacent segments of the same kind are merged and empty segments are omitted.
absl::StatusOr<std::vector<PromptSegment>> RenderChatPromptSegments(
    const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
    bool add_generation_prompt, const ChatTemplateOptions& options = {});

// ---- Which template a model directory uses ----

// 64-bit FNV-1a hash of a template's text after normalizing line endings (CRLF -> LF) and removing
// whitespace at the very end of the text (the template ends in `-%}`, so that changes nothing).
uint64_t ChatTemplateFingerprint(std::string_view template_text);

// Fingerprint of the MiniMax-M2 template this renderer implements
// (tests/data/chat/minimax-m2.jinja).
inline constexpr uint64_t kMiniMaxM2TemplateFingerprint = 0x1f1c370372e222bbULL;

// True when `template_text` is a template this renderer implements.
bool IsSupportedChatTemplate(std::string_view template_text);

struct ChatTemplateSource {
  // File the template came from ("<dir>/chat_template.jinja" or "<dir>/tokenizer_config.json");
  // empty when the directory has none and the built-in MiniMax-M2 template is used.
  std::string path;
  bool built_in = true;
};

// Finds the chat template of a Hugging Face model directory the way transformers does
// (`chat_template.jinja` first, then tokenizer_config.json's `chat_template`, a string or a list of
// named templates, all of which must match) and checks that it is one this renderer implements.
// No template at all: the built-in one. A different template: UNIMPLEMENTED naming the file (and
// entry) and its fingerprint. Missing directory: NOT_FOUND; unreadable or malformed files:
// INVALID_ARGUMENT naming the file.
absl::StatusOr<ChatTemplateSource> CheckModelChatTemplate(const std::string& model_dir);

}  // namespace afd::gateway
