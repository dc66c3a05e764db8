// The markup of MiniMax-M2 output (reasoning end, tool-call blocks, invokes, parameters) and the
// small text rules PARSING.md §1 and §3.4-5 define on it. Stateless; thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace afd::gateway::minimax {

inline constexpr std::string_view kThinkBegin = "<think>";
inline constexpr std::string_view kThinkEnd = "</think>";
inline constexpr std::string_view kBlockBegin = "<minimax:tool_call>";
inline constexpr std::string_view kBlockEnd = "</minimax:tool_call>";
inline constexpr std::string_view kInvokeBegin = "<invoke name=";
inline constexpr std::string_view kInvokeEnd = "</invoke>";
inline constexpr std::string_view kParameterBegin = "<parameter name=";
inline constexpr std::string_view kParameterEnd = "</parameter>";

// ASCII whitespace: space, \t, \n, \v, \f, \r.
inline bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// Empty or all whitespace.
inline bool IsBlank(std::string_view s) {
  for (char c : s) {
    if (!IsSpace(c)) return false;
  }
  return true;
}

inline std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// Removes leading and trailing '\n' only.
inline std::string_view StripNewlines(std::string_view s) {
  while (!s.empty() && s.front() == '\n') s.remove_prefix(1);
  while (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  return s;
}

// NAME / KEY normalization (§3.4): trim; if at least 2 characters and wrapped in the same quote
// (`"` or `'`), drop the quotes and trim again.
inline std::string NormalizeName(std::string_view raw) {
  std::string_view s = Trim(raw);
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front()) {
    s = Trim(s.substr(1, s.size() - 2));
  }
  return std::string(s);
}

// split-mode reasoning_content from R, the text before the first `</think>` (§2): leading '\n'
// removed, then one leading `<think>`, then leading and trailing '\n'. Returns false when the
// result is blank (reasoning_content is null).
inline bool SplitReasoning(std::string_view r, std::string* out) {
  while (!r.empty() && r.front() == '\n') r.remove_prefix(1);
  if (r.substr(0, kThinkBegin.size()) == kThinkBegin) r.remove_prefix(kThinkBegin.size());
  r = StripNewlines(r);
  if (IsBlank(r)) return false;
  out->assign(r.data(), r.size());
  return true;
}

}  // namespace afd::gateway::minimax
