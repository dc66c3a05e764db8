// Hand-written matcher for the o200k pre-tokenizer regex (gpt-4o, MiniMax-M2), exact with respect
// to Oniguruma. Safe from any thread (its lazily filled class table is thread-safe).
#pragma once

#include <cstddef>
#include <string_view>

#include "gateway/tokenizer/ascii_regex.h"

namespace afd::gateway {

// The o200k regex as it appears in tokenizer.json (after JSON unescaping).
extern const std::string_view kO200kPattern;

// Its character classes come from Oniguruma's own Unicode property tables and its alternatives
// reproduce the regex's backtracking outcomes. The one case it leaves to Oniguruma (kUnknown) is
// a non-ASCII letter right after an apostrophe, where case folding applies.
// Same contract as AsciiRegex::Search, over any valid UTF-8 `text`.
AsciiRegex::Result SearchO200k(std::string_view text, size_t from, size_t* match_start,
                               size_t* match_end);

}  // namespace afd::gateway
