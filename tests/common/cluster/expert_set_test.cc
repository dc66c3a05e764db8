// ExpertSpec text form, ExpertSet resolution, Placement and the placement generator.
#include "common/cluster/expert_set.h"

#include "common/cluster/cluster_config.h"
#include "common/cluster/placement.h"
#include "gtest/gtest.h"

namespace afd {
namespace {

TEST(ExpertSpecTest, ParsesAllForms) {
  absl::StatusOr<ExpertSpec> spec = ParseExpertSpec(" 0-2 : 0-3, 7 ; 3:all;8-9");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->entries.size(), 3u);
  EXPECT_FALSE(spec->entries[0].layers.all);
  EXPECT_EQ(spec->entries[0].layers.ranges, (std::vector<std::pair<int, int>>{{0, 2}}));
  EXPECT_EQ(spec->entries[0].experts.ranges, (std::vector<std::pair<int, int>>{{0, 3}, {7, 7}}));
  EXPECT_TRUE(spec->entries[1].experts.all);
  EXPECT_TRUE(spec->entries[2].layers.all);
  EXPECT_EQ(FormatExpertSpec(*spec), "0-2:0-3,7;3:all;8-9");
  EXPECT_EQ(*ParseExpertSpec(FormatExpertSpec(*spec)), *spec);
}

TEST(ExpertSpecTest, RejectsMalformedText) {
  for (const char* text : {"", "a", "3-1", "1-2-3", "0:1:2", "-1", "1,,2", "1.5", "all:x"}) {
    absl::StatusOr<ExpertSpec> spec = ParseExpertSpec(text);
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
}

TEST(ExpertSetTest, ResolvesAgainstTheModel) {
  absl::StatusOr<ExpertSet> set = ExpertSet::FromSpec(*ParseExpertSpec("0:1-2;2:all"), 3, 4);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->Count(), 2 + 4);
  EXPECT_TRUE(set->Contains(0, 1));
  EXPECT_FALSE(set->Contains(0, 3));
  EXPECT_FALSE(set->Contains(1, 1));
  EXPECT_TRUE(set->Contains(2, 3));
  EXPECT_FALSE(set->Contains(3, 0));
  EXPECT_EQ(set->ExpertsOf(2), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(set->ToString(), "layer 0 experts 1-2; layer 2 all experts");
  // ToSpec round-trips to the same set.
  EXPECT_EQ(ExpertSet::FromSpec(set->ToSpec(), 3, 4)->ToString(), set->ToString());
}

TEST(ExpertSetTest, RejectsIdsOutsideTheModel) {
  absl::StatusOr<ExpertSet> set = ExpertSet::FromSpec(*ParseExpertSpec("0-8"), 3, 8);
  EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(set.status().message().find("expert 8 does not exist"), std::string::npos)
      << set.status();
  set = ExpertSet::FromSpec(*ParseExpertSpec("3:0"), 3, 8);
  EXPECT_NE(set.status().message().find("layer 3 does not exist"), std::string::npos)
      << set.status();
}

TEST(PlacementTest, ListsReplicasAndNamesUnhostedExperts) {
  std::vector<ExpertSet> sets = {*ExpertSet::FromSpec(*ParseExpertSpec("0-3"), 2, 8),
                                 *ExpertSet::FromSpec(*ParseExpertSpec("2-5"), 2, 8)};
  absl::StatusOr<Placement> p = Placement::Build(sets, 2, 8, /*require_complete=*/false);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->Hosts(1, 0), (std::vector<int>{0}));
  EXPECT_EQ(p->Hosts(1, 3), (std::vector<int>{0, 1}));
  EXPECT_TRUE(p->Hosts(0, 7).empty());
  EXPECT_EQ(p->Unhosted().ToString(), "all layers experts 6-7");
  p = Placement::Build(sets, 2, 8, /*require_complete=*/true);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(p.status().message().find("experts 6-7"), std::string::npos) << p.status();
}

TEST(GenerateExpertPlacementTest, EveryExpertLivesOnExactlyReplicaNodes) {
  for (int nodes = 1; nodes <= 5; ++nodes) {
    for (int replicas = 1; replicas <= nodes; ++replicas) {
      absl::StatusOr<std::vector<ExpertSpec>> specs = GenerateExpertPlacement(16, nodes, replicas);
      ASSERT_TRUE(specs.ok()) << specs.status();
      ASSERT_EQ(specs->size(), static_cast<size_t>(nodes));
      std::vector<ExpertSet> sets;
      for (const ExpertSpec& spec : *specs) sets.push_back(*ExpertSet::FromSpec(spec, 3, 16));
      absl::StatusOr<Placement> p = Placement::Build(sets, 3, 16, true);
      ASSERT_TRUE(p.ok()) << p.status();
      for (int l = 0; l < 3; ++l) {
        for (int e = 0; e < 16; ++e) {
          EXPECT_EQ(p->Hosts(l, e).size(), static_cast<size_t>(replicas))
              << nodes << " nodes, " << replicas << " replicas, expert " << e;
        }
      }
      // Balanced: each node holds replicas/nodes of the experts, give or take a chunk.
      for (const ExpertSet& s : sets) {
        EXPECT_NEAR(s.Count() / 3.0, 16.0 * replicas / nodes, 16.0 / nodes + 1);
      }
    }
  }
}

TEST(GenerateExpertPlacementTest, RejectsImpossibleShapes) {
  EXPECT_FALSE(GenerateExpertPlacement(8, 2, 3).ok());
  EXPECT_FALSE(GenerateExpertPlacement(8, 9, 1).ok());
  EXPECT_FALSE(GenerateExpertPlacement(8, 2, 0).ok());
}

}  // namespace
}  // namespace afd
