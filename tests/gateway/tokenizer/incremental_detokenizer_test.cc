#include "gateway/tokenizer/incremental_detokenizer.h"

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gateway/tokenizer/utf8.h"
#include "nlohmann/json.hpp"
#include "tests/gateway/tokenizer/tokenizer_test_util.h"

namespace afd::gateway {
namespace {

using testing::AddedTokenJson;
using testing::TinyTokenizerJson;

class IncrementalDetokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nlohmann::json added = {AddedTokenJson(300, "<eos>", true),
                            AddedTokenJson(301, "<think>", false),
                            AddedTokenJson(302, "</think>", false)};
    auto t = Tokenizer::LoadFromJson(
        TinyTokenizerJson({{"<", "/"}, {"t", "h"}, {"th", "i"}, {"n", "k"}, {"S", "T"}}, added)
            .dump(),
        "");
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizer_ = std::move(*t);
  }

  // Feeds ids one at a time; returns the deltas (Finish's last).
  std::vector<std::string> Stream(const std::vector<int32_t>& ids, DetokenizerOptions options,
                                  std::optional<std::string>* stop = nullptr) {
    IncrementalDetokenizer detok(tokenizer_.get(), std::move(options));
    std::vector<std::string> deltas;
    for (int32_t id : ids) {
      std::string delta;
      detok.Feed(id, &delta);
      EXPECT_TRUE(IsValidUtf8(delta)) << delta;
      deltas.push_back(delta);
    }
    std::string last;
    detok.Finish(&last);
    deltas.push_back(last);
    if (stop != nullptr) *stop = detok.stop_string();
    return deltas;
  }

  static std::string Join(const std::vector<std::string>& parts) {
    std::string out;
    for (const auto& p : parts) out += p;
    return out;
  }

