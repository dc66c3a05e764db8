// KvCache: the attention node's per-sequence state. Full-attention layers keep keys and values
// (after QK-norm and RoPE; fp32, or bf16 rounded to nearest even as an opt-in that halves the
// cache's bytes and changes the numbers) in a pool of fixed-size blocks shared by all sequences,
// each sequence owning a block table (vLLM's paged cache); Text-01 lightning layers keep one fp32
// state S [H, d, d] per sequence and layer, plus whether that state exists yet (the first
// chunk of a sequence takes the block path from S = 0). Not thread-safe: one owner at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/kernels/attention.h"
#include "common/kv_dtype.h"
#include "common/model_config.h"

namespace afd::attention {

// Element type of the paged keys and values (common/kv_dtype.h).
using ::afd::KvDtype;
using ::afd::KvDtypeBytes;
using ::afd::KvDtypeName;
using ::afd::ParseKvDtype;

struct KvCacheOptions {
  int64_t num_blocks = 256;  // blocks in the pool (capacity = num_blocks * block_size tokens)
  int block_size = 16;       // tokens per block
  int max_sequences = 64;    // live sequences at once
  KvDtype dtype = KvDtype::kFloat32;
};

class KvCache {
 public:
  // INVALID_ARGUMENT for non-positive sizes; RESOURCE_EXHAUSTED if the pool cannot be allocated.
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(const ModelConfig& config,
                                                         const KvCacheOptions& options);

  // Starts an empty sequence and returns its id; RESOURCE_EXHAUSTED when max_sequences are live.
  absl::StatusOr<int> AddSequence();
  // Returns the sequence's blocks to the pool and drops its lightning states.
  // NOT_FOUND for an id that is not live.
  absl::Status FreeSequence(int seq);
  bool IsLive(int seq) const;

  // Tokens whose keys/values (or lightning contributions) the cache holds.
  int64_t Length(int seq) const { return sequences_[seq].length; }
  // Makes room for positions [0, new_length): allocates blocks; RESOURCE_EXHAUSTED (and
  // nothing allocated) when the pool is short.
  absl::Status Reserve(int seq, int64_t new_length);
  // Records that positions [0, length) are filled (length <= reserved capacity).
  void SetLength(int seq, int64_t length) { sequences_[seq].length = length; }
  // Blocks Reserve(seq, new_length) would still take from the pool.
  int64_t BlocksNeeded(int seq, int64_t new_length) const;

  int64_t num_blocks() const { return options_.num_blocks; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_blocks_.size()); }
  int block_size() const { return options_.block_size; }
  int live_sequences() const { return live_; }

  KvDtype dtype() const { return options_.dtype; }

  // Full-attention layers. Writes the key and value vectors [head_dim] of (seq, position,
  // kv_head) in layer `layer` (rounded to bf16 in a bf16 cache); the position must be reserved.
  // Threads may store distinct positions concurrently.
  void Store(int layer, int seq, int64_t pos, int kv_head, const float* key, const float* value);
  // The stored key / value vector of a float32 cache (nullptr in a bf16 one).
  float* Key(int layer, int seq, int64_t pos, int kv_head);
  float* Value(int layer, int seq, int64_t pos, int kv_head);
  // The paged view of one sequence in one full-attention layer, for kernels::PagedAttention.
  kernels::PagedKvView View(int layer, int seq) const;

  // Lightning layers: the state [H, d, d] of (layer, seq), zero until first written, and
  // whether a chunk has already filled it.
  float* LinearState(int layer, int seq);
  bool HasLinearState(int layer, int seq) const;
  void MarkLinearState(int layer, int seq);

 private:
  struct Sequence {
    bool live = false;
    int64_t length = 0;
    std::vector<int32_t> blocks;                  // block table
    std::vector<std::unique_ptr<float[]>> state;  // per linear layer slot: [H, d, d]
    std::vector<bool> has_state;                  // per linear layer slot
  };

  KvCache() = default;
  int64_t BlockOffset(int layer, int seq, int64_t pos, int kv_head) const;

  ModelConfig config_;
  KvCacheOptions options_;
  std::vector<int> layer_slot_;  // layer -> index into pools_ (full) or linear slots (linear)
  int num_linear_layers_ = 0;
  int num_full_layers_ = 0;
  // Per full layer, [num_blocks, Hkv, bs, d]: float32 caches use k_pools_ / v_pools_, bf16 ones
  // k_pools_bf16_ / v_pools_bf16_ (bf16 bits).
  std::vector<std::unique_ptr<float[]>> k_pools_;
  std::vector<std::unique_ptr<float[]>> v_pools_;
  std::vector<std::unique_ptr<uint16_t[]>> k_pools_bf16_;
  std::vector<std::unique_ptr<uint16_t[]>> v_pools_bf16_;
  std::vector<int32_t> free_blocks_;  // stack of free pool blocks
  std::vector<Sequence> sequences_;
  int live_ = 0;
};

}  // namespace afd::attention
