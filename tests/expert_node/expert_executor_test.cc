// ExpertExecutor: per-pair terms equal to the shared ExpertFfn's, the folded layout, model
// checks (NOT_FOUND / INVALID_ARGUMENT), and the same bits for any thread count.
#include "expert_node/expert_executor.h"

#include <cstring>

#include "common/safetensors.h"
#include "expert_test_util.h"
#include "gtest/gtest.h"

namespace afd::expert {
namespace {

using expert_test::GoldenModel;
using expert_test::MakeRoutedBatch;
using expert_test::RoutedBatch;

// CSR form of a whole routed batch (every pair, fold as given per token).
struct Csr {
  std::vector<uint32_t> offsets, ids, fold;
  std::vector<float> weights;
  ExpertBatchView View(const RoutedBatch& b) const {
    ExpertBatchView v;
    v.layer = b.layer;
    v.num_tokens = b.num_tokens;
    v.hidden_dim = b.hidden_dim;
    v.hidden = b.hidden.data();
    v.offsets = offsets.data();
    v.expert_ids = ids.data();
    v.weights = weights.data();
    v.fold = fold.empty() ? nullptr : fold.data();
    return v;
  }
};

Csr ToCsr(const RoutedBatch& b, uint32_t fold) {
  Csr c;
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    c.offsets.push_back(static_cast<uint32_t>(c.ids.size()));
    for (int k = 0; k < b.top_k; ++k) {
      c.ids.push_back(static_cast<uint32_t>(b.expert_ids[t * b.top_k + k]));
      c.weights.push_back(b.weights[t * b.top_k + k]);
    }
    if (fold > 0) c.fold.push_back(std::min<uint32_t>(fold, b.top_k));
  }
  c.offsets.push_back(static_cast<uint32_t>(c.ids.size()));
  return c;
}

class ExpertExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<ExpertStore>> store =
        ExpertStore::Load(GoldenModel("m2-medium"), ExpertSpec::All(), {});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  const ModelConfig& config() const { return store_->config(); }

  // The oracle: ExpertFfn over all pairs, single-threaded.
  std::vector<float> Terms(const RoutedBatch& b) {
    std::vector<ExpertPair> pairs;
    for (int64_t t = 0; t < b.num_tokens; ++t) {
      for (int k = 0; k < b.top_k; ++k) {
        pairs.push_back(
            {static_cast<int32_t>(t), b.expert_ids[t * b.top_k + k], b.weights[t * b.top_k + k]});
      }
    }
    ExpertFfn ffn(config().hidden_size, config().intermediate_size, nullptr);
    std::vector<float> terms(pairs.size() * b.hidden_dim);
    absl::Status s = ffn.Run(
        b.hidden.data(), b.num_tokens, pairs, [&](int32_t e) { return store_->Find(b.layer, e); },
        terms.data());
    EXPECT_TRUE(s.ok()) << s;
    return terms;
  }

  std::unique_ptr<ExpertStore> store_;
};

TEST_F(ExpertExecutorTest, RowsAreTheSharedFfnTermsBitForBit) {
  for (int64_t tokens : {1, 3, 5, 40}) {
    const RoutedBatch b =
        MakeRoutedBatch(1, tokens, config().hidden_size, config().num_experts_per_tok,
                        config().num_local_experts, 7 + tokens);
    const std::vector<float> terms = Terms(b);
    // 2 and 3 threads run experts in parallel; 8 (more than half the experts a batch uses)
    // splits each expert's products across the threads.
    for (int threads : {1, 2, 3, 8}) {
      ComputePool compute(threads);
      ExpertExecutor executor(store_.get(), &compute, "e0");
      const Csr csr = ToCsr(b, 0);
      std::vector<float> rows;
      ASSERT_TRUE(executor.Run(csr.View(b), &rows).ok());
      ASSERT_EQ(rows.size(), terms.size());
      EXPECT_EQ(std::memcmp(rows.data(), terms.data(), terms.size() * 4), 0)
          << tokens << " tokens, " << threads << " threads";
    }
  }
}

TEST_F(ExpertExecutorTest, FoldedRowsAreThePrefixSums) {
  const RoutedBatch b = MakeRoutedBatch(0, 6, config().hidden_size, config().num_experts_per_tok,
                                        config().num_local_experts, 3);
  const std::vector<float> terms = Terms(b);
  ComputePool compute(1);
  ExpertExecutor executor(store_.get(), &compute, "e0");
  const Csr csr = ToCsr(b, 3);
  std::vector<float> rows;
  ASSERT_TRUE(executor.Run(csr.View(b), &rows).ok());
  const int64_t d = b.hidden_dim, k = b.top_k;
  ASSERT_EQ(static_cast<int64_t>(rows.size()), b.num_tokens * (k - 2) * d);
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    const float* row = rows.data() + t * (k - 2) * d;
    for (int64_t c = 0; c < d; ++c) {
      float sum = 0.0f;
      for (int j = 0; j < 3; ++j) sum += terms[(t * k + j) * d + c];
      ASSERT_EQ(row[c], sum) << "token " << t << " column " << c;
    }
    EXPECT_EQ(std::memcmp(row + d, terms.data() + (t * k + 3) * d, (k - 3) * d * 4), 0);
  }
}

TEST_F(ExpertExecutorTest, RejectsWhatTheModelCannotServe) {
  RoutedBatch b = MakeRoutedBatch(0, 2, config().hidden_size, 2, config().num_local_experts, 1);
  ComputePool compute(1);
  std::vector<float> rows;
  {
    Csr csr = ToCsr(b, 0);
    csr.ids[1] = static_cast<uint32_t>(config().num_local_experts);
    ExpertExecutor executor(store_.get(), &compute, "e0");
    absl::Status s = executor.Run(csr.View(b), &rows);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("does not exist"), std::string::npos) << s;
  }
  {
    Csr csr = ToCsr(b, 0);
    ExpertBatchView v = csr.View(b);
    v.layer = config().num_hidden_layers;
    ExpertExecutor executor(store_.get(), &compute, "e0");
    EXPECT_EQ(executor.Run(v, &rows).code(), absl::StatusCode::kInvalidArgument);
    v = csr.View(b);
    v.hidden_dim = config().hidden_size - 1;
    absl::Status s = executor.Run(v, &rows);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("hidden size"), std::string::npos) << s;
  }
  {
    absl::StatusOr<std::unique_ptr<ExpertStore>> partial =
        ExpertStore::Load(GoldenModel("m2-medium"), *ParseExpertSpec("0:0-3"), {});
    ASSERT_TRUE(partial.ok());
    ExpertExecutor executor(partial->get(), &compute, "e7");
    RoutedBatch high = b;
    high.expert_ids = {2, 9, 3, 12};
    Csr csr = ToCsr(high, 0);
    absl::Status s = executor.Run(csr.View(high), &rows);
    EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(s.message(), "e7: does not host layer 0 experts 9,12");
  }
}

}  // namespace
}  // namespace afd::expert
