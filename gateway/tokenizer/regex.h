// Oniguruma regular expressions configured like Hugging Face tokenizers' `onig` crate, with its
// find_iter semantics and exact fast paths. A compiled Regex is immutable and may be searched
// from many threads, each with its own MatchRegion.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gateway/tokenizer/ascii_regex.h"

struct re_pattern_buffer;
struct re_registers;

namespace afd::gateway {

// Oniguruma's one-time setup (UTF-8), done on first use; safe from any thread.
void InitializeOniguruma();

// Compiles `pattern` as the onig crate does (UTF-8, ONIG_SYNTAX_ONIGURUMA, no options; onig_new
// serialized by a global mutex, as it is not safe to call concurrently). The caller owns the
// result (onig_free). INVALID_ARGUMENT with Oniguruma's message when it does not compile.
absl::StatusOr<re_pattern_buffer*> CompileOnigurumaPattern(std::string_view pattern);

// Per-thread scratch for match positions (wraps OnigRegion). Not thread-safe.
class MatchRegion {
 public:
  MatchRegion();
  ~MatchRegion();
  MatchRegion(const MatchRegion&) = delete;
  MatchRegion& operator=(const MatchRegion&) = delete;
  re_registers* get() { return region_; }

 private:
  re_registers* region_;
};

// UTF-8, Oniguruma syntax, no options (as the onig crate compiles Split patterns). Searches first
// try an exact fast path (the o200k scanner for that pattern, else the ASCII matcher of
// ascii_regex.h) and ask Oniguruma whenever the fast path cannot decide.
class Regex {
 public:
  // `fast_path` false always searches with Oniguruma (for tests of the fast paths).
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(std::string_view pattern,
                                                        bool fast_path = true);
  // True when searches may take a fast path (the ASCII matcher or the o200k scanner).
  bool has_fast_path() const { return fast_ != nullptr || o200k_; }
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Leftmost match in text[from, end) (lookaround sees all of `text`, which must be valid
  // UTF-8): 1 when found, 0 when none, -1 when Oniguruma gave up (match resource limits).
  int Search(std::string_view text, size_t from, MatchRegion* region, size_t* match_start,
             size_t* match_end) const;
  // True when the regex matches at text[0] (anchored, not necessarily the whole text).
  bool MatchesAtStart(std::string_view text, MatchRegion* region) const;

  // Calls on_match(start, end) for every non-overlapping match, like onig's find_iter: after an
  // empty match the search resumes one code point later, and an empty match right after a
  // non-empty one is skipped.
  // Fails only when Oniguruma gives up on the text.
  template <typename F>
  absl::Status ForEachMatch(std::string_view text, MatchRegion* region, F&& on_match) const {
    size_t last_end = 0;
    bool skip_next_empty = false;
    while (last_end <= text.size()) {
      size_t s, e;
      const int found = Search(text, last_end, region, &s, &e);
      if (found < 0) return SearchFailed();
      if (found == 0) break;
      last_end = e;
      if (s == e) {
        last_end += last_end < text.size() ? CodePointLengthAt(text, last_end) : 1;
        if (skip_next_empty) {
          skip_next_empty = false;
          continue;
        }
      } else {
        skip_next_empty = true;
      }
      on_match(s, e);
    }
    return absl::OkStatus();
  }

 private:
  explicit Regex(re_pattern_buffer* regex) : regex_(regex) {}
  int OnigSearch(std::string_view text, size_t from, MatchRegion* region, size_t* match_start,
                 size_t* match_end) const;
  static size_t CodePointLengthAt(std::string_view text, size_t pos);
  static absl::Status SearchFailed();

  re_pattern_buffer* regex_;
  std::unique_ptr<AsciiRegex> fast_;
  bool o200k_ = false;  // the o200k pattern, matched by the hand-written scanner
};

}  // namespace afd::gateway
