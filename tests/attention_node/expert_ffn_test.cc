// Tests of the shared expert feed-forward (common/expert_ffn.h) and the in-process backend:
// per-pair math vs a per-token reference, independence from pair order, thread count and
// expert placement (bitwise), the ascending-expert combine order, and error codes.
#include "common/expert_ffn.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "attention_node/in_process_expert_backend.h"
#include "common/kernels/matmul.h"
#include "common/kernels/thread_pool.h"
#include "gtest/gtest.h"

namespace afd {
namespace {

constexpr int kHidden = 48;
constexpr int kInter = 40;
constexpr int kExperts = 6;

// bf16 expert matrices owned by the test.
struct Experts {
  std::vector<std::vector<uint16_t>> storage;
  std::vector<ExpertWeights> weights;

  explicit Experts(uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 0.2f);
    auto make = [&](int rows, int cols) {
      storage.emplace_back(rows * cols);
      for (uint16_t& v : storage.back()) v = kernels::FloatToBf16(dist(rng));
      kernels::WeightView w;
      w.type = kernels::WeightType::kBF16;
      w.rows = rows;
      w.cols = cols;
      w.data = storage.back().data();
      return w;
    };
    storage.reserve(3 * kExperts);
    for (int e = 0; e < kExperts; ++e) {
      ExpertWeights w;
      w.w1 = make(kInter, kHidden);
      w.w3 = make(kInter, kHidden);
      w.w2 = make(kHidden, kInter);
      weights.push_back(w);
    }
  }
  const ExpertWeights* Get(int32_t e) const {
    return e >= 0 && e < kExperts ? &weights[e] : nullptr;
  }
};

std::vector<float> RandomRows(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n * kHidden);
  for (float& v : x) v = dist(rng);
  return x;
}

// Every token routed to `k` distinct experts with random normalized weights.
std::vector<ExpertPair> RandomPairs(int64_t tokens, int k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<ExpertPair> pairs;
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<int32_t> ids(kExperts);
    for (int e = 0; e < kExperts; ++e) ids[e] = e;
    std::shuffle(ids.begin(), ids.end(), rng);
    std::sort(ids.begin(), ids.begin() + k);
    for (int j = 0; j < k; ++j) {
      pairs.push_back({static_cast<int32_t>(t), ids[j],
                       std::uniform_real_distribution<float>(0.1f, 1.0f)(rng)});
    }
  }
  return pairs;
}

