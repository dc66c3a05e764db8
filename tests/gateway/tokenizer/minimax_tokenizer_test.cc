#include "gateway/tokenizer/minimax_tokenizer.h"

#include <gtest/gtest.h>

#include <string>

#include "gateway/tokenizer/python_json.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {
namespace {

TEST(PythonJsonTest, DumpsLikePythonJsonModule) {
  // Expected text: json.dumps(value, indent=2, ensure_ascii=False) in CPython 3.11.
  const std::string in =
      R"({"b": [1, -2, 3.5, 1e20, 0.0001, 1e-05, true, null, [], {}], "a": "t\"\\\n\t\u0001\u00e9\u007f",)"
      R"( "c": {"x": 18446744073709551615}})";
  auto doc = ParsePythonJson(in);
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_EQ(DumpPythonJson(*doc),
            "{\n"
            "  \"b\": [\n"
            "    1,\n"
            "    -2,\n"
            "    3.5,\n"
            "    1e+20,\n"
            "    0.0001,\n"
            "    1e-05,\n"
            "    true,\n"
            "    null,\n"
            "    [],\n"
            "    {}\n"
            "  ],\n"
            "  \"a\": \"t\\\"\\\\\\n\\t\\u0001\xC3\xA9\x7f\",\n"
            "  \"c\": {\n"
            "    \"x\": 18446744073709551615\n"
            "  }\n"
            "}");
  EXPECT_EQ(ParsePythonJson("{oops").status().code(), absl::StatusCode::kInvalidArgument);
}

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
