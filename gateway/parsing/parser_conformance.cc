#include "gateway/parsing/parser_conformance.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gateway/chat/py_json.h"
#include "gateway/parsing/minimax_markup.h"
#include "gateway/parsing/streaming_parser.h"
#include "gateway/parsing/tool_schemas.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;

std::string Show(const Json& v) { return PyJsonDumps(v); }

Json OptionalString(const std::optional<std::string>& s) {
  return s.has_value() ? Json(*s) : Json(nullptr);
}

// The name a cut-off invoke would have: the last `<invoke name=…>` tag of the text, if complete.
std::optional<std::string> LastInvokeName(std::string_view text) {
  const size_t p = text.rfind(minimax::kInvokeBegin);
  if (p == std::string_view::npos) return std::nullopt;
  const size_t start = p + minimax::kInvokeBegin.size();
  const size_t gt = text.find('>', start);
  if (gt == std::string_view::npos) return std::nullopt;
  return minimax::NormalizeName(text.substr(start, gt - start));
}

void CompareField(const char* field, const Json& want, const Json& got,
                  std::vector<std::string>* errors) {
  if (!ExactJsonEqual(want, got)) {
    errors->push_back(absl::StrCat(field, ": want ", Show(want), ", got ", Show(got)));
  }
}

}  // namespace

bool ExactJsonEqual(const Json& a, const Json& b) {
  const bool a_int = a.is_number_integer();  // signed or unsigned
  const bool b_int = b.is_number_integer();
  if (a_int || b_int) {
    if (!(a_int && b_int)) return false;
    if (a.is_number_unsigned() && b.is_number_unsigned()) {
      return a.get<uint64_t>() == b.get<uint64_t>();
    }
    if (a.is_number_unsigned() || b.is_number_unsigned()) {
      const Json& u = a.is_number_unsigned() ? a : b;
      const Json& s = a.is_number_unsigned() ? b : a;
      return s.get<int64_t>() >= 0 && static_cast<uint64_t>(s.get<int64_t>()) == u.get<uint64_t>();
    }
    return a.get<int64_t>() == b.get<int64_t>();
  }
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case Json::value_t::number_float:
      return a.get<double>() == b.get<double>() &&
             std::signbit(a.get<double>()) == std::signbit(b.get<double>());
    case Json::value_t::array: {
      if (a.size() != b.size()) return false;
      for (size_t i = 0; i < a.size(); ++i) {
        if (!ExactJsonEqual(a[i], b[i])) return false;
      }
      return true;
    }
    case Json::value_t::object: {
      if (a.size() != b.size()) return false;
      auto ia = a.begin();
      auto ib = b.begin();
      for (; ia != a.end(); ++ia, ++ib) {
        if (ia.key() != ib.key() || !ExactJsonEqual(ia.value(), ib.value())) return false;
      }
      return true;
    }
    default:
      return a == b;
  }
}

Json ParsedOutputToJson(const ParsedOutput& output) {
  Json calls = Json::array();
  for (const ParsedToolCall& call : output.tool_calls) {
    Json c = Json::object();
    c["name"] = call.name;
    c["arguments"] = call.arguments;
    calls.push_back(std::move(c));
  }
  Json out = Json::object();
  out["content"] = OptionalString(output.content);
  out["reasoning_content"] = OptionalString(output.reasoning_content);
  out["tool_calls"] = std::move(calls);
  return out;
}

