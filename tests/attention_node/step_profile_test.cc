// StepProfile: merging, windows, the derived totals and the table afd-generate and
// e2e_load_bench print.
#include "attention_node/step_profile.h"

#include <cmath>
#include <string>
#include <utility>

#include "gtest/gtest.h"

namespace afd::attention {
namespace {

StepProfile Sample() {
  StepProfile p;
  p.steps = 4;
  p.tokens = 10;
  p.weight_bytes = 8'000'000;
  p.step_seconds = 0.4;
  p.Add(ProfileStage::kAttnProj, 0.1);
  p.Add(ProfileStage::kExpertFfn, 0.2);
  p.Add(ProfileStage::kSampling, 0.02);
  p.Add(ProfileStage::kScheduler, 0.04);
  return p;
}

TEST(StepProfileTest, UntimedAndTotalSeparateTheStepFromTheWorkAroundIt) {
  const StepProfile p = Sample();
  EXPECT_NEAR(p.Untimed(), 0.4 - 0.1 - 0.2, 1e-12);  // sampling and scheduler are outside
  EXPECT_NEAR(p.Total(), 0.4 + 0.02 + 0.04, 1e-12);
}

TEST(StepProfileTest, MergeAddsAndSubtractLeavesTheWindow) {
  StepProfile a = Sample();
  a.Merge(Sample());
  EXPECT_EQ(a.steps, 8);
  EXPECT_EQ(a.tokens, 20);
  EXPECT_EQ(a.weight_bytes, 16'000'000);
  EXPECT_NEAR(a.Get(ProfileStage::kExpertFfn), 0.4, 1e-12);
  a.Subtract(Sample());
  const StepProfile b = Sample();
  EXPECT_EQ(a.steps, b.steps);
  EXPECT_EQ(a.tokens, b.tokens);
  for (int s = 0; s < StepProfile::kStages; ++s) EXPECT_NEAR(a.seconds[s], b.seconds[s], 1e-12);
  EXPECT_NEAR(a.step_seconds, b.step_seconds, 1e-12);
}

// The number at the end of the table line that starts with `label` (NaN when none does).
double Cell(const std::string& table, const std::string& label) {
  size_t at = 0;
  while (at < table.size()) {
    const size_t end = table.find('\n', at);
    const std::string line = table.substr(at, end - at);
    if (line.rfind(label, 0) == 0 && line.find_first_not_of(' ', label.size()) != label.size()) {
      return std::stod(line.substr(line.find_last_of(' ') + 1));
    }
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return std::nan("");
}

TEST(StepProfileTest, TablePrintsMillisecondsPerStep) {
  const StepProfile p = Sample();
  const std::pair<std::string, const StepProfile*> one[] = {{"decode", &p}};
  const std::string table = FormatStepProfiles(one);
  EXPECT_EQ(table.rfind("ms per step", 0), 0u) << table;
  EXPECT_NE(table.find("decode\n"), std::string::npos) << table;
  EXPECT_DOUBLE_EQ(Cell(table, "attn projections"), 25.0) << table;
  EXPECT_DOUBLE_EQ(Cell(table, "experts: ffn"), 50.0) << table;
  EXPECT_DOUBLE_EQ(Cell(table, "embed"), 0.0) << table;
  EXPECT_DOUBLE_EQ(Cell(table, "sampling"), 5.0) << table;
  EXPECT_DOUBLE_EQ(Cell(table, "scheduler"), 10.0) << table;
  EXPECT_DOUBLE_EQ(Cell(table, "other (untimed)"), 25.0) << table;
  EXPECT_DOUBLE_EQ(Cell(table, "total"), 115.0) << table;
  EXPECT_DOUBLE_EQ(Cell(table, "tokens/step"), 2.5) << table;
  EXPECT_DOUBLE_EQ(Cell(table, "weight MB/step"), 2.0) << table;
  // No scheduler ran (afd-generate): no scheduler row.
  StepProfile generate = Sample();
  generate.seconds[static_cast<int>(ProfileStage::kScheduler)] = 0;
  const std::pair<std::string, const StepProfile*> other[] = {{"decode", &generate}};
  EXPECT_EQ(FormatStepProfiles(other).find("scheduler"), std::string::npos);
  // No steps: zeros, not a division by zero.
  const StepProfile empty;
  const std::pair<std::string, const StepProfile*> none[] = {{"idle", &empty}};
  EXPECT_DOUBLE_EQ(Cell(FormatStepProfiles(none), "total"), 0.0);
}

}  // namespace
}  // namespace afd::attention
