// Golden check: the engine against transformers' reference logits for every case in
// tests/data/golden (prefill at every position, teacher-forced decode through the engine's own
// cache, greedy continuation, and all prompts batched vs alone).
#include <cstdlib>
#include <string>

#include "attention_node/golden_check.h"
#include "gtest/gtest.h"

namespace afd::attention {
namespace {

class GoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenTest, MatchesTransformersWithinTolerance) {
  const char* data = std::getenv("AFD_TEST_DATA");
  ASSERT_NE(data, nullptr) << "AFD_TEST_DATA is set by ctest";
  const std::string dir = std::string(data) + "/golden/" + GetParam();
  GoldenOptions options;
  auto results = RunGoldenCase(dir, dir + "/golden.safetensors", options);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_FALSE(results->empty());
  for (const GoldenPromptResult& r : *results) {
    SCOPED_TRACE("prompt " + std::to_string(r.index));
    EXPECT_LE(r.prefill_max_abs, 1e-4f);
    EXPECT_LE(r.decode_max_abs, 1e-4f);
    EXPECT_EQ(r.first_greedy_mismatch, -1);
    EXPECT_GE(r.batched_max_abs, 0.0f);
    EXPECT_LE(r.batched_max_abs, 1e-5f);
    std::printf("%s prompt %d (%lld tokens): prefill %.3e decode %.3e batched %.3e\n",
                GetParam().c_str(), r.index, static_cast<long long>(r.prompt_tokens),
                r.prefill_max_abs, r.decode_max_abs, r.batched_max_abs);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, GoldenTest,
                         ::testing::Values("m2-tiny", "m2-fp8", "m2-medium", "text01-tiny"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& ch : name) {
                             if (ch == '-') ch = '_';
                           }
                           return name;
                         });

TEST(GoldenCheckTest, ReportsMissingFilesAndPrompts) {
  const char* data = std::getenv("AFD_TEST_DATA");
  ASSERT_NE(data, nullptr);
  const std::string dir = std::string(data) + "/golden/m2-tiny";
  GoldenOptions options;
  EXPECT_EQ(RunGoldenCase(dir + "/nope", dir + "/golden.safetensors", options).status().code(),
            absl::StatusCode::kNotFound);
  options.prompts = {99};
  EXPECT_EQ(RunGoldenCase(dir, dir + "/golden.safetensors", options).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace afd::attention
