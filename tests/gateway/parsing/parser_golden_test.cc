// Golden test: all 69 cases of tests/data/parsing/golden.json, non-streaming and through the
// streaming check of tests/data/parsing/README.md (whole text, every single cut, one code point per
// chunk, 10 seeded random cuttings per case).
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gateway/parsing/parser_conformance.h"
#include "gtest/gtest.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;

std::vector<ParserCase> LoadGolden() {
  const char* data = std::getenv("AFD_TEST_DATA");
  EXPECT_NE(data, nullptr) << "AFD_TEST_DATA is not set (run through ctest)";
  if (data == nullptr) return {};
  std::ifstream in(std::string(data) + "/parsing/golden.json", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const Json doc = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(doc.is_discarded()) << "parsing/golden.json is not JSON";
  absl::StatusOr<std::vector<ParserCase>> cases = LoadParserCases(doc);
  EXPECT_TRUE(cases.ok()) << cases.status();
  return cases.ok() ? *cases : std::vector<ParserCase>();
}

TEST(ParserGoldenTest, EveryCaseParsesAndStreamsToTheExpectedMessage) {
  const std::vector<ParserCase> cases = LoadGolden();
  ASSERT_EQ(cases.size(), 69u);
  StreamCheckOptions options;
  options.random_cuttings = 10;
  int cut_cases = 0;
  for (const ParserCase& c : cases) {
    cut_cases += c.cut_inside_invoke;
    for (const std::string& error : CheckParserCase(c, options)) ADD_FAILURE() << error;
  }
  EXPECT_EQ(cut_cases, 6);
}

// The check itself must be able to fail: a wrong expectation is reported in every cutting.
TEST(ParserGoldenTest, CheckReportsWrongExpectations) {
  std::vector<ParserCase> cases = LoadGolden();
  ASSERT_FALSE(cases.empty());
  ParserCase c = cases.front();
  c.expected["content"] = "something else";
  const std::vector<std::string> errors = CheckParserCase(c, StreamCheckOptions());
  EXPECT_GT(errors.size(), 3u);
}

}  // namespace
}  // namespace afd::gateway
