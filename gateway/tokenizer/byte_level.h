// The GPT-2 byte-level alphabet: each of the 256 byte values is shown as one printable code point,
// so that byte-level BPE vocabularies can be stored as text. Stateless; safe from any thread.
#pragma once

#include <string>
#include <string_view>

namespace afd::gateway {

// Code point that stands for byte `b`.
char32_t ByteToByteLevelChar(unsigned char b);

// Appends the byte-level text of raw `bytes` (each byte becomes one code point) to *out.
void AppendByteLevel(std::string_view bytes, std::string* out);

// Converts byte-level text back to raw bytes. Returns false (leaving *out unspecified) when
// `text` holds a code point outside the alphabet or is not valid UTF-8.
bool ByteLevelToBytes(std::string_view text, std::string* out);

}  // namespace afd::gateway