// weight * W2(silu(W1 x) * W3 x) for one row via the reference matmul.
std::vector<float> ReferenceTerm(const ExpertWeights& w, const float* x, float weight) {
  std::vector<float> g(kInter), u(kInter), y(kHidden);
  kernels::MatMulReference(x, 1, w.w1, g.data());
  kernels::MatMulReference(x, 1, w.w3, u.data());
  for (int i = 0; i < kInter; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  kernels::MatMulReference(g.data(), 1, w.w2, y.data());
  for (float& v : y) v *= weight;
  return y;
}

absl::Status RunFfn(ExpertFfn& ffn, const Experts& experts, const std::vector<float>& x,
                    int64_t tokens, const std::vector<ExpertPair>& pairs,
                    std::vector<float>* terms) {
  terms->assign(pairs.size() * kHidden, 0.0f);
  return ffn.Run(
      x.data(), tokens, pairs, [&](int32_t e) { return experts.Get(e); }, terms->data());
}

TEST(ExpertFfnTest, TermsMatchThePerTokenReference) {
  const Experts experts(1);
  const int64_t tokens = 9;
  const std::vector<float> x = RandomRows(tokens, 2);
  const std::vector<ExpertPair> pairs = RandomPairs(tokens, 3, 3);
  ExpertFfn ffn(kHidden, kInter, nullptr);
  std::vector<float> terms;
  ASSERT_TRUE(RunFfn(ffn, experts, x, tokens, pairs, &terms).ok());
  for (size_t p = 0; p < pairs.size(); ++p) {
    const std::vector<float> want =
        ReferenceTerm(*experts.Get(pairs[p].expert), &x[pairs[p].token * kHidden], pairs[p].weight);
    for (int c = 0; c < kHidden; ++c) {
      ASSERT_NEAR(terms[p * kHidden + c], want[c], 1e-5f * (1 + std::fabs(want[c])))
          << "pair " << p;
    }
  }
}

TEST(ExpertFfnTest, TermsDoNotDependOnPairOrderOrThreads) {
  const Experts experts(4);
  kernels::ThreadPool pool(2);
  // 40 tokens x top-2 keeps every expert busy (experts run in parallel); 40 tokens x top-1 on
  // two experts, prefill-sized (products split by rows); 2 tokens x top-1, decode-sized.
  for (auto [tokens, k] : {std::pair<int64_t, int>{40, 2}, {40, 1}, {2, 1}}) {
    SCOPED_TRACE(tokens);
    const std::vector<float> x = RandomRows(tokens, 5);
    std::vector<ExpertPair> pairs = RandomPairs(tokens, k, 6);
    if (k == 1 && tokens == 40) {
      for (ExpertPair& p : pairs) p.expert %= 2;  // two groups: fewer than 2 x threads
    }
    ExpertFfn single(kHidden, kInter, nullptr);
    std::vector<float> base;
    ASSERT_TRUE(RunFfn(single, experts, x, tokens, pairs, &base).ok());

    ExpertFfn threaded(kHidden, kInter, &pool);
    std::vector<float> with_pool;
    ASSERT_TRUE(RunFfn(threaded, experts, x, tokens, pairs, &with_pool).ok());
    EXPECT_EQ(with_pool, base);

    // Reverse the pairs: each pair's term must be bitwise unchanged.
    std::vector<ExpertPair> reversed(pairs.rbegin(), pairs.rend());
    std::vector<float> rev_terms;
    ASSERT_TRUE(RunFfn(single, experts, x, tokens, reversed, &rev_terms).ok());
    for (size_t p = 0; p < pairs.size(); ++p) {
      const size_t q = pairs.size() - 1 - p;
      EXPECT_TRUE(
          std::equal(&base[p * kHidden], &base[(p + 1) * kHidden], &rev_terms[q * kHidden]));
    }
  }
}

TEST(ExpertFfnTest, SplittingExpertsAcrossNodesGivesTheSameSum) {
  // Two "nodes" each hold half the experts; combining all terms with CombineExpertTerms gives
  // bitwise the same result as one node holding everything.
  const Experts experts(7);
  const int64_t tokens = 11;
  const std::vector<float> x = RandomRows(tokens, 8);
  const std::vector<ExpertPair> pairs = RandomPairs(tokens, 4, 9);
  ExpertFfn ffn(kHidden, kInter, nullptr);
  std::vector<float> terms;
  ASSERT_TRUE(RunFfn(ffn, experts, x, tokens, pairs, &terms).ok());
  std::vector<float> one_node(tokens * kHidden);
  CombineExpertTerms(pairs, terms.data(), tokens, kHidden, one_node.data());

  std::vector<ExpertPair> all_pairs;
  std::vector<float> all_terms;
  for (int node = 0; node < 2; ++node) {
    std::vector<ExpertPair> mine;
    for (const ExpertPair& p : pairs) {
      if (p.expert % 2 == node) mine.push_back(p);
    }
    std::vector<float> t;
    ASSERT_TRUE(RunFfn(ffn, experts, x, tokens, mine, &t).ok());
    all_pairs.insert(all_pairs.end(), mine.begin(), mine.end());
    all_terms.insert(all_terms.end(), t.begin(), t.end());
  }
  std::vector<float> two_nodes(tokens * kHidden);
  CombineExpertTerms(all_pairs, all_terms.data(), tokens, kHidden, two_nodes.data());
  EXPECT_EQ(two_nodes, one_node);
}

TEST(ExpertFfnTest, CombineAddsInAscendingExpertOrderFromPositiveZero) {
  // 1e8 + (-1e8) + 1 = 1 in ascending expert order; pair order (7, 2, 5) would give 0.
  const std::vector<ExpertPair> pairs = {{0, 7, 1}, {0, 2, 1}, {0, 5, 1}, {1, 3, 1}};
  const std::vector<float> terms = {1.0f, 1e8f, -1e8f, -0.0f};
  std::vector<float> out(2, 42.0f);
  CombineExpertTerms(pairs, terms.data(), 2, 1, out.data());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], 0.0f);
  EXPECT_FALSE(std::signbit(out[1]));  // +0.0f + -0.0f = +0.0f
}

