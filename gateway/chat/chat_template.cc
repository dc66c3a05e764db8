#include "gateway/chat/chat_template.h"

#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "gateway/chat/py_json.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kToolCallBegin = "<minimax:tool_call>";
constexpr std::string_view kToolCallEnd = "</minimax:tool_call>";
constexpr std::string_view kThinkBegin = "<think>";
constexpr std::string_view kThinkEnd = "</think>";
constexpr std::string_view kToolsPreamble =
    "\n\n# Tools\nYou may call one or more tools to assist with the user query.\n"
    "Here are the tools available in JSONSchema format:\n\n<tools>\n";
constexpr std::string_view kToolsPostamble =
    "</tools>\n\nWhen making tool calls, use XML format to invoke tools and pass parameters:\n"
    "\n<minimax:tool_call>\n<invoke name=\"tool-name-1\">\n"
    "<parameter name=\"param-key-1\">param-value-1</parameter>\n"
    "<parameter name=\"param-key-2\">param-value-2</parameter>\n...\n</invoke>\n"
    "</minimax:tool_call>";
constexpr std::string_view kOrphanToolMessage =
    "Message has tool role, but there was no previous assistant message with a tool call!";

// Collects the prompt as trusted-markup / request-text segments.
class PromptBuilder {
 public:
  void Markup(std::string_view text) { Add(text, true); }
  void Text(std::string_view text) { Add(text, false); }
  std::vector<PromptSegment> Take() { return std::move(segments_); }

 private:
  void Add(std::string_view text, bool trusted) {
    if (text.empty()) return;
    if (!segments_.empty() && segments_.back().is_trusted_markup == trusted) {
      segments_.back().text.append(text);
      return;
    }
    segments_.push_back(PromptSegment{std::string(text), trusted});
  }
  std::vector<PromptSegment> segments_;
};

// Jinja/Python truthiness of a JSON value.
bool Truthy(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null:
    case Json::value_t::discarded:
      return false;
    case Json::value_t::boolean:
      return v.get<bool>();
    case Json::value_t::number_integer:
      return v.get<int64_t>() != 0;
    case Json::value_t::number_unsigned:
      return v.get<uint64_t>() != 0;
    case Json::value_t::number_float:
      return v.get<double>() != 0;
    case Json::value_t::string:
      return !v.get_ref<const std::string&>().empty();
    default:
      return !v.empty();
  }
}

// `obj.key` where a missing key is Jinja's undefined (nullptr here).
const Json* Field(const Json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

bool RoleIs(const Json& message, std::string_view role) {
  const Json* r = Field(message, "role");
  return r != nullptr && r->is_string() && r->get_ref<const std::string&>() == role;
}

// `{{ value }}` for a scalar: Python str(), except that null renders as "".
absl::StatusOr<std::string> PyStr(const Json& v, const std::string& where) {
  switch (v.type()) {
    case Json::value_t::null:
      return std::string();
    case Json::value_t::string:
      return v.get<std::string>();
    case Json::value_t::boolean:
      return std::string(v.get<bool>() ? "True" : "False");
    case Json::value_t::number_integer:
      return std::to_string(v.get<int64_t>());
    case Json::value_t::number_unsigned:
      return std::to_string(v.get<uint64_t>());
    case Json::value_t::number_float: {
      const double d = v.get<double>();
      if (std::isnan(d)) return std::string("nan");
      if (std::isinf(d)) return std::string(d > 0 ? "inf" : "-inf");
      return PyFloatRepr(d);
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": expected text, got a JSON ", v.type_name()));
  }
}

// The template's visible_text(content) macro; null or absent content is "".
absl::StatusOr<std::string> VisibleText(const Json* content, const std::string& where) {
  if (content == nullptr || content->is_null()) return std::string();
  if (content->is_string()) return content->get<std::string>();
  if (!content->is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": content must be a string, a list of parts or null, got a JSON ",
                     content->type_name()));
  }
  std::string out;
  for (size_t i = 0; i < content->size(); ++i) {
    const Json& item = (*content)[i];
    if (item.is_object()) {
      const Json* type = Field(item, "type");
      if (type != nullptr && type->is_string() && type->get_ref<const std::string&>() == "text") {
        const Json* text = Field(item, "text");
        if (text != nullptr) {
          ASSIGN_OR_RETURN(std::string piece, PyStr(*text, absl::StrCat(where, "[", i, "].text")));
          out.append(piece);
        }
      }
    } else if (item.is_string()) {
      out.append(item.get_ref<const std::string&>());
    }
  }
  return out;
}

