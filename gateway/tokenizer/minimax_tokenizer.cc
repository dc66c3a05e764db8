#include "gateway/tokenizer/minimax_tokenizer.h"

#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gateway/chat/py_json.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;

// Member `key` of an object of kind `type`, or nullptr.
Json* Member(Json& object, const char* key, Json::value_t type) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it != object.end() && it->type() == type ? &*it : nullptr;
}

}  // namespace

absl::StatusOr<MinimaxTokenizerFiles> MakeMinimaxTokenizer(std::string_view gpt4o_tokenizer_json,
                                                           std::string_view added_tokens_data) {
  ASSIGN_OR_RETURN(Json root, ParseJsonExact(gpt4o_tokenizer_json));
  ASSIGN_OR_RETURN(Json data, ParseJsonExact(added_tokens_data));
  if (!root.is_object()) return absl::InvalidArgumentError("gpt-4o tokenizer.json: not an object");
  const Json* new_tokens = Member(data, "added_tokens", Json::value_t::array);
  const Json* config =
      data.is_object() && data.contains("tokenizer_config") ? &data["tokenizer_config"] : nullptr;
  if (new_tokens == nullptr || config == nullptr) {
    return absl::InvalidArgumentError("added tokens data: needs added_tokens and tokenizer_config");
  }
  Json* old_tokens = Member(root, "added_tokens", Json::value_t::array);
  Json* model = Member(root, "model", Json::value_t::object);
  Json* vocab = model != nullptr ? Member(*model, "vocab", Json::value_t::object) : nullptr;
  if (old_tokens == nullptr || vocab == nullptr) {
    return absl::InvalidArgumentError("gpt-4o tokenizer.json: missing added_tokens or model.vocab");
  }

  // The gpt-4o added tokens (<|endoftext|>, <|endofprompt|>) leave the vocabulary.
  absl::flat_hash_set<std::string> removed;
  for (Json& t : *old_tokens) {
    const Json* content = Member(t, "content", Json::value_t::string);
    if (content == nullptr) {
      return absl::InvalidArgumentError("gpt-4o tokenizer.json: added token without content");
    }
    removed.insert(content->get<std::string>());
  }
  // The vocabulary is edited as the plain vector it is (ordered_map's own erase and insert search
  // linearly, per key, which is quadratic on a 200k-entry vocabulary).
  Json::object_t::Container& members = vocab->get_ref<Json::object_t&>();
  Json::object_t::Container kept;
  kept.reserve(members.size() + new_tokens->size());
  for (auto& [key, value] : members) {
    if (!removed.contains(key)) kept.emplace_back(key, std::move(value));
  }
  members.swap(kept);
  // The MiniMax tokens join the vocabulary at their ids, in order.
  absl::flat_hash_set<std::string> present;
  for (const auto& m : members) present.insert(m.first);
  for (const Json& t : *new_tokens) {
    auto content = t.is_object() ? t.find("content") : t.end();
    auto id = t.is_object() ? t.find("id") : t.end();
    if (content == t.end() || !content->is_string() || id == t.end() || !id->is_number_unsigned()) {
      return absl::InvalidArgumentError("added tokens data: token without content or id");
    }
    const std::string& text = content->get_ref<const std::string&>();
    if (present.contains(text)) {
      return absl::InvalidArgumentError(
          absl::StrCat("added token ", text, " is already in the vocab"));
    }
    members.emplace_back(text, *id);
  }
  *old_tokens = *new_tokens;
  root["normalizer"] = Json::object({{"type", "NFC"}});

  MinimaxTokenizerFiles files;
  files.tokenizer_json = PyJsonDumpsIndented(root, 2);
  files.tokenizer_config_json = PyJsonDumpsIndented(*config, 2) + "\n";
  return files;
}

}  // namespace afd::gateway
