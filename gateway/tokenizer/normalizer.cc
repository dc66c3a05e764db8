#include "gateway/tokenizer/normalizer.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gateway/tokenizer/nfc.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {

absl::Status Normalizer::AddSteps(const nlohmann::json& config, std::vector<Step>* steps) {
  if (config.is_null()) return absl::OkStatus();
  if (!config.is_object() || !config.contains("type") || !config["type"].is_string()) {
    return absl::InvalidArgumentError("normalizer: expected an object with a type");
  }
  const std::string& type = config["type"].get_ref<const std::string&>();
  if (type == "NFC") {
    steps->push_back(Step::kNfc);
  } else if (type == "NFD") {
    steps->push_back(Step::kNfd);
  } else if (type == "Sequence") {
    auto list = config.find("normalizers");
    if (list == config.end() || !list->is_array()) {
      return absl::InvalidArgumentError("normalizer: Sequence without a normalizers array");
    }
    for (const nlohmann::json& child : *list) RETURN_IF_ERROR(AddSteps(child, steps));
  } else {
    return absl::UnimplementedError(absl::StrCat("normalizer: type ", type, " is not supported"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Normalizer>> Normalizer::FromJson(const nlohmann::json& config) {
  std::unique_ptr<Normalizer> normalizer(new Normalizer);
  RETURN_IF_ERROR(AddSteps(config, &normalizer->steps_));
  return normalizer;
}

std::string_view Normalizer::Normalize(std::string_view text, std::string* buffer_a,
                                       std::string* buffer_b) const {
  std::string_view current = text;
  for (Step step : steps_) {
    if (step == Step::kNfc && IsNfcQuick(current)) continue;
    std::string* out = current.data() == buffer_a->data() ? buffer_b : buffer_a;
    out->clear();
    if (step == Step::kNfc) {
      AppendNfc(current, out);
    } else {
      AppendNfd(current, out);
    }
    current = *out;
  }
  return current;
}

}  // namespace afd::gateway
