#include "gateway/tokenizer/incremental_detokenizer.h"

#include <algorithm>
#include <utility>

namespace afd::gateway {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer* tokenizer,
                                               DetokenizerOptions options)
    : tokenizer_(tokenizer), options_(std::move(options)) {
  // Empty stop strings or markers would match everywhere; they are ignored.
  auto drop_empty = [](std::vector<std::string>* v) {
    v->erase(std::remove(v->begin(), v->end(), std::string()), v->end());
  };
  drop_empty(&options_.stop_strings);
  drop_empty(&options_.hold_back_markers);
  for (const auto* list : {&options_.stop_strings, &options_.hold_back_markers}) {
    for (const std::string& s : *list) max_target_length_ = std::max(max_target_length_, s.size());
  }
}

void IncrementalDetokenizer::Feed(int32_t id, std::string* delta) {
  if (stopped()) return;
  ++ids_consumed_;
  switch (tokenizer_->Kind(id)) {
    case Tokenizer::TokenKind::kNone:
      return;
    case Tokenizer::TokenKind::kModel:
      bytes_.Feed(tokenizer_->TokenBytes(id), &held_);
      break;
    case Tokenizer::TokenKind::kAddedSpecial:
      if (options_.skip_special_tokens) return;
      [[fallthrough]];
    case Tokenizer::TokenKind::kAdded:
      // Added tokens end the current byte run (as in Decode) and are copied verbatim.
      bytes_.Flush(&held_);
      held_ += tokenizer_->TokenBytes(id);
      break;
  }
  Release(/*final=*/false, delta);
}

void IncrementalDetokenizer::Finish(std::string* delta) {
  if (stopped()) return;
  bytes_.Flush(&held_);
  Release(/*final=*/true, delta);
}

void IncrementalDetokenizer::Release(bool final, std::string* delta) {
  // The earliest stop string occurrence wins (the longest one when several start there).
  size_t stop_at = std::string::npos;
  const std::string* stop = nullptr;
  for (const std::string& s : options_.stop_strings) {
    const size_t at = held_.find(s);
    if (at != std::string::npos && (at < stop_at || (at == stop_at && s.size() > stop->size()))) {
      stop_at = at;
      stop = &s;
    }
  }
  if (stop != nullptr) {
    delta->append(held_, 0, stop_at);
    held_.clear();
    stop_string_ = *stop;
    return;
  }
  if (final) {
    delta->append(held_);
    held_.clear();
    return;
  }
  // Hold back the longest suffix that is a proper prefix of a stop string or marker.
  size_t hold = 0;
  const size_t longest = std::min(held_.size(), max_target_length_ - (max_target_length_ > 0));
  for (size_t k = longest; k > 0 && hold == 0; --k) {
    const std::string_view suffix = std::string_view(held_).substr(held_.size() - k);
    for (const auto* list : {&options_.stop_strings, &options_.hold_back_markers}) {
      for (const std::string& s : *list) {
        if (s.size() > k && std::string_view(s).substr(0, k) == suffix) {
          hold = k;
          break;
        }
      }
      if (hold != 0) break;
    }
  }
  delta->append(held_, 0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
}

}  // namespace afd::gateway
