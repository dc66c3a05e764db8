#include "gateway/server/openai_request.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gateway/chat/py_json.h"
#include "gateway/server/api_error.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;

constexpr char kPromptType[] = "a string or a list of token ids";

const char* TypeName(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    case Json::value_t::number_float:
      return "a number";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::object:
      return "an object";
    default:
      return "an unsupported value";
  }
}

// Typed access to the fields of a request object; absent and null fields are "not set".
class Fields {
 public:
  explicit Fields(const Json& body) : body_(body) {}

  const Json* Get(const std::string& key) const {
    auto it = body_.find(std::string(key));
    if (it == body_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  absl::Status Bool(const std::string& key, bool* out) const {
    const Json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_boolean()) return WrongType(key, "a boolean", *v);
    *out = v->get<bool>();
    return absl::OkStatus();
  }

  absl::Status String(const std::string& key, std::string* out) const {
    const Json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_string()) return WrongType(key, "a string", *v);
    *out = v->get<std::string>();
    return absl::OkStatus();
  }

  // A number within [lo, hi] (`lo_open`: lo itself excluded).
  absl::Status Number(const std::string& key, double lo, double hi, bool lo_open,
                      std::optional<float>* out) const {
    const Json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_number()) return WrongType(key, "a number", *v);
    const double x = v->get<double>();
    if (!std::isfinite(x) || x < lo || x > hi || (lo_open && x == lo)) {
      return InvalidParam(
          key, absl::StrCat(key, " must be in ", lo_open ? "(" : "[", lo, ", ", hi, "], got ", x));
    }
    *out = static_cast<float>(x);
    return absl::OkStatus();
  }

  absl::Status Integer(const std::string& key, int64_t lo, int64_t hi,
                       std::optional<int64_t>* out) const {
    const Json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    int64_t x = 0;
    if (v->is_number_integer()) {
      x = v->get<int64_t>();
    } else if (v->is_number_unsigned()) {
      const uint64_t u = v->get<uint64_t>();
      x = u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
              ? std::numeric_limits<int64_t>::max()
              : static_cast<int64_t>(u);
    } else if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() &&
               std::fabs(v->get<double>()) < 9e15) {
      x = static_cast<int64_t>(v->get<double>());  // 16.0 is accepted as 16, as pydantic does
    } else {
      return WrongType(key, "an integer", *v);
    }
    if (x < lo || x > hi) {
      return InvalidParam(key, absl::StrCat(key, " must be in [", lo, ", ", hi, "], got ", x));
    }
    *out = x;
    return absl::OkStatus();
  }

  static absl::Status WrongType(const std::string& key, const std::string& expected,
                                const Json& v) {
    return InvalidParam(key, absl::StrCat(key, " must be ", expected, ", got ", TypeName(v)));
  }

 private:
  const Json& body_;
};

absl::StatusOr<Json> ParseBody(std::string_view body) {
  absl::StatusOr<Json> json = ParseJsonExact(body);
  if (!json.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request body is not valid JSON: ", json.status().message()));
  }
  if (!json->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request body must be a JSON object, got ", TypeName(*json)));
  }
  return json;
}

// The token ids of the array `v` (request field `param`, which must be `expected`).
absl::Status ParseIds(const Json& v, const std::string& param, const std::string& expected,
                      std::vector<int32_t>* ids) {
  for (const Json& id : v) {
    if (!id.is_number_integer() && !id.is_number_unsigned()) {
      return Fields::WrongType(param, expected, id);
    }
    const int64_t x = id.get<int64_t>();
    if (x < 0 || x > std::numeric_limits<int32_t>::max()) {
      return InvalidParam(param, absl::StrCat("token id ", x, " is out of range"));
    }
    ids->push_back(static_cast<int32_t>(x));
  }
  return absl::OkStatus();
}

absl::Status ParseStop(const Fields& f, std::vector<std::string>* stop) {
  const Json* v = f.Get("stop");
  if (v == nullptr) return absl::OkStatus();
  auto add = [&](const Json& item) -> absl::Status {
    if (!item.is_string()) return Fields::WrongType("stop", "a string or a list of strings", item);
    if (item.get_ref<const std::string&>().empty()) {
      return InvalidParam("stop", "stop strings must not be empty");
    }
    stop->push_back(item.get<std::string>());
    return absl::OkStatus();
  };
  if (v->is_string()) return add(*v);
  if (!v->is_array()) return Fields::WrongType("stop", "a string or a list of strings", *v);
  for (const Json& item : *v) RETURN_IF_ERROR(add(item));
  return absl::OkStatus();
}

