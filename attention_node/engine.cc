// Engine: the layer loop (see engine.h). The comments name the transformers operation each step
// reproduces; all activations are fp32.
#include "attention_node/engine.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/expert_ffn.h"
#include "common/kernels/attention.h"
#include "common/kernels/lightning_attention.h"
#include "common/kernels/matmul.h"
#include "common/kernels/rms_norm.h"
#include "common/kernels/rope.h"
#include "common/kernels/routing.h"
#include "common/kernels/swiglu.h"
#include "common/kernels/tile_matmul.h"
#include "common/status.h"

namespace afd::attention {
namespace {

constexpr int64_t kAttentionRowChunk = 32;  // query rows per attention work item
using kernels::kRowUnit;                    // output rows per parallel unit of a product

template <class T>
T* Grow(std::vector<T>& v, int64_t size) {
  if (static_cast<int64_t>(v.size()) < size) v.resize(size);
  return v.data();
}

// h = alpha * a + beta * s, each product rounded to fp32 first (transformers'
// `residual * alpha + hidden * beta`).
void ScaledSum(float alpha, const float* a, float beta, const float* s, int64_t n, float* h) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = a[i] * alpha;
    const float y = s[i] * beta;
    h[i] = x + y;
  }
}

}  // namespace

Engine::Engine(const ModelWeights* weights, KvCache* cache, ExpertBackend* experts,
               kernels::ThreadPool* pool)
    : weights_(weights), cache_(cache), experts_(experts), pool_(pool) {
  const ModelConfig& c = weights_->config();
  if (c.rotary_dim > 0) inv_freq_ = kernels::RopeInvFreq(c.rope_theta, c.rotary_dim);
  const LayerWeights& first = weights_->layer(0);
  const kernels::WeightView& q = first.linear ? first.lightning.qkv_proj : first.full.q_proj;
  min_tile_prompt_ = q.type == kernels::WeightType::kFp8E4M3 ? kMinTilePromptFp8
                                                            : kMinTilePromptBf16;
}

void Engine::MatMul(const float* x, int64_t n, const kernels::WeightView& w, float* y) {
  if (profile_ != nullptr) profile_->weight_bytes += static_cast<int64_t>(w.Bytes());
  // A small weight (the router's experts x hidden) has too few row units of 48 to split over
  // the threads: split the tokens instead. A row's result never depends on the other rows.
  const int threads = pool_ == nullptr ? 1 : pool_->num_threads();
  if ((w.rows + kRowUnit - 1) / kRowUnit >= threads || n < 2 * kTokensPerChunk) {
    kernels::MatMul(x, n, w, y, pool_);
    return;
  }
  ForTokens(n, [&](int64_t begin, int64_t end) {
    kernels::MatMul(x + begin * w.cols, end - begin, w, y + begin * w.rows, nullptr);
  });
}

void Engine::ProjMatMul(const float* x, int64_t n, std::initializer_list<Product> products) {
  Products(x, n, row_tiles_.data(), options_, absl::MakeConstSpan(products.begin(), products.size()));
}

