// The regex fast paths (the o200k scanner and the ASCII matcher) against Oniguruma itself, on
// random text built from the characters that the tokenizer regexes care about.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gateway/tokenizer/ascii_regex.h"
#include "gateway/tokenizer/o200k_scanner.h"
#include "gateway/tokenizer/regex.h"

namespace afd::gateway {
namespace {

const char* const kQwen3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kDeepseek1 = "\\p{N}{1,3}";
const char* const kDeepseek2 =
    "[\xE4\xB8\x80-\xE9\xBE\xA5\xE3\x81\x80-\xE3\x82\x9F\xE3\x82\xA0-\xE3\x83\xBF]+";
const char* const kDeepseek3 =
    "[!\"#$%&'()*+,\\-./"
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
const char* const kGpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// Characters the patterns distinguish, ASCII and not.
const std::vector<std::string>& Alphabet() {
  static const auto* alphabet = new std::vector<std::string>{
      "a",
      "b",
      "x",
      "A",
      "B",
      "Z",
      "s",
      "S",
      "t",
      "T",
      "r",
      "R",
      "e",
      "E",
      "v",
      "V",
      "l",
      "L",
      "m",
      "M",
      "d",
      "D",
      "'",
      "'",
      "0",
      "7",
      "9",
      " ",
      " ",
      " ",
      "\t",
      "\n",
      "\r",
      "\v",
      "\f",
      "\x1c",
      "\x1f",
      "\x7f",
      "!",
      ",",
      ".",
      "/",
      "-",
      "?",
      "[",
      "]",
      "\\",
      "_",
      "\x01",
      "\xC3\xA9",          // é
      "\xC5\xBF",          // ſ, folds to s
      "\xE2\x84\xAA",      // KELVIN SIGN, folds to k
      "\xC2\xA0",          // NBSP (White_Space)
      "\xC2\x85",          // NEL (White_Space)
      "\xE3\x80\x80",      // IDEOGRAPHIC SPACE
      "\xEF\xBB\xBF",      // BOM (not White_Space)
      "\xE6\xBC\xA2",      // CJK (Lo)
      "\xE3\x81\x82",      // Hiragana
      "\xD9\xA3",          // ARABIC-INDIC THREE (Nd)
      "\xCC\x81",          // COMBINING ACUTE (Mn)
      "\xC7\x85",          // Dz (Lt)
      "\xCA\xB0",          // MODIFIER LETTER SMALL H (Lm)
      "\xE2\x85\xB7",      // ROMAN NUMERAL EIGHT (Nl)
      "\xC2\xB2",          // SUPERSCRIPT TWO (No)
      "\xE2\x80\xA8",      // LINE SEPARATOR
      "\xF0\x9F\x98\x80",  // emoji (So)
      "\xC2\xAB",          // « (Pi)
  };
  return *alphabet;
}

std::string RandomText(std::mt19937* rng, bool ascii_only) {
  const auto& a = Alphabet();
  const int limit = ascii_only ? 49 : static_cast<int>(a.size());
  std::string text;
  const int n = (*rng)() % 24;
  for (int i = 0; i < n; ++i) {
    // Repeat characters now and then to make runs.
    const std::string& c = a[(*rng)() % limit];
    const int times = (*rng)() % 4 == 0 ? 1 + (*rng)() % 4 : 1;
    for (int k = 0; k < times; ++k) text += c;
  }
  return text;
}

void ExpectSameSearches(const std::string& pattern, int trials, uint32_t seed) {
  auto fast = Regex::Compile(pattern, /*fast_path=*/true);
  auto slow = Regex::Compile(pattern, /*fast_path=*/false);
  ASSERT_TRUE(fast.ok() && slow.ok());
  ASSERT_TRUE((*fast)->has_fast_path()) << pattern;
  std::mt19937 rng(seed);
  MatchRegion region;
  for (int trial = 0; trial < trials; ++trial) {
    const std::string text = RandomText(&rng, trial % 2 == 0);
    // Every start position on a character boundary.
    for (size_t from = 0; from <= text.size(); ++from) {
      if (from < text.size() && (static_cast<unsigned char>(text[from]) & 0xC0) == 0x80) continue;
      size_t fs = 0, fe = 0, ss = 0, se = 0;
      const int f = (*fast)->Search(text, from, &region, &fs, &fe);
      const int s = (*slow)->Search(text, from, &region, &ss, &se);
      ASSERT_EQ(f, s) << "pattern " << pattern << " text \"" << text << "\" from " << from;
      if (f == 1) {
        ASSERT_EQ(std::make_pair(fs, fe), std::make_pair(ss, se))
            << "pattern " << pattern << " text \"" << text << "\" from " << from;
      }
    }
  }
}

TEST(RegexFastPathTest, O200kScannerMatchesOniguruma) {
  ExpectSameSearches(std::string(kO200kPattern), 4000, 1);
}

TEST(RegexFastPathTest, AsciiMatcherMatchesOnigurumaOnTokenizerPatterns) {
  for (const char* p : {kQwen3, kDeepseek1, kDeepseek2, kDeepseek3, kGpt2}) {
    ExpectSameSearches(p, 1500, 2);
  }
}

TEST(RegexFastPathTest, AsciiMatcherMatchesOnigurumaOnOtherSyntax) {
  for (const char* p :
       {"a+?b",         "(?:ab|a)c",    "x{2,3}?y",    "a{,2}s",      "(?:a|b){1,3}",
        "[a-d&&[^b]]+", "(?i:ab|st)",   "(?=a)[a-z]+", "(?!x)..",     "\\d{1,3}|\\s+(?!\\S)|\\S+",
        "(?m:.)+",      ".+",           "[\\]\\-x]+",  "(?<name>r)e", "\\x41|\\u0042|\\t",
        "(ab)+|a",      "[[:alpha:]]+", "\\w+|\\W",    "\\h+",        "[^a-z]+?",
        "(?-i:s)",      "e*?v"}) {
    ExpectSameSearches(p, 400, 3);
  }
}

TEST(RegexFastPathTest, UnsupportedSyntaxFallsBackToOniguruma) {
  for (const char* p : {"^a", "a$", "\\bx", "(a)\\1", "(?<=a)b", "a++", "(?>a)", "(?i:\\p{L})",
                        "(?i)a", "(?x: a )", "a**", "(?:a?)*"}) {
    auto regex = Regex::Compile(p);
    ASSERT_TRUE(regex.ok()) << p;
    EXPECT_FALSE((*regex)->has_fast_path()) << p;
    EXPECT_EQ(AsciiRegex::Compile(p), nullptr) << p;
  }
}

TEST(RegexFastPathTest, AsciiMatcherDefersOnNonAscii) {
  auto regex = AsciiRegex::Compile("\\s+|[a-z]+");
  ASSERT_NE(regex, nullptr);
  size_t s = 0, e = 0;
  EXPECT_EQ(regex->Search("ab cd", 0, &s, &e), AsciiRegex::Result::kMatch);
  EXPECT_EQ(std::make_pair(s, e), std::make_pair(size_t{0}, size_t{2}));
  // The run of spaces could go on into U+00A0, so Oniguruma must decide.
  EXPECT_EQ(regex->Search("  \xC2\xA0x", 0, &s, &e), AsciiRegex::Result::kUnknown);
  EXPECT_EQ(regex->Search("!!", 0, &s, &e), AsciiRegex::Result::kNoMatch);
  // The match "x" ends at a byte that no class can take, so it is certain.
  EXPECT_EQ(regex->Search("!x!\xC3\xA9", 0, &s, &e), AsciiRegex::Result::kMatch);
  EXPECT_EQ(std::make_pair(s, e), std::make_pair(size_t{1}, size_t{2}));
}

}  // namespace
}  // namespace afd::gateway
