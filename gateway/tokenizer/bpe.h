// Byte-level BPE model (tokenizer.json "model": {"type": "BPE"}): vocab and merge ranks keyed by
// raw bytes. Immutable after Create; Tokenize is safe from many threads, each with its own
// BpeScratch.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace afd::gateway {

// Working memory for BpeModel::Tokenize, reused across calls to avoid allocation.
struct BpeScratch {
  struct Symbol {
    int32_t id;
    int32_t prev;         // index of the previous live symbol, -1 at the start
    int32_t next;         // index of the next live symbol, -1 at the end
    int32_t len;          // bytes covered; 0 once merged into its left neighbour
    uint32_t pair_rank;   // rank of the merge with the next symbol, kNoRank if none
    int32_t pair_new_id;  // the token that merge makes
  };
  std::vector<Symbol> symbols;
  // Min-heap of merge candidates, (rank << 32) | left symbol index: lowest rank first, then
  // leftmost. A candidate is stale once its symbol's pair_rank no longer equals its rank.
  std::vector<uint64_t> heap;
};

class BpeModel {
 public:
  // `model` is the "model" object of tokenizer.json without its vocab and merges, which come
  // separately (see tokenizer_json.h). Only byte-level vocabularies without dropout, subword
  // prefixes/suffixes or byte fallback are accepted.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(
      const nlohmann::json& model, const std::vector<std::pair<std::string, int64_t>>& vocab,
      const std::vector<std::pair<std::string, std::string>>& merges);

  // Appends the ids of one pre-token (`word`: raw bytes, non-empty): lowest-rank merge first,
  // leftmost on ties.
  void Tokenize(std::string_view word, BpeScratch* scratch, std::vector<int32_t>* ids) const;

  // Id of the vocabulary entry whose raw bytes are `bytes`.
  std::optional<int32_t> BytesToId(std::string_view bytes) const;
  // Id of the vocabulary entry spelled `text` in tokenizer.json (byte-level alphabet).
  std::optional<int32_t> TokenTextToId(std::string_view text) const;
  // Raw bytes of vocabulary entry `id` (empty if none). Entries that are not byte-level text
  // decode to their own UTF-8 bytes, as in Hugging Face's ByteLevel decoder.
  std::string_view IdToBytes(int32_t id) const;
  bool HasId(int32_t id) const {
    return id >= 0 && id < static_cast<int32_t>(present_.size()) && present_[id];
  }
  // One past the largest vocabulary id.
  int32_t id_limit() const { return static_cast<int32_t>(present_.size()); }

 private:
  BpeModel() = default;
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  bool ignore_merges_ = false;
  int32_t byte_ids_[256];
  absl::flat_hash_map<std::string, int32_t> bytes_to_id_;
  // Vocabulary entries that are not byte-level text, by their text.
  absl::flat_hash_map<std::string, int32_t> other_text_to_id_;
  // (left id, right id) -> (rank << 32) | merged id
  absl::flat_hash_map<uint64_t, uint64_t> merges_;
  // The same for pairs of single-byte tokens, indexed by (byte << 8) | byte; kNoMerge if none.
  static constexpr uint64_t kNoMerge = ~uint64_t{0};
  static constexpr uint32_t kNoRank = ~uint32_t{0};
  std::vector<uint64_t> byte_pair_merges_;
  std::string bytes_arena_;
  std::vector<uint32_t> offsets_;  // [id_limit + 1] into bytes_arena_
  std::vector<bool> present_;
};

}  // namespace afd::gateway
