#include "gateway/tokenizer/byte_level.h"

#include <array>

#include "gateway/tokenizer/utf8.h"

namespace afd::gateway {
namespace {

struct Alphabet {
  std::array<char32_t, 256> byte_to_char;
  std::array<short, 512> char_to_byte;  // every alphabet code point is below U+0200

  Alphabet() {
    char_to_byte.fill(-1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      // Printable Latin-1 bytes stand for themselves; the rest move to U+0100 and up in order.
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const char32_t c = printable ? static_cast<char32_t>(b) : 256 + extra++;
      byte_to_char[b] = c;
      char_to_byte[c] = static_cast<short>(b);
    }
  }
};

const Alphabet& GetAlphabet() {
  static const Alphabet* alphabet = new Alphabet;
  return *alphabet;
}

}  // namespace

char32_t ByteToByteLevelChar(unsigned char b) { return GetAlphabet().byte_to_char[b]; }

void AppendByteLevel(std::string_view bytes, std::string* out) {
  const Alphabet& a = GetAlphabet();
  for (unsigned char b : bytes) AppendUtf8(a.byte_to_char[b], out);
}

bool ByteLevelToBytes(std::string_view text, std::string* out) {
  if (!IsValidUtf8(text)) return false;
  const Alphabet& a = GetAlphabet();
  out->clear();
  size_t pos = 0;
  while (pos < text.size()) {
    const char32_t c = DecodeUtf8(text, &pos);
    if (c >= a.char_to_byte.size() || a.char_to_byte[c] < 0) return false;
    out->push_back(static_cast<char>(a.char_to_byte[c]));
  }
  return true;
}

}  // namespace afd::gateway
