#include "gateway/parsing/output_parser.h"

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gateway/chat/py_json.h"
#include "gateway/parsing/minimax_markup.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;
namespace mm = minimax;
constexpr size_t kNpos = std::string_view::npos;

// One invoke parsed by rule 3, starting at the `<invoke name=` at `start`.
struct Invoke {
  bool complete = false;  // reached its `</invoke>` before the end of the text
  size_t end = 0;         // just after `</invoke>` when complete
  std::string name;       // normalized NAME
  std::vector<std::pair<std::string, std::string_view>> params;  // KEY, VALUE ('\n'-stripped)
};

Invoke ParseInvoke(std::string_view t, size_t start) {
  Invoke inv;
  size_t p = start + mm::kInvokeBegin.size();
  const size_t name_end = t.find('>', p);
  if (name_end == kNpos) return inv;
  inv.name = mm::NormalizeName(t.substr(p, name_end - p));
  p = name_end + 1;
  while (true) {
    const size_t param = t.find(mm::kParameterBegin, p);
    const size_t close = t.find(mm::kInvokeEnd, p);
    if (close != kNpos && (param == kNpos || close < param)) {
      inv.complete = true;
      inv.end = close + mm::kInvokeEnd.size();
      return inv;
    }
    if (param == kNpos) return inv;
    const size_t key_start = param + mm::kParameterBegin.size();
    const size_t key_end = t.find('>', key_start);
    if (key_end == kNpos) return inv;
    const size_t value_start = key_end + 1;
    size_t search = value_start;
    size_t value_end = kNpos;
    while (true) {
      const size_t candidate = t.find(mm::kParameterEnd, search);
      if (candidate == kNpos) return inv;
      size_t w = candidate + mm::kParameterEnd.size();
      while (w < t.size() && mm::IsSpace(t[w])) ++w;
      const std::string_view rest = t.substr(w);
      if (rest.substr(0, mm::kParameterBegin.size()) == mm::kParameterBegin ||
          rest.substr(0, mm::kInvokeEnd.size()) == mm::kInvokeEnd) {
        value_end = candidate;
        break;
      }
      search = candidate + 1;
    }
    inv.params.emplace_back(mm::NormalizeName(t.substr(key_start, key_end - key_start)),
                            mm::StripNewlines(t.substr(value_start, value_end - value_start)));
    p = value_end + mm::kParameterEnd.size();
  }
}

// §3 over T: the content pieces (concatenated) and the tool calls.
void ScanToolCalls(std::string_view t, const ToolSchemas& tools, std::string* content,
                   std::vector<ParsedToolCall>* calls) {
  if (!tools.tool_parsing_enabled()) {
    content->append(t);
    return;
  }
  size_t pos = 0;
  while (true) {
    const size_t block_start = t.find(mm::kBlockBegin, pos);
    if (block_start == kNpos) {
      content->append(t.substr(pos));
      return;
    }
    content->append(t.substr(pos, block_start - pos));
    size_t p = block_start + mm::kBlockBegin.size();
    size_t gap_start = p;
    std::vector<std::string_view> gaps;
    std::vector<ParsedToolCall> block_calls;
    size_t block_end = kNpos;  // set when the block closes
    while (true) {
      const size_t invoke = t.find(mm::kInvokeBegin, p);
      const size_t close = t.find(mm::kBlockEnd, p);
      if (close != kNpos && (invoke == kNpos || close < invoke)) {
        gaps.push_back(t.substr(gap_start, close - gap_start));
        block_end = close + mm::kBlockEnd.size();
        break;
      }
      if (invoke == kNpos) break;
      Invoke inv = ParseInvoke(t, invoke);
      if (!inv.complete) break;
      p = inv.end;
      if (inv.name.empty()) continue;  // not a tool call: its text stays in the gap
      gaps.push_back(t.substr(gap_start, invoke - gap_start));
      ParsedToolCall call;
      call.name = std::move(inv.name);
      for (const auto& [key, value] : inv.params) {
        call.arguments[key] = tools.ConvertValue(call.name, key, value);
      }
      block_calls.push_back(std::move(call));
      gap_start = inv.end;
    }
    if (block_calls.empty()) {  // rule 7 / §4: the block is text
      content->append(t.substr(block_start, block_end == kNpos ? kNpos : block_end - block_start));
    } else {
      for (std::string_view gap : gaps) {
        if (!mm::IsBlank(gap)) content->append(gap);
      }
      for (ParsedToolCall& call : block_calls) calls->push_back(std::move(call));
      if (block_end == kNpos) {  // unclosed: the tail after the last call
        const std::string_view tail = t.substr(gap_start);
        if (!mm::IsBlank(tail)) {
          content->append(mm::kBlockBegin);
          content->append(tail);
        }
      }
    }
    if (block_end == kNpos) return;
    pos = block_end;
  }
}

}  // namespace

absl::StatusOr<ReasoningMode> ParseReasoningMode(std::string_view name) {
  if (name == "split") return ReasoningMode::kSplit;
  if (name == "append_think") return ReasoningMode::kAppendThink;
  return absl::InvalidArgumentError(absl::StrCat("unknown reasoning mode \"", std::string(name),
                                                 "\" (expected split or append_think)"));
}

ParsedOutput ParseModelOutput(std::string_view text, ReasoningMode mode, const ToolSchemas& tools) {
  ParsedOutput out;
  const size_t think_end = text.find(mm::kThinkEnd);
  if (mode == ReasoningMode::kSplit) {
    std::string reasoning;
    if (mm::SplitReasoning(text.substr(0, think_end), &reasoning)) {
      out.reasoning_content = std::move(reasoning);
    }
    if (think_end == kNpos) return out;
    std::string_view t = text.substr(think_end + mm::kThinkEnd.size());
    while (!t.empty() && t.front() == '\n') t.remove_prefix(1);
    std::string content;
    ScanToolCalls(t, tools, &content, &out.tool_calls);
    if (!mm::IsBlank(content)) out.content = std::move(content);
    return out;
  }
  std::string content(mm::kThinkBegin);
  if (think_end == kNpos) {
    content.append(text);
  } else {
    const size_t t_start = think_end + mm::kThinkEnd.size();
    content.append(text.substr(0, t_start));
    ScanToolCalls(text.substr(t_start), tools, &content, &out.tool_calls);
  }
  out.content = std::move(content);
  return out;
}

std::string ToolArgumentsJson(const Json& arguments) { return PyJsonDumps(arguments); }

}  // namespace afd::gateway
