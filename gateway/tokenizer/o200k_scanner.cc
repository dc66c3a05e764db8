#include "gateway/tokenizer/o200k_scanner.h"

#include <oniguruma.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "gateway/tokenizer/regex.h"
#include "gateway/tokenizer/utf8.h"

namespace afd::gateway {

const std::string_view kO200kPattern =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+"
    "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

namespace {

// The regex's classes, one bit each.
enum : uint8_t {
  kUpper = 1,     // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
  kLower = 2,     // [\p{Ll}\p{Lm}\p{Lo}\p{M}]
  kNumber = 4,    // \p{N}
  kSpace = 8,     // \s
  kNewline = 16,  // [\r\n]
  kOther = 32,    // [^\s\p{L}\p{N}]
  kPrefix = 64,   // [^\r\n\p{L}\p{N}]
};

constexpr int kBlockBits = 8;
constexpr int kNumBlocks = 0x110000 >> kBlockBits;

class ClassTable {
 public:
  ClassTable() {
    InitializeOniguruma();
    auto ctype = [](const char* name) {
      auto* p = reinterpret_cast<OnigUChar*>(const_cast<char*>(name));
      return ONIGENC_PROPERTY_NAME_TO_CTYPE(ONIG_ENCODING_UTF8, p, p + std::strlen(name));
    };
    lu_ = ctype("Lu");
    lt_ = ctype("Lt");
    lm_ = ctype("Lm");
    lo_ = ctype("Lo");
    ll_ = ctype("Ll");
    m_ = ctype("M");
    l_ = ctype("L");
    n_ = ctype("N");
    for (auto& b : blocks_) b.store(nullptr, std::memory_order_relaxed);
  }

  uint8_t Get(char32_t cp) {
    const uint8_t* block = blocks_[cp >> kBlockBits].load(std::memory_order_acquire);
    if (block == nullptr) block = Fill(cp >> kBlockBits);
    return block[cp & ((1 << kBlockBits) - 1)];
  }

 private:
  bool Is(char32_t cp, int ctype) const {
    return ctype >= 0 && ONIGENC_IS_CODE_CTYPE(ONIG_ENCODING_UTF8, cp, ctype);
  }

  uint8_t Compute(char32_t cp) const {
    const bool upper = Is(cp, lu_) || Is(cp, lt_) || Is(cp, lm_) || Is(cp, lo_) || Is(cp, m_);
    const bool lower = Is(cp, ll_) || Is(cp, lm_) || Is(cp, lo_) || Is(cp, m_);
    const bool letter = Is(cp, l_);
    const bool number = Is(cp, n_);
    const bool space = Is(cp, ONIGENC_CTYPE_SPACE);
    const bool newline = cp == '\r' || cp == '\n';
    uint8_t bits = 0;
    if (upper) bits |= kUpper;
    if (lower) bits |= kLower;
    if (number) bits |= kNumber;
    if (space) bits |= kSpace;
    if (newline) bits |= kNewline;
    if (!space && !letter && !number) bits |= kOther;
    if (!newline && !letter && !number) bits |= kPrefix;
    return bits;
  }

  const uint8_t* Fill(uint32_t block) {
    auto* fresh = new uint8_t[1 << kBlockBits];
    for (uint32_t i = 0; i < (1u << kBlockBits); ++i) {
      fresh[i] = Compute((block << kBlockBits) | i);
    }
    const uint8_t* expected = nullptr;
    if (!blocks_[block].compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)) {
      delete[] fresh;  // another thread filled it first
      return expected;
    }
    return fresh;
  }

  int lu_, lt_, lm_, lo_, ll_, m_, l_, n_;
  std::atomic<const uint8_t*> blocks_[kNumBlocks];
};

ClassTable& Classes() {
  static ClassTable* table = new ClassTable;
  return *table;
}

// Class bits of the ASCII characters (filled from the table once).
const uint8_t* AsciiClasses() {
  static const uint8_t* table = [] {
    auto* t = new uint8_t[128];
    for (char32_t c = 0; c < 128; ++c) t[c] = Classes().Get(c);
    return t;
  }();
  return table;
}

// A cursor over valid UTF-8 that knows the regex class of the code point at each position.
class Text {
 public:
  explicit Text(std::string_view text)
      : s_(reinterpret_cast<const unsigned char*>(text.data())),
        n_(text.size()),
        ascii_(AsciiClasses()) {}
  size_t size() const { return n_; }
  // Class bits of the code point at byte i (0 at the end).
  uint8_t Bits(size_t i) const {
    if (i >= n_) return 0;
    if (s_[i] < 0x80) return ascii_[s_[i]];
    return NonAsciiBits(i);
  }
  size_t Next(size_t i) const { return i + Utf8SequenceLength(s_[i]); }
  size_t Prev(size_t i) const {
    do {
      --i;
    } while (i > 0 && (s_[i] & 0xC0) == 0x80);
    return i;
  }
  unsigned char Byte(size_t i) const { return i < n_ ? s_[i] : 0; }
  // End of the run of code points in class `cls` starting at i.
  size_t Run(size_t i, uint8_t cls) const {
    while (i < n_) {
      if (s_[i] < 0x80) {
        if (!(ascii_[s_[i]] & cls)) break;
        ++i;
      } else {
        if (!(NonAsciiBits(i) & cls)) break;
        i = Next(i);
      }
    }
    return i;
  }

