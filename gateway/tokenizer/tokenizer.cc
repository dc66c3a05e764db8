#include "gateway/tokenizer/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gateway/tokenizer/tokenizer_json.h"
#include "gateway/tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {
namespace {

using Json = nlohmann::json;

// Words longer than this are not cached.
constexpr size_t kMaxCachedWordBytes = 4096;
// A slot's cache is dropped and refilled once it holds this many words, key bytes or ids.
constexpr size_t kMaxCachedWords = 1 << 16;
constexpr size_t kMaxCachedKeyBytes = 4 << 20;
constexpr size_t kMaxCachedIds = 1 << 20;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return ss.str();
}

absl::StatusOr<Json> ParseJson(std::string_view text, std::string_view what) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), ": invalid JSON"));
  }
  return j;
}

const Json& FieldOrNull(const Json& object, const char* key) {
  static const Json* null_json = new Json(nullptr);
  auto it = object.find(key);
  return it == object.end() ? *null_json : *it;
}

bool BoolField(const Json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// A token named in tokenizer_config.json: a string or an AddedToken object.
std::optional<std::string> ConfigTokenContent(const Json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object()) {
    auto it = j.find("content");
    if (it != j.end() && it->is_string()) return it->get<std::string>();
  }
  return std::nullopt;
}

absl::Status CheckDecoder(const Json& decoder) {
  if (decoder.is_object() && decoder.contains("type") && decoder["type"] == "ByteLevel") {
    return absl::OkStatus();
  }
  return absl::UnimplementedError(
      absl::StrCat("decoder: only ByteLevel is supported, got ", decoder.dump()));
}

}  // namespace

// Per-word BPE results, keyed by the word's raw bytes.
class BpeCache {
 public:
  // Appends the cached ids of `word` and returns true, or returns false.
  bool Lookup(std::string_view word, std::vector<int32_t>* ids) const {
    auto it = map_.find(absl::string_view(word.data(), word.size()));
    if (it == map_.end()) return false;
    if (it->second.count == 1) {
      ids->push_back(static_cast<int32_t>(it->second.first));
    } else {
      ids->insert(ids->end(), ids_.begin() + it->second.first,
                  ids_.begin() + it->second.first + it->second.count);
    }
    return true;
  }
  void Insert(std::string_view word, absl::Span<const int32_t> result) {
    if (map_.size() >= kMaxCachedWords || key_bytes_ + word.size() > kMaxCachedKeyBytes ||
        ids_.size() + result.size() > kMaxCachedIds) {
      map_.clear();
      ids_.clear();
      key_bytes_ = 0;
    }
    key_bytes_ += word.size();
    Entry e;
    e.count = static_cast<uint32_t>(result.size());
    if (result.size() == 1) {
      e.first = static_cast<uint32_t>(result[0]);
    } else {
      e.first = static_cast<uint32_t>(ids_.size());
      ids_.insert(ids_.end(), result.begin(), result.end());
    }
    map_.emplace(word, e);
  }

 private:
  struct Entry {
    uint32_t first;  // the id when count == 1, else the offset into ids_
    uint32_t count;
  };
  absl::flat_hash_map<std::string, Entry> map_;
  std::vector<int32_t> ids_;
  size_t key_bytes_ = 0;
};

struct Tokenizer::Slot {
  std::mutex mu;
  std::vector<AddedTokenSplit> raw_splits;
  std::vector<AddedTokenSplit> normalized_splits;
  std::string norm_a, norm_b;
  PreTokenizerScratch pre;
  BpeScratch bpe;
  BpeCache cache;
};

