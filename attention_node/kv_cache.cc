// KvCache: paged K/V pool and lightning states (see kv_cache.h).
#include "attention_node/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "common/kernels/matmul.h"

namespace afd::attention {
namespace {

// Zero-filled array or nullptr when the allocation fails.
template <class T = float>
std::unique_ptr<T[]> AllocateZeroed(int64_t count) {
  std::unique_ptr<T[]> p(new (std::nothrow) T[count]);
  if (p != nullptr) std::memset(p.get(), 0, sizeof(T) * count);
  return p;
}

}  // namespace

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::Create(const ModelConfig& config,
                                                         const KvCacheOptions& options) {
  if (options.num_blocks <= 0 || options.block_size <= 0 || options.max_sequences <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv cache: num_blocks (", options.num_blocks, "), block_size (", options.block_size,
        ") and max_sequences (", options.max_sequences, ") must be positive"));
  }
  if (options.num_blocks > INT32_MAX) {
    return absl::InvalidArgumentError("kv cache: num_blocks exceeds 2^31 - 1");
  }
  std::unique_ptr<KvCache> cache(new KvCache());
  cache->config_ = config;
  cache->options_ = options;
  cache->layer_slot_.resize(config.num_hidden_layers);
  int num_full = 0;
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    cache->layer_slot_[l] = config.IsLinearLayer(l) ? cache->num_linear_layers_++ : num_full++;
  }
  cache->num_full_layers_ = num_full;
  const int64_t pool_elements =
      options.num_blocks * config.num_key_value_heads * options.block_size * config.head_dim;
  const bool bf16 = options.dtype == KvDtype::kBFloat16;
  for (int i = 0; i < num_full; ++i) {
    bool allocated;
    if (bf16) {
      cache->k_pools_bf16_.push_back(AllocateZeroed<uint16_t>(pool_elements));
      cache->v_pools_bf16_.push_back(AllocateZeroed<uint16_t>(pool_elements));
      allocated = cache->k_pools_bf16_.back() != nullptr && cache->v_pools_bf16_.back() != nullptr;
    } else {
      cache->k_pools_.push_back(AllocateZeroed(pool_elements));
      cache->v_pools_.push_back(AllocateZeroed(pool_elements));
      allocated = cache->k_pools_.back() != nullptr && cache->v_pools_.back() != nullptr;
    }
    if (!allocated) {
      return absl::ResourceExhaustedError(
          absl::StrCat("kv cache: cannot allocate ", 2 * num_full, " pools of ",
                       pool_elements * KvDtypeBytes(options.dtype), " bytes (", options.num_blocks,
                       " blocks); lower the block count"));
    }
  }
  cache->free_blocks_.resize(options.num_blocks);
  // Stack with block 0 on top so a fresh cache hands out blocks in ascending order.
  for (int64_t b = 0; b < options.num_blocks; ++b) {
    cache->free_blocks_[b] = static_cast<int32_t>(options.num_blocks - 1 - b);
  }
  cache->sequences_.resize(options.max_sequences);
  return cache;
}

absl::StatusOr<int> KvCache::AddSequence() {
  for (int s = 0; s < static_cast<int>(sequences_.size()); ++s) {
    Sequence& seq = sequences_[s];
    if (seq.live) continue;
    const int64_t state_floats =
        int64_t{config_.num_attention_heads} * config_.head_dim * config_.head_dim;
    seq.state.clear();
    for (int i = 0; i < num_linear_layers_; ++i) {
      seq.state.push_back(AllocateZeroed(state_floats));
      if (seq.state.back() == nullptr) {
        seq.state.clear();
        return absl::ResourceExhaustedError(
            absl::StrCat("kv cache: cannot allocate the lightning states of a new sequence (",
                         num_linear_layers_, " x ", state_floats * sizeof(float), " bytes)"));
      }
    }
    seq.has_state.assign(num_linear_layers_, false);
    seq.blocks.clear();
    seq.length = 0;
    seq.live = true;
    ++live_;
    return s;
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("kv cache: all ", sequences_.size(), " sequence slots are in use"));
}