void Engine::Products(const float* x, int64_t n, const uint8_t* tiles,
                      kernels::MatMulOptions options, absl::Span<const Product> products) {
  const int64_t on_tiles =
      tiles == nullptr ? 0 : std::count_if(tiles, tiles + n, [](uint8_t v) { return v != 0; });
  if (on_tiles == 0 || on_tiles == n) {
    options.kernel = on_tiles > 0 ? kernels::Kernel::kTiles : kernels::Kernel::kVector;
    FusedProducts(x, n, products, options);
    return;
  }
  // Both kinds: vector rows first, then tile rows, each kind one product per weight.
  if (products.size() > kMaxFusedProducts) {
    for (const Product& p : products) Products(x, n, tiles, options, absl::MakeConstSpan(&p, 1));
    return;
  }
  const int64_t cols = products[0].w->cols;
  const int64_t on_vector = n - on_tiles;
  float* xs = Grow(split_x_, n * cols);
  split_pos_.resize(n);
  for (int64_t i = 0, v = 0, t = on_vector; i < n; ++i) {
    split_pos_[i] = tiles[i] != 0 ? t++ : v++;
    std::memcpy(xs + split_pos_[i] * cols, x + i * cols, sizeof(float) * cols);
  }
  int64_t out_size = 0;
  for (const Product& p : products) out_size += n * p.w->rows;
  float* ys = Grow(split_y_, out_size);
  Product vector_products[kMaxFusedProducts], tile_products[kMaxFusedProducts];
  int64_t offset = 0;
  for (size_t i = 0; i < products.size(); ++i) {
    vector_products[i] = {products[i].w, ys + offset};
    tile_products[i] = {products[i].w, ys + offset + on_vector * products[i].w->rows};
    offset += n * products[i].w->rows;
  }
  options.kernel = kernels::Kernel::kVector;
  FusedProducts(xs, on_vector, absl::MakeConstSpan(vector_products, products.size()), options);
  options.kernel = kernels::Kernel::kTiles;
  FusedProducts(xs + on_vector * cols, on_tiles, absl::MakeConstSpan(tile_products, products.size()),
                options);
  for (size_t i = 0; i < products.size(); ++i) {
    const int64_t rows = products[i].w->rows;
    for (int64_t r = 0; r < n; ++r) {
      std::memcpy(products[i].y + r * rows, vector_products[i].y + split_pos_[r] * rows,
                  sizeof(float) * rows);
    }
  }
}

void Engine::FusedProducts(const float* x, int64_t n, absl::Span<const Product> products,
                           const kernels::MatMulOptions& options) {
  // Units of kRowUnit output rows, numbered across the products in order.
  const Product* list = products.data();
  const int count = static_cast<int>(products.size());
  if (count > kMaxFusedProducts) {
    for (const Product& p : products) FusedProducts(x, n, absl::MakeConstSpan(&p, 1), options);
    return;
  }
  int64_t first_unit[kMaxFusedProducts + 1] = {0};
  int64_t grain = 1;  // units per thread share (kernels::ParallelRowGrain)
  for (int i = 0; i < count; ++i) {
    if (profile_ != nullptr) profile_->weight_bytes += static_cast<int64_t>(list[i].w->Bytes());
    first_unit[i + 1] = first_unit[i] + (list[i].w->rows + kRowUnit - 1) / kRowUnit;
    grain = std::max(grain, kernels::ParallelUnitGrain(*list[i].w, kRowUnit));
  }
  // Some products run best split along the input axis (AWQ decode).
  const kernels::WeightView* ws[kMaxFusedProducts];
  float* ys[kMaxFusedProducts];
  for (int i = 0; i < count; ++i) {
    ws[i] = list[i].w;
    ys[i] = list[i].y;
  }
  if (kernels::MatMulSplitInput(x, n, ws, ys, count, pool_, options)) return;
  // Tiles: x packed once for every unit of every product (they share x and its columns).
  kernels::TilePackedX tile_x;
  kernels::MatMulOptions unit_options =
      kernels::WithPackedTileX(x, n, *list[0].w, options, &tile_x, &tile_storage_);
  // The vector kernels' prompt-sized products: x transposed once for every unit too.
  // (Only where threads would take several unit ranges each: packing runs before the loop.)
  kernels::PrefillPackedX prefill_x;
  const int threads = pool_ == nullptr ? 1 : pool_->num_threads();
  if (first_unit[count] >= 2 * threads) {
    unit_options =
        kernels::WithPackedPrefillX(x, n, *list[0].w, unit_options, &prefill_x, &prefill_storage_);
  }
  ParallelFor(
      first_unit[count],
      [&](int64_t begin, int64_t end) {
        for (int i = 0; i < count; ++i) {
          const int64_t b = std::max(begin, first_unit[i]) - first_unit[i];
          const int64_t e = std::min(end, first_unit[i + 1]) - first_unit[i];
          if (b >= e) continue;
          const kernels::WeightView& w = *list[i].w;
          kernels::MatMulRows(x, n, w, b * kRowUnit, std::min(e * kRowUnit, w.rows), list[i].y,
                              unit_options);
        }
      },
      grain);
}

