#include "gateway/tokenizer/utf8.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace afd::gateway {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8Test, ValidatesWellFormedText) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii text that is longer than eight bytes"));
  EXPECT_TRUE(IsValidUtf8("h\xC3\xA9llo \xE6\xBC\xA2 \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF"));
  EXPECT_EQ(ValidUtf8PrefixLength("ab\xC3"), 2u);               // truncated
  EXPECT_EQ(ValidUtf8PrefixLength("ab\xED\xA0\x80"), 2u);       // surrogate U+D800
  EXPECT_EQ(ValidUtf8PrefixLength("\xC0\xAF"), 0u);             // overlong
  EXPECT_EQ(ValidUtf8PrefixLength("abc\xF4\x90\x80\x80"), 3u);  // above U+10FFFF
  EXPECT_EQ(ValidUtf8PrefixLength("0123456789\xFF"), 10u);
}

TEST(Utf8Test, DecodesAndEncodesCodePoints) {
  const std::string text = "a\xC3\xA9\xE6\xBC\xA2\xF0\x9F\x98\x80";
  size_t pos = 0;
  std::vector<char32_t> cps;
  while (pos < text.size()) cps.push_back(DecodeUtf8(text, &pos));
  EXPECT_EQ(cps, (std::vector<char32_t>{U'a', 0xE9, 0x6F22, 0x1F600}));
  std::string back;
  for (char32_t c : cps) AppendUtf8(c, &back);
  EXPECT_EQ(back, text);
}

TEST(Utf8Test, LossyReplacesMaximalSubparts) {
  auto lossy = [](std::string_view bytes) {
    std::string out;
    AppendUtf8Lossy(bytes, &out);
    return out;
  };
  EXPECT_EQ(lossy("ok"), "ok");
  // A truncated 3-byte sequence is one maximal subpart.
  EXPECT_EQ(lossy("\xE6\xBC"
                  "a"),
            kFffd + "a");
  // Each stray continuation byte is its own subpart.
  EXPECT_EQ(lossy("\x80\x80"), kFffd + kFffd);
  // E0 80: 80 is not a valid second byte after E0, so E0 alone is replaced, then 80.
  EXPECT_EQ(lossy("\xE0\x80"), kFffd + kFffd);
  // ED A0 80 (a surrogate) gives three replacements, as in WHATWG and Rust.
  EXPECT_EQ(lossy("\xED\xA0\x80"), kFffd + kFffd + kFffd);
  EXPECT_EQ(lossy("\xF0\x9F\x98"), kFffd);
  EXPECT_EQ(lossy("\xFF"
                  "b\xC3\xA9"),
            kFffd + "b\xC3\xA9");
}

TEST(Utf8Test, StreamMatchesBatchUnderRandomSplits) {
  std::mt19937 rng(7);
  const std::string alphabet[] = {"a",    "\xC3\xA9", "\xE6\xBC\xA2", "\xF0\x9F\x98\x80", "\x80",
                                  "\xE6", "\xF0\x9F", "\xFF",         "\xED\xA0\x80",     " "};
  for (int trial = 0; trial < 500; ++trial) {
    std::string bytes;
    const int n = rng() % 12;
    for (int i = 0; i < n; ++i) bytes += alphabet[rng() % std::size(alphabet)];
    std::string batch;
    AppendUtf8Lossy(bytes, &batch);
    Utf8LossyStream stream;
    std::string streamed;
    size_t pos = 0;
    while (pos < bytes.size()) {
      const size_t len = 1 + rng() % 3;
      std::string piece;
      stream.Feed(std::string_view(bytes).substr(pos, len), &piece);
      EXPECT_TRUE(IsValidUtf8(piece));
      streamed += piece;
      pos += len;
    }
    stream.Flush(&streamed);
    EXPECT_EQ(streamed, batch) << "trial " << trial;
  }
}

}  // namespace
}  // namespace afd::gateway
