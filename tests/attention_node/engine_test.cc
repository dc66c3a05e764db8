// Tests of Engine::Step behaviour on the m2-tiny / text01-tiny fixtures: validation leaves the
// cache untouched, logits modes, positions advance, and the prefill agrees with decoding the
// same tokens one at a time. (Numerical agreement with transformers is tests/golden.)
#include "attention_node/engine.h"

#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "attention_node/in_process_expert_backend.h"
#include "attention_node/kv_cache.h"
#include "attention_node/model_weights.h"
#include "common/kernels/thread_pool.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "gtest/gtest.h"

namespace afd::attention {
namespace {

class EngineTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const char* data = std::getenv("AFD_TEST_DATA");
    ASSERT_NE(data, nullptr) << "AFD_TEST_DATA is set by ctest";
    const std::string dir = std::string(data) + "/golden/" + GetParam();
    config_ = LoadModelConfig(dir).value();
    checkpoint_ = Checkpoint::Open(dir).value();
    weights_ = ModelWeights::Load(config_, *checkpoint_).value();
    backend_ = InProcessExpertBackend::Create(config_, *checkpoint_, &pool_).value();
    KvCacheOptions options;
    options.num_blocks = 8;
    options.block_size = 4;
    options.max_sequences = 3;
    cache_ = KvCache::Create(config_, options).value();
    engine_ = std::make_unique<Engine>(weights_.get(), cache_.get(), backend_.get(), &pool_);
  }

  float MaxAbsDiff(const float* a, const float* b, int64_t n) {
    float m = 0;
    for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
  }

  kernels::ThreadPool pool_{2};
  ModelConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<ModelWeights> weights_;
  std::unique_ptr<InProcessExpertBackend> backend_;
  std::unique_ptr<KvCache> cache_;
  std::unique_ptr<Engine> engine_;
};

