// Streaming detokenizer: generated ids in, text deltas out, with stop strings and hold-back
// markers; the deltas add up to Tokenizer::Decode cut before the stop string. One instance per
// sequence; not thread-safe. The Tokenizer must outlive it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/tokenizer/tokenizer.h"
#include "gateway/tokenizer/utf8.h"

namespace afd::gateway {

struct DetokenizerOptions {
  // Drop special added tokens (as Decode's skip_special_tokens).
  bool skip_special_tokens = true;
  // Generation stops at the first of these to appear; it and the text after it are not emitted.
  std::vector<std::string> stop_strings;
  // Markers that must reach the client whole; a possible partial marker at the end is held back.
  std::vector<std::string> hold_back_markers;
};

// Deltas never end inside a UTF-8 sequence. Text that might be the start of a stop string or of a
// hold-back marker (`<think>`, `</think>`, `<minimax:tool_call>`, ...) is held back until it is
// disambiguated, so a marker always arrives whole in one delta. On a stop string the text before
// it is released and everything after it is dropped.
class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer* tokenizer, DetokenizerOptions options);

  // Feeds one generated id and appends the text that became final to *delta (possibly nothing).
  // Unknown ids decode to nothing. After a stop string matched, further ids are ignored.
  void Feed(int32_t id, std::string* delta);
  // Ends the stream: appends everything still held back (an incomplete UTF-8 sequence becomes
  // U+FFFD, as in Decode).
  void Finish(std::string* delta);

  // True once a stop string has matched.
  bool stopped() const { return stop_string_.has_value(); }
  // The stop string that matched, if any.
  const std::optional<std::string>& stop_string() const { return stop_string_; }
  // Number of ids fed up to and including the one that completed the stop string (or all).
  size_t ids_consumed() const { return ids_consumed_; }
  // Text decoded but not yet released.
  std::string_view held_text() const { return held_; }

 private:
  // Checks held_ for stop strings and releases what is safe; `final` releases everything.
  void Release(bool final, std::string* delta);

  const Tokenizer* tokenizer_;
  DetokenizerOptions options_;
  Utf8LossyStream bytes_;
  std::string held_;
  std::optional<std::string> stop_string_;
  size_t ids_consumed_ = 0;
  size_t max_target_length_ = 0;
};

}  // namespace afd::gateway
