#include "gateway/server/prompt_encoder.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, bool required) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!required) return std::string();
    return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PromptEncoder>> PromptEncoder::Create(
    const Tokenizer* tokenizer, std::string_view tokenizer_json, std::string_view config_json) {
  nlohmann::json json = nlohmann::json::parse(tokenizer_json, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError("tokenizer.json is not a JSON object");
  }
  auto encoder = std::unique_ptr<PromptEncoder>(new PromptEncoder());
  encoder->tokenizer_ = tokenizer;
  // The plain tokenizer: the same files minus the special added tokens.
  nlohmann::json kept = nlohmann::json::array();
  auto added = json.find("added_tokens");
  if (added != json.end() && added->is_array()) {
    for (const nlohmann::json& token : *added) {
      if (token.is_object() && token.value("special", false)) continue;
      kept.push_back(token);
    }
    *added = std::move(kept);
  }
  const std::string plain_json =
      json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  json = nlohmann::json();  // free the parsed copy before loading a second tokenizer
  ASSIGN_OR_RETURN(encoder->plain_, Tokenizer::LoadFromJson(plain_json, config_json));
  for (const AddedToken& token : tokenizer->added_tokens()) {
    if (token.special && !token.content.empty()) {
      encoder->specials_.push_back({token.content, token.id});
    }
  }
  std::stable_sort(
      encoder->specials_.begin(), encoder->specials_.end(),
      [](const Special& a, const Special& b) { return a.content.size() > b.content.size(); });
  return encoder;
}

absl::StatusOr<std::unique_ptr<PromptEncoder>> PromptEncoder::CreateFromDirectory(
    const Tokenizer* tokenizer, const std::string& dir) {
  ASSIGN_OR_RETURN(std::string json, ReadFile(dir + "/tokenizer.json", true));
  ASSIGN_OR_RETURN(std::string config, ReadFile(dir + "/tokenizer_config.json", false));
  return Create(tokenizer, json, config);
}

int PromptEncoder::FindSpecial(std::string_view text, size_t from, size_t* begin) const {
  int best = -1;
  size_t best_pos = std::string_view::npos;
  for (size_t i = 0; i < specials_.size(); ++i) {
    const size_t pos = text.find(specials_[i].content, from);
    // Longest first, so on a tie of positions the longer token wins.
    if (pos != std::string_view::npos && pos < best_pos) {
      best_pos = pos;
      best = static_cast<int>(i);
    }
  }
  *begin = best_pos;
  return best;
}

absl::StatusOr<std::vector<int32_t>> PromptEncoder::EncodeSegments(
    const std::vector<PromptSegment>& segments) const {
  std::vector<int32_t> ids;
  std::string run;  // text since the last special token
  for (const PromptSegment& segment : segments) {
    if (!segment.is_trusted_markup) {
      run += segment.text;
      continue;
    }
    std::string_view text = segment.text;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t begin = 0;
      const int found = FindSpecial(text, pos, &begin);
      if (found < 0) {
        run.append(text.substr(pos));
        break;
      }
      run.append(text.substr(pos, begin - pos));
      if (!run.empty()) {
        RETURN_IF_ERROR(plain_->EncodeAppend(run, &ids));
        run.clear();
      }
      ids.push_back(specials_[found].id);
      pos = begin + specials_[found].content.size();
    }
  }
  if (!run.empty()) RETURN_IF_ERROR(plain_->EncodeAppend(run, &ids));
  return ids;
}

absl::StatusOr<std::vector<int32_t>> PromptEncoder::EncodePlain(std::string_view text) const {
  return plain_->Encode(text);
}

absl::StatusOr<std::vector<int32_t>> PromptEncoder::EncodeWithSpecialTokens(
    std::string_view text) const {
  return tokenizer_->Encode(text);
}

}  // namespace afd::gateway
