// Added tokens (tokenizer.json "added_tokens") and the leftmost-longest matcher that finds them in
// text before normalization and pre-tokenization, with Hugging Face's single_word/lstrip/rstrip
// rules. Immutable after construction; Split is safe from many threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "gateway/tokenizer/regex.h"

namespace afd::gateway {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool normalized = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

// One piece of a split: either an added token (id >= 0) or a gap of text to tokenize (id == -1).
struct AddedTokenSplit {
  size_t begin;
  size_t end;
  int32_t id;
};

class AddedTokenMatcher {
 public:
  // `patterns[i]` is the text to look for and `tokens[i]` its token (same length).
  static absl::StatusOr<AddedTokenMatcher> Create(std::vector<std::string> patterns,
                                                  std::vector<AddedToken> tokens);
  AddedTokenMatcher() = default;

  bool empty() const { return patterns_.empty(); }

  // Splits `text` into gaps and added tokens, covering it in order; empty gaps are left out.
  // With `skip_special`, special tokens found are left in the gaps as text (Hugging Face's
  // encode_special_tokens: the search goes on after them).
  void Split(std::string_view text, MatchRegion* region, std::vector<AddedTokenSplit>* out,
             bool skip_special = false) const;

 private:
  // Leftmost-longest match at or after `from`; returns the pattern index or -1.
  int FindNext(std::string_view text, size_t from, size_t* start, size_t* end) const;
  int Child(int node, unsigned char byte) const {
    auto it = edges_.find((static_cast<uint64_t>(node) << 8) | byte);
    return it == edges_.end() ? -1 : it->second;
  }

  std::vector<std::string> patterns_;
  std::vector<AddedToken> tokens_;
  std::vector<int> terminal_;  // per trie node: pattern index ending there, or -1
  absl::flat_hash_map<uint64_t, int> edges_;
  bool first_byte_[256] = {};
  // Unicode \w and \s tests for single_word / lstrip / rstrip.
  std::shared_ptr<Regex> word_char_;
  std::shared_ptr<Regex> space_char_;
};

}  // namespace afd::gateway