absl::StatusOr<std::vector<ParserCase>> LoadParserCases(const Json& doc) {
  if (!doc.is_object() || !doc.contains("cases") || !doc["cases"].is_array()) {
    return absl::InvalidArgumentError("parser cases: expected an object with a \"cases\" list");
  }
  std::vector<ParserCase> cases;
  for (size_t i = 0; i < doc["cases"].size(); ++i) {
    const Json& c = doc["cases"][i];
    const std::string where = absl::StrCat("cases[", i, "]");
    if (!c.is_object() || !c.contains("name") || !c["name"].is_string() || !c.contains("text") ||
        !c["text"].is_string() || !c.contains("mode") || !c["mode"].is_string() ||
        !c.contains("expected") || !c["expected"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": needs string name, mode, text and an expected object"));
    }
    ParserCase pc;
    pc.name = c["name"].get<std::string>();
    absl::StatusOr<ReasoningMode> mode = ParseReasoningMode(c["mode"].get<std::string>());
    if (!mode.ok())
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", mode.status().message()));
    pc.mode = *mode;
    pc.tools = c.contains("tools") ? c["tools"] : Json(nullptr);
    pc.text = c["text"].get<std::string>();
    pc.expected = c["expected"];
    for (const char* field : {"content", "reasoning_content", "tool_calls"}) {
      if (!pc.expected.contains(field)) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": expected lacks ", field));
      }
    }
    pc.cut_inside_invoke = c.contains("cut_inside_invoke") && c["cut_inside_invoke"].is_boolean() &&
                           c["cut_inside_invoke"].get<bool>();
    cases.push_back(std::move(pc));
  }
  return cases;
}

std::vector<std::string> CutText(std::string_view text, const std::vector<size_t>& cuts) {
  std::vector<std::string> chunks;
  size_t prev = 0;
  for (size_t cut : cuts) {
    chunks.emplace_back(text.substr(prev, cut - prev));
    prev = cut;
  }
  chunks.emplace_back(text.substr(prev));
  return chunks;
}

std::vector<size_t> CodePointBoundaries(std::string_view text) {
  std::vector<size_t> out;
  for (size_t i = 1; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) out.push_back(i);
  }
  return out;
}

std::vector<std::string> CheckStreamedChunks(const ParserCase& c,
                                             const std::vector<std::string>& chunks) {
  std::vector<std::string> errors;
  StreamingOutputParser parser(c.mode, ToolSchemas(c.tools));
  std::vector<StreamEvent> events;
  for (const std::string& chunk : chunks) {
    for (StreamEvent& e : parser.Feed(chunk)) events.push_back(std::move(e));
    if (!parser.Feed("").empty()) errors.push_back("an empty chunk produced events");
  }
  for (StreamEvent& e : parser.Finish()) events.push_back(std::move(e));

  std::string content;
  std::string reasoning;
  std::map<int, std::vector<std::string>> names;
  std::map<int, std::string> arguments;
  for (const StreamEvent& e : events) {
    switch (e.kind) {
      case StreamEvent::Kind::kContent:
        content += e.text;
        break;
      case StreamEvent::Kind::kReasoning:
        reasoning += e.text;
        break;
      case StreamEvent::Kind::kToolCallName:
        names[e.tool_call_index].push_back(e.text);
        break;
      case StreamEvent::Kind::kToolCallArguments:
        if (names.count(e.tool_call_index) == 0) {
          errors.push_back(
              absl::StrCat("arguments for call ", e.tool_call_index, " before its name"));
        }
        arguments[e.tool_call_index] += e.text;
        break;
    }
  }
  const Json got_content = content.empty() ? Json(nullptr) : Json(content);
  const Json got_reasoning = reasoning.empty() ? Json(nullptr) : Json(reasoning);
  const Json& want = c.expected;
  CompareField("reasoning_content", want["reasoning_content"], got_reasoning, &errors);
  if (!c.cut_inside_invoke) CompareField("content", want["content"], got_content, &errors);

  const Json& want_calls = want["tool_calls"];
  int index = 0;
  for (const auto& [i, call_names] : names) {
    if (i != index++) {
      errors.push_back(absl::StrCat("tool call indices are not 0, 1, ...: saw ", i));
      return errors;
    }
    if (call_names.size() != 1) {
      errors.push_back(absl::StrCat("tool call ", i, " got ", call_names.size(), " names"));
    }
  }
  const size_t got_count = names.size();
  const size_t want_count = want_calls.size();
  const bool extra_allowed = c.cut_inside_invoke && got_count == want_count + 1;
  if (got_count != want_count && !extra_allowed) {
    errors.push_back(absl::StrCat("tool calls: want ", want_count, ", got ", got_count));
    return errors;
  }
  for (size_t i = 0; i < got_count; ++i) {
    const int idx = static_cast<int>(i);
    const std::string& name = names[idx].front();
    Json args;
    const bool parsed = ParseStrictJson(arguments[idx], &args) && args.is_object();
    if (i == want_count) {  // the cut-off call
      const std::optional<std::string> cut_name =
          c.cut_off_call_name.has_value() ? c.cut_off_call_name : LastInvokeName(c.text);
      if (!cut_name.has_value() || *cut_name != name) {
        errors.push_back(absl::StrCat("cut-off tool call has name \"", name, "\""));
      }
      if (parsed) {
        errors.push_back(absl::StrCat("cut-off tool call has complete arguments ", arguments[idx]));
      }
      continue;
    }
    if (name != want_calls[i]["name"].get<std::string>()) {
      errors.push_back(absl::StrCat("tool call ", i, " name: want ",
                                    want_calls[i]["name"].get<std::string>(), ", got ", name));
    }
    if (!parsed) {
      errors.push_back(absl::StrCat("tool call ", i, " arguments do not parse: ", arguments[idx]));
    } else {
      CompareField(absl::StrCat("tool call ", i, " arguments").c_str(), want_calls[i]["arguments"],
                   args, &errors);
    }
  }
  return errors;
}

