// Pre-tokenizers of tokenizer.json (Split with every behaviour, ByteLevel, Digits, Sequence): cut
// normalized text into the words the BPE model encodes. Immutable after FromJson; safe from many
// threads, each with its own PreTokenizerScratch.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "gateway/tokenizer/regex.h"
#include "nlohmann/json_fwd.hpp"

namespace afd::gateway {

// Working memory for PreTokenizer, reused across calls.
struct PreTokenizerScratch {
  struct Match {
    size_t begin;
    size_t end;
    bool is_match;
  };
  MatchRegion region;
  std::vector<std::vector<Match>> matches;  // per step
  std::vector<std::string> prefixed;        // per step that prepends a space
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

class PreTokenizer {
 public:
  // `config` is tokenizer.json's "pre_tokenizer" value (may be null).
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> FromJson(const nlohmann::json& config);
  ~PreTokenizer();

  // Calls sink(piece) for each pre-token of `text` (valid UTF-8), in order; pieces are non-empty
  // views into `text` or `scratch`, valid during the call. Fails only when the regex engine
  // gives up.
  absl::Status ForEachPreToken(std::string_view text, PreTokenizerScratch* scratch,
                               absl::FunctionRef<void(std::string_view)> sink) const;
  // Convenience form that collects the pieces (as strings).
  absl::StatusOr<std::vector<std::string>> Split(std::string_view text) const;

  // True when a ByteLevel step is present (the text reaches the model as bytes).
  bool has_byte_level() const { return has_byte_level_; }

 private:
  struct Step;
  PreTokenizer();
  absl::Status AddSteps(const nlohmann::json& config);
  // Applies steps_[level..] to `piece`.
  absl::Status Apply(size_t level, std::string_view piece, PreTokenizerScratch* scratch,
                     absl::FunctionRef<void(std::string_view)> sink) const;

  std::vector<Step> steps_;
  bool has_byte_level_ = false;
};

}  // namespace afd::gateway
