#include "gateway/tokenizer/bpe.h"

#include <algorithm>
#include <functional>
#include <limits>

#include "absl/strings/str_cat.h"
#include "gateway/tokenizer/byte_level.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {
namespace {

using Json = nlohmann::json;

// A 4-ary min-heap of uint64 keys in a caller-owned vector: half the levels of a binary heap,
// and the smallest of four children is found without data-dependent branches.
void HeapPush(std::vector<uint64_t>* heap, uint64_t key) {
  auto& h = *heap;
  size_t i = h.size();
  h.push_back(key);
  while (i > 0) {
    const size_t parent = (i - 1) / 4;
    if (h[parent] <= key) break;
    h[i] = h[parent];
    i = parent;
  }
  h[i] = key;
}

uint64_t HeapPop(std::vector<uint64_t>* heap) {
  auto& h = *heap;
  const uint64_t top = h[0];
  const uint64_t last = h.back();
  h.pop_back();
  const size_t n = h.size();
  if (n == 0) return top;
  size_t i = 0;
  while (true) {
    const size_t c = 4 * i + 1;
    if (c >= n) break;
    size_t best = c;
    if (c + 3 < n) {
      const size_t b01 = h[c + 1] < h[c] ? c + 1 : c;
      const size_t b23 = h[c + 3] < h[c + 2] ? c + 3 : c + 2;
      best = h[b23] < h[b01] ? b23 : b01;
    } else {
      for (size_t k = c + 1; k < n; ++k) best = h[k] < h[best] ? k : best;
    }
    if (h[best] >= last) break;
    h[i] = h[best];
    i = best;
  }
  h[i] = last;
  return top;
}

bool IsNullOrEmptyString(const Json& j) {
  return j.is_null() || (j.is_string() && j.get_ref<const std::string&>().empty());
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(
    const Json& model, const std::vector<std::pair<std::string, int64_t>>& vocab,
    const std::vector<std::pair<std::string, std::string>>& merges) {
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
  if (vocab.empty()) return absl::InvalidArgumentError("model: empty or missing vocab");

  std::unique_ptr<BpeModel> bpe(new BpeModel);
  auto ignore_merges = model.find("ignore_merges");
  bpe->ignore_merges_ =
      ignore_merges != model.end() && ignore_merges->is_boolean() && ignore_merges->get<bool>();

  int64_t max_id = -1;
  for (const auto& [text, id] : vocab) {
    if (id < 0 || id >= (int64_t{1} << 30)) {
      return absl::InvalidArgumentError(absl::StrCat("model: bad id ", id, " in vocab"));
    }
    max_id = std::max(max_id, id);
  }
  const size_t limit = static_cast<size_t>(max_id + 1);
  bpe->present_.assign(limit, false);
  bpe->bytes_to_id_.reserve(vocab.size());
  // Token text -> id, only needed to resolve the merges.
  absl::flat_hash_map<absl::string_view, int32_t> text_to_id;
  text_to_id.reserve(vocab.size());
  std::vector<std::pair<uint32_t, uint32_t>> spans(limit, {0, 0});  // into bytes_arena_
  std::string bytes;
  for (const auto& [text, id64] : vocab) {
    const int32_t id = static_cast<int32_t>(id64);
    if (bpe->present_[id]) {
      return absl::InvalidArgumentError(absl::StrCat("model: id ", id, " used twice in vocab"));
    }
    bpe->present_[id] = true;
    text_to_id.emplace(absl::string_view(text), id);
    if (ByteLevelToBytes(text, &bytes)) {
      bpe->bytes_to_id_.emplace(bytes, id);
    } else {
      bpe->other_text_to_id_.emplace(text, id);
      bytes = text;
    }
    spans[id] = {static_cast<uint32_t>(bpe->bytes_arena_.size()),
                 static_cast<uint32_t>(bytes.size())};
    bpe->bytes_arena_ += bytes;
  }
  // Re-lay the arena in id order so that offsets_ is monotonic.
  std::string arena;
  arena.reserve(bpe->bytes_arena_.size());
  bpe->offsets_.resize(limit + 1);
  for (size_t id = 0; id < limit; ++id) {
    bpe->offsets_[id] = static_cast<uint32_t>(arena.size());
    arena.append(bpe->bytes_arena_, spans[id].first, spans[id].second);
  }
  bpe->offsets_[limit] = static_cast<uint32_t>(arena.size());
  bpe->bytes_arena_ = std::move(arena);

  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    auto it = bpe->bytes_to_id_.find(absl::string_view(&c, 1));
    if (it == bpe->bytes_to_id_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model: vocab lacks the byte-level token for byte ", b));
    }
    bpe->byte_ids_[b] = it->second;
  }

  bpe->merges_.reserve(merges.size());
  std::string joined;
  uint32_t rank = 0;
  for (const auto& [a, b] : merges) {
    joined.assign(a);
    joined += b;
    auto ia = text_to_id.find(absl::string_view(a));
    auto ib = text_to_id.find(absl::string_view(b));
    auto ij = text_to_id.find(absl::string_view(joined));
    if (ia == text_to_id.end() || ib == text_to_id.end() || ij == text_to_id.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model: merge \"", a, " ", b, "\" uses a token missing from vocab"));
    }
    // A later duplicate overrides an earlier one, as in Hugging Face's merge map.
    bpe->merges_[PairKey(ia->second, ib->second)] =
        (static_cast<uint64_t>(rank) << 32) | static_cast<uint32_t>(ij->second);
    ++rank;
  }
  bpe->byte_pair_merges_.assign(256 * 256, kNoMerge);
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      auto it = bpe->merges_.find(PairKey(bpe->byte_ids_[a], bpe->byte_ids_[b]));
      if (it != bpe->merges_.end()) bpe->byte_pair_merges_[(a << 8) | b] = it->second;
    }
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
  const auto* bytes = reinterpret_cast<const unsigned char*>(word.data());
  // Sets the pair (merge with the next symbol) of symbols[pos] from a merge-map value.
  auto set_pair = [&](int32_t pos, uint64_t merge) {
    BpeScratch::Symbol& sym = symbols[pos];
    if (merge == kNoMerge) {
      sym.pair_rank = kNoRank;
      return false;
    }
    sym.pair_rank = static_cast<uint32_t>(merge >> 32);
    sym.pair_new_id = static_cast<int32_t>(merge & 0xFFFFFFFFu);
    return true;
  };
  auto lookup = [&](int32_t left, int32_t right) {
    auto it = merges_.find(PairKey(left, right));
    return it == merges_.end() ? kNoMerge : it->second;
  };
  auto order = [&](int32_t pos) {
    return (static_cast<uint64_t>(symbols[pos].pair_rank) << 32) | static_cast<uint32_t>(pos);
  };
  for (int i = 0; i < n; ++i) {
    symbols[i] = {byte_ids_[bytes[i]], i - 1, i + 1 < n ? i + 1 : -1, 1, kNoRank, 0};
  }
  for (int i = 0; i + 1 < n; ++i) {
    if (set_pair(i, byte_pair_merges_[(bytes[i] << 8) | bytes[i + 1]])) heap.push_back(order(i));
  }
  // The initial candidates are in position order: already a heap when ranks are equal, and
  // otherwise sorted once.
  if (!std::is_sorted(heap.begin(), heap.end())) std::sort(heap.begin(), heap.end());
  while (!heap.empty()) {
    const uint64_t top = HeapPop(&heap);
    const int32_t pos = static_cast<int32_t>(top & 0xFFFFFFFFu);
    BpeScratch::Symbol& left = symbols[pos];
    if (left.len == 0 || left.pair_rank != static_cast<uint32_t>(top >> 32)) continue;  // stale
    BpeScratch::Symbol& right = symbols[left.next];
    left.id = left.pair_new_id;
    left.len += right.len;
    left.next = right.next;
    right.len = 0;
    if (left.next >= 0) symbols[left.next].prev = pos;
    if (left.prev >= 0 && set_pair(left.prev, lookup(symbols[left.prev].id, left.id))) {
      HeapPush(&heap, order(left.prev));
    } else if (left.prev >= 0) {
      symbols[left.prev].pair_rank = kNoRank;
    }
    if (left.next >= 0 && set_pair(pos, lookup(left.id, symbols[left.next].id))) {
      HeapPush(&heap, order(pos));
    } else {
      left.pair_rank = kNoRank;
    }
  }
  for (int i = 0; i >= 0; i = symbols[i].next) ids->push_back(symbols[i].id);
}

}  // namespace afd::gateway
