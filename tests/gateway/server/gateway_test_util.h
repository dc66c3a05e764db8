// Helpers for the gateway server tests: a tiny byte-level tokenizer with MiniMax-M2's role and
// markup tokens as added tokens (ids 300..), built in memory, and a GatewayCore on it with no
// attention node behind it.
#pragma once

#include <memory>
#include <string>

#include "gateway/server/gateway_core.h"
#include "gateway/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "tests/gateway/tokenizer/tokenizer_test_util.h"

namespace afd::gateway::testing {

inline constexpr int32_t kRoleId = 300;      // ]~b]   special
inline constexpr int32_t kEndId = 301;       // [e~[   special
inline constexpr int32_t kBosId = 302;       // ]~!b[  special
inline constexpr int32_t kThinkId = 303;     // <think>   not special
inline constexpr int32_t kThinkEndId = 304;  // </think>  not special
inline constexpr int32_t kBlockId = 305;     // <minimax:tool_call>   not special
inline constexpr int32_t kBlockEndId = 306;  // </minimax:tool_call>  not special

// tokenizer.json text: the 256 byte tokens, a few merges, and the added tokens above.
inline std::string MiniTokenizerJson() {
  nlohmann::json added = nlohmann::json::array(
      {AddedTokenJson(kRoleId, "]~b]", true), AddedTokenJson(kEndId, "[e~[", true),
       AddedTokenJson(kBosId, "]~!b[", true), AddedTokenJson(kThinkId, "<think>", false),
       AddedTokenJson(kThinkEndId, "</think>", false),
       AddedTokenJson(kBlockId, "<minimax:tool_call>", false),
       AddedTokenJson(kBlockEndId, "</minimax:tool_call>", false)});
  nlohmann::json json = TinyTokenizerJson({{"h", "i"}, {"e", "r"}, {"]", "~"}}, added);
  // Added tokens need vocab entries too (their ids must be in range).
  for (const auto& token : added)
    json["model"]["vocab"][token["content"].get<std::string>()] = token["id"];
  return json.dump();
}

inline std::string MiniTokenizerConfigJson() {
  return R"({"bos_token": "]~!b[", "eos_token": "[e~[", "unk_token": null})";
}

inline std::unique_ptr<Tokenizer> MiniTokenizer() {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t =
      Tokenizer::LoadFromJson(MiniTokenizerJson(), MiniTokenizerConfigJson());
  if (!t.ok()) return nullptr;
  return *std::move(t);
}

// A GatewayCore serving "mini" with MiniTokenizer, whose only attention node (attn0 at
// 127.0.0.1:1) refuses connections; nullptr if something cannot be built.
inline std::unique_ptr<GatewayCore> MiniCore(GatewayOptions options) {
  options.served_model_name = "mini";
  std::unique_ptr<Tokenizer> tokenizer = MiniTokenizer();
  if (tokenizer == nullptr) return nullptr;
  auto encoder = std::make_unique<PromptEncoder>(tokenizer.get());
  AttentionPoolOptions pool_options;
  pool_options.poll_interval_ms = 50;
  absl::StatusOr<std::unique_ptr<AttentionPool>> pool =
      AttentionPool::Create({{"attn0", "127.0.0.1:1"}}, pool_options);
  if (!pool.ok()) return nullptr;
  return std::make_unique<GatewayCore>(std::move(options), std::move(tokenizer), std::move(encoder),
                                       *std::move(pool));
}

}  // namespace afd::gateway::testing
