// Unicode canonical normalization (NFC and NFD) of valid UTF-8, from the generated tables in
// nfc_tables.cc. Stateless; safe from any thread.
#pragma once

#include <string>
#include <string_view>

namespace afd::gateway {

// Appends NFC(text) to *out. `text` must be valid UTF-8.
void AppendNfc(std::string_view text, std::string* out);
// Appends NFD(text) to *out. `text` must be valid UTF-8.
void AppendNfd(std::string_view text, std::string* out);
// True when NFC(text) == text is guaranteed by a quick scan (every code point is an NFC
// boundary); false means "maybe not".
bool IsNfcQuick(std::string_view text);

// Canonical combining class of a code point (0 for starters).
int CanonicalCombiningClass(char32_t cp);

}  // namespace afd::gateway