// Python str.strip('\n').
std::string_view StripNewlines(std::string_view s) {
  while (!s.empty() && s.front() == '\n') s.remove_prefix(1);
  while (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  return s;
}

// Python s.split(sep)[0] / s.split(sep)[-1].
std::string_view BeforeFirst(std::string_view s, std::string_view sep) {
  const size_t p = s.find(sep);
  return p == std::string_view::npos ? s : s.substr(0, p);
}
std::string_view AfterLast(std::string_view s, std::string_view sep) {
  const size_t p = s.rfind(sep);
  return p == std::string_view::npos ? s : s.substr(p + sep.size());
}

// An optional system-message string field (current_date, current_location): absent, null or ""
// renders nothing.
absl::StatusOr<std::string> SystemField(const Json& system, const std::string& key) {
  const Json* v = Field(system, key);
  if (v == nullptr || !Truthy(*v)) return std::string();
  if (!v->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("messages[0].", key, ": must be a string, got a JSON ", v->type_name()));
  }
  return v->get<std::string>();
}

absl::Status RenderSystem(const Json* system, const Json& tools, const ChatTemplateOptions& options,
                          PromptBuilder& out) {
  out.Markup("]~!b[]~b]system\n");
  const Json* content = system != nullptr ? Field(*system, "content") : nullptr;
  if (content != nullptr && Truthy(*content)) {
    ASSIGN_OR_RETURN(std::string text, VisibleText(content, std::string("messages[0].content")));
    out.Text(text);
  } else {
    out.Markup(options.model_identity);
  }
  if (system != nullptr) {
    ASSIGN_OR_RETURN(std::string date, SystemField(*system, "current_date"));
    if (!date.empty()) {
      out.Markup("\nCurrent date: ");
      out.Text(date);
    }
    ASSIGN_OR_RETURN(std::string location, SystemField(*system, "current_location"));
    if (!location.empty()) {
      out.Markup("\nCurrent location: ");
      out.Text(location);
    }
  }
  if (!tools.is_null() && !tools.is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tools: must be a list or null, got a JSON ", tools.type_name()));
  }
  if (tools.is_array() && !tools.empty()) {
    out.Markup(kToolsPreamble);
    for (size_t i = 0; i < tools.size(); ++i) {
      const Json* function = Field(tools[i], "function");
      if (function == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("tools[", i, "]: missing \"function\""));
      }
      out.Markup("<tool>");
      out.Text(PyJsonDumps(*function));
      out.Markup("</tool>\n");
    }
    out.Markup(kToolsPostamble);
  }
  out.Markup("[e~[\n");
  return absl::OkStatus();
}

// Renders one assistant tool call; `where` names it for errors.
absl::Status RenderToolCall(const Json& call, const std::string& where, PromptBuilder& out) {
  if (!call.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": must be an object"));
  }
  const Json* function = Field(call, "function");
  const Json* fn = &call;
  if (function != nullptr && Truthy(*function)) {
    if (!function->is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".function: must be an object"));
    }
    fn = function;
  }
  const Json* name = Field(*fn, "name");
  if (name == nullptr || !name->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": function name must be a string"));
  }
  const Json* arguments = Field(*fn, "arguments");
  if (arguments == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing function arguments"));
  }
  Json parsed;
  if (arguments->is_string()) {
    absl::StatusOr<Json> p = ParseJsonExact(arguments->get_ref<const std::string&>());
    if (!p.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".function.arguments: ", p.status().message()));
    }
    parsed = *std::move(p);
    arguments = &parsed;
  }
  if (!arguments->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ".function.arguments: must be a JSON object, got a JSON ", arguments->type_name()));
  }
  out.Markup("<invoke name=\"");
  out.Text(name->get_ref<const std::string&>());
  out.Markup("\">\n");
  for (const auto& [key, value] : arguments->items()) {
    out.Markup("<parameter name=\"");
    out.Text(key);
    out.Markup("\">");
    out.Text(value.is_string() ? value.get_ref<const std::string&>() : PyJsonDumps(value));
    out.Markup("</parameter>\n");
  }
  out.Markup("</invoke>\n");
  return absl::OkStatus();
}

// A tool-result list item: `tr.output if defined else (tr.text if text part else tr)`.
absl::StatusOr<std::string> ToolResultItem(const Json& item, const std::string& where) {
  if (item.is_object()) {
    if (const Json* output = Field(item, "output")) return PyStr(*output, where + ".output");
    const Json* type = Field(item, "type");
    const Json* text = Field(item, "text");
    if (type != nullptr && type->is_string() && type->get_ref<const std::string&>() == "text" &&
        text != nullptr) {
      return PyStr(*text, where + ".text");
    }
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": a tool result part needs \"output\" or a text \"text\""));
  }
  return PyStr(item, where);
}

