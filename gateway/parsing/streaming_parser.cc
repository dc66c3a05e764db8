#include "gateway/parsing/streaming_parser.h"

#include <algorithm>
#include <initializer_list>
#include <string>
#include <utility>

#include "gateway/chat/py_json.h"
#include "gateway/parsing/minimax_markup.h"

namespace afd::gateway {
namespace {

namespace mm = minimax;
constexpr size_t kNpos = std::string::npos;

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// True if `s` is a proper prefix of `marker` (shorter, possibly empty).
bool IsProperPrefixOf(std::string_view s, std::string_view marker) {
  return s.size() < marker.size() && marker.substr(0, s.size()) == s;
}

// The smallest p >= from where buf[p:] is a non-empty proper prefix of `marker`, else buf.size().
size_t PartialMarkerStart(std::string_view buf, std::string_view marker, size_t from) {
  const size_t lo = buf.size() >= marker.size() ? buf.size() - marker.size() + 1 : 0;
  for (size_t p = std::max(from, lo); p < buf.size(); ++p) {
    if (IsProperPrefixOf(buf.substr(p), marker)) return p;
  }
  return buf.size();
}

struct MarkerMatch {
  int which = -1;  // index into the markers; -1: undecided, need more text
  size_t pos = 0;  // the match, or where undecided text starts
};

// The first complete occurrence of any marker at or after `from`, unless text there could still
// start an earlier one.
MarkerMatch FirstOf(std::string_view buf, size_t from,
                    std::initializer_list<std::string_view> markers) {
  MarkerMatch best{-1, kNpos};
  size_t hold = buf.size();
  int i = 0;
  for (std::string_view m : markers) {
    const size_t p = buf.find(m, from);
    if (p != kNpos && p < best.pos) best = {i, p};
    hold = std::min(hold, PartialMarkerStart(buf, m, from));
    ++i;
  }
  if (best.which >= 0 && best.pos < hold) return best;
  return {-1, hold};
}

// Length of the longest prefix of `s` that does not end inside a UTF-8 sequence.
size_t CompleteUtf8Prefix(std::string_view s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    size_t need = 1;
    if ((c & 0xE0) == 0xC0) {
      need = 2;
    } else if ((c & 0xF0) == 0xE0) {
      need = 3;
    } else if ((c & 0xF8) == 0xF0) {
      need = 4;
    }
    return need > back ? n - back : n;
  }
  return n;
}

}  // namespace

StreamingOutputParser::StreamingOutputParser(ReasoningMode mode, ToolSchemas tools)
    : mode_(mode),
      tools_(std::move(tools)),
      phase_(mode == ReasoningMode::kSplit ? Phase::kReasoningStart : Phase::kAppendReasoning),
      content_nonblank_(mode == ReasoningMode::kAppendThink) {}

std::vector<StreamEvent> StreamingOutputParser::Feed(std::string_view chunk) {
  if (phase_ == Phase::kDone || chunk.empty()) return {};
  incoming_.append(chunk);
  const size_t complete = CompleteUtf8Prefix(incoming_);
  buf_.append(incoming_, 0, complete);
  incoming_.erase(0, complete);
  Process(/*finishing=*/false);
  return std::move(events_);
}

std::vector<StreamEvent> StreamingOutputParser::Finish() {
  if (phase_ == Phase::kDone) return {};
  buf_.append(incoming_);
  incoming_.clear();
  Process(/*finishing=*/true);
  return std::move(events_);
}

void StreamingOutputParser::Process(bool finishing) {
  events_.clear();
  if (mode_ == ReasoningMode::kAppendThink && !think_prefix_sent_ && (finishing || !buf_.empty())) {
    EmitContent(mm::kThinkBegin);
    think_prefix_sent_ = true;
  }
  while (Step()) {
  }
  if (finishing) {
    FinishPhase();
    phase_ = Phase::kDone;
  }
}

