// Text normalizers of tokenizer.json ("normalizer"): NFC, NFD and Sequence of them; null is the
// identity. Immutable after FromJson; Normalize is safe from many threads.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace afd::gateway {

class Normalizer {
 public:
  // `config` is tokenizer.json's "normalizer" value (may be null).
  static absl::StatusOr<std::unique_ptr<Normalizer>> FromJson(const nlohmann::json& config);

  bool is_identity() const { return steps_.empty(); }

  // Returns the normalized text: `text` itself when nothing changes, else a view into one of the
  // two caller-owned buffers.
  std::string_view Normalize(std::string_view text, std::string* buffer_a,
                             std::string* buffer_b) const;

 private:
  enum class Step { kNfc, kNfd };
  static absl::Status AddSteps(const nlohmann::json& config, std::vector<Step>* steps);

  std::vector<Step> steps_;
};

}  // namespace afd::gateway
