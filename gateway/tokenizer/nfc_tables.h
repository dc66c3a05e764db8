// Unicode data for canonical (NFC/NFD) normalization, generated into nfc_tables.cc.
// Immutable constant tables; safe from any thread.
#pragma once

namespace afd::gateway::nfc {

struct CombiningClassRange {
  char32_t first;
  char32_t last;
  unsigned char combining_class;
};
struct Decomposition {
  char32_t code_point;
  unsigned short offset;  // into kDecompositionPool
  unsigned char length;   // full canonical decomposition, already recursive
};
struct Composition {
  char32_t first;
  char32_t second;
  char32_t composite;
};
struct CodePointRange {
  char32_t first;
  char32_t last;
};

extern const char kUnicodeVersion[];
// Sorted, disjoint runs of code points with a non-zero canonical combining class.
extern const CombiningClassRange kCombiningClassRanges[];
extern const int kNumCombiningClassRanges;
// Sorted by code point; Hangul syllables are handled algorithmically.
extern const Decomposition kDecompositions[];
extern const int kNumDecompositions;
extern const char32_t kDecompositionPool[];
// Primary composites sorted by (first, second); Hangul excluded.
extern const Composition kCompositions[];
extern const int kNumCompositions;
// Sorted ranges of code points that are not NFC boundaries (NFC_Quick_Check != Yes or ccc != 0).
extern const CodePointRange kNotInertRanges[];
extern const int kNumNotInertRanges;

}  // namespace afd::gateway::nfc