bool StreamingOutputParser::Step() {
  const std::string_view buf = buf_;
  switch (phase_) {
    case Phase::kReasoningStart:
      while (pos_ < buf.size() && buf[pos_] == '\n') ++pos_;
      if (pos_ == buf.size()) return false;
      phase_ = Phase::kReasoningThink;
      return true;

    case Phase::kReasoningThink: {
      const std::string_view rest = buf.substr(pos_);
      if (StartsWith(rest, mm::kThinkBegin)) {
        pos_ += mm::kThinkBegin.size();
      } else if (IsProperPrefixOf(rest, mm::kThinkBegin)) {
        return false;
      }
      phase_ = Phase::kReasoningBody;
      body_start_ = emit_pos_ = blank_scan_ = pos_;
      body_leading_ = true;
      return true;
    }

    case Phase::kReasoningBody: {
      if (body_leading_) {
        while (pos_ < buf.size() && buf[pos_] == '\n') ++pos_;
        body_start_ = emit_pos_ = blank_scan_ = newline_scan_ = body_text_end_ = pos_;
        if (pos_ == buf.size()) return false;
        body_leading_ = false;
      }
      const size_t end = buf.find(mm::kThinkEnd, pos_);
      if (end != kNpos) {
        std::string reasoning;
        if (mm::SplitReasoning(buf.substr(0, end), &reasoning)) {
          EmitReasoning(std::string_view(reasoning).substr(reasoning_emitted_));
        }
        pos_ = end + mm::kThinkEnd.size();
        phase_ = Phase::kAfterThink;
        return true;
      }
      const size_t hold = PartialMarkerStart(buf, mm::kThinkEnd, pos_);
      pos_ = hold;
      // Trailing '\n' before `hold` may still be stripped; track where they start incrementally.
      for (; newline_scan_ < hold; ++newline_scan_) {
        if (buf[newline_scan_] != '\n') body_text_end_ = newline_scan_ + 1;
      }
      const size_t limit = body_text_end_;
      for (; !reasoning_nonblank_ && blank_scan_ < limit; ++blank_scan_) {
        if (!mm::IsSpace(buf[blank_scan_])) reasoning_nonblank_ = true;
      }
      if (reasoning_nonblank_ && limit > emit_pos_) {
        EmitReasoning(buf.substr(emit_pos_, limit - emit_pos_));
        emit_pos_ = limit;
      }
      return false;
    }

    case Phase::kAppendReasoning: {
      const size_t end = buf.find(mm::kThinkEnd, pos_);
      if (end != kNpos) {
        const size_t t_start = end + mm::kThinkEnd.size();
        EmitContent(buf.substr(emit_pos_, t_start - emit_pos_));
        emit_pos_ = pos_ = t_start;
        phase_ = Phase::kOutside;
        return true;
      }
      const size_t hold = PartialMarkerStart(buf, mm::kThinkEnd, pos_);
      EmitContent(buf.substr(emit_pos_, hold - emit_pos_));
      emit_pos_ = pos_ = hold;
      return false;
    }

    case Phase::kAfterThink:
      while (pos_ < buf.size() && buf[pos_] == '\n') ++pos_;
      if (pos_ == buf.size()) return false;
      phase_ = Phase::kOutside;
      return true;

    case Phase::kOutside: {
      if (!tools_.tool_parsing_enabled()) {
        EmitContent(buf.substr(pos_));
        pos_ = buf.size();
        return false;
      }
      const size_t block = buf.find(mm::kBlockBegin, pos_);
      if (block == kNpos) {
        const size_t hold = PartialMarkerStart(buf, mm::kBlockBegin, pos_);
        EmitContent(buf.substr(pos_, hold - pos_));
        pos_ = hold;
        return false;
      }
      EmitContent(buf.substr(pos_, block - pos_));
      block_start_ = block;
      pos_ = gap_start_ = block + mm::kBlockBegin.size();
      block_calls_ = 0;
      phase_ = Phase::kBlock;
      return true;
    }

    case Phase::kBlock: {
      const MarkerMatch m = FirstOf(buf, pos_, {mm::kInvokeBegin, mm::kBlockEnd});
      if (m.which < 0) {
        pos_ = m.pos;
        return false;
      }
      if (m.which == 1) {
        const size_t block_end = m.pos + mm::kBlockEnd.size();
        if (block_calls_ == 0) {
          EmitContent(buf.substr(block_start_, block_end - block_start_));
        } else {
          const std::string_view gap = buf.substr(gap_start_, m.pos - gap_start_);
          if (!mm::IsBlank(gap)) EmitContent(gap);
        }
        pos_ = block_end;
        phase_ = Phase::kOutside;
        return true;
      }
      invoke_start_ = m.pos;
      invoke_named_ = invoke_started_ = false;
      pos_ = m.pos + mm::kInvokeBegin.size();
      phase_ = Phase::kInvokeName;
      return true;
    }

    case Phase::kInvokeName: {
      const size_t gt = buf.find('>', pos_);
      if (gt == kNpos) {
        pos_ = buf.size();
        return false;
      }
      const size_t name_start = invoke_start_ + mm::kInvokeBegin.size();
      invoke_name_ = mm::NormalizeName(buf.substr(name_start, gt - name_start));
      invoke_named_ = !invoke_name_.empty();
      invoke_started_ = false;
      pos_ = gt + 1;
      phase_ = Phase::kInvokeBody;
      return true;
    }

    case Phase::kInvokeBody: {
      const MarkerMatch m = FirstOf(buf, pos_, {mm::kParameterBegin, mm::kInvokeEnd});
      if (m.which < 0) {
        pos_ = m.pos;
        return false;
      }
      if (m.which == 1) {
        pos_ = m.pos + mm::kInvokeEnd.size();
        if (invoke_named_) {
          StartToolCall();
          EmitToolCall(StreamEvent::Kind::kToolCallArguments, params_sent_ == 0 ? "{}" : "}");
          gap_start_ = pos_;
        }
        phase_ = Phase::kBlock;
        return true;
      }
      key_start_ = pos_ = m.pos + mm::kParameterBegin.size();
      phase_ = Phase::kParamKey;
      return true;
    }

    case Phase::kParamKey: {
      const size_t gt = buf.find('>', pos_);
      if (gt == kNpos) {
        pos_ = buf.size();
        return false;
      }
      key_ = mm::NormalizeName(buf.substr(key_start_, gt - key_start_));
      value_start_ = pos_ = gt + 1;
      phase_ = Phase::kParamValue;
      return true;
    }

    case Phase::kParamValue:
      while (true) {
        const size_t close = buf.find(mm::kParameterEnd, pos_);
        if (close == kNpos) {
          pos_ = PartialMarkerStart(buf, mm::kParameterEnd, pos_);
          return false;
        }
        size_t w = close + mm::kParameterEnd.size();
        if (close == pending_close_) w = std::max(w, pending_close_ws_end_);  // already skipped
        while (w < buf.size() && mm::IsSpace(buf[w])) ++w;
        const std::string_view rest = buf.substr(w);
        if (StartsWith(rest, mm::kParameterBegin) || StartsWith(rest, mm::kInvokeEnd)) {
          if (invoke_named_) {
            StartToolCall();
            const std::string_view value =
                mm::StripNewlines(buf.substr(value_start_, close - value_start_));
            std::string fragment = params_sent_ == 0 ? "{" : ", ";
            AppendPyJsonString(key_, &fragment);
            fragment.append(": ");
            AppendPyJson(tools_.ConvertValue(invoke_name_, key_, value), &fragment);
            EmitToolCall(StreamEvent::Kind::kToolCallArguments, fragment);
            ++params_sent_;
          }
          pos_ = close + mm::kParameterEnd.size();
          phase_ = Phase::kInvokeBody;
          return true;
        }
        if (IsProperPrefixOf(rest, mm::kParameterBegin) || IsProperPrefixOf(rest, mm::kInvokeEnd)) {
          pos_ = pending_close_ = close;  // undecided: recheck this `</parameter>` with more text
          pending_close_ws_end_ = w;
          return false;
        }
        pos_ = close + 1;  // part of the value
      }

    case Phase::kDone:
      return false;
  }
  return false;
}