// Holds a slot's mutex for the duration of one call.
struct Tokenizer::SlotLease {
  explicit SlotLease(Slot* s) : slot(s) {}
  ~SlotLease() { slot->mu.unlock(); }
  Slot* slot;
};

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::LoadFromDirectory(const std::string& dir) {
  ASSIGN_OR_RETURN(std::string tokenizer_json, ReadFile(dir + "/tokenizer.json"));
  std::string config_json;
  std::ifstream probe(dir + "/tokenizer_config.json");
  if (probe.good()) {
    ASSIGN_OR_RETURN(config_json, ReadFile(dir + "/tokenizer_config.json"));
  }
  auto tokenizer = LoadFromJson(tokenizer_json, config_json);
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(dir, "/tokenizer.json: ", tokenizer.status().message()));
  }
  return tokenizer;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::LoadFromJson(std::string_view tokenizer_json,
                                                                   std::string_view config_json) {
  ASSIGN_OR_RETURN(TokenizerJson parsed, ParseTokenizerJson(tokenizer_json));
  const Json& root = parsed.root;
  if (!root.is_object()) return absl::InvalidArgumentError("tokenizer.json: not an object");
  std::unique_ptr<Tokenizer> t(new Tokenizer);
  ASSIGN_OR_RETURN(t->model_,
                   BpeModel::Create(FieldOrNull(root, "model"), parsed.vocab, parsed.merges));
  parsed.vocab.clear();
  parsed.merges.clear();
  ASSIGN_OR_RETURN(t->normalizer_, Normalizer::FromJson(FieldOrNull(root, "normalizer")));
  ASSIGN_OR_RETURN(t->pre_tokenizer_, PreTokenizer::FromJson(FieldOrNull(root, "pre_tokenizer")));
  if (!t->pre_tokenizer_->has_byte_level()) {
    return absl::UnimplementedError("pre_tokenizer: only byte-level BPE (a ByteLevel step)");
  }
  RETURN_IF_ERROR(CheckDecoder(FieldOrNull(root, "decoder")));

  const Json& added = FieldOrNull(root, "added_tokens");
  if (!added.is_null() && !added.is_array()) {
    return absl::InvalidArgumentError("added_tokens: not an array");
  }
  int32_t limit = t->model_->id_limit();
  for (const Json& a : added.is_array() ? added : Json::array()) {
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
        !a.contains("content") || !a["content"].is_string() || a["id"].get<int64_t>() < 0 ||
        a["id"].get<int64_t>() >= (int64_t{1} << 30)) {
      return absl::InvalidArgumentError(absl::StrCat("added_tokens: bad entry ", a.dump()));
    }
    AddedToken token;
    token.id = static_cast<int32_t>(a["id"].get<int64_t>());
    token.content = a["content"].get<std::string>();
    token.special = BoolField(a, "special", false);
    token.normalized = BoolField(a, "normalized", !token.special);
    token.lstrip = BoolField(a, "lstrip", false);
    token.rstrip = BoolField(a, "rstrip", false);
    token.single_word = BoolField(a, "single_word", false);
    if (!IsValidUtf8(token.content)) {
      return absl::InvalidArgumentError("added_tokens: content is not UTF-8");
    }
    limit = std::max(limit, token.id + 1);
    t->added_tokens_.push_back(std::move(token));
  }

  t->kinds_.assign(limit, TokenKind::kNone);
  t->added_index_.assign(limit, -1);
  for (int32_t id = 0; id < t->model_->id_limit(); ++id) {
    if (t->model_->HasId(id)) t->kinds_[id] = TokenKind::kModel;
  }
  for (size_t i = 0; i < t->added_tokens_.size(); ++i) {
    const AddedToken& token = t->added_tokens_[i];
    t->kinds_[token.id] = token.special ? TokenKind::kAddedSpecial : TokenKind::kAdded;
    t->added_index_[token.id] = static_cast<int32_t>(i);
    t->added_by_content_[token.content] = token.id;
  }

  // Added tokens are matched on the raw text, or (normalized: true) on the normalized text.
  std::vector<std::string> raw_patterns, normalized_patterns;
  std::vector<AddedToken> raw_tokens, normalized_tokens;
  std::string buf_a, buf_b;
  for (const AddedToken& token : t->added_tokens_) {
    if (token.normalized) {
      normalized_patterns.emplace_back(t->normalizer_->Normalize(token.content, &buf_a, &buf_b));
      normalized_tokens.push_back(token);
    } else {
      raw_patterns.push_back(token.content);
      raw_tokens.push_back(token);
    }
  }
  ASSIGN_OR_RETURN(t->raw_matcher_, AddedTokenMatcher::Create(raw_patterns, raw_tokens));
  ASSIGN_OR_RETURN(t->normalized_matcher_,
                   AddedTokenMatcher::Create(normalized_patterns, normalized_tokens));

  if (!config_json.empty()) {
    ASSIGN_OR_RETURN(Json config, ParseJson(config_json, "tokenizer_config.json"));
    if (!config.is_object()) {
      return absl::InvalidArgumentError("tokenizer_config.json: not an object");
    }
    // additional_special_tokens are special for skip_special_tokens too (as in transformers).
    const Json& extra = FieldOrNull(config, "additional_special_tokens");
    for (const Json& e : extra.is_array() ? extra : Json::array()) {
      std::optional<std::string> content = ConfigTokenContent(e);
      if (!content) continue;
      auto it = t->added_by_content_.find(*content);
      if (it != t->added_by_content_.end()) t->kinds_[it->second] = TokenKind::kAddedSpecial;
    }
    auto resolve = [&](const char* key) -> std::optional<int32_t> {
      std::optional<std::string> content = ConfigTokenContent(FieldOrNull(config, key));
      if (!content) return std::nullopt;
      return t->TokenToId(*content);
    };
    t->bos_id_ = resolve("bos_token");
    t->eos_id_ = resolve("eos_token");
    t->pad_id_ = resolve("pad_token");
    t->unk_id_ = resolve("unk_token");
  }

  const unsigned threads = std::max(2u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < threads; ++i) t->slots_.push_back(std::make_unique<Slot>());
  return t;
}

