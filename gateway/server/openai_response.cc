#include "gateway/server/openai_response.h"

#include <optional>
#include <string>

#include "gateway/parsing/output_parser.h"
#include "gateway/tokenizer/utf8.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;

Json OptionalString(const std::optional<std::string>& s) {
  return s.has_value() ? Json(*s) : Json(nullptr);
}

Json TokenBytesJson(const Tokenizer& tokenizer, int32_t id) {
  Json bytes = Json::array();
  for (unsigned char c : tokenizer.TokenBytes(id)) bytes.push_back(static_cast<int>(c));
  return bytes;
}

Json FinishReasonJson(const std::string& reason) {
  return reason.empty() ? Json(nullptr) : Json(reason);
}

// The fields every response object starts with, then its choices.
Json Envelope(const ResponseHeader& header, const char* object, Json choices) {
  Json out = Json::object();
  out["id"] = header.id;
  out["object"] = object;
  out["created"] = header.created;
  out["model"] = header.model;
  out["choices"] = std::move(choices);
  return out;
}

// One choice (index 0): `body_key` holds `body` ("message", "delta" or "text"), then logprobs
// and finish_reason.
Json Choice(const char* body_key, Json body, const Json& logprobs,
            const std::string& finish_reason) {
  Json choice = Json::object();
  choice["index"] = 0;
  choice[body_key] = std::move(body);
  choice["logprobs"] = logprobs;
  choice["finish_reason"] = FinishReasonJson(finish_reason);
  return Json::array({std::move(choice)});
}

// A tool call of a message, or (with `index`) a streamed piece of one, where an empty id (with
// its "type") or name is left out.
Json ToolCallJson(std::optional<int> index, const std::string& id, const std::string& name,
                  const std::string& arguments) {
  Json call = Json::object();
  if (index.has_value()) call["index"] = *index;
  if (!id.empty()) {
    call["id"] = id;
    call["type"] = "function";
  }
  Json fn = Json::object();
  if (!name.empty()) fn["name"] = name;
  fn["arguments"] = arguments;
  call["function"] = std::move(fn);
  return call;
}

const char* ObjectType(bool chat, bool chunk) {
  if (!chat) return "text_completion";
  return chunk ? "chat.completion.chunk" : "chat.completion";
}

}  // namespace

std::string TokenText(const Tokenizer& tokenizer, int32_t id) {
  std::string text;
  AppendUtf8Lossy(tokenizer.TokenBytes(id), &text);
  return text;
}

Json UsageJson(const UsageCounts& usage) {
  Json u = Json::object();
  u["prompt_tokens"] = usage.prompt_tokens;
  u["completion_tokens"] = usage.completion_tokens;
  u["total_tokens"] = usage.prompt_tokens + usage.completion_tokens;
  return u;
}

Json ChatLogprobsJson(const Tokenizer& tokenizer, const std::vector<TokenLogprobEntry>& entries,
                      int top_logprobs) {
  Json content = Json::array();
  for (const TokenLogprobEntry& e : entries) {
    Json item = Json::object();
    item["token"] = TokenText(tokenizer, e.token_id);
    item["logprob"] = e.logprob;
    item["bytes"] = TokenBytesJson(tokenizer, e.token_id);
    Json top = Json::array();
    for (size_t i = 0; i < e.top.size() && static_cast<int>(i) < top_logprobs; ++i) {
      Json alt = Json::object();
      alt["token"] = TokenText(tokenizer, e.top[i].first);
      alt["logprob"] = e.top[i].second;
      alt["bytes"] = TokenBytesJson(tokenizer, e.top[i].first);
      top.push_back(std::move(alt));
    }
    item["top_logprobs"] = std::move(top);
    content.push_back(std::move(item));
  }
  Json out = Json::object();
  out["content"] = std::move(content);
  return out;
}

