#include "gateway/tokenizer/bpe.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "gateway/tokenizer/byte_level.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {
namespace {

using Json = nlohmann::json;

// Heap order: lowest rank first, then leftmost position.
struct CandidateAfter {
  bool operator()(const BpeScratch::Candidate& x, const BpeScratch::Candidate& y) const {
    return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos;
  }
};

bool IsNullOrEmptyString(const Json& j) {
  return j.is_null() || (j.is_string() && j.get_ref<const std::string&>().empty());
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const Json& model) {
  if (!model.is_object()) return absl::InvalidArgumentError("model: not an object");
  auto type = model.find("type");
  if (type != model.end() && !(type->is_string() && *type == "BPE")) {
    return absl::UnimplementedError(absl::StrCat("model: type ", type->dump(), " (only BPE)"));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix", "dropout"}) {
    auto it = model.find(key);
    if (it != model.end() && !IsNullOrEmptyString(*it)) {
      return absl::UnimplementedError(absl::StrCat("model: ", key, " is not supported"));
    }
  }
  auto byte_fallback = model.find("byte_fallback");
  if (byte_fallback != model.end() && byte_fallback->is_boolean() && byte_fallback->get<bool>()) {
    return absl::UnimplementedError("model: byte_fallback is not supported");
  }

  std::unique_ptr<BpeModel> bpe(new BpeModel);
  auto ignore_merges = model.find("ignore_merges");
  bpe->ignore_merges_ = ignore_merges != model.end() && ignore_merges->is_boolean() &&
                        ignore_merges->get<bool>();

  auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) {
    return absl::InvalidArgumentError("model: missing vocab object");
  }
  // First pass: ids and the id range.
  int64_t max_id = -1;
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() > std::numeric_limits<int32_t>::max() - 1) {
      return absl::InvalidArgumentError(absl::StrCat("model: bad id for vocab entry ", it.key()));
    }
    max_id = std::max(max_id, it.value().get<int64_t>());
  }
  const size_t limit = static_cast<size_t>(max_id + 1);
  std::vector<std::string> id_bytes(limit);
  bpe->present_.assign(limit, false);
  bpe->bytes_to_id_.reserve(vocab->size());
  std::string bytes;
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    const int32_t id = static_cast<int32_t>(it.value().get<int64_t>());
    if (bpe->present_[id]) {
      return absl::InvalidArgumentError(absl::StrCat("model: id ", id, " used twice in vocab"));
    }
    bpe->present_[id] = true;
    if (ByteLevelToBytes(it.key(), &bytes)) {
      bpe->bytes_to_id_.emplace(bytes, id);
      id_bytes[id] = bytes;
    } else {
      bpe->other_text_to_id_.emplace(it.key(), id);
      id_bytes[id] = it.key();
    }
  }
  bpe->offsets_.resize(limit + 1);
  size_t total = 0;
  for (const std::string& b : id_bytes) total += b.size();
  bpe->bytes_arena_.reserve(total);
  for (size_t id = 0; id < limit; ++id) {
    bpe->offsets_[id] = static_cast<uint32_t>(bpe->bytes_arena_.size());
    bpe->bytes_arena_ += id_bytes[id];
  }
  bpe->offsets_[limit] = static_cast<uint32_t>(bpe->bytes_arena_.size());

  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    auto it = bpe->bytes_to_id_.find(absl::string_view(&c, 1));
    if (it == bpe->bytes_to_id_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model: vocab lacks the byte-level token for byte ", b));
    }
    bpe->byte_ids_[b] = it->second;
  }

  auto merges = model.find("merges");
  if (merges == model.end() || !merges->is_array()) {
    return absl::InvalidArgumentError("model: missing merges array");
  }
  bpe->merges_.reserve(merges->size());
  std::string left, right, merged;
  uint32_t rank = 0;
  for (const Json& m : *merges) {
    std::string_view a, b;
    if (m.is_string()) {
      // "a b": tokens never contain spaces in byte-level vocabularies.
      const std::string& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat("model: bad merge \"", s, "\""));
      }
      a = std::string_view(s).substr(0, space);
      b = std::string_view(s).substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get_ref<const std::string&>();
      b = m[1].get_ref<const std::string&>();
    } else {
      return absl::InvalidArgumentError(absl::StrCat("model: bad merge ", m.dump()));
    }
    const std::string joined = std::string(a) + std::string(b);
    std::optional<int32_t> ia = bpe->TokenTextToId(a), ib = bpe->TokenTextToId(b),
                           ij = bpe->TokenTextToId(joined);
    if (!ia || !ib || !ij) {
      return absl::InvalidArgumentError(
          absl::StrCat("model: merge ", m.dump(), " uses a token missing from vocab"));
    }
    // A later duplicate overrides an earlier one, as in Hugging Face's merge map.
    bpe->merges_[PairKey(*ia, *ib)] = (static_cast<uint64_t>(rank) << 32) | uint32_t(*ij);
    ++rank;
  }
  return bpe;
}