absl::Status KvCache::FreeSequence(int seq) {
  if (!IsLive(seq)) {
    return absl::NotFoundError(absl::StrCat("kv cache: sequence ", seq, " is not live"));
  }
  Sequence& s = sequences_[seq];
  for (auto it = s.blocks.rbegin(); it != s.blocks.rend(); ++it) free_blocks_.push_back(*it);
  s.blocks.clear();
  s.state.clear();
  s.has_state.clear();
  s.length = 0;
  s.live = false;
  --live_;
  return absl::OkStatus();
}

bool KvCache::IsLive(int seq) const {
  return seq >= 0 && seq < static_cast<int>(sequences_.size()) && sequences_[seq].live;
}

int64_t KvCache::BlocksNeeded(int seq, int64_t new_length) const {
  if (num_full_layers_ == 0) return 0;  // no full-attention layer: nothing paged
  const int64_t want = (new_length + options_.block_size - 1) / options_.block_size;
  return std::max<int64_t>(0, want - static_cast<int64_t>(sequences_[seq].blocks.size()));
}

absl::Status KvCache::Reserve(int seq, int64_t new_length) {
  const int64_t need = BlocksNeeded(seq, new_length);
  if (need > free_blocks()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("kv cache: sequence ", seq, " needs ", need, " more blocks of ",
                     options_.block_size, " tokens for length ", new_length, ", only ",
                     free_blocks(), " of ", options_.num_blocks, " are free"));
  }
  Sequence& s = sequences_[seq];
  for (int64_t i = 0; i < need; ++i) {
    s.blocks.push_back(free_blocks_.back());
    free_blocks_.pop_back();
  }
  return absl::OkStatus();
}

int64_t KvCache::BlockOffset(int layer, int seq, int64_t pos, int kv_head) const {
  const int bs = options_.block_size;
  const int32_t block = sequences_[seq].blocks[pos / bs];
  return kernels::PagedKvOffset(block, kv_head, static_cast<int>(pos % bs),
                                config_.num_key_value_heads, bs, config_.head_dim);
}

void KvCache::Store(int layer, int seq, int64_t pos, int kv_head, const float* key,
                    const float* value) {
  const int64_t offset = BlockOffset(layer, seq, pos, kv_head);
  const int d = config_.head_dim;
  const int slot = layer_slot_[layer];
  if (options_.dtype == KvDtype::kBFloat16) {
    uint16_t* k = k_pools_bf16_[slot].get() + offset;
    uint16_t* v = v_pools_bf16_[slot].get() + offset;
    for (int c = 0; c < d; ++c) {
      k[c] = kernels::FloatToBf16(key[c]);
      v[c] = kernels::FloatToBf16(value[c]);
    }
  } else {
    std::memcpy(k_pools_[slot].get() + offset, key, sizeof(float) * d);
    std::memcpy(v_pools_[slot].get() + offset, value, sizeof(float) * d);
  }
}

float* KvCache::Key(int layer, int seq, int64_t pos, int kv_head) {
  if (options_.dtype != KvDtype::kFloat32) return nullptr;
  return k_pools_[layer_slot_[layer]].get() + BlockOffset(layer, seq, pos, kv_head);
}

float* KvCache::Value(int layer, int seq, int64_t pos, int kv_head) {
  if (options_.dtype != KvDtype::kFloat32) return nullptr;
  return v_pools_[layer_slot_[layer]].get() + BlockOffset(layer, seq, pos, kv_head);
}

kernels::PagedKvView KvCache::View(int layer, int seq) const {
  kernels::PagedKvView view;
  if (options_.dtype == KvDtype::kBFloat16) {
    view.k_pool_bf16 = k_pools_bf16_[layer_slot_[layer]].get();
    view.v_pool_bf16 = v_pools_bf16_[layer_slot_[layer]].get();
  } else {
    view.k_pool = k_pools_[layer_slot_[layer]].get();
    view.v_pool = v_pools_[layer_slot_[layer]].get();
  }
  view.block_table = sequences_[seq].blocks.data();
  view.block_size = options_.block_size;
  return view;
}

float* KvCache::LinearState(int layer, int seq) {
  return sequences_[seq].state[layer_slot_[layer]].get();
}

bool KvCache::HasLinearState(int layer, int seq) const {
  return sequences_[seq].has_state[layer_slot_[layer]];
}

void KvCache::MarkLinearState(int layer, int seq) {
  sequences_[seq].has_state[layer_slot_[layer]] = true;
}

}  // namespace afd::attention