// Fields shared by both endpoints.
absl::Status ParseGeneration(const Fields& f, GenerationSettings* g) {
  SamplingSettings& s = g->sampling;
  RETURN_IF_ERROR(f.Number("temperature", 0, 2, false, &s.temperature));
  RETURN_IF_ERROR(f.Number("top_p", 0, 1, true, &s.top_p));
  RETURN_IF_ERROR(f.Number("min_p", 0, 1, false, &s.min_p));
  RETURN_IF_ERROR(f.Number("presence_penalty", -2, 2, false, &s.presence_penalty));
  RETURN_IF_ERROR(f.Number("frequency_penalty", -2, 2, false, &s.frequency_penalty));
  RETURN_IF_ERROR(f.Number("repetition_penalty", 0, 100, true, &s.repetition_penalty));
  std::optional<int64_t> top_k;
  RETURN_IF_ERROR(f.Integer("top_k", -1, std::numeric_limits<int32_t>::max(), &top_k));
  if (top_k.has_value()) s.top_k = static_cast<int32_t>(*top_k < 0 ? 0 : *top_k);
  if (const Json* seed = f.Get("seed")) {
    if (seed->is_number_unsigned()) {
      s.seed = seed->get<uint64_t>();
    } else if (seed->is_number_integer()) {
      s.seed = static_cast<uint64_t>(seed->get<int64_t>());
    } else {
      return Fields::WrongType("seed", "an integer", *seed);
    }
  }
  std::optional<int64_t> max_tokens, max_completion_tokens;
  RETURN_IF_ERROR(f.Integer("max_tokens", 1, std::numeric_limits<int32_t>::max(), &max_tokens));
  RETURN_IF_ERROR(f.Integer("max_completion_tokens", 1, std::numeric_limits<int32_t>::max(),
                            &max_completion_tokens));
  g->max_tokens = max_completion_tokens.has_value() ? max_completion_tokens : max_tokens;

  RETURN_IF_ERROR(ParseStop(f, &g->stop));
  if (const Json* ids = f.Get("stop_token_ids")) {
    if (!ids->is_array()) return Fields::WrongType("stop_token_ids", "a list of integers", *ids);
    RETURN_IF_ERROR(ParseIds(*ids, "stop_token_ids", "a list of integers", &g->stop_token_ids));
  }
  RETURN_IF_ERROR(f.Bool("ignore_eos", &g->ignore_eos));
  RETURN_IF_ERROR(f.Bool("skip_special_tokens", &g->skip_special_tokens));

  RETURN_IF_ERROR(f.Bool("stream", &g->stream));
  if (const Json* options = f.Get("stream_options")) {
    if (!g->stream) {
      return InvalidParam("stream_options", "stream_options is only allowed when stream is true");
    }
    if (!options->is_object()) return Fields::WrongType("stream_options", "an object", *options);
    RETURN_IF_ERROR(Fields(*options).Bool("include_usage", &g->include_usage));
  }

  std::optional<int64_t> n, best_of;
  RETURN_IF_ERROR(f.Integer("n", 1, std::numeric_limits<int32_t>::max(), &n));
  if (n.has_value() && *n != 1) return InvalidParam("n", "only n = 1 is supported");
  RETURN_IF_ERROR(f.Integer("best_of", 1, std::numeric_limits<int32_t>::max(), &best_of));
  if (best_of.has_value() && *best_of != 1) {
    return InvalidParam("best_of", "only best_of = 1 is supported");
  }
  if (const Json* bias = f.Get("logit_bias")) {
    if (!bias->is_object()) return Fields::WrongType("logit_bias", "an object", *bias);
    if (!bias->empty()) return InvalidParam("logit_bias", "logit_bias is not supported");
  }
  return absl::OkStatus();
}

