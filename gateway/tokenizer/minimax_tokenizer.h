// Builds the minimax-m2-synthetic tokenizer (MiniMax-M2's added tokens and NFC normalizer on the
// gpt-4o vocabulary; see tests/data/tokenizers/SOURCES.md) from the gpt-4o tokenizer.json.
// Stateless functions; safe from any thread.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace afd::gateway {

struct MinimaxTokenizerFiles {
  std::string tokenizer_json;  // byte-identical to the reference file
  std::string tokenizer_config_json;
};

// `gpt4o_tokenizer_json`: the gpt-4o tokenizer.json. `added_tokens_data`: the contents of
// gateway/tokenizer/data/minimax_m2_added_tokens.json ({"added_tokens": [...],
// "tokenizer_config": {...}}). The gpt-4o added tokens leave added_tokens and model.vocab; the
// MiniMax ones replace them and are appended to model.vocab; the normalizer becomes NFC.
absl::StatusOr<MinimaxTokenizerFiles> MakeMinimaxTokenizer(std::string_view gpt4o_tokenizer_json,
                                                           std::string_view added_tokens_data);

// The data file above, compiled in.
std::string_view MinimaxAddedTokensData();

}  // namespace afd::gateway
