// Helpers for the tokenizer tests: a small byte-level BPE tokenizer.json built in memory, and the
// locations of the fixtures (tests/data and the fetched tokenizer files).
#pragma once

#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gateway/tokenizer/byte_level.h"
#include "nlohmann/json.hpp"

namespace afd::gateway::testing {

// Byte-level text of raw bytes, as tokens are spelled in tokenizer.json.
inline std::string ByteLevel(std::string_view bytes) {
  std::string out;
  AppendByteLevel(bytes, &out);
  return out;
}

// A tokenizer.json whose vocab is the 256 byte tokens (id = byte value) followed by one token
// per merge (ids 256, 257, ... in merge order). Merges are given as raw byte strings.
inline nlohmann::json TinyTokenizerJson(
    const std::vector<std::pair<std::string, std::string>>& merges,
    nlohmann::json added_tokens = nlohmann::json::array(), nlohmann::json normalizer = nullptr,
    nlohmann::json pre_tokenizer = nullptr) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteLevel(std::string(1, static_cast<char>(b)))] = b;
  nlohmann::json merge_list = nlohmann::json::array();
  int next = 256;
  for (const auto& [a, b] : merges) {
    const std::string joined = ByteLevel(a + b);
    if (!vocab.contains(joined)) vocab[joined] = next++;
    merge_list.push_back(ByteLevel(a) + " " + ByteLevel(b));
  }
  if (pre_tokenizer.is_null()) {
    pre_tokenizer = {{"type", "ByteLevel"},
                     {"add_prefix_space", false},
                     {"trim_offsets", true},
                     {"use_regex", true}};
  }
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added_tokens},
          {"normalizer", normalizer},
          {"pre_tokenizer", pre_tokenizer},
          {"post_processor", nullptr},
          {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"fuse_unk", false},
            {"byte_fallback", false},
            {"vocab", vocab},
            {"merges", merge_list}}}};
}

inline nlohmann::json AddedTokenJson(int id, const std::string& content, bool special,
                                     bool normalized = false) {
  return {{"id", id},        {"content", content},       {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", normalized}, {"special", special}};
}

// tests/data (ctest sets AFD_TEST_DATA).
inline std::string TestDataDir() {
  const char* dir = std::getenv("AFD_TEST_DATA");
  return dir != nullptr ? dir : "tests/data";
}

// Folder with one sub-folder per fetched tokenizer (tokenizer_fetch fills <build>/tokenizers).
inline std::string TokenizersDir() {
  if (const char* dir = std::getenv("AFD_TOKENIZERS_DIR")) return dir;
  const char* build = std::getenv("AFD_BUILD_DIR");
  return std::string(build != nullptr ? build : ".") + "/tokenizers";
}

}  // namespace afd::gateway::testing
