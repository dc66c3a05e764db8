// Hugging Face `tokenizer.json` tokenizer for byte-level BPE models (gpt-4o, Qwen3, DeepSeek-V3,
// MiniMax-M2), matching `tokenizers` exactly. Immutable after loading; Encode and Decode are safe
// from many threads at once (each call borrows one of a few internal scratch/cache slots).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "gateway/tokenizer/added_tokens.h"
#include "gateway/tokenizer/bpe.h"
#include "gateway/tokenizer/normalizer.h"
#include "gateway/tokenizer/pre_tokenizer.h"

namespace afd::gateway {

struct EncodeOptions {
  // Special added tokens typed in the text are encoded as ordinary text, as Hugging Face's
  // split_special_tokens=True (encode_special_tokens) does; non-special ones still match.
  bool split_special_tokens = false;
};

class Tokenizer {
 public:
  // How a token id decodes.
  enum class TokenKind : uint8_t {
    kNone,          // id unused: decodes to nothing
    kModel,         // BPE vocabulary entry: raw bytes (may be part of a UTF-8 sequence)
    kAdded,         // added token, not special: its content, verbatim
    kAddedSpecial,  // special added token: its content, dropped by skip_special_tokens
  };

  // Loads `dir`/tokenizer.json and, when present, `dir`/tokenizer_config.json.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromDirectory(const std::string& dir);
  // Same from file contents; `config_json` may be empty.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromJson(std::string_view tokenizer_json,
                                                                 std::string_view config_json);
  ~Tokenizer();

  // encode(text, add_special_tokens=false). Added-token strings in `text` (special or not,
  // unless options say otherwise) become their ids. Fails on invalid UTF-8.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              const EncodeOptions& options = {}) const;
  // Appends the ids of `text` to *ids.
  absl::Status EncodeAppend(std::string_view text, std::vector<int32_t>* ids,
                            const EncodeOptions& options = {}) const;

  // decode(ids, skip_special_tokens, clean_up_tokenization_spaces=false). Unknown ids are
  // skipped; byte sequences that are not UTF-8 become U+FFFD.
  std::string Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const;

  TokenKind Kind(int32_t id) const {
    return id >= 0 && id < static_cast<int32_t>(kinds_.size()) ? kinds_[id] : TokenKind::kNone;
  }
  bool IsSpecial(int32_t id) const { return Kind(id) == TokenKind::kAddedSpecial; }
  // What `id` decodes to: raw bytes for kModel, content for added tokens, empty for kNone.
  std::string_view TokenBytes(int32_t id) const;
  // Id of an added token's content, else of a vocabulary entry spelled `token` (byte-level
  // alphabet, as in tokenizer.json).
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // One past the largest id in use.
  int32_t id_limit() const { return static_cast<int32_t>(kinds_.size()); }
  const std::vector<AddedToken>& added_tokens() const { return added_tokens_; }

  // From tokenizer_config.json (nullopt when absent or not a known token).
  std::optional<int32_t> bos_token_id() const { return bos_id_; }
  std::optional<int32_t> eos_token_id() const { return eos_id_; }
  std::optional<int32_t> pad_token_id() const { return pad_id_; }
  std::optional<int32_t> unk_token_id() const { return unk_id_; }

 private:
  struct Slot;
  struct SlotLease;
  Tokenizer();
  absl::Status EncodeGap(std::string_view gap, bool split_special, Slot* slot,
                         std::vector<int32_t>* ids) const;
  absl::Status EncodeWords(std::string_view text, Slot* slot, std::vector<int32_t>* ids) const;
  void EncodeWord(std::string_view word, Slot* slot, std::vector<int32_t>* ids) const;
  Slot* AcquireSlot() const;

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::vector<AddedToken> added_tokens_;
  AddedTokenMatcher raw_matcher_;         // added tokens with normalized == false
  AddedTokenMatcher normalized_matcher_;  // added tokens with normalized == true
  absl::flat_hash_map<std::string, int32_t> added_by_content_;
  std::vector<TokenKind> kinds_;      // [id_limit]
  std::vector<int32_t> added_index_;  // [id_limit] index into added_tokens_, or -1
  std::optional<int32_t> bos_id_, eos_id_, pad_id_, unk_id_;
  std::vector<std::unique_ptr<Slot>> slots_;
};

}  // namespace afd::gateway