std::optional<int32_t> BpeModel::BytesToId(std::string_view bytes) const {
  auto it = bytes_to_id_.find(absl::string_view(bytes.data(), bytes.size()));
  if (it == bytes_to_id_.end()) return std::nullopt;
  return it->second;
}

std::optional<int32_t> BpeModel::TokenTextToId(std::string_view text) const {
  std::string bytes;
  if (ByteLevelToBytes(text, &bytes)) return BytesToId(bytes);
  auto it = other_text_to_id_.find(absl::string_view(text.data(), text.size()));
  if (it == other_text_to_id_.end()) return std::nullopt;
  return it->second;
}

std::string_view BpeModel::IdToBytes(int32_t id) const {
  if (!HasId(id)) return {};
  return std::string_view(bytes_arena_).substr(offsets_[id], offsets_[id + 1] - offsets_[id]);
}

void BpeModel::Tokenize(std::string_view word, BpeScratch* scratch,
                        std::vector<int32_t>* ids) const {
  const int n = static_cast<int>(word.size());
  if (n == 1) {
    ids->push_back(byte_ids_[static_cast<unsigned char>(word[0])]);
    return;
  }
  if (ignore_merges_) {
    auto it = bytes_to_id_.find(absl::string_view(word.data(), word.size()));
    if (it != bytes_to_id_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  auto& symbols = scratch->symbols;
  auto& heap = scratch->heap;
  symbols.resize(n);
  heap.clear();
  for (int i = 0; i < n; ++i) {
    symbols[i] = {byte_ids_[static_cast<unsigned char>(word[i])], i - 1, i + 1 < n ? i + 1 : -1, 1};
  }
  for (int i = 0; i + 1 < n; ++i) {
    auto it = merges_.find(PairKey(symbols[i].id, symbols[i + 1].id));
    if (it != merges_.end()) {
      heap.push_back({static_cast<uint32_t>(it->second >> 32), i,
                      static_cast<int32_t>(it->second & 0xFFFFFFFFu)});
    }
  }
  std::make_heap(heap.begin(), heap.end(), CandidateAfter());
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), CandidateAfter());
    const BpeScratch::Candidate top = heap.back();
    heap.pop_back();
    BpeScratch::Symbol& left = symbols[top.pos];
    if (left.len == 0 || left.next < 0) continue;
    BpeScratch::Symbol& right = symbols[left.next];
    auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || static_cast<int32_t>(it->second & 0xFFFFFFFFu) != top.new_id) {
      continue;  // stale: one side has changed since this pair was queued
    }
    left.id = top.new_id;
    left.len += right.len;
    left.next = right.next;
    right.len = 0;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) {
      auto p = merges_.find(PairKey(symbols[left.prev].id, left.id));
      if (p != merges_.end()) {
        heap.push_back({static_cast<uint32_t>(p->second >> 32), left.prev,
                        static_cast<int32_t>(p->second & 0xFFFFFFFFu)});
        std::push_heap(heap.begin(), heap.end(), CandidateAfter());
      }
    }
    if (left.next >= 0) {
      auto q = merges_.find(PairKey(left.id, symbols[left.next].id));
      if (q != merges_.end()) {
        heap.push_back({static_cast<uint32_t>(q->second >> 32), top.pos,
                        static_cast<int32_t>(q->second & 0xFFFFFFFFu)});
        std::push_heap(heap.begin(), heap.end(), CandidateAfter());
      }
    }
  }
  for (int i = 0; i >= 0; i = symbols[i].next) ids->push_back(symbols[i].id);
}

}  // namespace afd::gateway