TEST_P(EngineTest, InvalidInputsLeaveTheCacheUntouched) {
  const int seq = cache_->AddSequence().value();
  const int64_t free = cache_->free_blocks();
  const std::vector<int32_t> ok = {1, 2, 3};
  const std::vector<int32_t> bad_token = {1, config_.vocab_size};
  const std::vector<int32_t> negative = {-1};
  StepOutput out;
  auto step = [&](std::vector<StepInput> batch) { return engine_->Step(batch, &out).code(); };
  EXPECT_EQ(step({{seq, bad_token}}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(step({{seq, negative}}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(step({{seq, {}}}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(step({{seq + 1, ok}}), absl::StatusCode::kInvalidArgument);  // not live
  EXPECT_EQ(step({{seq, ok}, {seq, ok}}), absl::StatusCode::kInvalidArgument);
  const std::vector<int32_t> too_long(8 * 4 + 1, 5);
  EXPECT_EQ(step({{seq, too_long}}), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(cache_->Length(seq), 0);
  EXPECT_EQ(cache_->free_blocks(), free);
  // The sequence still works afterwards.
  EXPECT_EQ(step({{seq, ok}}), absl::StatusCode::kOk);
  EXPECT_EQ(cache_->Length(seq), 3);
}

TEST_P(EngineTest, LogitsModesSelectRows) {
  const int a = cache_->AddSequence().value();
  const int b = cache_->AddSequence().value();
  const int c = cache_->AddSequence().value();
  const std::vector<int32_t> tokens = {5, 9, 11, 2, 7};
  StepOutput out;
  ASSERT_TRUE(engine_
                  ->Step({{a, tokens, LogitsMode::kAll},
                          {b, tokens, LogitsMode::kNone},
                          {c, tokens, LogitsMode::kLast}},
                         &out)
                  .ok());
  const int v = config_.vocab_size;
  EXPECT_EQ(out.num_rows, (std::vector<int64_t>{5, 0, 1}));
  EXPECT_EQ(out.first_row, (std::vector<int64_t>{0, 5, 5}));
  ASSERT_EQ(out.logits.size(), size_t{6} * v);
  // Same tokens in another sequence of the same batch: same last-row logits.
  EXPECT_LE(MaxAbsDiff(out.Row(4, v), out.Row(5, v), v), 1e-5f);
  EXPECT_EQ(cache_->Length(a), 5);
  EXPECT_EQ(cache_->Length(b), 5);
  // A step that asks for no logits still advances the sequence.
  ASSERT_TRUE(engine_->Step({{b, {&tokens[0], 1}, LogitsMode::kNone}}, &out).ok());
  EXPECT_TRUE(out.logits.empty());
  EXPECT_EQ(out.num_rows, (std::vector<int64_t>{0}));
  EXPECT_EQ(cache_->Length(b), 6);
}

TEST_P(EngineTest, PrefillAgreesWithTokenByTokenDecode) {
  const int a = cache_->AddSequence().value();
  const int b = cache_->AddSequence().value();
  const std::vector<int32_t> tokens = {3, 14, 15, 92, 65, 35, 89, 79, 32, 38};
  const int v = config_.vocab_size;
  StepOutput prefill;
  ASSERT_TRUE(engine_->Step({{a, tokens, LogitsMode::kAll}}, &prefill).ok());
  for (size_t i = 0; i < tokens.size(); ++i) {
    StepOutput out;
    ASSERT_TRUE(engine_->Step({{b, {&tokens[i], 1}, LogitsMode::kLast}}, &out).ok());
    EXPECT_LE(MaxAbsDiff(out.Row(0, v), prefill.Row(i, v), v), 1e-4f) << "position " << i;
  }
  EXPECT_EQ(cache_->Length(b), 10);
}

TEST_P(EngineTest, ProfilingChangesNoResultAndTimesEveryStage) {
  const std::vector<int32_t> tokens = {3, 14, 15, 92, 65, 35, 89};
  const int v = config_.vocab_size;
  StepOutput plain[2], profiled[2];
  StepProfile profile;
  for (int run = 0; run < 2; ++run) {
    StepOutput* out = run == 0 ? plain : profiled;
    engine_->set_profile(run == 0 ? nullptr : &profile);
    backend_->set_profile(run == 0 ? nullptr : &profile);
    const int seq = cache_->AddSequence().value();
    ASSERT_TRUE(engine_->Step({{seq, tokens, LogitsMode::kAll}}, &out[0]).ok());
    ASSERT_TRUE(engine_->Step({{seq, {&tokens[1], 1}, LogitsMode::kLast}}, &out[1]).ok());
    ASSERT_TRUE(cache_->FreeSequence(seq).ok());
  }
  engine_->set_profile(nullptr);
  backend_->set_profile(nullptr);
  EXPECT_EQ(plain[0].logits, profiled[0].logits);
  EXPECT_EQ(plain[1].logits, profiled[1].logits);
  ASSERT_EQ(plain[1].logits.size(), size_t(v));
  EXPECT_EQ(profile.steps, 2);
  EXPECT_GT(profile.step_seconds, 0.0);
  for (ProfileStage s : {ProfileStage::kAttnProj, ProfileStage::kAttnCore, ProfileStage::kRouter,
                         ProfileStage::kExpertFfn, ProfileStage::kLmHead}) {
    EXPECT_GT(profile.Get(s), 0.0) << ProfileStageName(s);
  }
  double timed = 0;
  for (double sec : profile.seconds) timed += sec;
  EXPECT_LE(timed, profile.step_seconds * 1.0001);
  // Every weight the two steps read: attention, router and lm_head twice, plus experts.
  int64_t dense = weights_->lm_head().Bytes();
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    const LayerWeights& lw = weights_->layer(l);
    dense += lw.router.Bytes();
    dense += lw.linear ? lw.lightning.qkv_proj.Bytes() + lw.lightning.output_gate.Bytes() +
                             lw.lightning.out_proj.Bytes()
                       : lw.full.q_proj.Bytes() + lw.full.k_proj.Bytes() + lw.full.v_proj.Bytes() +
                             lw.full.o_proj.Bytes();
  }
  EXPECT_GT(profile.weight_bytes, 2 * dense);
}

INSTANTIATE_TEST_SUITE_P(Models, EngineTest, ::testing::Values("m2-tiny", "text01-tiny"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& ch : name) {
                             if (ch == '-') ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace afd::attention