  std::vector<int32_t> Bytes(std::string_view s) {
    return std::vector<int32_t>(reinterpret_cast<const unsigned char*>(s.data()),
                                reinterpret_cast<const unsigned char*>(s.data()) + s.size());
  }

  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(IncrementalDetokenizerTest, NeverSplitsAUtf8Sequence) {
  // "é漢😀" fed as single-byte tokens: nothing is released until a character is complete.
  const std::string text = "\xC3\xA9\xE6\xBC\xA2\xF0\x9F\x98\x80";
  auto deltas = Stream(Bytes(text), {});
  EXPECT_EQ(deltas, (std::vector<std::string>{"", "\xC3\xA9", "", "", "\xE6\xBC\xA2", "", "", "",
                                              "\xF0\x9F\x98\x80", ""}));
}

TEST_F(IncrementalDetokenizerTest, IllFormedBytesBecomeReplacementCharacters) {
  const std::vector<int32_t> ids = {0xE6, 0xBC, 'a', 0x80, 0xF0};
  EXPECT_EQ(Join(Stream(ids, {})), tokenizer_->Decode(ids, true));
  EXPECT_EQ(Join(Stream(ids, {})),
            "\xEF\xBF\xBD"
            "a\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST_F(IncrementalDetokenizerTest, SkipsOrKeepsSpecialTokens) {
  auto ids = *tokenizer_->Encode("hi<eos>there<think>x</think>");
  EXPECT_EQ(Join(Stream(ids, {})), "hithere<think>x</think>");
  DetokenizerOptions keep;
  keep.skip_special_tokens = false;
  EXPECT_EQ(Join(Stream(ids, keep)), "hi<eos>there<think>x</think>");
}

TEST_F(IncrementalDetokenizerTest, HoldsBackMarkersUntilTheyAreWhole) {
  // "<think>" typed byte by byte (not the added token) must still arrive in one delta.
  DetokenizerOptions options;
  options.hold_back_markers = {"<think>", "</think>"};
  auto deltas = Stream(Bytes("ab<think>cd</thx"), options);
  EXPECT_EQ(Join(deltas), "ab<think>cd</thx");
  bool saw_marker = false;
  for (const auto& d : deltas) {
    EXPECT_EQ(d.find("<th"), d.rfind("<th"));
    if (d.find("<think>") != std::string::npos) saw_marker = true;
    // A partial marker is never released on its own.
    EXPECT_TRUE(d.empty() || d.back() != '<') << d;
  }
  EXPECT_TRUE(saw_marker);
  // Text that stops looking like a marker is released as soon as that is known.
  IncrementalDetokenizer detok(tokenizer_.get(), options);
  std::string out;
  for (char c : std::string("x<th")) detok.Feed(static_cast<unsigned char>(c), &out);
  EXPECT_EQ(out, "x");
  EXPECT_EQ(detok.held_text(), "<th");
  detok.Feed('e', &out);
  EXPECT_EQ(out, "x<the");
}

TEST_F(IncrementalDetokenizerTest, StopsAtStopStringsAcrossTokens) {
  DetokenizerOptions options;
  options.stop_strings = {"STOP"};
  std::optional<std::string> stop;
  auto ids = *tokenizer_->Encode("hello STOP world");
  auto deltas = Stream(ids, options, &stop);
  EXPECT_EQ(Join(deltas), "hello ");
  EXPECT_EQ(stop, "STOP");
  // No part of the stop string ever leaked into a delta.
  for (const auto& d : deltas) EXPECT_EQ(d.find('S'), std::string::npos);

  // A prefix that turns out not to be the stop string is released in full at the end.
  options.stop_strings = {"STOP", "</think>"};
  auto partial = Stream(*tokenizer_->Encode("abc ST"), options, &stop);
  EXPECT_EQ(Join(partial), "abc ST");
  EXPECT_FALSE(stop.has_value());
}

TEST_F(IncrementalDetokenizerTest, EarliestStopStringWinsAndLaterIdsAreIgnored) {
  DetokenizerOptions options;
  options.stop_strings = {"cd", "bcde"};
  IncrementalDetokenizer detok(tokenizer_.get(), options);
  std::string out;
  for (int32_t id : Bytes("abcdefgh")) detok.Feed(id, &out);
  detok.Finish(&out);
  // "cd" completes first (after "d"), before "bcde" could.
  EXPECT_EQ(out, "ab");
  EXPECT_EQ(detok.stop_string(), "cd");
  EXPECT_EQ(detok.ids_consumed(), 4u);
}

TEST_F(IncrementalDetokenizerTest, MatchesFullDecodeOnRandomStreams) {
  std::mt19937 rng(3);
  const std::vector<std::string> pieces = {"a",       "b",     " ",        "th",  "<",  "/",
                                           "S",       "T",     "\n",       "é",   "漢", "😀",
                                           "<think>", "<eos>", "</think>", "</th"};
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    const int n = rng() % 20;
    for (int i = 0; i < n; ++i) text += pieces[rng() % pieces.size()];
    auto ids = tokenizer_->Encode(text);
    ASSERT_TRUE(ids.ok());
    // Occasionally cut a multi-byte character into byte tokens.
    std::vector<int32_t> stream = *ids;
    if (trial % 3 == 0) {
      stream.clear();
      for (int32_t id : *ids) {
        if (tokenizer_->Kind(id) == Tokenizer::TokenKind::kModel) {
          for (unsigned char b : tokenizer_->TokenBytes(id)) stream.push_back(b);
        } else {
          stream.push_back(id);
        }
      }
    }
    DetokenizerOptions options;
    options.skip_special_tokens = trial % 2 == 0;
    options.hold_back_markers = {"<think>", "</think>"};
    const std::string full = tokenizer_->Decode(stream, options.skip_special_tokens);
    ASSERT_EQ(Join(Stream(stream, options)), full) << "trial " << trial;

    options.stop_strings = {"ST", "b\n"};
    size_t cut = std::string::npos;
    for (const auto& s : options.stop_strings) cut = std::min(cut, full.find(s));
    std::optional<std::string> stop;
    ASSERT_EQ(Join(Stream(stream, options, &stop)), full.substr(0, cut)) << "trial " << trial;
    EXPECT_EQ(stop.has_value(), cut != std::string::npos);
  }
}

}  // namespace
}  // namespace afd::gateway
