#include "gateway/tokenizer/nfc.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "gateway/tokenizer/nfc_tables.h"
#include "gateway/tokenizer/utf8.h"

namespace afd::gateway {
namespace {

// Hangul syllable arithmetic (Unicode chapter 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr int kLCount = 19, kVCount = 21, kTCount = 28;
constexpr int kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

// Below this code point every character is an NFC boundary with combining class 0
// (checked by the table generator).
constexpr char32_t kFirstInteresting = 0x300;

bool IsInertSlow(char32_t cp) {
  const nfc::CodePointRange* begin = nfc::kNotInertRanges;
  const nfc::CodePointRange* end = begin + nfc::kNumNotInertRanges;
  auto it = std::upper_bound(begin, end, cp,
                             [](char32_t c, const nfc::CodePointRange& r) { return c < r.first; });
  if (it == begin) return true;
  --it;
  return cp > it->last;
}

// One bit per BMP code point: set when it is NOT an NFC boundary (8 KiB, built once).
const uint64_t* BmpNotInert() {
  static const uint64_t* bits = [] {
    auto* b = new uint64_t[0x10000 / 64]();
    for (int i = 0; i < nfc::kNumNotInertRanges; ++i) {
      const auto& r = nfc::kNotInertRanges[i];
      for (char32_t c = r.first; c <= r.last && c < 0x10000; ++c)
        b[c >> 6] |= uint64_t{1} << (c & 63);
    }
    return b;
  }();
  return bits;
}

inline bool IsInert(char32_t cp) {
  if (cp < kFirstInteresting) return true;
  if (cp < 0x10000) return !((BmpNotInert()[cp >> 6] >> (cp & 63)) & 1);
  return IsInertSlow(cp);
}

struct CodePoint {
  char32_t cp;
  int ccc;
};

void DecomposeInto(char32_t cp, std::vector<CodePoint>* out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const int s = static_cast<int>(cp - kSBase);
    out->push_back({kLBase + s / kNCount, 0});
    out->push_back({kVBase + (s % kNCount) / kTCount, 0});
    if (s % kTCount != 0) out->push_back({kTBase + s % kTCount, 0});
    return;
  }
  // U+00C0 is the first code point with a canonical decomposition.
  if (cp >= 0xC0) {
    const nfc::Decomposition* begin = nfc::kDecompositions;
    const nfc::Decomposition* end = begin + nfc::kNumDecompositions;
    auto it = std::lower_bound(
        begin, end, cp, [](const nfc::Decomposition& d, char32_t c) { return d.code_point < c; });
    if (it != end && it->code_point == cp) {
      for (int k = 0; k < it->length; ++k) {
        const char32_t part = nfc::kDecompositionPool[it->offset + k];
        out->push_back({part, CanonicalCombiningClass(part)});
      }
      return;
    }
  }
  out->push_back({cp, CanonicalCombiningClass(cp)});
}

// Returns the primary composite of (a, b), or 0 when there is none.
char32_t Compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const nfc::Composition* begin = nfc::kCompositions;
  const nfc::Composition* end = begin + nfc::kNumCompositions;
  auto it =
      std::lower_bound(begin, end, std::make_pair(a, b),
                       [](const nfc::Composition& c, const std::pair<char32_t, char32_t>& k) {
                         return c.first < k.first || (c.first == k.first && c.second < k.second);
                       });
  if (it != end && it->first == a && it->second == b) return it->composite;
  return 0;
}

// Full decomposition plus canonical ordering of `text` into *buf.
void DecomposeAndOrder(std::string_view text, std::vector<CodePoint>* buf) {
  buf->clear();
  size_t pos = 0;
  while (pos < text.size()) DecomposeInto(DecodeUtf8(text, &pos), buf);
  // Stable sort of each run of non-starters by combining class.
  size_t i = 0;
  const size_t n = buf->size();
  while (i < n) {
    if ((*buf)[i].ccc == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < n && (*buf)[j].ccc != 0) ++j;
    if (j - i > 1) {
      std::stable_sort(buf->begin() + i, buf->begin() + j,
                       [](const CodePoint& x, const CodePoint& y) { return x.ccc < y.ccc; });
    }
    i = j;
  }
}

void ComposeInPlace(std::vector<CodePoint>* buf) {
  auto& b = *buf;
  if (b.empty()) return;
  size_t starter = 0;
  int last_class = b[0].ccc == 0 ? 0 : 256;
  bool have_starter = b[0].ccc == 0;
  size_t out = 1;
  for (size_t i = 1; i < b.size(); ++i) {
    const CodePoint c = b[i];
    if (have_starter && (last_class < c.ccc || last_class == 0)) {
      const char32_t composite = Compose(b[starter].cp, c.cp);
      if (composite != 0) {
        b[starter].cp = composite;
        continue;
      }
    }
    if (c.ccc == 0) {
      starter = out;
      have_starter = true;
    }
    last_class = c.ccc;
    b[out++] = c;
  }
  b.resize(out);
}

// NFC of a run that starts at an NFC boundary and ends before one.
void AppendNfcSegment(std::string_view text, std::vector<CodePoint>* buf, std::string* out) {
  DecomposeAndOrder(text, buf);
  ComposeInPlace(buf);
  for (const CodePoint& c : *buf) AppendUtf8(c.cp, out);
}

}  // namespace

int CanonicalCombiningClass(char32_t cp) {
  if (cp < kFirstInteresting) return 0;
  const nfc::CombiningClassRange* begin = nfc::kCombiningClassRanges;
  const nfc::CombiningClassRange* end = begin + nfc::kNumCombiningClassRanges;
  auto it = std::upper_bound(
      begin, end, cp, [](char32_t c, const nfc::CombiningClassRange& r) { return c < r.first; });
  if (it == begin) return 0;
  --it;
  return cp <= it->last ? it->combining_class : 0;
}

bool IsNfcQuick(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    if (!IsInert(DecodeUtf8(text, &pos))) return false;
  }
  return true;
}

void AppendNfc(std::string_view text, std::string* out) {
  std::vector<CodePoint> buf;
  size_t flushed = 0;   // text[0, flushed) has been written to *out
  size_t boundary = 0;  // start of the last inert code point seen (an NFC boundary)
  size_t pos = 0;
  const size_t n = text.size();
  while (pos < n) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {
      boundary = pos++;
      continue;
    }
    const size_t start = pos;
    const char32_t cp = DecodeUtf8(text, &pos);
    if (IsInert(cp)) {
      boundary = start;
      continue;
    }
    // Normalize from the last boundary up to the next one.
    size_t seg_end = pos;
    while (seg_end < n) {
      size_t next = seg_end;
      if (IsInert(DecodeUtf8(text, &next))) break;
      seg_end = next;
    }
    out->append(text.data() + flushed, boundary - flushed);
    AppendNfcSegment(text.substr(boundary, seg_end - boundary), &buf, out);
    flushed = boundary = pos = seg_end;
  }
  out->append(text.data() + flushed, n - flushed);
}

void AppendNfd(std::string_view text, std::string* out) {
  std::vector<CodePoint> buf;
  DecomposeAndOrder(text, &buf);
  for (const CodePoint& c : buf) AppendUtf8(c.cp, out);
}

}  // namespace afd::gateway
