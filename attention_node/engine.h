// Engine: the layer loop of MiniMax-M2 / MiniMax-Text-01 over a batch of sequences of different
// lengths (MODEL.md 1.4, 3.4-3.7). Each step appends a chunk of tokens to every sequence in the
// batch (prefill, chunked prefill or one decode token), at explicit positions: a sequence's token
// n has position n. Attention state lives in a KvCache; the MoE runs through an ExpertBackend;
// products are split across a ThreadPool. Not thread-safe: one Step at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "attention_node/expert_backend.h"
#include "attention_node/kv_cache.h"
#include "attention_node/model_weights.h"
#include "attention_node/step_profile.h"
#include "common/kernels/matmul.h"
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
  // How many of the first `tokens` are prompt tokens: their attention projections, expert
  // products and lm_head run on the CPU's matrix tiles where it has them
  // (kernels::Kernel::kTiles, 1.2-2x the vector kernels' rate for prompts); the others
  // (generated tokens) on the vector kernels. A token's results depend only on the token and
  // which kind it is (never on the rest of the batch), so callers set this by what the tokens
  // are, not by how they were batched. The router always takes the vector kernels.
  // Short prompts stay on the vector kernels (see Engine::set_min_tile_prompt).
  int64_t prompt_tokens = 0;
  // The request's whole prompt length when this step holds only a chunk of it (chunked
  // prefill); 0: prompt_tokens is the whole prompt.
  int64_t prompt_length = 0;
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

  // Precision of the activations in the attention projections of later Steps (kernels/matmul.h):
  // kF32 (default) or the opt-in kBF16 for prefill throughput (reduced precision: a caller sets
  // it around prefill steps only). The router and lm_head always take fp32 activations.
  void set_activations(kernels::Activations activations) { options_.activations = activations; }

  // Prompts shorter than this many tokens run on the vector kernels (their prompt tokens count
  // as generated ones): with few tokens per expert the tiles stream weights slower than the
  // vector kernels (m2-perf, 2 cores: an 8-token prompt 26 vs 31 tok/s bf16, 25 vs 43 FP8).
  // Default kMinTilePromptBf16 / kMinTilePromptFp8 by the attention weights' type; 1 = every
  // prompt. A property of the request (never of the batch), so set it once per deployment.
  static constexpr int64_t kMinTilePromptBf16 = 64;
  static constexpr int64_t kMinTilePromptFp8 = 128;
  void set_min_tile_prompt(int64_t tokens) { min_tile_prompt_ = tokens; }
  int64_t min_tile_prompt() const { return min_tile_prompt_; }

  // Accumulates per-stage times of every later Step into `profile` (borrowed; null: off, the
  // default). Results are the same either way.
  void set_profile(StepProfile* profile) { profile_ = profile; }

 private:
  // Attention work items of the current layer: (entry, first row, rows, heads [head,
  // head + head_count), which share a kv head) and an estimate of their work.
  struct AttentionItem {
    int entry;
    int64_t row_begin;
    int64_t rows;
    int head;
    int head_count;
    int64_t cost;
  };

  void FullAttentionLayer(int layer, absl::Span<const StepInput> batch, float* out);
  void LightningLayer(int layer, absl::Span<const StepInput> batch, float* out);
  absl::Status MoeLayer(int layer, const float* x, float* out);
  // The router's product: fp32 activations on the vector kernels (a step of many tokens splits
  // its tokens over the threads).
  void MatMul(const float* x, int64_t n, const kernels::WeightView& w, float* y);
  struct Product {
    const kernels::WeightView* w;
    float* y;  // [n, w->rows]
  };
  // Products of the same input x [n, cols] with `options`, each row on the kernel its token
  // takes (tiles[i] != 0: Kernel::kTiles; tiles may be null: none). Rows of both kinds are
  // gathered into one product per kind and scattered back.
  void Products(const float* x, int64_t n, const uint8_t* tiles, kernels::MatMulOptions options,
                absl::Span<const Product> products);
  // The attention projections: Products with options_ over the step's rows.
  void ProjMatMul(const float* x, int64_t n, std::initializer_list<Product> products);
  // Several products of x in one parallel loop over all their output rows (one synchronization
  // instead of one per product); every output row is computed as kernels::MatMul computes it.
  void FusedProducts(const float* x, int64_t n, absl::Span<const Product> products,
                     const kernels::MatMulOptions& options);
  // Products fused into one parallel loop (more run one at a time).
  static constexpr int kMaxFusedProducts = 4;
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);
  // Per-token work (norms, residuals, RoPE, KV writes, top-k) split over the pool in chunks of
  // kTokensPerChunk rows; inline for a step of one chunk. Each row is computed as alone.
  static constexpr int64_t kTokensPerChunk = 8;
  void ForTokens(int64_t n, const std::function<void(int64_t, int64_t)>& fn);
  // kernels::RmsNorm, the residual add h += s and Text-01's h = alpha * a + beta * s over n
  // rows of dim, rows split by ForTokens.
  void RowsRmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
                   float* out);
  void AddRows(const float* s, int64_t n, int64_t dim, float* h);
  void ScaledRows(float alpha, const float* a, float beta, const float* s, int64_t n, int64_t dim,
                  float* h);
  // Runs fn(item) for every item of items_, handed out in descending `cost` order to whichever
  // thread is free (items of very different sizes stay balanced). Results do not depend on
  // which thread runs an item.
  void ParallelItems(const std::function<void(const AttentionItem&)>& fn);

  const ModelWeights* weights_;
  KvCache* cache_;
  ExpertBackend* experts_;
  kernels::ThreadPool* pool_;
  StepProfile* profile_ = nullptr;
  kernels::MatMulOptions options_;  // for the attention projections
  ProfileClock clock_{nullptr};
  std::vector<float> inv_freq_;  // [rotary_dim / 2]

  // Per-step buffers, grown as needed. N = tokens in the step.
  int64_t num_tokens_ = 0;
  std::vector<int64_t> entry_begin_;   // first token row of each batch entry
  std::vector<int32_t> positions_;     // [N]
  std::vector<int32_t> row_entry_;     // [N] batch entry of each token row
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
  int64_t min_tile_prompt_ = kMinTilePromptBf16;
  std::vector<uint8_t> row_tiles_;     // [N] 1: the row's products take Kernel::kTiles
  std::vector<uint8_t> final_tiles_;   // [rows] the same for the lm_head rows
  std::vector<uint16_t> tile_storage_;  // activations packed for the tiles (FusedProducts)
  std::vector<float> prefill_storage_;  // activations transposed for the vector kernels
  std::vector<float> split_x_;         // Products: rows regrouped by kernel
  std::vector<float> split_y_;
  std::vector<int64_t> split_pos_;
  std::vector<AttentionItem> items_;
  std::vector<int32_t> item_order_;  // items_ by descending cost
  std::vector<char> has_state_;      // per entry: lightning state existed before this step
};

}  // namespace afd::attention