 private:
  uint8_t NonAsciiBits(size_t i) const {
    size_t pos = i;
    return Classes().Get(DecodeUtf8(std::string_view(reinterpret_cast<const char*>(s_), n_), &pos));
  }

  const unsigned char* s_;
  size_t n_;
  const uint8_t* ascii_;
};

}  // namespace

AsciiRegex::Result SearchO200k(std::string_view text_view, size_t from, size_t* match_start,
                               size_t* match_end) {
  using Result = AsciiRegex::Result;
  const Text text(text_view);
  const size_t n = text.size();
  const size_t p = from;
  *match_start = p;
  if (p >= n) return Result::kNoMatch;  // every alternative consumes something
  bool unknown = false;

  // (?i:'s|'t|'re|'ve|'m|'ll|'d)? at i: how many bytes it takes.
  auto contraction = [&](size_t i) -> size_t {
    if (text.Byte(i) != '\'' || i + 1 >= n) return 0;
    const unsigned char c1 = text.Byte(i + 1);
    if (c1 >= 0x80) {
      unknown = true;  // case folding reaches beyond ASCII (U+017F folds to 's')
      return 0;
    }
    const char l1 = static_cast<char>(c1 | 0x20);
    if (l1 == 's' || l1 == 't' || l1 == 'm' || l1 == 'd') return 2;
    if ((l1 == 'r' || l1 == 'v' || l1 == 'l') && i + 2 < n) {
      const unsigned char c2 = text.Byte(i + 2);
      if (c2 >= 0x80) {
        unknown = true;
        return 0;
      }
      const char l2 = static_cast<char>(c2 | 0x20);
      if ((l1 == 'r' && l2 == 'e') || (l1 == 'v' && l2 == 'e') || (l1 == 'l' && l2 == 'l')) {
        return 3;
      }
    }
    return 0;
  };
  auto finish = [&](size_t end) {
    *match_end = end;
    return Result::kMatch;
  };

  const uint8_t first = text.Bits(p);
  const size_t after_first = text.Next(p);
  // The optional [^\r\n\p{L}\p{N}] prefix of alternatives 1 and 2: taken first, then not.
  const size_t starts[2] = {(first & kPrefix) ? after_first : n + 1, p};

  // 1: prefix? [upper]* [lower]+ contraction?  -- the upper run gives code points back until a
  // lower one (the classes overlap on Lm, Lo and M) can start the lower run.
  for (size_t q : starts) {
    if (q > n) continue;
    const size_t upper_end = text.Run(q, kUpper);
    size_t k = upper_end;
    while (true) {
      if (text.Bits(k) & kLower) {
        const size_t lower_end = text.Run(k, kLower);
        const size_t c = contraction(lower_end);
        if (unknown) return Result::kUnknown;
        return finish(lower_end + c);
      }
      if (k == q) break;
      k = text.Prev(k);
    }
  }
  // 2: prefix? [upper]+ [lower]* contraction?
  for (size_t q : starts) {
    if (q > n || !(text.Bits(q) & kUpper)) continue;
    const size_t lower_end = text.Run(text.Run(q, kUpper), kLower);
    const size_t c = contraction(lower_end);
    if (unknown) return Result::kUnknown;
    return finish(lower_end + c);
  }
  // 3: \p{N}{1,3}
  if (first & kNumber) {
    size_t end = after_first;
    for (int i = 1; i < 3 && (text.Bits(end) & kNumber); ++i) end = text.Next(end);
    return finish(end);
  }
  // 4: ' '? [^\s\p{L}\p{N}]+ [\r\n/]*
  {
    size_t q = n + 1;
    if (text.Byte(p) == ' ' && (text.Bits(p + 1) & kOther)) {
      q = p + 1;
    } else if (first & kOther) {
      q = p;
    }
    if (q <= n) {
      size_t end = text.Run(q, kOther);
      while (end < n &&
             (text.Byte(end) == '\r' || text.Byte(end) == '\n' || text.Byte(end) == '/')) {
        ++end;
      }
      return finish(end);
    }
  }
  // 5: \s* [\r\n]+   6: \s+ (?!\S)   7: \s+
  if (first & kSpace) {
    const size_t space_end = text.Run(p, kSpace);
    // 5: the whitespace run gives code points back until one is \r or \n; [\r\n]+ then takes
    // it (nothing after it in the run is \r or \n).
    for (size_t k = space_end; k > p;) {
      k = text.Prev(k);
      if (text.Bits(k) & kNewline) return finish(k + 1);
    }
    // 6: the lookahead fails only on a non-space, so at the end of the text the whole run
    // matches, and otherwise the run minus its last code point (if anything is left).
    if (space_end == n) return finish(n);
    const size_t last = text.Prev(space_end);
    if (last > p) return finish(last);
    // 7
    return finish(space_end);
  }
  return Result::kNoMatch;  // not reached: every code point starts some alternative
}

}  // namespace afd::gateway