void Engine::ParallelItems(const std::function<void(const AttentionItem&)>& fn) {
  const int64_t count = static_cast<int64_t>(items_.size());
  const int threads = pool_ == nullptr ? 1 : pool_->num_threads();
  if (threads <= 1 || count <= 1) {
    for (const AttentionItem& item : items_) fn(item);
    return;
  }
  item_order_.resize(count);
  std::iota(item_order_.begin(), item_order_.end(), 0);
  std::stable_sort(item_order_.begin(), item_order_.end(),
                   [&](int32_t a, int32_t b) { return items_[a].cost > items_[b].cost; });
  std::atomic<int64_t> next{0};
  pool_->ParallelFor(std::min<int64_t>(threads, count), [&](int64_t, int64_t) {
    for (int64_t i = next.fetch_add(1, std::memory_order_relaxed); i < count;
         i = next.fetch_add(1, std::memory_order_relaxed)) {
      fn(items_[item_order_[i]]);
    }
  });
}

void Engine::ForTokens(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  ParallelFor(n, fn, kTokensPerChunk);
}

void Engine::RowsRmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
                         float* out) {
  ForTokens(n, [&](int64_t b, int64_t e) {
    kernels::RmsNorm(x + b * dim, weight, e - b, dim, eps, out + b * dim);
  });
}

void Engine::ScaledRows(float alpha, const float* a, float beta, const float* s, int64_t n,
                        int64_t dim, float* h) {
  ForTokens(n, [&](int64_t b, int64_t e) {
    ScaledSum(alpha, a + b * dim, beta, s + b * dim, (e - b) * dim, h + b * dim);
  });
}

void Engine::AddRows(const float* s, int64_t n, int64_t dim, float* h) {
  ForTokens(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b * dim; i < e * dim; ++i) h[i] += s[i];
  });
}

void Engine::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                         int64_t grain) {
  if (pool_ == nullptr) {
    fn(0, n);
  } else {
    pool_->ParallelFor(n, fn, grain);
  }
}