void StreamingOutputParser::FinishPhase() {
  const std::string_view buf = buf_;
  switch (phase_) {
    case Phase::kReasoningStart:
    case Phase::kReasoningThink:
    case Phase::kReasoningBody: {
      // No `</think>`: all of it is reasoning and there is no content.
      std::string reasoning;
      if (mm::SplitReasoning(buf, &reasoning)) {
        EmitReasoning(std::string_view(reasoning).substr(reasoning_emitted_));
      }
      return;
    }
    case Phase::kAppendReasoning:
      EmitContent(buf.substr(emit_pos_));
      return;
    case Phase::kAfterThink:
      return;
    case Phase::kOutside:
      EmitContent(buf.substr(pos_));
      return;
    case Phase::kBlock:
      FinishUnclosedBlock();
      return;
    case Phase::kInvokeName:
    case Phase::kInvokeBody:
    case Phase::kParamKey:
    case Phase::kParamValue:
      if (invoke_started_) {
        finished_inside_call_ = true;  // name and completed parameters already sent
      } else {
        FinishUnclosedBlock();  // an incomplete invoke that never became a call: block text
      }
      return;
    case Phase::kDone:
      return;
  }
}

void StreamingOutputParser::StartToolCall() {
  if (invoke_started_) return;
  invoke_started_ = true;
  const std::string_view gap =
      std::string_view(buf_).substr(gap_start_, invoke_start_ - gap_start_);
  if (!mm::IsBlank(gap)) EmitContent(gap);
  call_index_ = next_call_index_++;
  ++block_calls_;
  params_sent_ = 0;
  EmitToolCall(StreamEvent::Kind::kToolCallName, invoke_name_);
}

