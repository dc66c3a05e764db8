// Fast reader for Hugging Face tokenizer.json: streams the two large parts (model.vocab and
// model.merges) into flat vectors and keeps everything else as a small JSON tree. Stateless
// function; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {

struct TokenizerJson {
  // The whole document except model.vocab and model.merges.
  nlohmann::json root;
  // model.vocab in file order: (token text, id).
  std::vector<std::pair<std::string, int64_t>> vocab;
  // model.merges in rank order, from "a b" strings or ["a", "b"] pairs.
  std::vector<std::pair<std::string, std::string>> merges;
};

absl::StatusOr<TokenizerJson> ParseTokenizerJson(std::string_view text);

}  // namespace afd::gateway
