// Golden check of the quantized formats: the engine (in-process experts) on
// tests/data/golden-quant/{m2-awq,m2-mlx4} against the transformers reference that dequantized
// every packed tensor to fp32 (prefill at every position, teacher-forced decode, greedy
// continuation, and all prompts batched vs alone), with the tolerances of the float goldens.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "attention_node/golden_check.h"
#include "gtest/gtest.h"

namespace afd::attention {
namespace {

class QuantGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(QuantGoldenTest, MatchesTransformersWithinTolerance) {
  const char* data = std::getenv("AFD_TEST_DATA");
  ASSERT_NE(data, nullptr) << "AFD_TEST_DATA is set by ctest";
  const std::string dir = std::string(data) + "/golden-quant/" + GetParam();
  GoldenOptions options;
  auto results = RunGoldenCase(dir, dir + "/golden.safetensors", options);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 3u);
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

TEST_P(QuantGoldenTest, SingleThreadGivesTheSameAnswer) {
  // The row split across threads must not change which kernel path a row takes.
  const char* data = std::getenv("AFD_TEST_DATA");
  ASSERT_NE(data, nullptr);
  const std::string dir = std::string(data) + "/golden-quant/" + GetParam();
  GoldenOptions options;
  options.num_threads = 1;
  options.prompts = {0};
  options.batched = false;
  auto results = RunGoldenCase(dir, dir + "/golden.safetensors", options);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 1u);
  EXPECT_LE((*results)[0].prefill_max_abs, 1e-4f);
  EXPECT_LE((*results)[0].decode_max_abs, 1e-4f);
  EXPECT_EQ((*results)[0].first_greedy_mismatch, -1);
}

INSTANTIATE_TEST_SUITE_P(Cases, QuantGoldenTest, ::testing::Values("m2-awq", "m2-mlx4"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& ch : name) {
                             if (ch == '-') ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace afd::attention
