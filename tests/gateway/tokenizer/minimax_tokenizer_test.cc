#include "gateway/tokenizer/minimax_tokenizer.h"

#include <gtest/gtest.h>

#include <string>

#include "nlohmann/json.hpp"

namespace afd::gateway {
namespace {

TEST(MinimaxTokenizerTest, ReplacesAddedTokensAndNormalizer) {
  const std::string gpt4o = R"({
  "added_tokens": [{"id": 5, "content": "<|endoftext|>", "special": true}],
  "normalizer": null,
  "model": {"type": "BPE", "vocab": {"a": 0, "<|endoftext|>": 5, "b": 1}, "merges": []}
})";
  const std::string data = R"({"added_tokens": [
    {"id": 7, "content": "<think>", "special": false},
    {"id": 8, "content": "]~b]", "special": true}],
  "tokenizer_config": {"bos_token": "]~b]"}})";
  auto files = MakeMinimaxTokenizer(gpt4o, data);
  ASSERT_TRUE(files.ok()) << files.status();
  auto out = nlohmann::json::parse(files->tokenizer_json);
  EXPECT_EQ(out["normalizer"], (nlohmann::json{{"type", "NFC"}}));
  EXPECT_EQ(out["added_tokens"].size(), 2u);
  EXPECT_EQ(out["added_tokens"][1]["content"], "]~b]");
  EXPECT_EQ(out["model"]["vocab"],
            (nlohmann::json{{"a", 0}, {"b", 1}, {"<think>", 7}, {"]~b]", 8}}));
  // Key order is kept and the new tokens come last in the vocab.
  EXPECT_LT(files->tokenizer_json.find("\"a\": 0"), files->tokenizer_json.find("\"b\": 1"));
  EXPECT_LT(files->tokenizer_json.find("\"b\": 1"), files->tokenizer_json.find("\"<think>\": 7"));
  EXPECT_EQ(files->tokenizer_config_json, "{\n  \"bos_token\": \"]~b]\"\n}\n");
}

TEST(MinimaxTokenizerTest, CompiledInDataHasTheFiftyFourTokens) {
  auto data = nlohmann::json::parse(MinimaxAddedTokensData());
  ASSERT_EQ(data["added_tokens"].size(), 54u);
  EXPECT_EQ(data["added_tokens"][0]["id"], 200000);
  EXPECT_EQ(data["added_tokens"][53]["content"], "</minimax:tool_call>");
  EXPECT_EQ(data["added_tokens"][50]["special"], false);
  EXPECT_EQ(data["added_tokens"][49]["special"], true);
  EXPECT_EQ(data["tokenizer_config"]["eos_token"], "[e~[");
}

TEST(MinimaxTokenizerTest, RejectsAVocabThatAlreadyHasTheTokens) {
  const std::string gpt4o =
      R"({"added_tokens": [], "model": {"vocab": {"<think>": 0}, "merges": []}})";
  const std::string data =
      R"({"added_tokens": [{"id": 7, "content": "<think>"}], "tokenizer_config": {}})";
  EXPECT_EQ(MakeMinimaxTokenizer(gpt4o, data).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace afd::gateway
