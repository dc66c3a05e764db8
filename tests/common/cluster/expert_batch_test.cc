// ExpertBatchView structure checks and the folded result layout.
#include "common/cluster/expert_batch.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace afd {
namespace {

struct Batch {
  std::vector<float> hidden;
  std::vector<uint32_t> offsets, ids, fold;
  std::vector<float> weights;
  ExpertBatchView View(int d) const {
    ExpertBatchView v;
    v.num_tokens = static_cast<int64_t>(offsets.size()) - 1;
    v.hidden_dim = d;
    v.hidden = hidden.data();
    v.offsets = offsets.data();
    v.expert_ids = ids.data();
    v.weights = weights.data();
    v.fold = fold.empty() ? nullptr : fold.data();
    return v;
  }
};

TEST(ExpertBatchTest, AcceptsWellFormedCsr) {
  Batch b{{0, 0, 0, 0}, {0, 2, 3}, {1, 4, 0}, {2, 1}, {0.5f, 0.5f, 1}};
  EXPECT_TRUE(ValidateExpertBatch(b.View(2)).ok());
  EXPECT_EQ(ExpertResultRows(b.View(2)), 2);  // token 0 folds 2 pairs into 1 row
}

TEST(ExpertBatchTest, RejectsMalformedCsr) {
  Batch first_offset{{0, 0}, {1, 1}, {0}, {}, {1}};
  EXPECT_EQ(ValidateExpertBatch(first_offset.View(1)).code(), absl::StatusCode::kInvalidArgument);
  Batch decreasing{{0, 0}, {0, 2, 1}, {0, 1}, {}, {1, 1}};
  EXPECT_EQ(ValidateExpertBatch(decreasing.View(1)).code(), absl::StatusCode::kInvalidArgument);
  Batch unsorted{{0}, {0, 2}, {3, 1}, {}, {1, 1}};
  absl::Status s = ValidateExpertBatch(unsorted.View(1));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("token 0"), std::string::npos) << s;
  Batch duplicate{{0}, {0, 2}, {1, 1}, {}, {1, 1}};
  EXPECT_FALSE(ValidateExpertBatch(duplicate.View(1)).ok());
  Batch big_fold{{0}, {0, 1}, {1}, {2}, {1}};
  EXPECT_FALSE(ValidateExpertBatch(big_fold.View(1)).ok());
}

TEST(ExpertBatchTest, FoldSumsTheLeadingPairsFromPositiveZero) {
  // Token 0: 3 pairs, fold 2; token 1: 1 pair, fold 0; token 2: 2 pairs, fold 1.
  Batch b{{}, {0, 3, 4, 6}, {0, 1, 2, 5, 0, 3}, {2, 0, 1}, {1, 1, 1, 1, 1, 1}};
  const std::vector<float> terms = {1.f, -0.f, 1e8f, 1.f, -1e8f, 2.f,
                                    3.f, 4.f,  -0.f, 5.f, 6.f,   7.f};  // [6 pairs, 2]
  ExpertBatchView v = b.View(2);
  ASSERT_EQ(ExpertResultRows(v), 5);
  std::vector<float> rows(5 * 2);
  FoldExpertTerms(v, terms.data(), rows.data());
  // Row 0: (0 + 1) + 1e8 and (0 + -0) + 1 in fp32.
  float a = 0.0f;
  a += 1.f;
  a += 1e8f;
  EXPECT_EQ(rows[0], a);
  EXPECT_EQ(rows[1], 1.f);
  EXPECT_EQ(rows[2], -1e8f);  // token 0's third pair, unfolded
  EXPECT_EQ(rows[4], 3.f);    // token 1's pair
  // Token 2 fold 1: 0.0f + -0.0f is +0.0f.
  EXPECT_EQ(rows[6], 0.0f);
  EXPECT_FALSE(std::signbit(rows[6]));
  EXPECT_EQ(rows[8], 6.f);
  EXPECT_EQ(rows[9], 7.f);
}

}  // namespace
}  // namespace afd