absl::Status Engine::Step(absl::Span<const StepInput> batch, StepOutput* out) {
  const ModelConfig& c = config();
  const int64_t d_model = c.hidden_size;

  out->logits.clear();
  out->first_row.clear();
  out->num_rows.clear();
  if (batch.empty()) return absl::OkStatus();

  // Validate everything before touching the cache.
  absl::flat_hash_set<int> seen;
  int64_t total_blocks = 0;
  int64_t n_tokens = 0;
  for (size_t e = 0; e < batch.size(); ++e) {
    const StepInput& in = batch[e];
    if (!cache_->IsLive(in.seq)) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch entry ", e, ": sequence ", in.seq, " is not live in the kv cache"));
    }
    if (!seen.insert(in.seq).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch entry ", e, ": sequence ", in.seq, " appears twice in one step"));
    }
    if (in.tokens.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("batch entry ", e, ": no tokens"));
    }
    for (int32_t t : in.tokens) {
      if (t < 0 || t >= c.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("batch entry ", e, ": token id ", t,
                                                       " is outside the vocabulary [0, ",
                                                       c.vocab_size, ")"));
      }
    }
    const int64_t new_length = cache_->Length(in.seq) + static_cast<int64_t>(in.tokens.size());
    if (new_length > std::numeric_limits<int32_t>::max()) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch entry ", e, ": sequence length ", new_length, " is too long"));
    }
    total_blocks += cache_->BlocksNeeded(in.seq, new_length);
    n_tokens += static_cast<int64_t>(in.tokens.size());
  }
  if (total_blocks > cache_->free_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat("kv cache: this step needs ", total_blocks,
                                                     " more blocks, only ", cache_->free_blocks(),
                                                     " of ", cache_->num_blocks(), " are free"));
  }
  const auto step_start = std::chrono::steady_clock::now();
  clock_ = ProfileClock(profile_);
  for (const StepInput& in : batch) {
    RETURN_IF_ERROR(
        cache_->Reserve(in.seq, cache_->Length(in.seq) + static_cast<int64_t>(in.tokens.size())));
  }

  // Rows and explicit positions: a sequence's token n has position n.
  num_tokens_ = n_tokens;
  entry_begin_.assign(batch.size() + 1, 0);
  Grow(positions_, n_tokens);
  float* hidden = Grow(hidden_, n_tokens * d_model);
  float* normed = Grow(normed_, n_tokens * d_model);
  float* sub = Grow(sublayer_, n_tokens * d_model);
  for (size_t e = 0; e < batch.size(); ++e) {
    const int64_t begin = entry_begin_[e];
    const int64_t base = cache_->Length(batch[e].seq);
    for (size_t i = 0; i < batch[e].tokens.size(); ++i) {
      positions_[begin + i] = static_cast<int32_t>(base + i);
      RETURN_IF_ERROR(weights_->Embed(batch[e].tokens[i], hidden + (begin + i) * d_model));
    }
    entry_begin_[e + 1] = begin + static_cast<int64_t>(batch[e].tokens.size());
  }
  row_entry_.resize(n_tokens);
  for (size_t e = 0; e < batch.size(); ++e) {
    std::fill(row_entry_.begin() + entry_begin_[e], row_entry_.begin() + entry_begin_[e + 1],
              static_cast<int32_t>(e));
  }
  row_tiles_.resize(n_tokens);
  for (size_t e = 0; e < batch.size(); ++e) {
    int64_t prompt =
        std::clamp<int64_t>(batch[e].prompt_tokens, 0, entry_begin_[e + 1] - entry_begin_[e]);
    if (std::max(batch[e].prompt_length, batch[e].prompt_tokens) < min_tile_prompt_) prompt = 0;
    std::fill(row_tiles_.begin() + entry_begin_[e], row_tiles_.begin() + entry_begin_[e + 1], 0);
    std::fill(row_tiles_.begin() + entry_begin_[e], row_tiles_.begin() + entry_begin_[e] + prompt,
              1);
  }
  clock_.Lap(ProfileStage::kEmbed);

  const float eps = static_cast<float>(c.rms_norm_eps);
  const bool post_norm = c.arch == Architecture::kMiniMaxText01;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& lw = weights_->layer(l);
    // a = RMSNorm_in(h); s = Attn(a)
    RowsRmsNorm(hidden, lw.input_norm.data(), n_tokens, d_model, eps, normed);
    clock_.Lap(ProfileStage::kNorms);
    if (lw.linear) {
      LightningLayer(l, batch, sub);
    } else {
      FullAttentionLayer(l, batch, sub);
    }
    if (post_norm) {
      // Text-01: h1 = alpha * a + beta * Attn(a)
      const float alpha = static_cast<float>(lw.linear ? c.linear_attn_alpha : c.full_attn_alpha);
      const float beta = static_cast<float>(lw.linear ? c.linear_attn_beta : c.full_attn_beta);
      ScaledRows(alpha, normed, beta, sub, n_tokens, d_model, hidden);
    } else {
      // M2: h = h + Attn(a)
      AddRows(sub, n_tokens, d_model, hidden);
    }
    // m = RMSNorm_post(h); s = MoE(m)
    RowsRmsNorm(hidden, lw.post_norm.data(), n_tokens, d_model, eps, normed);
    clock_.Lap(ProfileStage::kNorms);
    RETURN_IF_ERROR(MoeLayer(l, normed, sub));
    if (post_norm) {
      ScaledRows(static_cast<float>(c.mlp_alpha), normed, static_cast<float>(c.mlp_beta), sub,
                 n_tokens, d_model, hidden);
    } else {
      AddRows(sub, n_tokens, d_model, hidden);
    }
    clock_.Lap(ProfileStage::kNorms);
  }
  for (size_t e = 0; e < batch.size(); ++e) {
    cache_->SetLength(batch[e].seq,
                      cache_->Length(batch[e].seq) + static_cast<int64_t>(batch[e].tokens.size()));
  }

  // Final norm and lm_head over the rows the caller asked for.
  out->first_row.assign(batch.size(), 0);
  out->num_rows.assign(batch.size(), 0);
  int64_t rows = 0;
  for (size_t e = 0; e < batch.size(); ++e) {
    out->first_row[e] = rows;
    const int64_t n = entry_begin_[e + 1] - entry_begin_[e];
    out->num_rows[e] = batch[e].logits == LogitsMode::kAll    ? n
                       : batch[e].logits == LogitsMode::kLast ? 1
                                                              : 0;
    rows += out->num_rows[e];
  }
  float* final_rows = Grow(final_rows_, rows * d_model);
  final_tiles_.resize(rows);
  for (size_t e = 0; e < batch.size(); ++e) {
    const int64_t first_token = entry_begin_[e + 1] - out->num_rows[e];
    std::copy(row_tiles_.begin() + first_token, row_tiles_.begin() + entry_begin_[e + 1],
              final_tiles_.begin() + out->first_row[e]);
    std::memcpy(final_rows + out->first_row[e] * d_model, hidden + first_token * d_model,
                sizeof(float) * out->num_rows[e] * d_model);
  }
  out->logits.resize(rows * static_cast<int64_t>(c.vocab_size));
  if (rows > 0) {
    RowsRmsNorm(final_rows, weights_->final_norm().data(), rows, d_model, eps, final_rows);
    clock_.Lap(ProfileStage::kNorms);
    const Product lm_head{&weights_->lm_head(), out->logits.data()};
    Products(final_rows, rows, final_tiles_.data(), kernels::MatMulOptions{},
             absl::MakeConstSpan(&lm_head, 1));
    clock_.Lap(ProfileStage::kLmHead);
  }
  if (profile_ != nullptr) {
    ++profile_->steps;
    profile_->tokens += n_tokens;
    profile_->step_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
  }
  return absl::OkStatus();
}

