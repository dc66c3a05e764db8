#include "gateway/tokenizer/nfc.h"

#include <gtest/gtest.h>

#include <string>

#include "gateway/tokenizer/nfc_tables.h"

namespace afd::gateway {
namespace {

std::string Nfc(std::string_view s) {
  std::string out;
  AppendNfc(s, &out);
  return out;
}
std::string Nfd(std::string_view s) {
  std::string out;
  AppendNfd(s, &out);
  return out;
}

TEST(NfcTest, ComposesCombiningSequences) {
  EXPECT_EQ(Nfc("e\xCC\x81"), "\xC3\xA9");  // e + U+0301 -> é
  EXPECT_EQ(Nfc("Cafe\xCC\x81 au lait"), "Caf\xC3\xA9 au lait");
  EXPECT_EQ(Nfc("\xE2\x84\xAB"), "\xC3\x85");   // U+212B ANGSTROM SIGN -> Å
  EXPECT_EQ(Nfc("\xE2\x84\xA6"), "\xCE\xA9");   // U+2126 OHM SIGN -> Ω
  EXPECT_EQ(Nfc(">\xCC\xB8"), "\xE2\x89\xAF");  // > + U+0338 -> ≯
}

TEST(NfcTest, CompositionExclusionsStayDecomposed) {
  // U+0958 DEVANAGARI QA is excluded from composition: NFC is U+0915 U+093C.
  EXPECT_EQ(Nfc("\xE0\xA5\x98"), "\xE0\xA4\x95\xE0\xA4\xBC");
}

TEST(NfcTest, ReordersMarksCanonically) {
  // a + U+0323 (ccc 220) + U+0302 (ccc 230) and the other order both give U+1EAD.
  EXPECT_EQ(Nfc("a\xCC\xA3\xCC\x82"), "\xE1\xBA\xAD");
  EXPECT_EQ(Nfc("a\xCC\x82\xCC\xA3"), "\xE1\xBA\xAD");
  EXPECT_EQ(Nfd("\xE1\xBA\xAD"), "a\xCC\xA3\xCC\x82");
  // A blocked mark is not composed across a mark of the same class.
  EXPECT_EQ(Nfc("a\xCC\x81\xCC\x81"), "\xC3\xA1\xCC\x81");
}

TEST(NfcTest, ComposesHangulAlgorithmically) {
  // U+1100 U+1161 U+11A8 -> U+AC01; and NFD splits it back.
  EXPECT_EQ(Nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");
  EXPECT_EQ(Nfd("\xEA\xB0\x81"), "\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8");
  EXPECT_EQ(Nfc("\xEA\xB0\x80\xE1\x86\xA8"), "\xEA\xB0\x81");  // LV + T
}

TEST(NfcTest, QuickCheckPassesComposedTextThrough) {
  EXPECT_TRUE(IsNfcQuick("plain ascii"));
  EXPECT_TRUE(IsNfcQuick("caf\xC3\xA9 \xE6\xBC\xA2\xE5\xAD\x97 \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsNfcQuick("e\xCC\x81"));
  EXPECT_FALSE(IsNfcQuick("\xE2\x84\xAB"));
  const std::string mixed = "abc \xC3\xA9 def \xE6\xBC\xA2 ghi";
  EXPECT_EQ(Nfc(mixed), mixed);
}

TEST(NfcTest, LeavesTextAroundChangedSegmentsAlone) {
  EXPECT_EQ(Nfc("xx e\xCC\x81 yy \xE2\x84\xAB zz"), "xx \xC3\xA9 yy \xC3\x85 zz");
  // A leading mark has nothing to compose with.
  EXPECT_EQ(Nfc("\xCC\x81"
                "a"),
            "\xCC\x81"
            "a");
}

TEST(NfcTest, TablesAreSortedAndKnowTheirVersion) {
  EXPECT_STRNE(nfc::kUnicodeVersion, "");
  for (int i = 1; i < nfc::kNumDecompositions; ++i) {
    ASSERT_LT(nfc::kDecompositions[i - 1].code_point, nfc::kDecompositions[i].code_point);
  }
  for (int i = 1; i < nfc::kNumCombiningClassRanges; ++i) {
    ASSERT_LT(nfc::kCombiningClassRanges[i - 1].last, nfc::kCombiningClassRanges[i].first);
  }
  EXPECT_EQ(CanonicalCombiningClass(0x301), 230);
  EXPECT_EQ(CanonicalCombiningClass(0x323), 220);
  EXPECT_EQ(CanonicalCombiningClass('a'), 0);
}

}  // namespace
}  // namespace afd::gateway