absl::Status ParseTools(const Fields& f, ChatCompletionRequest* r) {
  if (const Json* tools = f.Get("tools")) {
    if (!tools->is_array()) return Fields::WrongType("tools", "a list", *tools);
    for (size_t i = 0; i < tools->size(); ++i) {
      const Json& tool = (*tools)[i];
      const std::string where = absl::StrCat("tools[", i, "]");
      if (!tool.is_object()) return Fields::WrongType(where, "an object", tool);
      auto type = tool.find("type");
      if (type != tool.end() && !(type->is_string() && *type == "function")) {
        return InvalidParam(where, absl::StrCat(where, ".type must be \"function\""));
      }
      auto fn = tool.find("function");
      if (fn == tool.end() || !fn->is_object()) {
        return InvalidParam(where, absl::StrCat(where, ".function must be an object"));
      }
      auto name = fn->find("name");
      if (name == fn->end() || !name->is_string() || name->get_ref<const std::string&>().empty()) {
        return InvalidParam(where,
                            absl::StrCat(where, ".function.name must be a non-empty string"));
      }
      auto params = fn->find("parameters");
      if (params != fn->end() && !params->is_null() && !params->is_object()) {
        return InvalidParam(where, absl::StrCat(where, ".function.parameters must be an object"));
      }
    }
    if (!tools->empty()) r->tools = *tools;
  }

  const Json* choice = f.Get("tool_choice");
  if (choice == nullptr) return absl::OkStatus();
  if (choice->is_string()) {
    const std::string& c = choice->get_ref<const std::string&>();
    if (c == "auto") {
      r->tool_choice = ToolChoice::kAuto;
    } else if (c == "none") {
      r->tool_choice = ToolChoice::kNone;
    } else if (c == "required") {
      return InvalidParam("tool_choice",
                          "tool_choice \"required\" is not supported (use \"auto\" or name a "
                          "function)");
    } else {
      return InvalidParam("tool_choice",
                          absl::StrCat("tool_choice must be \"auto\", \"none\" or a named "
                                       "function, got \"",
                                       c, "\""));
    }
    return absl::OkStatus();
  }
  if (!choice->is_object())
    return Fields::WrongType("tool_choice", "a string or an object", *choice);
  auto fn = choice->find("function");
  if (fn == choice->end() || !fn->is_object() || !fn->contains("name") ||
      !(*fn)["name"].is_string()) {
    return InvalidParam("tool_choice",
                        "tool_choice must look like {\"type\": \"function\", \"function\": "
                        "{\"name\": \"...\"}}");
  }
  const std::string name = (*fn)["name"].get<std::string>();
  bool declared = false;
  if (r->tools.is_array()) {
    for (const Json& tool : r->tools) {
      if (tool["function"]["name"] == name) declared = true;
    }
  }
  if (!declared) {
    return InvalidParam("tool_choice", absl::StrCat("tool_choice names function \"", name,
                                                    "\", which is not in tools"));
  }
  r->tool_choice = ToolChoice::kFunction;
  r->tool_choice_function = name;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ChatCompletionRequest> ParseChatCompletionRequest(std::string_view body) {
  ASSIGN_OR_RETURN(Json json, ParseBody(body));
  const Fields f(json);
  ChatCompletionRequest r;
  RETURN_IF_ERROR(f.String("model", &r.model));
  const Json* messages = f.Get("messages");
  if (messages == nullptr) return InvalidParam("messages", "messages is required");
  if (!messages->is_array()) return Fields::WrongType("messages", "a list", *messages);
  if (messages->empty()) return InvalidParam("messages", "messages must not be empty");
  for (size_t i = 0; i < messages->size(); ++i) {
    const Json& m = (*messages)[i];
    const std::string where = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return Fields::WrongType(where, "an object", m);
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      return InvalidParam(where, absl::StrCat(where, ".role must be a string"));
    }
    const std::string& name = role->get_ref<const std::string&>();
    if (name != "system" && name != "developer" && name != "user" && name != "assistant" &&
        name != "tool") {
      return InvalidParam(where, absl::StrCat(where, ".role \"", name,
                                              "\" is not one of system, developer, user, "
                                              "assistant, tool"));
    }
  }
  r.messages = *messages;
  // "developer" is OpenAI's newer name for the system role.
  for (Json& m : r.messages) {
    if (m["role"] == "developer") m["role"] = "system";
  }
  RETURN_IF_ERROR(ParseGeneration(f, &r.generation));
  RETURN_IF_ERROR(f.Bool("logprobs", &r.generation.logprobs));
  std::optional<int64_t> top_logprobs;
  RETURN_IF_ERROR(f.Integer("top_logprobs", 0, 20, &top_logprobs));
  if (top_logprobs.has_value()) {
    if (*top_logprobs > 0 && !r.generation.logprobs) {
      return InvalidParam("top_logprobs", "top_logprobs needs logprobs: true");
    }
    r.generation.top_logprobs = static_cast<int>(*top_logprobs);
  }
  RETURN_IF_ERROR(ParseTools(f, &r));

  bool separate = false;
  if (f.Get("separate_reasoning") != nullptr) {
    RETURN_IF_ERROR(f.Bool("separate_reasoning", &separate));
    r.reasoning_mode = separate ? ReasoningMode::kSplit : ReasoningMode::kAppendThink;
  }
  if (const Json* mode = f.Get("reasoning_mode")) {
    if (!mode->is_string()) return Fields::WrongType("reasoning_mode", "a string", *mode);
    absl::StatusOr<ReasoningMode> parsed = ParseReasoningMode(mode->get<std::string>());
    if (!parsed.ok()) {
      return InvalidParam("reasoning_mode", "reasoning_mode must be \"split\" or \"append_think\"");
    }
    r.reasoning_mode = *parsed;
  }
  if (const Json* kwargs = f.Get("chat_template_kwargs")) {
    if (!kwargs->is_object())
      return Fields::WrongType("chat_template_kwargs", "an object", *kwargs);
  }
  if (const Json* format = f.Get("response_format")) {
    if (!format->is_object() || !format->contains("type") || (*format)["type"] != "text") {
      return InvalidParam("response_format",
                          "only response_format {\"type\": \"text\"} is supported");
    }
  }
  if (const Json* forced = f.Get("afd_forced_output")) {
    if (!forced->is_string()) return Fields::WrongType("afd_forced_output", "a string", *forced);
    r.forced_output = forced->get<std::string>();
  }
  return r;
}

