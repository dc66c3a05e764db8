// Causal grouped-query softmax attention over fp32 keys/values (or, in a paged cache, bf16 ones
// widened exactly to fp32 as they are read) (MODEL.md 1.4, T16, T17):
// scores = (q . k) * scale, fp32 softmax over keys 0..pos, query head h reads KV head
// h / (num_heads / num_kv_heads). Keys live either contiguously or in a paged cache.
// Stateless free functions; safe to call concurrently on disjoint outputs.
#pragma once

#include <cstdint>

namespace afd::kernels {

struct AttentionShape {
  int num_heads = 0;     // H
  int num_kv_heads = 0;  // Hkv; H % Hkv == 0
  int head_dim = 0;      // d
  float scale = 0.0f;    // usually head_dim^-0.5
};

// One sequence's keys/values in a paged cache. Sequence block b (positions b*block_size ..
// b*block_size + block_size - 1) is pool block block_table[b]; a pool block holds, per KV
// head, block_size consecutive key (value) vectors.
// A cache stores its keys and values either as fp32 (k_pool, v_pool) or as bf16 bit patterns
// (k_pool_bf16, v_pool_bf16; the opt-in half-size cache), same layout; the kernels take the bf16
// pools when k_pool_bf16 is set.
struct PagedKvView {
  const float* k_pool = nullptr;         // [num_pool_blocks, num_kv_heads, block_size, head_dim]
  const float* v_pool = nullptr;         // [num_pool_blocks, num_kv_heads, block_size, head_dim]
  const uint16_t* k_pool_bf16 = nullptr;
  const uint16_t* v_pool_bf16 = nullptr;
  const int32_t* block_table = nullptr;  // [ceil(num_cached_tokens / block_size)]
  int block_size = 16;
};

// Offset in elements of (pool block, kv head, slot) inside the pools.
inline int64_t PagedKvOffset(int64_t pool_block, int kv_head, int slot, int num_kv_heads,
                             int block_size, int head_dim) {
  return ((pool_block * num_kv_heads + kv_head) * block_size + slot) * head_dim;
}

// Paged attention for n query tokens of one sequence. Query i sits at positions[i] and attends
// to the cached keys 0..positions[i] inclusive (which must already be in the cache, its own
// included). Only heads [head_begin, head_end) are computed.
// The query heads of one kv head run together (each key and value read once for them); every
// head gets the bits it gets alone. q: [n, H, d]; out: [n, H, d].
void PagedAttention(const float* q, int64_t n, const int32_t* positions, const PagedKvView& kv,
                    const AttentionShape& shape, int head_begin, int head_end, float* out);
void PagedAttentionReference(const float* q, int64_t n, const int32_t* positions,
                             const PagedKvView& kv, const AttentionShape& shape, float* out);

// Contiguous causal attention over one sequence's first n tokens (positions 0..n-1): query i
// attends to keys 0..i. Heads [head_begin, head_end) only.
// q: [n, H, d]; k, v: [n, Hkv, d]; out: [n, H, d].
void CausalAttention(const float* q, const float* k, const float* v, int64_t n,
                     const AttentionShape& shape, int head_begin, int head_end, float* out);
void CausalAttentionReference(const float* q, const float* k, const float* v, int64_t n,
                              const AttentionShape& shape, float* out);

}  // namespace afd::kernels