void Engine::FullAttentionLayer(int layer, absl::Span<const StepInput> batch, float* out) {
  const ModelConfig& c = config();
  const FullAttentionWeights& w = weights_->layer(layer).full;
  const int64_t n = num_tokens_;
  const int heads = c.num_attention_heads;
  const int kv_heads = c.num_key_value_heads;
  const int d = c.head_dim;
  const int64_t q_dim = int64_t{heads} * d;
  const int64_t kv_dim = int64_t{kv_heads} * d;
  const float eps = static_cast<float>(c.rms_norm_eps);

  float* q = Grow(q_, n * q_dim);
  float* k = Grow(k_, n * kv_dim);
  float* v = Grow(v_, n * kv_dim);
  float* attn = Grow(attn_, n * q_dim);
  ProjMatMul(normed_.data(), n, {{&w.q_proj, q}, {&w.k_proj, k}, {&w.v_proj, v}});
  clock_.Lap(ProfileStage::kAttnProj);
  // M2 QK-norm: one RMSNorm over the whole projection of a token, before the head split.
  // Per token (rows in parallel): QK-norm, RoPE, and the post-RoPE keys and values cached at
  // their positions (the step reserved every block before the layers ran).
  ForTokens(n, [&](int64_t begin, int64_t end) {
    const int64_t rows = end - begin;
    if (!w.q_norm.empty()) {
      kernels::RmsNorm(q + begin * q_dim, w.q_norm.data(), rows, q_dim, eps, q + begin * q_dim);
    }
    if (!w.k_norm.empty()) {
      kernels::RmsNorm(k + begin * kv_dim, w.k_norm.data(), rows, kv_dim, eps, k + begin * kv_dim);
    }
    if (c.rotary_dim > 0) {
      kernels::ApplyRope(q + begin * q_dim, rows, heads, d, c.rotary_dim, positions_.data() + begin,
                         inv_freq_.data());
      kernels::ApplyRope(k + begin * kv_dim, rows, kv_heads, d, c.rotary_dim,
                         positions_.data() + begin, inv_freq_.data());
    }
    for (int64_t row = begin; row < end; ++row) {
      const int seq = batch[row_entry_[row]].seq;
      for (int h = 0; h < kv_heads; ++h) {
        cache_->Store(layer, seq, positions_[row], h, k + row * kv_dim + h * d,
                      v + row * kv_dim + h * d);
      }
    }
  });
  // Work items: (entry, chunk of query rows, run of query heads that share a kv head). The
  // kernel reads each key and value once per run instead of once per head; runs are halved
  // until there are items for every thread.
  int64_t chunks = 0;
  for (size_t e = 0; e < batch.size(); ++e) {
    chunks += (entry_begin_[e + 1] - entry_begin_[e] + kAttentionRowChunk - 1) / kAttentionRowChunk;
  }
  const int group = heads / kv_heads;
  const int threads = pool_ == nullptr ? 1 : pool_->num_threads();
  int run = group;
  while (run > 1 && chunks * kv_heads * ((group + run - 1) / run) < threads) run = (run + 1) / 2;
  items_.clear();
  for (size_t e = 0; e < batch.size(); ++e) {
    for (int64_t r = entry_begin_[e]; r < entry_begin_[e + 1]; r += kAttentionRowChunk) {
      const int64_t rows = std::min(kAttentionRowChunk, entry_begin_[e + 1] - r);
      // Causal attention: a row attends to every key up to its position.
      for (int kvh = 0; kvh < kv_heads; ++kvh) {
        for (int h = kvh * group; h < (kvh + 1) * group; h += run) {
          const int count = std::min(run, (kvh + 1) * group - h);
          const int64_t cost = rows * (positions_[r + rows - 1] + 1) * count;
          items_.push_back({static_cast<int>(e), r, rows, h, count, cost});
        }
      }
    }
  }
  kernels::AttentionShape shape;
  shape.num_heads = heads;
  shape.num_kv_heads = kv_heads;
  shape.head_dim = d;
  shape.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  ParallelItems([&](const AttentionItem& item) {
    const kernels::PagedKvView view = cache_->View(layer, batch[item.entry].seq);
    kernels::PagedAttention(q + item.row_begin * q_dim, item.rows,
                            positions_.data() + item.row_begin, view, shape, item.head,
                            item.head + item.head_count, attn + item.row_begin * q_dim);
  });
  clock_.Lap(ProfileStage::kAttnCore);
  ProjMatMul(attn, n, {{&w.o_proj, out}});
  clock_.Lap(ProfileStage::kAttnProj);
}