TEST(ExpertFfnTest, CombineWithAPoolGivesTheSameBits) {
  kernels::ThreadPool pool(2);
  const int64_t tokens = 64;  // large enough for the parallel path
  const int hidden = 1024;
  std::vector<ExpertPair> pairs = RandomPairs(tokens, 3, 11);
  std::reverse(pairs.begin(), pairs.end());
  pairs.push_back({static_cast<int32_t>(tokens), 0, 1.0f});  // out of range: ignored
  std::mt19937 rng(12);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> terms(pairs.size() * hidden);
  for (float& t : terms) t = dist(rng);
  std::vector<float> serial(tokens * hidden, 1.0f), parallel(tokens * hidden, 2.0f);
  CombineExpertTerms(pairs, terms.data(), tokens, hidden, serial.data());
  CombineExpertTerms(pairs, terms.data(), tokens, hidden, parallel.data(), &pool);
  EXPECT_EQ(serial, parallel);
  // Token 5's row: +0.0f, then its terms in ascending expert order.
  std::vector<std::pair<int32_t, size_t>> mine;
  for (size_t p = 0; p < pairs.size(); ++p) {
    if (pairs[p].token == 5) mine.push_back({pairs[p].expert, p});
  }
  std::sort(mine.begin(), mine.end());
  for (int c = 0; c < hidden; ++c) {
    float want = 0.0f;
    for (const auto& [expert, p] : mine) want += terms[p * hidden + c];
    ASSERT_EQ(serial[5 * hidden + c], want) << c;
  }
}

TEST(ExpertFfnTest, ReportsMissingExpertsAndBadTokens) {
  const Experts experts(10);
  const std::vector<float> x = RandomRows(2, 11);
  ExpertFfn ffn(kHidden, kInter, nullptr);
  std::vector<float> terms;
  EXPECT_EQ(RunFfn(ffn, experts, x, 2, {{0, kExperts + 1, 1.0f}}, &terms).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(RunFfn(ffn, experts, x, 2, {{2, 0, 1.0f}}, &terms).code(),
            absl::StatusCode::kInvalidArgument);
  ExpertFfn wrong(kHidden + 1, kInter, nullptr);
  EXPECT_EQ(RunFfn(wrong, experts, x, 2, {{0, 0, 1.0f}}, &terms).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(InProcessExpertBackendTest, MatchesTheReferenceOnTheTinyCheckpoint) {
  const char* data = std::getenv("AFD_TEST_DATA");
  ASSERT_NE(data, nullptr) << "AFD_TEST_DATA is set by ctest";
  const std::string dir = std::string(data) + "/golden/m2-tiny";
  const ModelConfig config = LoadModelConfig(dir).value();
  auto checkpoint = Checkpoint::Open(dir).value();
  auto backend = attention::InProcessExpertBackend::Create(config, *checkpoint, nullptr).value();
  const int64_t tokens = 5;
  const int k = config.num_experts_per_tok;
  std::vector<float> x(tokens * config.hidden_size);
  std::mt19937 rng(12);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (float& v : x) v = dist(rng);
  std::vector<int32_t> ids = {0, 3, 1, 7, 2, 5, 4, 6, 0, 7};
  std::vector<float> weights = {0.6f, 0.4f, 0.5f, 0.5f, 0.9f, 0.1f, 0.3f, 0.7f, 0.2f, 0.8f};
  attention::ExpertRequest req;
  req.layer = 1;
  req.num_tokens = tokens;
  req.hidden_dim = config.hidden_size;
  req.top_k = k;
  req.hidden = x.data();
  req.expert_ids = ids.data();
  req.weights = weights.data();
  std::vector<float> out(tokens * config.hidden_size);
  ASSERT_TRUE(backend->Run(req, out.data()).ok());
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<float> want(config.hidden_size, 0.0f);
    for (int j = 0; j < k; ++j) {
      const ExpertWeights w = LoadExpertWeights(*checkpoint, config, 1, ids[t * k + j]).value();
      std::vector<float> g(config.intermediate_size), u(config.intermediate_size);
      std::vector<float> y(config.hidden_size);
      kernels::MatMulReference(&x[t * config.hidden_size], 1, w.w1, g.data());
      kernels::MatMulReference(&x[t * config.hidden_size], 1, w.w3, u.data());
      for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
      kernels::MatMulReference(g.data(), 1, w.w2, y.data());
      for (int c = 0; c < config.hidden_size; ++c) want[c] += y[c] * weights[t * k + j];
    }
    for (int c = 0; c < config.hidden_size; ++c) {
      EXPECT_NEAR(out[t * config.hidden_size + c], want[c], 1e-5f * (1 + std::fabs(want[c])));
    }
  }
  ids[3] = config.num_local_experts;
  EXPECT_EQ(backend->Run(req, out.data()).code(), absl::StatusCode::kInvalidArgument);
  req.layer = config.num_hidden_layers;
  EXPECT_EQ(backend->Run(req, out.data()).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace afd
