// UTF-8 helpers: validation, code points, and lossy decoding with WHATWG / Rust from_utf8_lossy
// "maximal subpart" U+FFFD substitution. Functions are thread-safe; a Utf8LossyStream is not.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace afd::gateway {

// Returns the byte length of the longest valid UTF-8 prefix of `text` (== size when valid).
size_t ValidUtf8PrefixLength(std::string_view text);
inline bool IsValidUtf8(std::string_view text) {
  return ValidUtf8PrefixLength(text) == text.size();
}

// Decodes the code point at `text[*pos]` of VALID UTF-8 and advances *pos.
inline char32_t DecodeUtf8(std::string_view text, size_t* pos) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data()) + *pos;
  if (s[0] < 0x80) {
    *pos += 1;
    return s[0];
  }
  if (s[0] < 0xE0) {
    *pos += 2;
    return (char32_t(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
  }
  if (s[0] < 0xF0) {
    *pos += 3;
    return (char32_t(s[0] & 0x0F) << 12) | (char32_t(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
  }
  *pos += 4;
  return (char32_t(s[0] & 0x07) << 18) | (char32_t(s[1] & 0x3F) << 12) |
         (char32_t(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

// Appends the UTF-8 encoding of `cp` (must be a Unicode scalar value) to *out.
void AppendUtf8(char32_t cp, std::string* out);

// Byte length of the UTF-8 sequence introduced by lead byte `b` (1 for ASCII and stray bytes).
inline int Utf8SequenceLength(unsigned char b) {
  return b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}

// Appends `bytes` to *out, replacing every maximal ill-formed subpart with U+FFFD.
void AppendUtf8Lossy(std::string_view bytes, std::string* out);

// Streaming form of AppendUtf8Lossy: Feed() any byte chunks, Flush() at the end; the
// concatenated output equals AppendUtf8Lossy over the concatenated input. Output is produced as
// soon as it is certain, so an incomplete trailing sequence is held back until resolved.
class Utf8LossyStream {
 public:
  void Feed(std::string_view bytes, std::string* out);
  // Emits U+FFFD for a held incomplete sequence, if any, and resets.
  void Flush(std::string* out);
  bool has_pending() const { return pending_len_ > 0; }

 private:
  // Bytes of the sequence in progress, how many continuation bytes it still needs, and the
  // range the next one must fall in.
  unsigned char pending_[4] = {0, 0, 0, 0};
  int pending_len_ = 0;
  int needed_ = 0;
  unsigned char lower_ = 0x80;
  unsigned char upper_ = 0xBF;
};

}  // namespace afd::gateway