void Engine::LightningLayer(int layer, absl::Span<const StepInput> batch, float* out) {
  const ModelConfig& c = config();
  const LightningWeights& w = weights_->layer(layer).lightning;
  const int64_t n = num_tokens_;
  const int heads = c.num_attention_heads;
  const int d = c.head_dim;
  const int64_t q_dim = int64_t{heads} * d;

  // qkv = SiLU(a @ Wqkv^T), [n, H, 3, d] per head q | k | v.
  float* qkv = Grow(q_, n * 3 * q_dim);
  float* attn = Grow(attn_, n * q_dim);
  float* gate = Grow(gate_, n * q_dim);
  // The output gate reads the same input: both products in one parallel loop.
  ProjMatMul(normed_.data(), n, {{&w.qkv_proj, qkv}, {&w.output_gate, gate}});
  clock_.Lap(ProfileStage::kAttnProj);
  ForTokens(n,
            [&](int64_t b, int64_t e) { kernels::Silu(qkv + b * 3 * q_dim, (e - b) * 3 * q_dim); });

  // The first chunk of a sequence takes the block path from S = 0, later ones the recurrence.
  has_state_.resize(batch.size());
  items_.clear();
  for (size_t e = 0; e < batch.size(); ++e) {
    has_state_[e] = cache_->HasLinearState(layer, batch[e].seq);
    const int64_t rows = entry_begin_[e + 1] - entry_begin_[e];
    for (int h = 0; h < heads; ++h) {
      items_.push_back({static_cast<int>(e), entry_begin_[e], rows, h, 1, rows});
    }
  }
  const int block_size = c.block_size;
  ParallelItems([&](const AttentionItem& item) {
    thread_local std::vector<float> scratch;
    float* state = cache_->LinearState(layer, batch[item.entry].seq);
    const float* x = qkv + item.row_begin * 3 * q_dim;
    float* o = attn + item.row_begin * q_dim;
    if (has_state_[item.entry]) {
      kernels::LightningDecode(x, item.rows, heads, d, item.head, item.head + 1, w.slopes.data(),
                               state, o);
    } else {
      const size_t need = kernels::LightningPrefillScratchFloats(d, block_size);
      if (scratch.size() < need) scratch.resize(need);
      kernels::LightningPrefill(x, item.rows, heads, d, item.head, item.head + 1, w.slopes.data(),
                                block_size, state, scratch.data(), o);
    }
  });
  for (const StepInput& in : batch) cache_->MarkLinearState(layer, in.seq);

  // norm (eps lightning_norm_eps over all H*d values), then * sigmoid(a @ Wgate^T), then out_proj.
  RowsRmsNorm(attn, w.norm.data(), n, q_dim, static_cast<float>(c.lightning_norm_eps), attn);
  clock_.Lap(ProfileStage::kAttnCore);
  ForTokens(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b * q_dim; i < e * q_dim; ++i) {
      const float g = 1.0f / (1.0f + std::exp(-gate[i]));
      attn[i] = g * attn[i];
    }
  });
  ProjMatMul(attn, n, {{&w.out_proj, out}});
  clock_.Lap(ProfileStage::kAttnProj);
}

