// Tests of Sampler: greedy, seeded determinism, top-k/top-p/min-p, penalties, logprobs.
#include "attention_node/sampler.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace afd::attention {
namespace {

Sampler Make(const SamplingParams& p, std::vector<int32_t> prompt = {}) {
  return Sampler::Create(p, prompt).value();
}

std::vector<float> LogitsOf(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

TEST(SamplerTest, GreedyPicksTheLowestIdAmongEqualMaxima) {
  Sampler s = Make({});
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(s.Sample(logits).token, 1);
}

// The vectorized greedy pick equals its one-chain twin: ties (the lowest id), NaNs anywhere
// (never chosen; first: 0), +0 / -0, infinities, every length around the 16-wide blocks.
TEST(SamplerTest, ArgMaxEqualsItsReference) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> pick(0, 9);
  const float specials[] = {std::nanf(""), 0.0f, -0.0f, INFINITY, -INFINITY, 1.0f, 1.0f};
  for (size_t n : {0, 1, 2, 15, 16, 17, 31, 33, 64, 100, 32000}) {
    for (int round = 0; round < 50; ++round) {
      std::vector<float> v(n);
      for (float& x : v) {
        // Few distinct values, so ties are common; some specials.
        x = pick(rng) < 2 ? specials[rng() % 7] : static_cast<float>(pick(rng) % 4);
      }
      EXPECT_EQ(ArgMax(v), ArgMaxReference(v)) << n << " values, round " << round;
    }
  }
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedDifferentTokens) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 42;
  const std::vector<float> logits(50, 0.0f);  // uniform: every draw is pure randomness
  Sampler a = Make(p), b = Make(p);
  p.seed = 43;
  Sampler c = Make(p);
  std::vector<int32_t> ta, tb, tc;
  for (int i = 0; i < 64; ++i) {
    ta.push_back(a.Sample(logits).token);
    tb.push_back(b.Sample(logits).token);
    tc.push_back(c.Sample(logits).token);
  }
  EXPECT_EQ(ta, tb);
  EXPECT_NE(ta, tc);
}

TEST(SamplerTest, FrequenciesFollowTheSoftmax) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 7;
  Sampler s = Make(p);
  const std::vector<float> logits = LogitsOf({0.5, 0.3, 0.2});
  std::vector<int> counts(3, 0);
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) ++counts[s.Sample(logits).token];
  EXPECT_NEAR(counts[0] / double(draws), 0.5, 0.02);
  EXPECT_NEAR(counts[1] / double(draws), 0.3, 0.02);
  EXPECT_NEAR(counts[2] / double(draws), 0.2, 0.02);
}

TEST(SamplerTest, TopKOneIsGreedyAtAnyTemperature) {
  SamplingParams p;
  p.temperature = 5.0f;
  p.top_k = 1;
  p.seed = 1;
  Sampler s = Make(p);
  const std::vector<float> logits = {0.0f, 0.3f, 0.2f, 0.1f};
  for (int i = 0; i < 100; ++i) EXPECT_EQ(s.Sample(logits).token, 1);
}

TEST(SamplerTest, TopPKeepsTheSmallestSetReachingP) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.75f;  // 0.5 + 0.3 reaches it: token 2 and 3 never drawn
  p.seed = 3;
  Sampler s = Make(p);
  const std::vector<float> logits = LogitsOf({0.5, 0.3, 0.15, 0.05});
  std::vector<int> counts(4, 0);
  for (int i = 0; i < 5000; ++i) ++counts[s.Sample(logits).token];
  EXPECT_GT(counts[0], 0);
  EXPECT_GT(counts[1], 0);
  EXPECT_EQ(counts[2], 0);
  EXPECT_EQ(counts[3], 0);
}

TEST(SamplerTest, MinPDropsUnlikelyTokens) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.min_p = 0.35f;  // floor 0.175: keeps 0.5 and 0.3, drops 0.15 and 0.05
  p.seed = 4;
  Sampler s = Make(p);
  const std::vector<float> logits = LogitsOf({0.5, 0.3, 0.15, 0.05});
  std::vector<int> counts(4, 0);
  for (int i = 0; i < 5000; ++i) ++counts[s.Sample(logits).token];
  EXPECT_GT(counts[1], 0);
  EXPECT_EQ(counts[2] + counts[3], 0);
}

TEST(SamplerTest, RepetitionPenaltyCoversPromptAndOutput) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  Sampler s = Make(p, {0});
  // Token 0: 3.0 / 2 = 1.5 < 2.0, so greedy moves to token 1, which then is penalized too.
  const std::vector<float> logits = {3.0f, 2.0f, 1.2f};
  EXPECT_EQ(s.Sample(logits).token, 1);
  EXPECT_EQ(s.Sample(logits).token, 0);  // 1.5 vs 1.0 vs 1.2
}

TEST(SamplerTest, PresenceAndFrequencyPenaltiesCountGeneratedTokens) {
  SamplingParams p;
  p.frequency_penalty = 0.4f;
  p.presence_penalty = 0.1f;
  Sampler s = Make(p, {1, 1, 1});  // the prompt does not count
  const std::vector<float> logits = {1.0f, 0.95f};
  EXPECT_EQ(s.Sample(logits).token, 0);  // 1.0 vs 0.95
  EXPECT_EQ(s.Sample(logits).token, 1);  // 1.0 - 0.5 vs 0.95
  EXPECT_EQ(s.generated(), (std::vector<int32_t>{0, 1}));
}

TEST(SamplerTest, LogprobsComeFromTheRawLogits) {
  SamplingParams p;
  p.top_logprobs = 2;
  p.repetition_penalty = 10.0f;  // changes the choice, not the reported logprobs
  Sampler s = Make(p, {2});
  const std::vector<float> logits = LogitsOf({0.2, 0.1, 0.7});
  const SampleResult r = s.Sample(logits);
  EXPECT_EQ(r.token, 0);
  EXPECT_NEAR(r.logprob, std::log(0.2), 1e-6);
  ASSERT_EQ(r.top.size(), 2u);
  EXPECT_EQ(r.top[0].token, 2);
  EXPECT_NEAR(r.top[0].logprob, std::log(0.7), 1e-6);
  EXPECT_EQ(r.top[1].token, 0);
}

TEST(SamplerTest, LogprobOnlyWhenAsked) {
  const std::vector<float> logits = LogitsOf({0.2, 0.1, 0.7});
  SamplingParams p;  // greedy, no logprobs asked: the log-softmax is skipped
  SampleResult r = Make(p).Sample(logits);
  EXPECT_EQ(r.token, 2);
  EXPECT_EQ(r.logprob, 0.0f);
  EXPECT_TRUE(r.top.empty());
  p.logprobs = true;
  r = Make(p).Sample(logits);
  EXPECT_EQ(r.token, 2);
  EXPECT_NEAR(r.logprob, std::log(0.7), 1e-6);
  EXPECT_TRUE(r.top.empty());
}

TEST(SamplerTest, RejectsOutOfRangeParams) {
  auto bad = [](auto mutate) {
    SamplingParams p;
    mutate(p);
    return Sampler::Create(p, {}).status().code();
  };
  EXPECT_EQ(bad([](SamplingParams& p) { p.temperature = -1; }), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](SamplingParams& p) { p.top_k = -2; }), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](SamplingParams& p) { p.top_p = 0; }), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](SamplingParams& p) { p.min_p = 1.5f; }), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](SamplingParams& p) { p.repetition_penalty = 0; }),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](SamplingParams& p) { p.top_logprobs = 21; }),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace afd::attention
