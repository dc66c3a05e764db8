#include "gateway/server/prompt_encoder.h"

#include <algorithm>

#include "common/status.h"

namespace afd::gateway {
namespace {

constexpr EncodeOptions kPlainText{/*split_special_tokens=*/true};

}  // namespace

PromptEncoder::PromptEncoder(const Tokenizer* tokenizer) : tokenizer_(tokenizer) {
  for (const AddedToken& token : tokenizer->added_tokens()) {
    if (token.special && !token.content.empty()) specials_.push_back({token.content, token.id});
  }
  std::stable_sort(specials_.begin(), specials_.end(), [](const Special& a, const Special& b) {
    return a.content.size() > b.content.size();
  });
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
        RETURN_IF_ERROR(tokenizer_->EncodeAppend(run, &ids, kPlainText));
        run.clear();
      }
      ids.push_back(specials_[found].id);
      pos = begin + specials_[found].content.size();
    }
  }
  if (!run.empty()) RETURN_IF_ERROR(tokenizer_->EncodeAppend(run, &ids, kPlainText));
  return ids;
}

absl::StatusOr<std::vector<int32_t>> PromptEncoder::EncodePlain(std::string_view text) const {
  return tokenizer_->Encode(text, kPlainText);
}

absl::StatusOr<std::vector<int32_t>> PromptEncoder::EncodeWithSpecialTokens(
    std::string_view text) const {
  return tokenizer_->Encode(text);
}

}  // namespace afd::gateway