absl::Status Engine::MoeLayer(int layer, const float* x, float* out) {
  const ModelConfig& c = config();
  const LayerWeights& lw = weights_->layer(layer);
  const int64_t n = num_tokens_;
  const int num_experts = c.num_local_experts;
  const int k = c.num_experts_per_tok;
  // Router logits in fp32 whatever the stored dtype.
  float* logits = Grow(router_logits_, n * num_experts);
  int32_t* ids = Grow(expert_ids_, n * k);
  float* weights = Grow(expert_weights_, n * k);
  MatMul(x, n, lw.router, logits);
  ForTokens(n, [&](int64_t b, int64_t e) {
    if (c.scoring == RouterScoring::kSigmoidWithBias) {
      kernels::SigmoidBiasTopK(logits + b * num_experts,
                               lw.router_bias.empty() ? nullptr : lw.router_bias.data(), e - b,
                               num_experts, k, ids + b * k, weights + b * k);
    } else {
      kernels::SoftmaxTopK(logits + b * num_experts, e - b, num_experts, k, ids + b * k,
                           weights + b * k);
    }
  });
  clock_.Lap(ProfileStage::kRouter);
  ExpertRequest request;
  request.layer = layer;
  request.num_tokens = n;
  request.hidden_dim = c.hidden_size;
  request.top_k = k;
  request.hidden = x;
  request.expert_ids = ids;
  request.weights = weights;
  request.tiles = row_tiles_.data();
  request.pool = pool_;
  // The backend may attribute parts of its time itself; the rest counts as kExpertOther.
  double attributed = 0;
  if (profile_ != nullptr) {
    for (ProfileStage st :
         {ProfileStage::kExpertGather, ProfileStage::kExpertFfn, ProfileStage::kExpertCombine}) {
      attributed -= profile_->Get(st);
    }
  }
  const auto run_start = std::chrono::steady_clock::now();
  absl::Status s = experts_->Run(request, out);
  if (profile_ != nullptr) {
    for (ProfileStage st :
         {ProfileStage::kExpertGather, ProfileStage::kExpertFfn, ProfileStage::kExpertCombine}) {
      attributed += profile_->Get(st);
    }
    const double total =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
    profile_->Add(ProfileStage::kExpertOther, total - attributed);
    clock_.Skip();
  }
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat("layer ", layer, " experts: ", s.message()));
  }
  return absl::OkStatus();
}

}  // namespace afd::attention
