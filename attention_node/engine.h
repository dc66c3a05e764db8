// Engine: the layer loop of MiniMax-M2 / MiniMax-Text-01 over a batch of sequences of different
// lengths (MODEL.md 1.4, 3.4-3.7). Each step appends a chunk of tokens to every sequence in the
// batch (prefill, chunked prefill or one decode token), at explicit positions: a sequence's token
// n has position n. Attention state lives in a KvCache; the MoE runs through an ExpertBackend;
// products are split across a ThreadPool. Not thread-safe: one Step at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "attention_node/expert_backend.h"
#include "attention_node/kv_cache.h"
#include "attention_node/model_weights.h"
#include "common/kernels/thread_pool.h"

namespace afd::attention {

enum class LogitsMode {
  kNone,  // no logits (a prefill chunk that is not the last)
  kLast,  // the chunk's last token only (what sampling needs)
  kAll,   // every token of the chunk (golden checks, prompt logprobs)
};

// One sequence's part of a step.
struct StepInput {
  int seq = 0;                       // KvCache sequence id
  absl::Span<const int32_t> tokens;  // appended at positions Length(seq), Length(seq)+1, ...
  LogitsMode logits = LogitsMode::kLast;
};

struct StepOutput {
  // Rows of logits in batch order: kAll gives one row per token, kLast one, kNone none.
  std::vector<float> logits;       // [rows, vocab]
  std::vector<int64_t> first_row;  // per StepInput: its first row in `logits`
  std::vector<int64_t> num_rows;   // per StepInput
  const float* Row(int64_t row, int vocab) const { return logits.data() + row * vocab; }
};

class Engine {
 public:
  // All pointers are borrowed and must outlive the engine; `pool` may be null (one thread).
  Engine(const ModelWeights* weights, KvCache* cache, ExpertBackend* experts,
         kernels::ThreadPool* pool);

  // Runs the model over every input's tokens and advances each sequence's cache. Errors leave
  // the cache untouched when they come from validation (INVALID_ARGUMENT: unknown or repeated
  // sequence, empty chunk, token id outside the vocabulary; RESOURCE_EXHAUSTED: not enough KV
  // blocks). An error from the expert backend mid-step leaves the batch's sequences
  // unusable: free them.
  absl::Status Step(absl::Span<const StepInput> batch, StepOutput* out);

  const ModelConfig& config() const { return weights_->config(); }

 private:
  void FullAttentionLayer(int layer, absl::Span<const StepInput> batch, float* out);
  void LightningLayer(int layer, absl::Span<const StepInput> batch, float* out);
  absl::Status MoeLayer(int layer, const float* x, float* out);
  void MatMul(const float* x, int64_t n, const kernels::WeightView& w, float* y);
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

  const ModelWeights* weights_;
  KvCache* cache_;
  ExpertBackend* experts_;
  kernels::ThreadPool* pool_;
  std::vector<float> inv_freq_;  // [rotary_dim / 2]

  // Per-step buffers, grown as needed. N = tokens in the step.
  int64_t num_tokens_ = 0;
  std::vector<int64_t> entry_begin_;   // first token row of each batch entry
  std::vector<int32_t> positions_;     // [N]
  std::vector<float> hidden_;          // [N, D] residual stream
  std::vector<float> normed_;          // [N, D]
  std::vector<float> sublayer_;        // [N, D] attention / MoE output
  std::vector<float> q_;               // [N, H*d] (lightning: [N, 3*H*d])
  std::vector<float> k_;               // [N, Hkv*d]
  std::vector<float> v_;               // [N, Hkv*d]
  std::vector<float> attn_;            // [N, H*d]
  std::vector<float> gate_;            // [N, H*d]
  std::vector<float> router_logits_;   // [N, E]
  std::vector<int32_t> expert_ids_;    // [N, K]
  std::vector<float> expert_weights_;  // [N, K]
  std::vector<float> final_rows_;      // [rows, D]
  // Attention work items of the current layer: (entry, first row, rows, head).
  struct AttentionItem {
    int entry;
    int64_t row_begin;
    int64_t rows;
    int head;
  };
  std::vector<AttentionItem> items_;
  std::vector<char> has_state_;  // per entry: lightning state existed before this step
};

}  // namespace afd::attention