Json CompletionLogprobsJson(const Tokenizer& tokenizer,
                            const std::vector<TokenLogprobEntry>& entries, int top_logprobs,
                            int64_t text_offset_base) {
  Json tokens = Json::array(), token_logprobs = Json::array(), tops = Json::array(),
       offsets = Json::array();
  int64_t offset = text_offset_base;
  for (const TokenLogprobEntry& e : entries) {
    const std::string text = TokenText(tokenizer, e.token_id);
    tokens.push_back(text);
    token_logprobs.push_back(e.logprob);
    offsets.push_back(offset);
    offset += static_cast<int64_t>(text.size());
    if (top_logprobs > 0) {
      Json top = Json::object();
      for (size_t i = 0; i < e.top.size() && static_cast<int>(i) < top_logprobs; ++i) {
        top[TokenText(tokenizer, e.top[i].first)] = e.top[i].second;
      }
      tops.push_back(std::move(top));
    } else {
      tops.push_back(nullptr);
    }
  }
  Json out = Json::object();
  out["tokens"] = std::move(tokens);
  out["token_logprobs"] = std::move(token_logprobs);
  out["top_logprobs"] = std::move(tops);
  out["text_offset"] = std::move(offsets);
  return out;
}

Json ChatCompletionJson(const ResponseHeader& header, const AssembledOutput& output,
                        const std::string& finish_reason, const UsageCounts& usage,
                        const Json& logprobs) {
  Json message = Json::object();
  message["role"] = "assistant";
  message["content"] = OptionalString(output.content);
  message["reasoning_content"] = OptionalString(output.reasoning_content);
  if (!output.tool_calls.empty()) {
    Json calls = Json::array();
    for (size_t i = 0; i < output.tool_calls.size(); ++i) {
      calls.push_back(ToolCallJson(std::nullopt, output.tool_call_ids[i], output.tool_calls[i].name,
                                   ToolArgumentsJson(output.tool_calls[i].arguments)));
    }
    message["tool_calls"] = std::move(calls);
  }
  Json out = Envelope(header, ObjectType(true, false),
                      Choice("message", std::move(message), logprobs, finish_reason));
  out["usage"] = UsageJson(usage);
  return out;
}

Json ChatChunkJson(const ResponseHeader& header, const OutputDelta& delta, bool role,
                   const std::string& finish_reason, const Json& logprobs) {
  Json d = Json::object();
  if (role) d["role"] = "assistant";
  if (!delta.content.empty() || role) d["content"] = delta.content;
  if (!delta.reasoning.empty()) d["reasoning_content"] = delta.reasoning;
  if (!delta.tool_calls.empty()) {
    Json calls = Json::array();
    for (const ToolCallDelta& c : delta.tool_calls) {
      calls.push_back(ToolCallJson(c.index, c.id, c.name, c.arguments));
    }
    d["tool_calls"] = std::move(calls);
  }
  return Envelope(header, ObjectType(true, true),
                  Choice("delta", std::move(d), logprobs, finish_reason));
}

Json UsageChunkJson(const ResponseHeader& header, bool chat, const UsageCounts& usage) {
  Json out = Envelope(header, ObjectType(chat, true), Json::array());
  out["usage"] = UsageJson(usage);
  return out;
}

Json CompletionJson(const ResponseHeader& header, const std::string& text,
                    const std::string& finish_reason, const std::optional<UsageCounts>& usage,
                    const Json& logprobs) {
  Json out =
      Envelope(header, ObjectType(false, false), Choice("text", text, logprobs, finish_reason));
  if (usage.has_value()) out["usage"] = UsageJson(*usage);
  return out;
}

Json ModelListJson(const std::string& model, int64_t created, int64_t max_model_len) {
  Json m = Json::object();
  m["id"] = model;
  m["object"] = "model";
  m["created"] = created;
  m["owned_by"] = "afd";
  m["root"] = model;
  m["max_model_len"] = max_model_len;
  Json out = Json::object();
  out["object"] = "list";
  out["data"] = Json::array({std::move(m)});
  return out;
}

}  // namespace afd::gateway