absl::StatusOr<CompletionRequest> ParseCompletionRequest(std::string_view body) {
  ASSIGN_OR_RETURN(Json json, ParseBody(body));
  const Fields f(json);
  CompletionRequest r;
  RETURN_IF_ERROR(f.String("model", &r.model));
  const Json* prompt = f.Get("prompt");
  if (prompt == nullptr) return InvalidParam("prompt", "prompt is required");
  if (prompt->is_string()) {
    r.prompt_text = prompt->get<std::string>();
  } else if (prompt->is_array()) {
    if (prompt->empty()) return InvalidParam("prompt", "prompt must not be empty");
    const Json& first = prompt->front();
    if (first.is_string() || first.is_array()) {
      if (prompt->size() != 1) {
        return InvalidParam("prompt", "only one prompt per request is supported");
      }
      if (first.is_string()) {
        r.prompt_text = first.get<std::string>();
      } else {
        RETURN_IF_ERROR(ParseIds(first, "prompt", kPromptType, &r.prompt_token_ids));
      }
    } else {
      RETURN_IF_ERROR(ParseIds(*prompt, "prompt", kPromptType, &r.prompt_token_ids));
    }
  } else {
    return Fields::WrongType("prompt", kPromptType, *prompt);
  }
  if (r.prompt_text.has_value() ? r.prompt_text->empty() : r.prompt_token_ids.empty()) {
    return InvalidParam("prompt", "prompt must not be empty");
  }
  RETURN_IF_ERROR(ParseGeneration(f, &r.generation));
  if (!r.generation.max_tokens.has_value()) r.generation.max_tokens = kDefaultCompletionMaxTokens;
  std::optional<int64_t> logprobs;
  RETURN_IF_ERROR(f.Integer("logprobs", 0, 20, &logprobs));
  if (logprobs.has_value()) {
    r.generation.logprobs = true;
    r.generation.top_logprobs = static_cast<int>(*logprobs);
  }
  bool echo = false;
  RETURN_IF_ERROR(f.Bool("echo", &echo));
  if (echo) return InvalidParam("echo", "echo is not supported");
  if (const Json* suffix = f.Get("suffix")) {
    if (!(suffix->is_string() && suffix->get_ref<const std::string&>().empty())) {
      return InvalidParam("suffix", "suffix is not supported");
    }
  }
  return r;
}

}  // namespace afd::gateway
