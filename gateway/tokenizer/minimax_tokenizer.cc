#include "gateway/tokenizer/minimax_tokenizer.h"

#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gateway/tokenizer/python_json.h"

namespace afd::gateway {

absl::StatusOr<MinimaxTokenizerFiles> MakeMinimaxTokenizer(std::string_view gpt4o_tokenizer_json,
                                                           std::string_view added_tokens_data) {
  ASSIGN_OR_RETURN(PythonJson root, ParsePythonJson(gpt4o_tokenizer_json));
  ASSIGN_OR_RETURN(PythonJson data, ParsePythonJson(added_tokens_data));
  if (root.type != PythonJson::Type::kObject) {
    return absl::InvalidArgumentError("gpt-4o tokenizer.json: not an object");
  }
  const PythonJson* new_tokens = data.Find("added_tokens");
  const PythonJson* config = data.Find("tokenizer_config");
  if (new_tokens == nullptr || new_tokens->type != PythonJson::Type::kArray || config == nullptr) {
    return absl::InvalidArgumentError("added tokens data: needs added_tokens and tokenizer_config");
  }
  PythonJson* old_tokens = root.Find("added_tokens");
  PythonJson* model = root.Find("model");
  PythonJson* vocab = model != nullptr ? model->Find("vocab") : nullptr;
  if (old_tokens == nullptr || old_tokens->type != PythonJson::Type::kArray || vocab == nullptr ||
      vocab->type != PythonJson::Type::kObject) {
    return absl::InvalidArgumentError("gpt-4o tokenizer.json: missing added_tokens or model.vocab");
  }

  // The gpt-4o added tokens (<|endoftext|>, <|endofprompt|>) leave the vocabulary.
  absl::flat_hash_set<std::string> removed;
  for (const PythonJson& t : old_tokens->items) {
    const PythonJson* content = t.Find("content");
    if (content == nullptr || content->type != PythonJson::Type::kString) {
      return absl::InvalidArgumentError("gpt-4o tokenizer.json: added token without content");
    }
    removed.insert(content->string_value);
  }
  auto& members = vocab->members;
  members.erase(std::remove_if(members.begin(), members.end(),
                               [&](const auto& m) { return removed.contains(m.first); }),
                members.end());
  // The MiniMax tokens join the vocabulary at their ids, in order.
  absl::flat_hash_set<std::string> present;
  for (const auto& m : members) present.insert(m.first);
  for (const PythonJson& t : new_tokens->items) {
    const PythonJson* content = t.Find("content");
    const PythonJson* id = t.Find("id");
    if (content == nullptr || content->type != PythonJson::Type::kString || id == nullptr ||
        id->type != PythonJson::Type::kUint) {
      return absl::InvalidArgumentError("added tokens data: token without content or id");
    }
    if (present.contains(content->string_value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("added token ", content->string_value, " is already in the vocab"));
    }
    members.emplace_back(content->string_value, *id);
  }
  *old_tokens = *new_tokens;
  PythonJson nfc = PythonJson::Object();
  nfc.Set("type", PythonJson::String("NFC"));
  root.Set("normalizer", std::move(nfc));

  MinimaxTokenizerFiles files;
  files.tokenizer_json = DumpPythonJson(root);
  files.tokenizer_config_json = DumpPythonJson(*config) + "\n";
  return files;
}

}  // namespace afd::gateway
