// ExpertStore: loads exactly the hosted experts as views into the checkpoint, and reports bad
// specs and directories.
#include "expert_node/expert_store.h"

#include "expert_test_util.h"
#include "gtest/gtest.h"

namespace afd::expert {
namespace {

using expert_test::GoldenModel;

TEST(ExpertStoreTest, HostsOnlyTheExpertsOfItsSpec) {
  absl::StatusOr<std::unique_ptr<ExpertStore>> store =
      ExpertStore::Load(GoldenModel("m2-tiny"), *ParseExpertSpec("0:1-2;2:all"), {});
  ASSERT_TRUE(store.ok()) << store.status();
  const ModelConfig& c = (*store)->config();
  EXPECT_EQ((*store)->hosted().Count(), 2 + c.num_local_experts);
  EXPECT_NE((*store)->Find(0, 1), nullptr);
  EXPECT_EQ((*store)->Find(0, 0), nullptr);
  EXPECT_EQ((*store)->Find(1, 1), nullptr);
  EXPECT_NE((*store)->Find(2, 7), nullptr);
  EXPECT_EQ((*store)->Find(3, 0), nullptr);
  EXPECT_EQ((*store)->Find(2, 8), nullptr);
  // bf16 w1, w3 [I, D] and w2 [D, I] per hosted expert, nothing else.
  const size_t per_expert = 3u * c.intermediate_size * c.hidden_size * 2;
  EXPECT_EQ((*store)->hosted_bytes(), per_expert * (2 + c.num_local_experts));
  EXPECT_EQ((*store)->weight_dtype(), "BF16");
  const ExpertWeights* w = (*store)->Find(0, 2);
  EXPECT_EQ(w->w1.rows, c.intermediate_size);
  EXPECT_EQ(w->w2.rows, c.hidden_size);
}

TEST(ExpertStoreTest, ServesFp8ExpertsWithTheirScales) {
  absl::StatusOr<std::unique_ptr<ExpertStore>> store =
      ExpertStore::Load(GoldenModel("m2-fp8"), *ParseExpertSpec("1:0"), {});
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->weight_dtype(), "F8_E4M3");
  const ExpertWeights* w = (*store)->Find(1, 0);
  ASSERT_NE(w, nullptr);
  EXPECT_NE(w->w1.scales, nullptr);
  EXPECT_EQ((*store)->hosted_bytes(), w->w1.Bytes() + w->w3.Bytes() + w->w2.Bytes());
}

TEST(ExpertStoreTest, ReportsSpecsOutsideTheModelAndMissingDirectories) {
  absl::StatusOr<std::unique_ptr<ExpertStore>> store =
      ExpertStore::Load(GoldenModel("m2-tiny"), *ParseExpertSpec("0-8"), {});
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(store.status().message().find("expert 8"), std::string::npos) << store.status();
  store = ExpertStore::Load("/nonexistent/model", ExpertSpec::All(), {});
  EXPECT_EQ(store.status().code(), absl::StatusCode::kNotFound) << store.status();
}

}  // namespace
}  // namespace afd::expert