void StreamingOutputParser::FinishUnclosedBlock() {
  const std::string_view buf = buf_;
  if (block_calls_ == 0) {
    EmitContent(buf.substr(block_start_));
    return;
  }
  const std::string_view tail = buf.substr(gap_start_);
  if (mm::IsBlank(tail)) return;
  std::string text(mm::kBlockBegin);
  text.append(tail);
  EmitContent(text);
}

void StreamingOutputParser::EmitContent(std::string_view text) {
  if (text.empty()) return;
  if (!content_nonblank_) {
    pending_content_.append(text);
    if (mm::IsBlank(text)) return;
    content_nonblank_ = true;
    std::string held = std::move(pending_content_);
    pending_content_.clear();
    EmitContent(held);
    return;
  }
  if (!events_.empty() && events_.back().kind == StreamEvent::Kind::kContent) {
    events_.back().text.append(text);
  } else {
    events_.push_back(StreamEvent{StreamEvent::Kind::kContent, -1, std::string(text)});
  }
}

void StreamingOutputParser::EmitReasoning(std::string_view text) {
  if (text.empty()) return;
  reasoning_emitted_ += text.size();
  if (!events_.empty() && events_.back().kind == StreamEvent::Kind::kReasoning) {
    events_.back().text.append(text);
  } else {
    events_.push_back(StreamEvent{StreamEvent::Kind::kReasoning, -1, std::string(text)});
  }
}

void StreamingOutputParser::EmitToolCall(StreamEvent::Kind kind, std::string_view text) {
  if (kind == StreamEvent::Kind::kToolCallArguments && !events_.empty() &&
      events_.back().kind == kind && events_.back().tool_call_index == call_index_) {
    events_.back().text.append(text);
    return;
  }
  events_.push_back(StreamEvent{kind, call_index_, std::string(text)});
}

}  // namespace afd::gateway
