// The StepTimes codec of AttentionNode.Describe.
#include "attention_node/service/generate_codec.h"

#include <cmath>

#include "gtest/gtest.h"

namespace afd::attention {
namespace {

TEST(StepTimesCodecTest, RoundTripsEveryStageByName) {
  StepProfile p;
  p.steps = 7;
  p.tokens = 70;
  p.weight_bytes = 123456789;
  p.step_seconds = 1.5;
  for (int s = 0; s < StepProfile::kStages; ++s) p.seconds[s] = 0.01 * (s + 1);
  v1::StepTimes proto;
  EncodeStepTimes(p, &proto);
  ASSERT_EQ(proto.stages_size(), StepProfile::kStages);
  EXPECT_EQ(proto.stages(0).stage(), "embed");
  absl::StatusOr<StepProfile> back = DecodeStepTimes(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->steps, 7);
  EXPECT_EQ(back->tokens, 70);
  EXPECT_EQ(back->weight_bytes, 123456789);
  EXPECT_EQ(back->step_seconds, 1.5);
  for (int s = 0; s < StepProfile::kStages; ++s) EXPECT_EQ(back->seconds[s], p.seconds[s]) << s;
}

TEST(StepTimesCodecTest, IgnoresUnknownStagesAndRejectsBadTimes) {
  v1::StepTimes proto;
  proto.set_steps(1);
  v1::StageTime* future = proto.add_stages();
  future->set_stage("a stage from a newer node");
  future->set_seconds(2.0);
  v1::StageTime* lm = proto.add_stages();
  lm->set_stage("lm_head");
  lm->set_seconds(0.25);
  absl::StatusOr<StepProfile> p = DecodeStepTimes(proto);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->Get(ProfileStage::kLmHead), 0.25);
  double sum = 0;
  for (double s : p->seconds) sum += s;
  EXPECT_EQ(sum, 0.25);

  lm->set_seconds(-1.0);
  p = DecodeStepTimes(proto);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("lm_head"), absl::string_view::npos) << p.status();
  lm->set_seconds(NAN);
  EXPECT_EQ(DecodeStepTimes(proto).status().code(), absl::StatusCode::kInvalidArgument);
  lm->set_seconds(0);
  proto.set_step_seconds(INFINITY);
  EXPECT_EQ(DecodeStepTimes(proto).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace afd::attention
