// ExpertFfn: grouped per-expert SwiGLU feed-forward (see expert_ffn.h).
#include "common/expert_ffn.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <numeric>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/kernels/matmul.h"
#include "common/kernels/quant_matmul.h"
#include "common/kernels/swiglu.h"
#include "common/kernels/tile_matmul.h"
#include "common/quant/quant_loader.h"
#include "common/status.h"
#include "common/weights.h"

namespace afd {
namespace {

constexpr int64_t kRowTile = 32;  // output rows per parallel work item

int64_t NumTiles(int64_t rows) { return (rows + kRowTile - 1) / kRowTile; }

absl::Status CheckShape(const kernels::WeightView& w, int64_t rows, int64_t cols, const char* name,
                        int32_t expert) {
  if (w.data == nullptr || w.rows != rows || w.cols != cols) {
    return absl::InvalidArgumentError(absl::StrCat("expert ", expert, ": ", name, " is [", w.rows,
                                                   ", ", w.cols, "], expected [", rows, ", ", cols,
                                                   "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ExpertWeights> LoadExpertWeights(const Checkpoint& checkpoint,
                                                const ModelConfig& config, int layer, int expert) {
  const int64_t d = config.hidden_size;
  const int64_t inter = config.intermediate_size;
  ExpertWeights w;
  if (quant::HasStackedExperts(checkpoint, layer)) {
    // MLX: the layer's experts stacked as switch_mlp.{gate,up,down}_proj; this expert's view is
    // its byte range of each stack (QUANT.md §2.3).
    const int experts = config.num_local_experts;
    ASSIGN_OR_RETURN(
        kernels::QuantMatrix w1,
        quant::LoadMlxLinear(checkpoint, config, quant::MlxExpertStackName(layer, "w1"), inter, d,
                             expert, experts));
    ASSIGN_OR_RETURN(
        kernels::QuantMatrix w3,
        quant::LoadMlxLinear(checkpoint, config, quant::MlxExpertStackName(layer, "w3"), inter, d,
                             expert, experts));
    ASSIGN_OR_RETURN(
        kernels::QuantMatrix w2,
        quant::LoadMlxLinear(checkpoint, config, quant::MlxExpertStackName(layer, "w2"), d, inter,
                             expert, experts));
    w.w1 = kernels::AsWeightView(w1);
    w.w3 = kernels::AsWeightView(w3);
    w.w2 = kernels::AsWeightView(w2);
    return w;
  }
  ASSIGN_OR_RETURN(w.w1,
                   LoadLinear(checkpoint, config, ExpertLinearName(layer, expert, "w1"), inter, d));
  ASSIGN_OR_RETURN(w.w3,
                   LoadLinear(checkpoint, config, ExpertLinearName(layer, expert, "w3"), inter, d));
  ASSIGN_OR_RETURN(w.w2,
                   LoadLinear(checkpoint, config, ExpertLinearName(layer, expert, "w2"), d, inter));
  return w;
}

ExpertFfn::ExpertFfn(int hidden_dim, int intermediate_dim, kernels::ThreadPool* pool)
    : hidden_dim_(hidden_dim), intermediate_dim_(intermediate_dim), pool_(pool) {}

void ExpertFfn::RunExpert(const ExpertWeights& w, const float* x_rows, int64_t n, float* gate_up,
                          float* y, kernels::ThreadPool* pool,
                          const kernels::MatMulOptions& options) const {
  const int64_t inter = intermediate_dim_;
  float* gate = gate_up;            // [n, I]
  float* up = gate_up + n * inter;  // [n, I]
  // W1 and W3 share x: on the tiles it is packed once for both (and every row tile).
  thread_local std::vector<uint16_t> tile_storage;
  kernels::TilePackedX tile_x;
  const kernels::MatMulOptions shared =
      kernels::WithPackedTileX(x_rows, n, w.w1, options, &tile_x, &tile_storage);
  const kernels::WeightView* gate_up_w[2] = {&w.w1, &w.w3};
  float* gate_up_y[2] = {gate, up};
  if (pool == nullptr || pool->num_threads() <= 1) {
    kernels::MatMulRows(x_rows, n, w.w1, 0, inter, gate, shared);
    kernels::MatMulRows(x_rows, n, w.w3, 0, inter, up, shared);
  } else if (kernels::MatMulSplitInput(x_rows, n, gate_up_w, gate_up_y, 2, pool, options)) {
    // Both products split along the input axis (AWQ decode).
  } else {
    // W1 and W3 rows form one list of tiles so both products share one parallel loop.
    const int64_t tiles = NumTiles(inter);
    pool->ParallelFor(
        2 * tiles,
        [&](int64_t begin, int64_t end) {
          const int64_t b1 = std::min(begin, tiles), e1 = std::min(end, tiles);
          if (b1 < e1) {
            kernels::MatMulRows(x_rows, n, w.w1, b1 * kRowTile, std::min(e1 * kRowTile, inter),
                                gate, shared);
          }
          const int64_t b3 = std::max(begin, tiles) - tiles, e3 = std::max(end, tiles) - tiles;
          if (b3 < e3) {
            kernels::MatMulRows(x_rows, n, w.w3, b3 * kRowTile, std::min(e3 * kRowTile, inter), up,
                                shared);
          }
        },
        kernels::ParallelUnitGrain(w.w1, kRowTile));
  }
  kernels::SiluMul(gate, up, n * inter, gate);
  kernels::MatMul(gate, n, w.w2, y, pool, options);
}

absl::Status ExpertFfn::Run(const float* x, int64_t num_tokens, absl::Span<const ExpertPair> pairs,
                            absl::FunctionRef<const ExpertWeights*(int32_t)> experts,
                            float* terms) {
  const int64_t d = hidden_dim_;
  const int64_t inter = intermediate_dim_;
  const int64_t num_pairs = static_cast<int64_t>(pairs.size());
  if (num_pairs == 0) return absl::OkStatus();
  const auto t_start = std::chrono::steady_clock::now();

  // Group pair indices by expert, rows in ascending token order within a group. A product's
  // rounding may depend on where a row sits in it, so the row order must depend only on which
  // tokens an expert serves (the same on every node), never on the order of `pairs`.
  order_.resize(num_pairs);
  std::iota(order_.begin(), order_.end(), 0);
  std::stable_sort(order_.begin(), order_.end(), [&](int32_t a, int32_t b) {
    if (pairs[a].expert != pairs[b].expert) return pairs[a].expert < pairs[b].expert;
    if (pairs[a].tiles != pairs[b].tiles) return pairs[b].tiles;
    return pairs[a].token < pairs[b].token;
  });

  std::vector<Group>& groups = groups_;
  groups.clear();
  for (int64_t i = 0; i < num_pairs;) {
    const ExpertPair& first = pairs[order_[i]];
    int64_t j = i;
    while (j < num_pairs && pairs[order_[j]].expert == first.expert &&
           pairs[order_[j]].tiles == first.tiles) {
      const int32_t token = pairs[order_[j]].token;
      if (token < 0 || token >= num_tokens) {
        return absl::InvalidArgumentError(absl::StrCat("expert pair ", order_[j], ": token ", token,
                                                       " outside [0, ", num_tokens, ")"));
      }
      ++j;
    }
    const ExpertWeights* w = experts(first.expert);
    if (w == nullptr) {
      return absl::NotFoundError(absl::StrCat("expert ", first.expert, " is not loaded here"));
    }
    RETURN_IF_ERROR(CheckShape(w->w1, inter, d, "w1", first.expert));
    RETURN_IF_ERROR(CheckShape(w->w3, inter, d, "w3", first.expert));
    RETURN_IF_ERROR(CheckShape(w->w2, d, inter, "w2", first.expert));
    groups.push_back({w, first.tiles, i, j});
    i = j;
  }

  x_rows_.resize(num_pairs * d);
  gate_up_.resize(num_pairs * 2 * inter);
  y_rows_.resize(num_pairs * d);

  kernels::MatMulOptions tiles_options = options_;
  tiles_options.kernel = kernels::Kernel::kTiles;
  auto t_gathered = std::chrono::steady_clock::now();
  // One group, on whichever thread runs it: gather its input rows contiguously (x_rows_ row i
  // = x[pairs[order_[i]].token]), run the expert, then terms[p] = weight * y (one fp32 product
  // per element, as transformers scales each row).
  auto run_group = [&](const Group& g, kernels::ThreadPool* pool) {
    const int64_t n = g.end - g.begin;
    for (int64_t i = g.begin; i < g.end; ++i) {
      std::memcpy(x_rows_.data() + i * d, x + pairs[order_[i]].token * d, sizeof(float) * d);
    }
    RunExpert(*g.weights, x_rows_.data() + g.begin * d, n, gate_up_.data() + g.begin * 2 * inter,
              y_rows_.data() + g.begin * d, pool, g.tiles ? tiles_options : options_);
    for (int64_t i = g.begin; i < g.end; ++i) {
      const int32_t p = order_[i];
      const float weight = pairs[p].weight;
      const float* y = y_rows_.data() + i * d;
      float* t = terms + static_cast<int64_t>(p) * d;
      for (int64_t c = 0; c < d; ++c) t[c] = y[c] * weight;
    }
  };
  const int threads = pool_ == nullptr ? 1 : pool_->num_threads();
  if (threads > 1 && static_cast<int>(groups.size()) >= 2 * threads) {
    // Enough experts to keep every thread busy: experts in parallel, each single-threaded,
    // handed out largest first to whichever thread is free (which thread runs an expert never
    // changes its result).
    std::vector<int32_t>& by_size = group_order_;
    by_size.resize(groups.size());
    std::iota(by_size.begin(), by_size.end(), 0);
    std::stable_sort(by_size.begin(), by_size.end(), [&](int32_t a, int32_t b) {
      return groups[a].end - groups[a].begin > groups[b].end - groups[b].begin;
    });
    std::atomic<int64_t> next{0};
    const int64_t num_groups = static_cast<int64_t>(groups.size());
    pool_->ParallelFor(threads, [&](int64_t, int64_t) {
      for (int64_t i = next.fetch_add(1, std::memory_order_relaxed); i < num_groups;
           i = next.fetch_add(1, std::memory_order_relaxed)) {
        run_group(groups[by_size[i]], nullptr);
      }
    });
  } else {
    for (const Group& g : groups) run_group(g, pool_);
  }

  if (timings_ != nullptr) {
    const auto t_end = std::chrono::steady_clock::now();
    timings_->grouping_seconds += std::chrono::duration<double>(t_gathered - t_start).count();
    timings_->products_seconds += std::chrono::duration<double>(t_end - t_gathered).count();
    for (const Group& g : groups) {
      timings_->weight_bytes += static_cast<int64_t>(g.weights->w1.Bytes() + g.weights->w3.Bytes() +
                                                     g.weights->w2.Bytes());
    }
  }
  return absl::OkStatus();
}

void CombineExpertTerms(absl::Span<const ExpertPair> pairs, const float* terms, int64_t num_tokens,
                        int hidden_dim, float* out, kernels::ThreadPool* pool) {
  const int64_t d = hidden_dim;
  std::vector<int32_t> order(pairs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    if (pairs[a].token != pairs[b].token) return pairs[a].token < pairs[b].token;
    return pairs[a].expert < pairs[b].expert;
  });
  // first[t]: the first entry of `order` with token >= t (tokens out of range never match).
  std::vector<int64_t> first(num_tokens + 1);
  int64_t i = 0;
  for (int64_t t = 0; t <= num_tokens; ++t) {
    while (i < static_cast<int64_t>(order.size()) && pairs[order[i]].token < t) ++i;
    first[t] = i;
  }
  // Tokens are independent: each row gets +0.0f and then its own terms, in order.
  auto combine = [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      float* o = out + t * d;
      std::fill(o, o + d, 0.0f);
      for (int64_t j = first[t]; j < first[t + 1]; ++j) {
        const int32_t p = order[j];
        if (pairs[p].token != t) continue;
        const float* term = terms + static_cast<int64_t>(p) * d;
        for (int64_t c = 0; c < d; ++c) o[c] += term[c];
      }
    }
  };
  // Parallel only when the adds outweigh a synchronization.
  if (pool != nullptr && static_cast<int64_t>(pairs.size()) * d >= (int64_t{1} << 16)) {
    pool->ParallelFor(num_tokens, combine);
  } else {
    combine(0, num_tokens);
  }
}

}  // namespace afd
