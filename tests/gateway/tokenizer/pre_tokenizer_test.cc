#include "gateway/tokenizer/pre_tokenizer.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "gateway/tokenizer/regex.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {
namespace {

using Pieces = std::vector<std::string>;

Pieces SplitWith(const nlohmann::json& config, std::string_view text) {
  auto pre = PreTokenizer::FromJson(config);
  EXPECT_TRUE(pre.ok()) << pre.status();
  if (!pre.ok()) return {};
  auto pieces = (*pre)->Split(text);
  EXPECT_TRUE(pieces.ok()) << pieces.status();
  return pieces.ok() ? *pieces : Pieces{};
}

nlohmann::json SplitConfig(const std::string& pattern, const std::string& behavior,
                           bool invert = false, const char* kind = "Regex") {
  return {{"type", "Split"},
          {"pattern", {{kind, pattern}}},
          {"behavior", behavior},
          {"invert", invert}};
}

std::vector<std::pair<size_t, size_t>> Matches(const std::string& pattern, std::string_view text) {
  auto regex = Regex::Compile(pattern);
  EXPECT_TRUE(regex.ok()) << regex.status();
  MatchRegion region;
  std::vector<std::pair<size_t, size_t>> out;
  EXPECT_TRUE((*regex)
                  ->ForEachMatch(text, &region,
                                 [&](size_t s, size_t e) {
                                   out.push_back({s, e});
                                 })
                  .ok());
  return out;
}

TEST(RegexTest, FindIterSkipsAnEmptyMatchRightAfterAMatch) {
  // As the onig crate: (0,0), then "aaa", the empty match at 4 is skipped, then (5,5).
  EXPECT_EQ(Matches("a*", "baaac"),
            (std::vector<std::pair<size_t, size_t>>{{0, 0}, {1, 4}, {5, 5}}));
  EXPECT_EQ(Matches("x", "abc"), (std::vector<std::pair<size_t, size_t>>{}));
}

TEST(RegexTest, WhitespaceClassIsUnicodeWhiteSpace) {
  for (const char* space :
       {" ", "\t", "\xC2\x85", "\xC2\xA0", "\xE2\x80\xA8", "\xE2\x80\xA9", "\xE3\x80\x80"}) {
    EXPECT_EQ(Matches("\\s", space).size(), 1u) << space;
  }
  for (const char* other : {"\xEF\xBB\xBF", "\xE2\x80\x8B", "\x1C", "\x1F", "a"}) {
    EXPECT_TRUE(Matches("\\s", other).empty()) << other;
  }
}

TEST(RegexTest, CaseInsensitiveGroupsAndLookahead) {
  EXPECT_EQ(Matches("(?i:'s|'ll)", "IT'S we'LL"),
            (std::vector<std::pair<size_t, size_t>>{{2, 4}, {7, 10}}));
  // \s+(?!\S) leaves the last space for the next word.
  EXPECT_EQ(Matches("\\s+(?!\\S)|\\s+", "a   b"),
            (std::vector<std::pair<size_t, size_t>>{{1, 3}, {3, 4}}));
}

TEST(RegexTest, BadPatternIsAnError) {
  EXPECT_EQ(Regex::Compile("(unclosed").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PreTokenizerTest, SplitBehaviorsMatchHuggingFace) {
  const std::string text = "the-final--countdown";
  EXPECT_EQ(SplitWith(SplitConfig("-", "Removed"), text), (Pieces{"the", "final", "countdown"}));
  EXPECT_EQ(SplitWith(SplitConfig("-", "Isolated"), text),
            (Pieces{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(SplitWith(SplitConfig("-", "MergedWithPrevious"), text),
            (Pieces{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(SplitWith(SplitConfig("-", "MergedWithNext"), text),
            (Pieces{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(SplitWith(SplitConfig("-", "Contiguous"), text),
            (Pieces{"the", "-", "final", "--", "countdown"}));
}

TEST(PreTokenizerTest, InvertKeepsTheMatches) {
  EXPECT_EQ(SplitWith(SplitConfig("-", "Removed", /*invert=*/true), "the-final--countdown"),
            (Pieces{"-", "-", "-"}));
  EXPECT_EQ(SplitWith(SplitConfig("\\p{L}+", "Removed", true), "ab, cd!"), (Pieces{"ab", "cd"}));
  EXPECT_EQ(SplitWith(SplitConfig("-", "Contiguous", true), "a-b"), (Pieces{"a", "-", "b"}));
}

TEST(PreTokenizerTest, StringPatternsAreLiteral) {
  EXPECT_EQ(SplitWith(SplitConfig(".+", "Isolated", false, "String"), "a.+b..+"),
            (Pieces{"a", ".+", "b.", ".+"}));
}

TEST(PreTokenizerTest, DigitsAndByteLevelRegex) {
  nlohmann::json digits = {{"type", "Digits"}, {"individual_digits", false}};
  EXPECT_EQ(SplitWith(digits, "Hey 123 friend!"), (Pieces{"Hey ", "123", " friend!"}));
  digits["individual_digits"] = true;
  EXPECT_EQ(SplitWith(digits, "Hey 123 friend!"), (Pieces{"Hey ", "1", "2", "3", " friend!"}));

  nlohmann::json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  EXPECT_EQ(SplitWith(byte_level, "Hello my friend, how's it going?"),
            (Pieces{"Hello", " my", " friend", ",", " how", "'s", " it", " going", "?"}));
  byte_level["add_prefix_space"] = true;
  EXPECT_EQ(SplitWith(byte_level, "Hello  there"), (Pieces{" Hello", " ", " there"}));
}

TEST(PreTokenizerTest, SequenceAppliesEachStepToThePreviousPieces) {
  // deepseek_v3 style: digits isolated first, then a word split that sees them as gaps.
  nlohmann::json seq = {
      {"type", "Sequence"},
      {"pretokenizers",
       {SplitConfig("\\p{N}{1,3}", "Isolated"),
        SplitConfig("[A-Za-z]+", "Isolated"),
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  EXPECT_EQ(SplitWith(seq, "abc12345def"), (Pieces{"abc", "123", "45", "def"}));
  EXPECT_EQ(SplitWith(seq, ""), Pieces{});
}

TEST(PreTokenizerTest, Gpt4oRegexKeepsOnlyMatchesInOrder) {
  const std::string o200k =
      "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+"
      "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  EXPECT_EQ(SplitWith(SplitConfig(o200k, "Removed", true), "HELLO's World 12345\n\n  x/y"),
            (Pieces{"HELLO's", " World", " ", "123", "45", "\n\n", " ", " x", "/y"}));
}

TEST(PreTokenizerTest, UnsupportedTypesAreErrors) {
  EXPECT_EQ(PreTokenizer::FromJson({{"type", "Metaspace"}}).status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(PreTokenizer::FromJson({{"type", "Split"}, {"behavior", "Removed"}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace afd::gateway
