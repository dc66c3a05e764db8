// PromptEncoder: turns a rendered chat prompt into token ids under the special-token policy, so
// that text a user typed cannot forge a role turn. Special added tokens (`]~b]`, `[e~[`, `]~!b[`,
// ...) are matched only inside the template's own markup (trusted segments); request text is
// encoded as plain text, as Hugging Face does with split_special_tokens=True. Non-special added
// tokens (`<think>`, `</think>`, `<minimax:tool_call>`, ...) are matched everywhere, as the
// reference tokenization of ordinary prompts does. Immutable after creation; thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "gateway/chat/chat_template.h"
#include "gateway/tokenizer/tokenizer.h"

namespace afd::gateway {

class PromptEncoder {
 public:
  // `tokenizer` is borrowed and must outlive the encoder. Request text is encoded with the same
  // tokenizer, with EncodeOptions::split_special_tokens.
  explicit PromptEncoder(const Tokenizer* tokenizer);

  // Special tokens are found in trusted segments only; each run of text between two of them
  // (spanning any number of segments) is encoded as one piece without special-token matching,
  // so ordinary prompts get exactly the reference ids.
  absl::StatusOr<std::vector<int32_t>> EncodeSegments(
      const std::vector<PromptSegment>& segments) const;
  // Everything is request text: no special token can come out.
  absl::StatusOr<std::vector<int32_t>> EncodePlain(std::string_view text) const;
  // Special tokens matched anywhere (a raw /v1/completions prompt: the caller writes the whole
  // prompt, markup included).
  absl::StatusOr<std::vector<int32_t>> EncodeWithSpecialTokens(std::string_view text) const;

  const Tokenizer& tokenizer() const { return *tokenizer_; }

 private:
  // Leftmost-longest special token in `text` at or after `from`: its index in specials_, or -1.
  int FindSpecial(std::string_view text, size_t from, size_t* begin) const;

  const Tokenizer* tokenizer_ = nullptr;
  struct Special {
    std::string content;
    int32_t id;
  };
  std::vector<Special> specials_;  // longest first
};

}  // namespace afd::gateway