absl::Status RenderConversation(const Json& messages, size_t start, const ChatTemplateOptions&,
                                PromptBuilder& out) {
  const size_t count = messages.size() - start;
  auto message_at = [&](size_t ci) -> const Json& { return messages[start + ci]; };
  auto where_of = [&](size_t ci) { return absl::StrCat("messages[", start + ci, "]"); };

  // Index (in the conversation after the system message) of the last user message.
  long last_user_index = -1;
  for (size_t ci = 0; ci < count; ++ci) {
    if (RoleIs(message_at(ci), "user")) last_user_index = static_cast<long>(ci);
  }

  bool last_tool_call_name_is_none = true;
  for (size_t ci = 0; ci < count; ++ci) {
    const Json& message = message_at(ci);
    const std::string where = where_of(ci);
    if (RoleIs(message, "assistant")) {
      out.Markup("]~b]ai\n");
      ASSIGN_OR_RETURN(std::string visible,
                       VisibleText(Field(message, "content"), where + ".content"));
      std::string_view content = visible;
      std::string_view reasoning;
      const Json* reasoning_field = Field(message, "reasoning_content");
      if (reasoning_field != nullptr && reasoning_field->is_string()) {
        reasoning = reasoning_field->get_ref<const std::string&>();
      } else if (content.find(kThinkEnd) != std::string_view::npos) {
        reasoning =
            StripNewlines(AfterLast(StripNewlines(BeforeFirst(content, kThinkEnd)), kThinkBegin));
        content = StripNewlines(AfterLast(content, kThinkEnd));
      }
      if (!reasoning.empty() && static_cast<long>(ci) > last_user_index) {
        out.Markup("<think>\n");
        out.Text(reasoning);
        out.Markup("\n</think>\n\n");
      }
      out.Text(content);

      const Json* tool_calls = Field(message, "tool_calls");
      if (tool_calls != nullptr && !tool_calls->is_null() && !tool_calls->is_array()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ".tool_calls: must be a list"));
      }
      if (tool_calls != nullptr && tool_calls->is_array() && !tool_calls->empty()) {
        out.Markup("\n");
        out.Markup(kToolCallBegin);
        out.Markup("\n");
        for (size_t k = 0; k < tool_calls->size(); ++k) {
          RETURN_IF_ERROR(
              RenderToolCall((*tool_calls)[k], absl::StrCat(where, ".tool_calls[", k, "]"), out));
        }
        out.Markup(kToolCallEnd);
        // `message.tool_calls[-1].name`: undefined (not none) for the usual OpenAI shape.
        const Json* last_name = Field(tool_calls->back(), "name");
        last_tool_call_name_is_none = last_name != nullptr && last_name->is_null();
      } else {
        last_tool_call_name_is_none = true;
      }
      out.Markup("[e~[\n");
    } else if (RoleIs(message, "tool")) {
      if (last_tool_call_name_is_none) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": ", std::string(kOrphanToolMessage)));
      }
      if (ci == 0 || !RoleIs(message_at(ci - 1), "tool")) out.Markup("]~b]tool");
      const Json* content = Field(message, "content");
      if (content != nullptr && (content->is_string() || content->is_null())) {
        out.Markup("\n<response>");
        if (content->is_string()) out.Text(content->get_ref<const std::string&>());
        out.Markup("</response>");
      } else if (content != nullptr && content->is_array()) {
        for (size_t k = 0; k < content->size(); ++k) {
          ASSIGN_OR_RETURN(std::string item,
                           ToolResultItem((*content)[k], absl::StrCat(where, ".content[", k, "]")));
          out.Markup("\n<response>");
          out.Text(item);
          out.Markup("\n</response>");
        }
      } else if (content != nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ".content: must be a string, a list or null, got a JSON ",
                         content->type_name()));
      }
      if (ci + 1 == count || !RoleIs(message_at(ci + 1), "tool")) out.Markup("[e~[\n");
    } else if (RoleIs(message, "user")) {
      out.Markup("]~b]user\n");
      ASSIGN_OR_RETURN(std::string text,
                       VisibleText(Field(message, "content"), where + ".content"));
      out.Text(text);
      out.Markup("[e~[\n");
    }
  }
  return absl::OkStatus();
}

