// Incremental version of ParseModelOutput for streamed responses (PARSING.md §6): text arrives in
// chunks, and the parser emits content, reasoning and tool-call deltas as soon as they are certain,
// never anything it would later have to revise. One instance per response; not thread-safe.
//
// Guarantee: for every way of cutting a text into chunks, the events concatenate to
// ParseModelOutput's result for the whole text (content deltas to content, reasoning deltas to
// reasoning_content, per tool-call index one name and argument fragments that parse to the
// arguments object), unless the text ends inside (§4: cut off, or a value without a confirmed
// `</parameter>`) an invoke whose name was already sent. In that case (normally the generation hit
// its length limit) the call's name and completed parameters were sent, its arguments stay an
// unclosed JSON object, finished_inside_tool_call() is true and the rest of that invoke is not
// sent. The concatenated events never depend on how the text was cut.
//
// Tool calls stream incrementally: one arguments fragment per parameter as soon as its
// `</parameter>` is confirmed by a following `<parameter name=` or `</invoke>` (`{"city": "Paris"`,
// `, "days": 3`, ...), and `}` (or `{}` for no parameters) at `</invoke>`. The call's name is sent
// just before its first fragment. PARSING.md §6 sends it as soon as the `<invoke name=…>` tag is
// complete, but an invoke whose first value never gets a confirmed `</parameter>` is text (§4, the
// golden case stray_text_before_invoke_close_split), and up to that tag it reads like any call, so
// a name sent there would have to be taken back. With this timing, a malformed first parameter
// leaves no call behind; a cut-off or malformed later parameter leaves a call with unclosed
// arguments, as a length cut does.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/parsing/output_parser.h"
#include "gateway/parsing/tool_schemas.h"

namespace afd::gateway {

struct StreamEvent {
  enum class Kind {
    kContent,            // text: a content delta
    kReasoning,          // text: a reasoning_content delta (split mode only)
    kToolCallName,       // text: the tool name; starts call `tool_call_index` (sent once)
    kToolCallArguments,  // text: a fragment of call `tool_call_index`'s arguments JSON
  };
  Kind kind = Kind::kContent;
  int tool_call_index = -1;  // 0, 1, ... in generation order; -1 for content and reasoning
  std::string text;
};

class StreamingOutputParser {
 public:
  StreamingOutputParser(ReasoningMode mode, ToolSchemas tools);

  // Appends `chunk` (any bytes; a UTF-8 sequence may be split across chunks) and returns the
  // events that became certain, in order; adjacent events of the same kind and call are merged.
  // An empty chunk returns nothing. After Finish(), returns nothing.
  std::vector<StreamEvent> Feed(std::string_view chunk);

  // Ends the stream and returns the remaining events (held text resolved as for a finished
  // output). Later calls return nothing.
  std::vector<StreamEvent> Finish();

  // Number of tool calls whose name has been emitted.
  int tool_calls_started() const { return next_call_index_; }

  // After Finish(): the output ended inside an invoke whose name was sent (its arguments are
  // unclosed; report finish_reason "length" and do not run it). The text after its last
  // confirmed parameter was not sent.
  bool finished_inside_tool_call() const { return finished_inside_call_; }

 private:
  enum class Phase {
    kReasoningStart,   // split: skipping leading '\n'
    kReasoningThink,   // split: the reasoning may start with `<think>`
    kReasoningBody,    // split: reasoning text until `</think>`
    kAppendReasoning,  // append_think: verbatim content until `</think>`
    kAfterThink,       // split: skipping '\n' after `</think>`
    kOutside,          // content outside tool-call blocks
    kBlock,            // inside a block, between invokes
    kInvokeName,       // after `<invoke name=`, until `>`
    kInvokeBody,       // inside an invoke, between parameters
    kParamKey,         // after `<parameter name=`, until `>`
    kParamValue,       // inside a parameter value
    kDone,
  };

  // Runs the state machine as far as the buffered text allows.
  void Process(bool finishing);
  // One step; returns false when the current phase needs more text.
  bool Step();
  void FinishPhase();
  void FinishUnclosedBlock();
  // Sends the current invoke's name (once), after the block's held gap.
  void StartToolCall();

  void EmitContent(std::string_view text);
  void EmitReasoning(std::string_view text);
  void EmitToolCall(StreamEvent::Kind kind, std::string_view text);

  ReasoningMode mode_;
  ToolSchemas tools_;
  Phase phase_;
  std::vector<StreamEvent> events_;  // produced by the current Feed/Finish call

  std::string buf_;       // all complete UTF-8 text received so far
  std::string incoming_;  // an incomplete trailing UTF-8 sequence
  size_t pos_ = 0;        // scan position of the current phase

  // Reasoning (split) and the append_think prefix.
  size_t body_start_ = 0;
  bool body_leading_ = true;  // still skipping '\n' at the start of the body
  size_t emit_pos_ = 0;       // split: reasoning emitted up to here; append: content
  size_t blank_scan_ = 0;     // split: body checked for non-whitespace up to here
  size_t newline_scan_ = 0;   // split: body checked for trailing '\n' up to here
  size_t body_text_end_ = 0;  // split: end of the body without its trailing '\n' run
  bool reasoning_nonblank_ = false;
  size_t reasoning_emitted_ = 0;  // bytes of reasoning emitted
  bool think_prefix_sent_ = false;

  // Content (split mode holds it while blank: blank content is null).
  bool content_nonblank_ = false;
  std::string pending_content_;

  // Tool-call blocks.
  size_t block_start_ = 0;  // at `<minimax:tool_call>`
  size_t gap_start_ = 0;    // start of the current gap
  int block_calls_ = 0;     // tool calls in the current block
  size_t invoke_start_ = 0;
  bool invoke_named_ = false;    // the current invoke has a non-empty NAME
  bool invoke_started_ = false;  // its name has been sent
  std::string invoke_name_;
  int call_index_ = -1;
  int params_sent_ = 0;
  size_t key_start_ = 0;
  std::string key_;
  size_t value_start_ = 0;
  // A `</parameter>` waiting for what follows its whitespace, and where that whitespace ends.
  size_t pending_close_ = std::string::npos;
  size_t pending_close_ws_end_ = 0;
  int next_call_index_ = 0;
  bool finished_inside_call_ = false;
};

}  // namespace afd::gateway
