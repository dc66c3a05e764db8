#include "gateway/server/output_assembler.h"

#include <algorithm>
#include <random>

#include "absl/synchronization/mutex.h"

namespace afd::gateway {

std::string NewToolCallId() {
  static absl::Mutex mu(absl::kConstInit);
  static std::mt19937_64* rng = nullptr;
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  absl::MutexLock lock(&mu);
  if (rng == nullptr) rng = new std::mt19937_64(std::random_device{}());
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlphabet[(*rng)() % (sizeof(kAlphabet) - 1)];
  return id;
}

OutputAssembler::OutputAssembler(const Tokenizer* tokenizer, OutputOptions options)
    : tokenizer_(tokenizer),
      options_(std::move(options)),
      detokenizer_(tokenizer, DetokenizerOptions{options_.skip_special_tokens, options_.stop, {}}) {
  if (options_.chat && options_.stream) {
    parser_ = std::make_unique<StreamingOutputParser>(options_.reasoning_mode,
                                                      ToolSchemas(options_.tools));
  }
}

bool OutputAssembler::has_tool_calls() const {
  return options_.stream ? streamed_calls_ > 0 : !result_.tool_calls.empty();
}

const std::string& OutputAssembler::CallId(int index) {
  while (static_cast<int>(call_ids_.size()) <= index) call_ids_.push_back(NewToolCallId());
  return call_ids_[index];
}

void OutputAssembler::AddEvents(const std::vector<StreamEvent>& events, OutputDelta* delta) {
  for (const StreamEvent& e : events) {
    switch (e.kind) {
      case StreamEvent::Kind::kContent:
        delta->content += e.text;
        break;
      case StreamEvent::Kind::kReasoning:
        delta->reasoning += e.text;
        break;
      case StreamEvent::Kind::kToolCallName: {
        ToolCallDelta call;
        call.index = e.tool_call_index;
        call.id = CallId(e.tool_call_index);
        call.name = e.text;
        delta->tool_calls.push_back(std::move(call));
        streamed_calls_ = std::max(streamed_calls_, e.tool_call_index + 1);
        break;
      }
      case StreamEvent::Kind::kToolCallArguments:
        if (!delta->tool_calls.empty() && delta->tool_calls.back().index == e.tool_call_index) {
          delta->tool_calls.back().arguments += e.text;
        } else {
          ToolCallDelta call;
          call.index = e.tool_call_index;
          call.arguments = e.text;
          delta->tool_calls.push_back(std::move(call));
        }
        break;
    }
  }
}

void OutputAssembler::FeedPrefix(OutputDelta* delta) {
  if (prefix_fed_) return;
  prefix_fed_ = true;
  if (!options_.forced_prefix.empty() && parser_ != nullptr) {
    AddEvents(parser_->Feed(options_.forced_prefix), delta);
  }
}

void OutputAssembler::ParseChunk(const std::string& text, OutputDelta* delta) {
  if (text.empty()) return;
  text_ += text;
  if (!options_.stream) return;
  if (parser_ == nullptr) {
    delta->content += text;
    return;
  }
  AddEvents(parser_->Feed(text), delta);
}

OutputDelta OutputAssembler::Feed(absl::Span<const int32_t> ids,
                                  absl::Span<const TokenLogprobEntry> logprobs) {
  OutputDelta delta;
  if (finished_) return delta;
  FeedPrefix(&delta);
  std::string piece;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (detokenizer_.stopped()) break;
    detokenizer_.Feed(ids[i], &piece);
    ++fed_ids_;
    kept_ids_ = static_cast<int64_t>(detokenizer_.ids_consumed());
    if (i < logprobs.size()) {
      if (options_.stream) {
        delta.logprobs.push_back(logprobs[i]);
      } else {
        result_.logprobs.push_back(logprobs[i]);
      }
    }
  }
  ParseChunk(piece, &delta);
  return delta;
}

OutputDelta OutputAssembler::Finish() {
  OutputDelta delta;
  if (finished_) return delta;
  finished_ = true;
  FeedPrefix(&delta);
  std::string piece;
  detokenizer_.Finish(&piece);
  ParseChunk(piece, &delta);
  if (parser_ != nullptr) {
    AddEvents(parser_->Finish(), &delta);
    inside_tool_call_ = parser_->finished_inside_tool_call();
  }
  if (!options_.chat) {
    result_.text = text_;
    result_.content = text_;
    return delta;
  }
  result_.text = options_.forced_prefix + text_;
  if (!options_.stream) {
    ParsedOutput parsed =
        ParseModelOutput(result_.text, options_.reasoning_mode, ToolSchemas(options_.tools));
    result_.content = std::move(parsed.content);
    result_.reasoning_content = std::move(parsed.reasoning_content);
    result_.tool_calls = std::move(parsed.tool_calls);
    for (size_t i = 0; i < result_.tool_calls.size(); ++i) {
      result_.tool_call_ids.push_back(CallId(static_cast<int>(i)));
    }
  }
  return delta;
}

std::string OutputAssembler::FinishReason(const std::string& node_reason) const {
  if (inside_tool_call_) return "length";
  if (detokenizer_.stopped()) return has_tool_calls() ? "tool_calls" : "stop";
  if (node_reason == "stop" && has_tool_calls()) return "tool_calls";
  return node_reason;
}

}  // namespace afd::gateway