absl::Status Render(const Json& messages, const Json& tools, bool add_generation_prompt,
                    const ChatTemplateOptions& options, PromptBuilder& out) {
  if (!messages.is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat("messages: must be a list, got a JSON ", messages.type_name()));
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!messages[i].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "]: must be an object"));
    }
  }
  const Json* system = nullptr;
  size_t start = 0;
  if (!messages.empty() && RoleIs(messages[0], "system")) {
    system = &messages[0];
    start = 1;
  }
  RETURN_IF_ERROR(RenderSystem(system, tools, options, out));
  RETURN_IF_ERROR(RenderConversation(messages, start, options, out));
  if (add_generation_prompt) out.Markup("]~b]ai\n<think>\n");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<PromptSegment>> RenderSegmentsNoThrow(
    const Json& messages, const Json& tools, bool add_generation_prompt,
    const ChatTemplateOptions& options) {
  PromptBuilder out;
  try {
    RETURN_IF_ERROR(Render(messages, tools, add_generation_prompt, options, out));
  } catch (const std::exception& e) {  // nlohmann accessors; every type is checked first
    return absl::InternalError(absl::StrCat("chat template: ", e.what()));
  }
  return out.Take();
}

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot be read"));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat(path, ": read error"));
  return ss.str();
}

absl::Status UnsupportedTemplate(const std::string& what, std::string_view text) {
  return absl::UnimplementedError(absl::StrFormat(
      "%s: chat template is not the MiniMax-M2 template afd renders natively (fingerprint "
      "%016x, supported %016x); remove it to use the built-in template or serve a model "
      "whose template afd implements",
      what, ChatTemplateFingerprint(text), kMiniMaxM2TemplateFingerprint));
}

}  // namespace

absl::StatusOr<std::vector<PromptSegment>> RenderChatPromptSegments(
    const Json& messages, const Json& tools, bool add_generation_prompt,
    const ChatTemplateOptions& options) {
  return RenderSegmentsNoThrow(messages, tools, add_generation_prompt, options);
}

absl::StatusOr<std::string> RenderChatPrompt(const Json& messages, const Json& tools,
                                             bool add_generation_prompt,
                                             const ChatTemplateOptions& options) {
  ASSIGN_OR_RETURN(std::vector<PromptSegment> segments,
                   RenderSegmentsNoThrow(messages, tools, add_generation_prompt, options));
  std::string prompt;
  size_t size = 0;
  for (const PromptSegment& s : segments) size += s.text.size();
  prompt.reserve(size);
  for (const PromptSegment& s : segments) prompt.append(s.text);
  return prompt;
}

uint64_t ChatTemplateFingerprint(std::string_view text) {
  size_t end = text.size();
  while (end > 0 && (text[end - 1] == ' ' || text[end - 1] == '\t' || text[end - 1] == '\n' ||
                     text[end - 1] == '\r' || text[end - 1] == '\v' || text[end - 1] == '\f')) {
    --end;
  }
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < end; ++i) {
    if (text[i] == '\r' && i + 1 < end && text[i + 1] == '\n') continue;
    hash ^= static_cast<unsigned char>(text[i]);
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

bool IsSupportedChatTemplate(std::string_view template_text) {
  return ChatTemplateFingerprint(template_text) == kMiniMaxM2TemplateFingerprint;
}

absl::StatusOr<ChatTemplateSource> CheckModelChatTemplate(const std::string& model_dir) {
  struct stat st;
  if (stat(model_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat(model_dir, ": model directory not found"));
  }
  const std::string jinja_path = model_dir + "/chat_template.jinja";
  if (FileExists(jinja_path)) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(jinja_path));
    if (!IsSupportedChatTemplate(text)) return UnsupportedTemplate(jinja_path, text);
    return ChatTemplateSource{jinja_path, false};
  }
  const std::string config_path = model_dir + "/tokenizer_config.json";
  if (FileExists(config_path)) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(config_path));
    Json config = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(config_path, ": not a JSON object"));
    }
    const Json* tmpl = Field(config, "chat_template");
    if (tmpl != nullptr && !tmpl->is_null()) {
      if (tmpl->is_string()) {
        const std::string& t = tmpl->get_ref<const std::string&>();
        if (!IsSupportedChatTemplate(t)) return UnsupportedTemplate(config_path, t);
        return ChatTemplateSource{config_path, false};
      }
      if (!tmpl->is_array()) {
        return absl::InvalidArgumentError(
            absl::StrCat(config_path, ": \"chat_template\" must be a string or a list"));
      }
      for (size_t i = 0; i < tmpl->size(); ++i) {
        const Json* name = Field((*tmpl)[i], "name");
        const Json* t = Field((*tmpl)[i], "template");
        if (t == nullptr || !t->is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat(config_path, ": chat_template[", i, "] has no \"template\" string"));
        }
        const std::string label = absl::StrCat(
            config_path, " (chat_template \"",
            name != nullptr && name->is_string() ? name->get<std::string>() : std::to_string(i),
            "\")");
        if (!IsSupportedChatTemplate(t->get_ref<const std::string&>())) {
          return UnsupportedTemplate(label, t->get_ref<const std::string&>());
        }
      }
      return ChatTemplateSource{config_path, false};
    }
  }
  return ChatTemplateSource{"", true};
}

}  // namespace afd::gateway
