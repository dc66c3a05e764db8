// OutputAssembler: turns the token ids an attention node streams back into what an OpenAI client
// sees: text through the incremental detokenizer (UTF-8 safe, stop strings cut with hold-back),
// then, for chat, reasoning and tool calls through the MiniMax-M2 parsers (streaming deltas, or
// the finished message). Also carries the per-token logprobs of the ids that were kept. One
// instance per request; not thread-safe. The Tokenizer must outlive it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "gateway/parsing/output_parser.h"
#include "gateway/parsing/streaming_parser.h"
#include "gateway/tokenizer/incremental_detokenizer.h"
#include "gateway/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {

// A token's log-probability and the most likely alternatives (most likely first).
struct TokenLogprobEntry {
  int32_t token_id = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;
};

// One streamed tool-call piece: the first piece of a call carries its id and name.
struct ToolCallDelta {
  int index = 0;
  std::string id;
  std::string name;
  std::string arguments;
};

// What became final since the previous delta.
struct OutputDelta {
  std::string content;
  std::string reasoning;
  std::vector<ToolCallDelta> tool_calls;
  std::vector<TokenLogprobEntry> logprobs;
  bool empty() const {
    return content.empty() && reasoning.empty() && tool_calls.empty() && logprobs.empty();
  }
};

struct OutputOptions {
  bool chat = true;  // false: plain completion text (no reasoning or tool parsing)
  ReasoningMode reasoning_mode = ReasoningMode::kAppendThink;
  nlohmann::ordered_json tools;  // tool definitions to parse calls against; null: no parsing
  // Text the output is known to start with although the node did not generate it (the prompt
  // was extended with it, e.g. to start a named tool call); parsed before the generated text.
  std::string forced_prefix;
  std::vector<std::string> stop;  // stop strings
  bool skip_special_tokens = true;
  bool stream = false;  // Feed/Finish return deltas; else only Result() is filled
};

// The finished output (non-streaming responses).
struct AssembledOutput {
  std::string text;  // completion: the text; chat: the raw text the parsers saw (prefix incl.)
  std::optional<std::string> content;
  std::optional<std::string> reasoning_content;
  std::vector<ParsedToolCall> tool_calls;
  std::vector<std::string> tool_call_ids;  // one per tool call
  std::vector<TokenLogprobEntry> logprobs;
};

class OutputAssembler {
 public:
  OutputAssembler(const Tokenizer* tokenizer, OutputOptions options);

  // Feeds the node's new ids; `logprobs` is empty or has one entry per id. Ids after a matched
  // stop string are dropped.
  OutputDelta Feed(absl::Span<const int32_t> ids, absl::Span<const TokenLogprobEntry> logprobs);
  // The end of the generation: releases held text and parses the whole output.
  OutputDelta Finish();

  // A stop string matched: the caller should cancel the generation.
  bool stopped() const { return detokenizer_.stopped(); }
  // Ids that count as output (up to and including the one completing a stop string).
  int64_t completion_tokens() const { return kept_ids_; }
  // After Finish.
  const AssembledOutput& result() const { return result_; }
  bool finished_inside_tool_call() const { return inside_tool_call_; }
  bool has_tool_calls() const;

  // OpenAI finish_reason from the node's reason ("stop", "length", "abort"): "stop" for a stop
  // string, "length" for a stream cut inside a tool call, "tool_calls" when calls were made.
  std::string FinishReason(const std::string& node_reason) const;

 private:
  // Streams the forced prefix through the parser once, before the first generated text.
  void FeedPrefix(OutputDelta* delta);
  void ParseChunk(const std::string& text, OutputDelta* delta);
  void AddEvents(const std::vector<StreamEvent>& events, OutputDelta* delta);
  const std::string& CallId(int index);

  const Tokenizer* tokenizer_;
  OutputOptions options_;
  IncrementalDetokenizer detokenizer_;
  std::unique_ptr<StreamingOutputParser> parser_;  // chat + stream
  std::string text_;                               // everything released so far
  int64_t fed_ids_ = 0;
  int64_t kept_ids_ = 0;
  std::vector<std::string> call_ids_;
  int streamed_calls_ = 0;
  bool inside_tool_call_ = false;
  bool finished_ = false;
  bool prefix_fed_ = false;
  AssembledOutput result_;
};

// "call_" + 24 random letters and digits.
std::string NewToolCallId();

}  // namespace afd::gateway