Tokenizer::Slot* Tokenizer::AcquireSlot() const {
  const size_t n = slots_.size();
  const size_t start = std::hash<std::thread::id>()(std::this_thread::get_id()) % n;
  for (size_t k = 0; k < n; ++k) {
    Slot* slot = slots_[(start + k) % n].get();
    if (slot->mu.try_lock()) return slot;
  }
  Slot* slot = slots_[start].get();
  slot->mu.lock();
  return slot;
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                       const EncodeOptions& options) const {
  std::vector<int32_t> ids;
  RETURN_IF_ERROR(EncodeAppend(text, &ids, options));
  return ids;
}

absl::Status Tokenizer::EncodeAppend(std::string_view text, std::vector<int32_t>* ids,
                                     const EncodeOptions& options) const {
  const size_t valid = ValidUtf8PrefixLength(text);
  if (valid != text.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer: input is not valid UTF-8 at byte ", valid));
  }
  SlotLease lease(AcquireSlot());
  Slot* slot = lease.slot;
  const bool split_special = options.split_special_tokens;
  raw_matcher_.Split(text, &slot->pre.region, &slot->raw_splits, split_special);
  for (const AddedTokenSplit& s : slot->raw_splits) {
    if (s.id >= 0) {
      ids->push_back(s.id);
    } else {
      RETURN_IF_ERROR(EncodeGap(text.substr(s.begin, s.end - s.begin), split_special, slot, ids));
    }
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::EncodeGap(std::string_view gap, bool split_special, Slot* slot,
                                  std::vector<int32_t>* ids) const {
  const std::string_view normalized = normalizer_->Normalize(gap, &slot->norm_a, &slot->norm_b);
  if (normalized_matcher_.empty()) return EncodeWords(normalized, slot, ids);
  normalized_matcher_.Split(normalized, &slot->pre.region, &slot->normalized_splits,
                            split_special);
  for (const AddedTokenSplit& s : slot->normalized_splits) {
    if (s.id >= 0) {
      ids->push_back(s.id);
    } else {
      RETURN_IF_ERROR(EncodeWords(normalized.substr(s.begin, s.end - s.begin), slot, ids));
    }
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::EncodeWords(std::string_view text, Slot* slot,
                                    std::vector<int32_t>* ids) const {
  return pre_tokenizer_->ForEachPreToken(
      text, &slot->pre, [&](std::string_view word) { EncodeWord(word, slot, ids); });
}

void Tokenizer::EncodeWord(std::string_view word, Slot* slot, std::vector<int32_t>* ids) const {
  if (word.size() == 1 || word.size() > kMaxCachedWordBytes) {
    model_->Tokenize(word, &slot->bpe, ids);
    return;
  }
  if (slot->cache.Lookup(word, ids)) return;
  const size_t before = ids->size();
  model_->Tokenize(word, &slot->bpe, ids);
  slot->cache.Insert(word, absl::MakeConstSpan(ids->data() + before, ids->size() - before));
}

std::string_view Tokenizer::TokenBytes(int32_t id) const {
  switch (Kind(id)) {
    case TokenKind::kNone:
      return {};
    case TokenKind::kModel:
      return model_->IdToBytes(id);
    default:
      return added_tokens_[added_index_[id]].content;
  }
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  auto it = added_by_content_.find(absl::string_view(token.data(), token.size()));
  if (it != added_by_content_.end()) return it->second;
  return model_->TokenTextToId(token);
}

std::string Tokenizer::Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const {
  std::string out;
  Utf8LossyStream bytes;
  for (int32_t id : ids) {
    const TokenKind kind = Kind(id);
    if (kind == TokenKind::kNone) continue;
    if (kind == TokenKind::kModel) {
      bytes.Feed(model_->IdToBytes(id), &out);
      continue;
    }
    if (kind == TokenKind::kAddedSpecial && skip_special_tokens) continue;
    // Added tokens end the current run of bytes and are copied verbatim.
    bytes.Flush(&out);
    out += added_tokens_[added_index_[id]].content;
  }
  bytes.Flush(&out);
  return out;
}

}  // namespace afd::gateway
