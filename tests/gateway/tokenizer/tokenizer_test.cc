#include "gateway/tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/gateway/tokenizer/tokenizer_test_util.h"

namespace afd::gateway {
namespace {

using testing::AddedTokenJson;
using testing::ByteLevel;
using testing::TinyTokenizerJson;
using Merges = std::vector<std::pair<std::string, std::string>>;

const nlohmann::json kWholeText = {
    {"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};

std::unique_ptr<Tokenizer> Load(const nlohmann::json& tokenizer_json,
                                const nlohmann::json& config = nullptr) {
  auto t = Tokenizer::LoadFromJson(tokenizer_json.dump(), config.is_null() ? "" : config.dump());
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

// Token strings (raw bytes) of an encoding.
std::vector<std::string> Pieces(const Tokenizer& t, std::string_view text) {
  auto ids = t.Encode(text);
  EXPECT_TRUE(ids.ok()) << ids.status();
  std::vector<std::string> out;
  for (int32_t id : ids.ok() ? *ids : std::vector<int32_t>{}) {
    out.emplace_back(t.TokenBytes(id));
  }
  return out;
}

// Textbook BPE: repeatedly merge the adjacent pair with the lowest rank (leftmost on ties).
std::vector<std::string> NaiveBpe(const std::string& word, const Merges& merges) {
  std::map<std::pair<std::string, std::string>, int> rank;
  for (size_t i = 0; i < merges.size(); ++i) rank.emplace(merges[i], static_cast<int>(i));
  std::vector<std::string> parts;
  for (char c : word) parts.emplace_back(1, c);
  while (true) {
    int best = std::numeric_limits<int>::max();
    size_t at = 0;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      auto it = rank.find({parts[i], parts[i + 1]});
      if (it != rank.end() && it->second < best) {
        best = it->second;
        at = i;
      }
    }
    if (best == std::numeric_limits<int>::max()) return parts;
    parts[at] += parts[at + 1];
    parts.erase(parts.begin() + at + 1);
  }
}

TEST(TokenizerTest, AppliesLowestRankMergeFirst) {
  auto ab_first = Load(TinyTokenizerJson({{"a", "b"}, {"b", "c"}}, {}, nullptr, kWholeText));
  EXPECT_EQ(Pieces(*ab_first, "abc"), (std::vector<std::string>{"ab", "c"}));
  auto bc_first = Load(TinyTokenizerJson({{"b", "c"}, {"a", "b"}}, {}, nullptr, kWholeText));
  EXPECT_EQ(Pieces(*bc_first, "abc"), (std::vector<std::string>{"a", "bc"}));
}

TEST(TokenizerTest, MergesLeftmostPairOnTies) {
  auto t = Load(TinyTokenizerJson({{"a", "a"}}, {}, nullptr, kWholeText));
  EXPECT_EQ(Pieces(*t, "aaa"), (std::vector<std::string>{"aa", "a"}));
  EXPECT_EQ(Pieces(*t, "aaaaa"), (std::vector<std::string>{"aa", "aa", "a"}));
}

TEST(TokenizerTest, MatchesTextbookBpeOnRandomWords) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 30; ++trial) {
    // Random merges over a 3-letter alphabet, each joining two existing tokens.
    std::vector<std::string> tokens = {"a", "b", "c"};
    Merges merges;
    for (int m = 0; m < 25; ++m) {
      const std::string& x = tokens[rng() % tokens.size()];
      const std::string& y = tokens[rng() % tokens.size()];
      if (x.size() + y.size() > 8) continue;
      if (std::find(merges.begin(), merges.end(), std::make_pair(x, y)) != merges.end()) continue;
      merges.emplace_back(x, y);
      tokens.push_back(x + y);
    }
    auto t = Load(TinyTokenizerJson(merges, {}, nullptr, kWholeText));
    ASSERT_NE(t, nullptr);
    for (int w = 0; w < 10; ++w) {
      std::string word;
      // Every few trials one long word exercises the heap (the naive oracle is quadratic).
      const int n = 1 + rng() % (w == 0 && trial % 5 == 0 ? 600 : 24);
      for (int i = 0; i < n; ++i) word.push_back("abc"[rng() % 3]);
      ASSERT_EQ(Pieces(*t, word), NaiveBpe(word, merges)) << "trial " << trial;
      ASSERT_EQ(Pieces(*t, word), NaiveBpe(word, merges)) << "cached, trial " << trial;
    }
  }
}

TEST(TokenizerTest, AddedTokensAreMatchedLeftmostLongestInsideWords) {
  nlohmann::json added = {AddedTokenJson(300, "<a>", true), AddedTokenJson(301, "<a><b>", true),
                          AddedTokenJson(302, "<think>", false)};
  auto t = Load(TinyTokenizerJson({}, added));
  EXPECT_EQ(*t->Encode("x<a><b>y"), (std::vector<int32_t>{'x', 301, 'y'}));
  EXPECT_EQ(*t->Encode("x<a>y<a"), (std::vector<int32_t>{'x', 300, 'y', '<', 'a'}));
  EXPECT_EQ(*t->Encode("a<think>b"), (std::vector<int32_t>{'a', 302, 'b'}));
  EXPECT_EQ(*t->Encode(""), std::vector<int32_t>{});
  EXPECT_EQ(t->Kind(300), Tokenizer::TokenKind::kAddedSpecial);
  EXPECT_EQ(t->Kind(302), Tokenizer::TokenKind::kAdded);
  EXPECT_EQ(t->Kind('x'), Tokenizer::TokenKind::kModel);
  EXPECT_EQ(t->Kind(299), Tokenizer::TokenKind::kNone);
  EXPECT_EQ(t->TokenToId("<think>"), 302);
  EXPECT_EQ(t->TokenToId(ByteLevel(" ")), ' ');
  EXPECT_EQ(t->TokenToId("nope"), std::nullopt);
  EXPECT_EQ(t->id_limit(), 303);
}

TEST(TokenizerTest, SplitSpecialTokensEncodesThemAsText) {
  nlohmann::json added = {AddedTokenJson(300, "<s>", true), AddedTokenJson(301, "<t>", false)};
  auto t = Load(TinyTokenizerJson({}, added, nullptr, kWholeText));
  EXPECT_EQ(*t->Encode("a<s>b<t>"), (std::vector<int32_t>{'a', 300, 'b', 301}));
  EncodeOptions plain;
  plain.split_special_tokens = true;
  EXPECT_EQ(*t->Encode("a<s>b<t>", plain), (std::vector<int32_t>{'a', '<', 's', '>', 'b', 301}));
}

TEST(TokenizerTest, RawAddedTokensAreMatchedBeforeNormalization) {
  nlohmann::json added = {AddedTokenJson(300, "<t>", false, /*normalized=*/false),
                          AddedTokenJson(301, "\xC3\xA9", false, /*normalized=*/true)};
  auto t = Load(TinyTokenizerJson({}, added, {{"type", "NFC"}}));
  // ">" + U+0338 would compose to U+226F, but the added token is cut out first.
  EXPECT_EQ(*t->Encode("<t>\xCC\xB8"), (std::vector<int32_t>{300, 0xCC, 0xB8}));
  // The gap is normalized (NFC), then normalized tokens are matched on it.
  EXPECT_EQ(*t->Encode("xe\xCC\x81y"), (std::vector<int32_t>{'x', 301, 'y'}));
  EXPECT_EQ(*t->Encode("\xE2\x84\xAB"), (std::vector<int32_t>{0xC3, 0x85}));
}

TEST(TokenizerTest, AddedTokenStripAndSingleWordFlags) {
  nlohmann::json strip = AddedTokenJson(300, "<m>", true);
  strip["lstrip"] = true;
  strip["rstrip"] = true;
  nlohmann::json word = AddedTokenJson(301, "hi", false);
  word["single_word"] = true;
  auto t = Load(TinyTokenizerJson({}, {strip, word}, nullptr, kWholeText));
  EXPECT_EQ(*t->Encode("a \t<m>  b"), (std::vector<int32_t>{'a', 300, 'b'}));
  EXPECT_EQ(*t->Encode("hi there"), (std::vector<int32_t>{301, ' ', 't', 'h', 'e', 'r', 'e'}));
  EXPECT_EQ(*t->Encode("this"), (std::vector<int32_t>{'t', 'h', 'i', 's'}));
}

TEST(TokenizerTest, DecodeHandlesSpecialsBytesAndUnknownIds) {
  nlohmann::json added = {AddedTokenJson(300, "]<]start of speech[>[", true),
                          AddedTokenJson(301, "<think>", false)};
  auto t = Load(TinyTokenizerJson({}, added));
  // U+6F22 as three byte tokens, split by added tokens in different ways.
  const std::vector<int32_t> han = {0xE6, 0xBC, 0xA2};
  EXPECT_EQ(t->Decode(han, false), "\xE6\xBC\xA2");
  EXPECT_EQ(t->Decode({0xE6, 0xBC, 300, 0xA2}, false),
            "\xEF\xBF\xBD]<]start of speech[>[\xEF\xBF\xBD");
  // Skipping the special token joins the bytes around it, as in Hugging Face.
  EXPECT_EQ(t->Decode({0xE6, 0xBC, 300, 0xA2}, true), "\xE6\xBC\xA2");
  EXPECT_EQ(t->Decode({'a', 301, 'b', 300}, true), "a<think>b");
  EXPECT_EQ(t->Decode({'a', 99999, -1, 299, 'b'}, false), "ab");
  EXPECT_EQ(t->Decode({}, false), "");
}

TEST(TokenizerTest, RoundTripsArbitraryText) {
  auto t = Load(TinyTokenizerJson({{"h", "e"}, {"l", "l"}, {" ", "w"}}));
  const std::string text = "hello world\n\t\xF0\x9F\x98\x80 \xC2\xA0 \xE6\xBC\xA2\xE5\xAD\x97";
  auto ids = t->Encode(text);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(t->Decode(*ids, false), text);
}

TEST(TokenizerTest, RejectsInvalidUtf8) {
  auto t = Load(TinyTokenizerJson({}));
  auto ids = t->Encode("ok\xFFno");
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ids.status().message().find("byte 2"), std::string::npos);
}

TEST(TokenizerTest, ReadsSpecialTokensFromConfig) {
  nlohmann::json added = {AddedTokenJson(300, "<s>", true), AddedTokenJson(301, "</s>", true),
                          AddedTokenJson(302, "<extra>", false)};
  nlohmann::json config = {{"bos_token", "<s>"},
                           {"eos_token", {{"__type", "AddedToken"}, {"content", "</s>"}}},
                           {"additional_special_tokens", {"<extra>"}}};
  auto t = Load(TinyTokenizerJson({}, added), config);
  EXPECT_EQ(t->bos_token_id(), 300);
  EXPECT_EQ(t->eos_token_id(), 301);
  EXPECT_EQ(t->pad_token_id(), std::nullopt);
  // additional_special_tokens count as special for skip_special_tokens.
  EXPECT_TRUE(t->IsSpecial(302));
  EXPECT_EQ(t->Decode({'a', 302, 'b'}, true), "ab");
}

TEST(TokenizerTest, ReportsBrokenFiles) {
  EXPECT_EQ(Tokenizer::LoadFromJson("{not json", "").status().code(),
            absl::StatusCode::kInvalidArgument);
  nlohmann::json bad_merge = TinyTokenizerJson({});
  bad_merge["model"]["merges"].push_back("x yz");
  EXPECT_EQ(Tokenizer::LoadFromJson(bad_merge.dump(), "").status().code(),
            absl::StatusCode::kInvalidArgument);
  nlohmann::json nfkc = TinyTokenizerJson({}, {}, {{"type", "NFKC"}});
  EXPECT_EQ(Tokenizer::LoadFromJson(nfkc.dump(), "").status().code(),
            absl::StatusCode::kUnimplemented);
  nlohmann::json no_byte_level = TinyTokenizerJson({});
  no_byte_level["pre_tokenizer"] = {{"type", "Digits"}};
  EXPECT_EQ(Tokenizer::LoadFromJson(no_byte_level.dump(), "").status().code(),
            absl::StatusCode::kUnimplemented);
  nlohmann::json missing_byte = TinyTokenizerJson({});
  missing_byte["model"]["vocab"].erase(ByteLevel("z"));
  EXPECT_EQ(Tokenizer::LoadFromJson(missing_byte.dump(), "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Tokenizer::LoadFromDirectory("/nonexistent").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(TokenizerTest, EncodesConsistentlyFromManyThreads) {
  auto t = Load(TinyTokenizerJson({{"a", "b"}, {"ab", "c"}, {" ", "a"}}));
  std::vector<std::string> texts;
  for (int i = 0; i < 50; ++i) texts.push_back("abc ab" + std::to_string(i) + " abcabc a b c");
  std::vector<std::vector<int32_t>> expected;
  for (const auto& s : texts) expected.push_back(*t->Encode(s));
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int round = 0; round < 50; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          if (*t->Encode(texts[i]) != expected[i]) ++failures[k];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace afd::gateway