std::vector<std::string> CheckParserCase(const ParserCase& c, const StreamCheckOptions& options) {
  std::vector<std::string> out;
  auto report = [&](const std::string& how, const std::vector<std::string>& errors) {
    for (const std::string& e : errors) out.push_back(absl::StrCat(c.name, " [", how, "]: ", e));
  };

  // Non-streaming.
  const ParsedOutput parsed = ParseModelOutput(c.text, c.mode, ToolSchemas(c.tools));
  const Json got = ParsedOutputToJson(parsed);
  std::vector<std::string> errors;
  CompareField("content", c.expected["content"], got["content"], &errors);
  CompareField("reasoning_content", c.expected["reasoning_content"], got["reasoning_content"],
               &errors);
  CompareField("tool_calls", c.expected["tool_calls"], got["tool_calls"], &errors);
  report("non-streaming", errors);

  // Streaming.
  report("single chunk", CheckStreamedChunks(c, {c.text}));
  const std::vector<size_t> boundaries = CodePointBoundaries(c.text);
  for (size_t k : boundaries) {
    const std::vector<std::string> e = CheckStreamedChunks(c, CutText(c.text, {k}));
    report(absl::StrCat("cut at byte ", k), e);
    if (!e.empty()) break;  // one failing cut is enough to report
  }
  report("one code point per chunk", CheckStreamedChunks(c, CutText(c.text, boundaries)));
  uint64_t name_hash = 0xcbf29ce484222325ULL;  // FNV-1a: the same cuttings on every platform
  for (char ch : c.name)
    name_hash = (name_hash ^ static_cast<unsigned char>(ch)) * 0x100000001b3ULL;
  std::mt19937_64 rng(options.seed ^ name_hash);
  for (int r = 0; r < options.random_cuttings && !boundaries.empty(); ++r) {
    const size_t want_cuts = 1 + rng() % 12;
    std::set<size_t> cut_set;
    for (size_t n = 0; n < want_cuts; ++n) cut_set.insert(boundaries[rng() % boundaries.size()]);
    const std::vector<size_t> cuts(cut_set.begin(), cut_set.end());
    report(absl::StrCat("random cutting ", r, " at ", absl::StrJoin(cuts, ",")),
           CheckStreamedChunks(c, CutText(c.text, cuts)));
  }
  return out;
}

}  // namespace afd::gateway
