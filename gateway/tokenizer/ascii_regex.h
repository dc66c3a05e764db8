// Exact fast path for Oniguruma searches over ASCII text (a small backtracking matcher for a
// subset of the syntax) that defers to Oniguruma whenever non-ASCII text could matter.
// Immutable after Compile; Search is safe from many threads.
#pragma once

#include <bitset>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

namespace afd::gateway {

// Single-character classes are evaluated by Oniguruma itself at compile time, so their meaning
// on ASCII is Oniguruma's by construction. Supported: classes, literals, groups incl. (?i:...)
// over ASCII literals, alternation, greedy and lazy quantifiers, lookahead. A search answers
// only when the result cannot depend on a non-ASCII byte; otherwise it says kUnknown.
class AsciiRegex {
 public:
  enum class Result { kMatch, kNoMatch, kUnknown };

  // Returns nullptr when the pattern uses syntax outside the supported subset (anchors,
  // backreferences, lookbehind, possessive quantifiers, non-ASCII case folding, ...).
  static std::unique_ptr<AsciiRegex> Compile(std::string_view pattern);

  // Same contract as onig_search(text, start = from, range = end): the leftmost match starting
  // at or after `from`, lookahead seeing all of `text`. On kUnknown, *match_start is a position
  // before which no match starts, so Oniguruma can resume the search there.
  Result Search(std::string_view text, size_t from, size_t* match_start, size_t* match_end) const;

 private:
  struct Inst {
    enum class Op : uint8_t { kChar, kRun, kSplit, kGuardedSplit, kJmp, kMatch, kLook };
    Op op;
    bool negative = false;  // kLook: negative lookahead
    int32_t x = 0;          // kChar, kRun: class index; kSplit, kGuardedSplit: preferred target;
                            // kJmp: target; kLook: first instruction of the sub-program
    int32_t y = 0;      // kSplit: other target; kGuardedSplit: other target, taken directly when
                        // the next byte is not in class `guard`; kLook: instruction after it
    int32_t guard = 0;  // kGuardedSplit: class of bytes that can start the preferred branch
    int32_t min = 0;    // kRun: greedy repeat of one class, min..max times (max < 0: no limit)
    int32_t max = 0;
  };
  struct Thread {
    int32_t pc;
    uint32_t pos;
    uint32_t low;  // kRun backtracking: retry at pos - 1, ..., low; kNoRun for plain entries
  };
  static constexpr uint32_t kNoRun = UINT32_MAX;
  class Compiler;

  // Runs the program from `pc` at `pos` until a kMatch instruction (or, for a lookahead
  // sub-program, its end): sets *end and returns kMatch, or kNoMatch / kUnknown.
  Result Run(int32_t pc, std::string_view text, size_t pos, size_t* end, int* budget) const;

  std::vector<Inst> program_;
  std::vector<std::bitset<128>> classes_;
  // Bytes that can start a match (all 128 when the pattern can match the empty string).
  std::bitset<128> first_;
  bool nullable_ = false;
};

}  // namespace afd::gateway
