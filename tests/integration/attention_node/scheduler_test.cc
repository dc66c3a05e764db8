// The Scheduler in process (every expert local): continuous batching and chunked prefill give
// each sequence what a lone run gives; micro-batch lanes; admission, queueing and refusals;
// preemption; Abort freeing KV blocks before the next step; stop conditions, seeds, logprobs,
// teacher forcing; shutdown.
#include "attention_node/service/scheduler.h"

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "attention_node/in_process_expert_backend.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "gtest/gtest.h"
#include "tests/integration/common/local_cluster.h"

namespace afd::attention {
namespace {

using integration::BitwiseEqual;
using integration::GoldenModelDir;
using integration::ReferenceEngine;
using integration::ReferenceRun;

// Everything one request's sink received.
class Collector {
 public:
  UpdateSink Sink() {
    return [this](GenerationUpdate u) {
      absl::MutexLock lock(&mu_);
      ++updates_;
      if (on_update_) on_update_(u);
      tokens_.insert(tokens_.end(), u.tokens.begin(), u.tokens.end());
      for (const SampleResult& r : u.logprobs) results_.push_back(r);
      logits_.insert(logits_.end(), u.logits.begin(), u.logits.end());
      if (!u.prompt_logits.empty()) prompt_logits_ = u.prompt_logits;
      if (!u.status.ok() || u.finish != FinishReason::kNone) {
        finish_ = u.finish;
        status_ = u.status;
        completion_tokens_ = u.completion_tokens;
        done_ = true;
      }
    };
  }
  void Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
  }
  // Runs on the scheduler thread for every update, before it is recorded.
  void OnUpdate(std::function<void(const GenerationUpdate&)> fn) { on_update_ = std::move(fn); }

  std::vector<int32_t> tokens() {
    absl::MutexLock l(&mu_);
    return tokens_;
  }
  std::vector<SampleResult> results() {
    absl::MutexLock l(&mu_);
    return results_;
  }
  std::vector<float> logprobs() {
    absl::MutexLock l(&mu_);
    std::vector<float> out;
    for (const SampleResult& r : results_) out.push_back(r.logprob);
    return out;
  }
  std::vector<float> logits() {
    absl::MutexLock l(&mu_);
    return logits_;
  }
  std::vector<float> prompt_logits() {
    absl::MutexLock l(&mu_);
    return prompt_logits_;
  }
  FinishReason finish() {
    absl::MutexLock l(&mu_);
    return finish_;
  }
  absl::Status status() {
    absl::MutexLock l(&mu_);
    return status_;
  }
  int updates() {
    absl::MutexLock l(&mu_);
    return updates_;
  }
  int64_t completion_tokens() {
    absl::MutexLock l(&mu_);
    return completion_tokens_;
  }

 private:
  absl::Mutex mu_;
  std::function<void(const GenerationUpdate&)> on_update_;
  std::vector<int32_t> tokens_;
  std::vector<SampleResult> results_;
  std::vector<float> logits_;
  std::vector<float> prompt_logits_;
  FinishReason finish_ = FinishReason::kNone;
  absl::Status status_;
  int64_t completion_tokens_ = 0;
  int updates_ = 0;
  bool done_ = false;
};

GenerationRequest Greedy(const std::string& id, std::vector<int32_t> prompt, int max_tokens,
                         bool logits = false) {
  GenerationRequest r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  r.logprobs = true;
  r.return_logits = logits;
  r.return_prompt_logits = logits;
  return r;
}

std::vector<int32_t> RandomPrompt(std::mt19937& rng, int length, int vocab) {
  std::uniform_int_distribution<int32_t> id(3, vocab - 1);
  std::vector<int32_t> p(length);
  for (int32_t& t : p) t = id(rng);
  return p;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

class SchedulerTest : public ::testing::Test {
 protected:
  // Loads `model` and starts a scheduler with `lanes` in-process lanes.
  void Start(const std::string& model, const KvCacheOptions& cache_options,
             const SchedulerOptions& options, int lanes = 1) {
    model_dir_ = GoldenModelDir(model);
    absl::StatusOr<ModelConfig> config = LoadModelConfig(model_dir_);
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
    absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(model_dir_);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    checkpoint_ = std::move(*checkpoint);
    absl::StatusOr<std::unique_ptr<ModelWeights>> weights =
        ModelWeights::Load(config_, *checkpoint_);
    ASSERT_TRUE(weights.ok()) << weights.status();
    weights_ = std::move(*weights);
    absl::StatusOr<std::unique_ptr<KvCache>> cache = KvCache::Create(config_, cache_options);
    ASSERT_TRUE(cache.ok()) << cache.status();
    cache_ = std::move(*cache);
    std::vector<SchedulerLane> scheduler_lanes;
    for (int i = 0; i < lanes; ++i) {
      absl::StatusOr<std::unique_ptr<InProcessExpertBackend>> backend =
          InProcessExpertBackend::Create(config_, *checkpoint_, nullptr);
      ASSERT_TRUE(backend.ok()) << backend.status();
      backends_.push_back(std::move(*backend));
      scheduler_lanes.push_back({backends_.back().get(), nullptr});
    }
    absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
        Scheduler::Create(weights_.get(), cache_.get(), scheduler_lanes, options);
    ASSERT_TRUE(scheduler.ok()) << scheduler.status();
    scheduler_ = std::move(*scheduler);
    absl::StatusOr<std::unique_ptr<ReferenceEngine>> reference =
        ReferenceEngine::Create(model_dir_);
    ASSERT_TRUE(reference.ok()) << reference.status();
    reference_ = std::move(*reference);
  }

  void TearDown() override {
    scheduler_.reset();  // before the cache and backends it borrows
  }

  ReferenceRun Reference(const std::vector<int32_t>& prompt, int max_tokens) {
    absl::StatusOr<ReferenceRun> run = reference_->Greedy(prompt, max_tokens);
    EXPECT_TRUE(run.ok()) << run.status();
    return run.ok() ? *run : ReferenceRun();
  }

  // Submits `count` random greedy requests (prompts of 1..max_prompt tokens, 2..max_new new
  // tokens) at once and checks every sequence against its lone in-process run.
  void CheckConcurrentRequests(int count, int max_prompt, int max_new, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<std::vector<int32_t>> prompts;
    std::vector<int> lengths;
    std::vector<std::unique_ptr<Collector>> collectors;
    for (int i = 0; i < count; ++i) {
      prompts.push_back(
          RandomPrompt(rng, 1 + static_cast<int>(rng() % max_prompt), config_.vocab_size));
      lengths.push_back(2 + static_cast<int>(rng() % (max_new - 1)));
      collectors.push_back(std::make_unique<Collector>());
      ASSERT_TRUE(scheduler_
                      ->Submit(Greedy(absl::StrCat("r", i), prompts[i], lengths[i], true),
                               collectors[i]->Sink())
                      .ok());
    }
    for (int i = 0; i < count; ++i) {
      SCOPED_TRACE(absl::StrCat("request ", i, " prompt ", prompts[i].size(), " new ", lengths[i]));
      collectors[i]->Wait();
      ASSERT_TRUE(collectors[i]->status().ok()) << collectors[i]->status();
      const ReferenceRun ref = Reference(prompts[i], lengths[i]);
      EXPECT_EQ(collectors[i]->tokens(), ref.tokens);
      EXPECT_EQ(collectors[i]->finish(), FinishReason::kLength);
      // Batch composition and chunking change the kernels' summation order, not the result
      // beyond float noise.
      EXPECT_LE(MaxAbsDiff(collectors[i]->logits(), ref.logits), 1e-5f);
      EXPECT_LE(MaxAbsDiff(collectors[i]->prompt_logits(), ref.prompt_logits), 1e-5f);
    }
    const SchedulerLoad load = scheduler_->Load();
    EXPECT_EQ(load.free_kv_blocks, load.total_kv_blocks);
    EXPECT_EQ(load.running, 0);
    EXPECT_EQ(load.waiting, 0);
  }

  std::string model_dir_;
  ModelConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<ModelWeights> weights_;
  std::unique_ptr<KvCache> cache_;
  std::vector<std::unique_ptr<InProcessExpertBackend>> backends_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<ReferenceEngine> reference_;
};

TEST_F(SchedulerTest, LoneSequenceEqualsTheEngineBitwise) {
  Start("m2-tiny", {64, 16, 8}, {});
  const std::vector<int32_t> prompt = {5, 17, 99, 4, 250, 31, 8};
  Collector c;
  ASSERT_TRUE(scheduler_->Submit(Greedy("a", prompt, 12, true), c.Sink()).ok());
  c.Wait();
  ASSERT_TRUE(c.status().ok()) << c.status();
  const ReferenceRun ref = Reference(prompt, 12);
  EXPECT_EQ(c.tokens(), ref.tokens);
  EXPECT_TRUE(BitwiseEqual(c.prompt_logits(), ref.prompt_logits));
  EXPECT_TRUE(BitwiseEqual(c.logits(), ref.logits));
  EXPECT_TRUE(BitwiseEqual(c.logprobs(), ref.logprobs));
  EXPECT_EQ(c.finish(), FinishReason::kLength);
  EXPECT_EQ(c.completion_tokens(), 12);
  EXPECT_EQ(c.updates(), 12);  // one update per step
}

TEST_F(SchedulerTest, ProfileCountsEveryStepAndWhereItsTimeWent) {
  Start("m2-tiny", {64, 16, 8}, {});
  EXPECT_EQ(scheduler_->Profile().steps, 0);
  const std::vector<int32_t> prompt = {5, 17, 99, 4, 250, 31, 8};
  Collector c;
  ASSERT_TRUE(scheduler_->Submit(Greedy("a", prompt, 12), c.Sink()).ok());
  c.Wait();
  ASSERT_TRUE(c.status().ok()) << c.status();
  // The profile is published after the step's updates went out: wait for the last one.
  StepProfile p;
  for (int i = 0; i < 2000 && (p = scheduler_->Profile()).steps < 12; ++i) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  // One prompt step of 7 tokens, then 11 single-token steps.
  EXPECT_EQ(p.steps, 12);
  EXPECT_EQ(p.tokens, 7 + 11);
  EXPECT_GT(p.weight_bytes, 0);
  for (ProfileStage stage :
       {ProfileStage::kAttnProj, ProfileStage::kAttnCore, ProfileStage::kRouter,
        ProfileStage::kExpertFfn, ProfileStage::kLmHead, ProfileStage::kSampling}) {
    EXPECT_GT(p.Get(stage), 0) << ProfileStageName(stage);
  }
  for (int s = 0; s < StepProfile::kStages; ++s) EXPECT_GE(p.seconds[s], 0) << s;
  // The engine stages lie inside the steps; the total adds the work around them.
  EXPECT_GE(p.Untimed(), -1e-6);
  EXPECT_GT(p.Total(), p.step_seconds);
}

TEST_F(SchedulerTest, ConcurrentSequencesWithChunkedPrefillMatchLoneRuns) {
  // 24-token steps: long prompts are chunked and share steps with other sequences' decodes.
  SchedulerOptions options;
  options.max_batch_tokens = 24;
  Start("m2-tiny", {128, 16, 16}, options);
  CheckConcurrentRequests(12, 40, 10, 1);
  EXPECT_GT(scheduler_->Load().steps, 10u);
}

TEST_F(SchedulerTest, MicroBatchLanesMatchLoneRuns) {
  SchedulerOptions options;
  options.micro_batches = 3;
  Start("m2-medium", {128, 16, 16}, options, /*lanes=*/3);
  CheckConcurrentRequests(9, 30, 8, 2);
}

TEST_F(SchedulerTest, LinearAttentionModelBatchesAndChunks) {
  SchedulerOptions options;
  options.max_batch_tokens = 20;
  options.micro_batches = 2;
  Start("text01-tiny", {64, 16, 16}, options, /*lanes=*/2);
  CheckConcurrentRequests(8, 45, 8, 3);
}

TEST_F(SchedulerTest, RequestsWaitForKvSpaceAndAllFinish) {
  // 6 blocks of 16 tokens: each request is admitted with 3 blocks (its 40-token prompt and the
  // first new token) and never needs more (40 + 8 tokens), so at most two run at once. The
  // first request's first token submits the other four, so they arrive together.
  Start("m2-tiny", {6, 16, 8}, {});
  std::mt19937 rng(4);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::unique_ptr<Collector>> collectors;
  for (int i = 0; i < 5; ++i) {
    prompts.push_back(RandomPrompt(rng, 40, config_.vocab_size));
    collectors.push_back(std::make_unique<Collector>());
  }
  std::atomic<int> max_running{0}, max_waiting{0};
  for (int i = 0; i < 5; ++i) {
    collectors[i]->OnUpdate([&, i](const GenerationUpdate& u) {
      const SchedulerLoad load = scheduler_->Load();
      max_running = std::max(max_running.load(), load.running);
      max_waiting = std::max(max_waiting.load(), load.waiting);
      if (i == 0 && u.completion_tokens == 1) {
        for (int j = 1; j < 5; ++j) {
          EXPECT_TRUE(scheduler_
                          ->Submit(Greedy(absl::StrCat("w", j), prompts[j], 8),
                                   collectors[j]->Sink())
                          .ok());
        }
      }
    });
  }
  ASSERT_TRUE(scheduler_->Submit(Greedy("w0", prompts[0], 8), collectors[0]->Sink()).ok());
  for (int i = 0; i < 5; ++i) {
    collectors[i]->Wait();
    ASSERT_TRUE(collectors[i]->status().ok()) << collectors[i]->status();
    EXPECT_EQ(collectors[i]->tokens(), Reference(prompts[i], 8).tokens) << i;
  }
  EXPECT_EQ(max_running.load(), 2);
  EXPECT_GE(max_waiting.load(), 1);
  EXPECT_EQ(scheduler_->Load().preemptions, 0u);
  EXPECT_EQ(scheduler_->Load().free_kv_blocks, 6);
}

TEST_F(SchedulerTest, DecodeOutgrowingTheCachePreemptsAndRecomputes) {
  // 5 blocks = 80 tokens. `a` (20 + 60 tokens) needs the whole cache by its end; `b` arrives
  // right after a's first token, is admitted beside it and must give its blocks back.
  Start("m2-tiny", {5, 16, 8}, {});
  std::mt19937 rng(5);
  std::vector<std::vector<int32_t>> prompts = {RandomPrompt(rng, 20, config_.vocab_size),
                                               RandomPrompt(rng, 20, config_.vocab_size)};
  Collector a, b;
  a.OnUpdate([&](const GenerationUpdate& u) {
    if (u.completion_tokens == 1) {
      EXPECT_TRUE(scheduler_->Submit(Greedy("b", prompts[1], 30), b.Sink()).ok());
    }
  });
  ASSERT_TRUE(scheduler_->Submit(Greedy("a", prompts[0], 60), a.Sink()).ok());
  a.Wait();
  b.Wait();
  ASSERT_TRUE(a.status().ok()) << a.status();
  ASSERT_TRUE(b.status().ok()) << b.status();
  EXPECT_EQ(a.tokens(), Reference(prompts[0], 60).tokens);
  EXPECT_EQ(b.tokens(), Reference(prompts[1], 30).tokens);
  EXPECT_GE(scheduler_->Load().preemptions, 1u);
  EXPECT_EQ(scheduler_->Load().free_kv_blocks, 5);
}

TEST_F(SchedulerTest, RefusesWhatCannotBeServed) {
  SchedulerOptions options;
  options.max_prompt_tokens = 1100;
  options.max_queue_depth = 1;
  Start("m2-tiny", {64, 16, 2}, options);  // 1024 tokens of KV, two sequences
  Collector c;
  auto code = [&](GenerationRequest r) {
    return scheduler_->Submit(std::move(r), c.Sink()).code();
  };
  EXPECT_EQ(code(Greedy("", {1, 2}, 4)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Greedy("e", {}, 4)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Greedy("v", {1, 1000}, 4)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Greedy("n", {1, -1}, 4)), absl::StatusCode::kInvalidArgument);
  GenerationRequest forced = Greedy("f", {1, 2}, 4);
  forced.forced_tokens = {7, 5000};
  EXPECT_EQ(code(forced), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Greedy("l", std::vector<int32_t>(1101, 7), 4)),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Greedy("k", std::vector<int32_t>(1024, 7), 4)),
            absl::StatusCode::kResourceExhausted);
  GenerationRequest bad = Greedy("s", {1, 2}, 4);
  bad.sampling.top_p = 0;
  EXPECT_EQ(code(bad), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.updates(), 0);

  // Two long-running sequences take both slots; one more may wait, the next is refused; a
  // repeated id is refused too.
  Collector r0, r1, w, x, y;
  ASSERT_TRUE(scheduler_->Submit(Greedy("r0", {9, 9, 9}, 4000), r0.Sink()).ok());
  ASSERT_TRUE(scheduler_->Submit(Greedy("r1", {8, 8, 8}, 4000), r1.Sink()).ok());
  while (scheduler_->Load().running < 2) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(scheduler_->Submit(Greedy("r0", {1}, 4), y.Sink()).code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(scheduler_->Submit(Greedy("w", {3, 4}, 2), w.Sink()).ok());
  ASSERT_TRUE(scheduler_->Submit(Greedy("x", {3, 4}, 2), x.Sink()).ok());
  x.Wait();
  EXPECT_EQ(x.status().code(), absl::StatusCode::kResourceExhausted) << x.status();
  EXPECT_TRUE(x.tokens().empty());
  EXPECT_EQ(scheduler_->Load().waiting, 1);
  EXPECT_EQ(scheduler_->Abort("nobody").code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(scheduler_->Abort("r0").ok());
  ASSERT_TRUE(scheduler_->Abort("r1").ok());
  w.Wait();
  EXPECT_TRUE(w.status().ok()) << w.status();
  EXPECT_EQ(w.tokens().size(), 2u);
}

TEST_F(SchedulerTest, AbortFreesTheKvBlocksBeforeTheNextStep) {
  Start("m2-tiny", {64, 16, 8}, {});
  Collector c;
  std::atomic<uint64_t> abort_step{0};
  uint64_t end_step = 0;
  int64_t free_at_end = -1;
  c.OnUpdate([&](const GenerationUpdate& u) {
    if (u.tokens.size() == 1 && u.completion_tokens == 3) {
      abort_step = scheduler_->Load().steps;
      EXPECT_TRUE(scheduler_->Abort("long").ok());
      EXPECT_LT(scheduler_->Load().free_kv_blocks, 64);
    }
    if (u.finish == FinishReason::kAbort) {
      end_step = scheduler_->Load().steps;
      free_at_end = cache_->free_blocks();  // the scheduler thread owns the cache here
    }
  });
  ASSERT_TRUE(
      scheduler_->Submit(Greedy("long", std::vector<int32_t>(40, 11), 3000), c.Sink()).ok());
  c.Wait();
  EXPECT_EQ(c.finish(), FinishReason::kAbort);
  EXPECT_TRUE(c.status().ok());
  EXPECT_EQ(c.tokens().size(), 3u);
  EXPECT_EQ(end_step, abort_step.load());  // no further step ran
  EXPECT_EQ(free_at_end, 64);
  EXPECT_EQ(scheduler_->Abort("long").code(), absl::StatusCode::kNotFound);
}

TEST_F(SchedulerTest, StopTokensEndTheSequence) {
  Start("m2-tiny", {64, 16, 8}, {});
  const std::vector<int32_t> prompt = {12, 40, 7, 300, 2, 9};
  const ReferenceRun ref = Reference(prompt, 10);
  const int32_t stop = ref.tokens[4];
  const size_t first = std::find(ref.tokens.begin(), ref.tokens.end(), stop) - ref.tokens.begin();
  GenerationRequest r = Greedy("s", prompt, 10);
  r.stop_token_ids = {stop};
  Collector c;
  ASSERT_TRUE(scheduler_->Submit(r, c.Sink()).ok());
  c.Wait();
  EXPECT_EQ(c.finish(), FinishReason::kStop);
  EXPECT_EQ(c.tokens(), std::vector<int32_t>(ref.tokens.begin(), ref.tokens.begin() + first + 1));
}

TEST_F(SchedulerTest, SeededSamplingRepeatsAndReportsTopLogprobs) {
  Start("m2-tiny", {64, 16, 8}, {});
  auto run = [&](uint64_t seed) {
    GenerationRequest r = Greedy(absl::StrCat("seed", seed), {4, 8, 15, 16, 23, 42}, 16, true);
    r.sampling.temperature = 1.5f;
    r.sampling.top_p = 0.95f;
    r.sampling.seed = seed;
    r.sampling.top_logprobs = 3;
    auto c = std::make_unique<Collector>();
    EXPECT_TRUE(scheduler_->Submit(r, c->Sink()).ok());
    c->Wait();
    return c;
  };
  auto a = run(7), b = run(7), other = run(8);
  EXPECT_EQ(a->tokens(), b->tokens());
  EXPECT_NE(a->tokens(), other->tokens());
  const std::vector<SampleResult> results = a->results();
  const std::vector<float> logits = a->logits();
  ASSERT_EQ(results.size(), 16u);
  const int v = config_.vocab_size;
  for (size_t t = 0; t < results.size(); ++t) {
    ASSERT_EQ(results[t].top.size(), 3u);
    const float* row = logits.data() + t * v;
    EXPECT_EQ(results[t].top[0].token, std::max_element(row, row + v) - row);
    EXPECT_GE(results[t].top[0].logprob, results[t].logprob);
  }
}

TEST_F(SchedulerTest, ForcedTokensAreFollowedWithTheirLogprobs) {
  Start("m2-tiny", {64, 16, 8}, {});
  const std::vector<int32_t> prompt = {3, 1, 4, 1, 5};
  GenerationRequest r = Greedy("f", prompt, 0, true);
  r.forced_tokens = {9, 2, 6, 5, 3};  // 2 is eos: forcing ignores stop conditions
  r.ignore_eos = false;
  Collector c;
  ASSERT_TRUE(scheduler_->Submit(r, c.Sink()).ok());
  c.Wait();
  EXPECT_EQ(c.tokens(), r.forced_tokens);
  EXPECT_EQ(c.finish(), FinishReason::kLength);
  const std::vector<float> logits = c.logits();
  const std::vector<float> logprobs = c.logprobs();
  const int v = config_.vocab_size;
  ASSERT_EQ(logits.size(), r.forced_tokens.size() * v);
  for (size_t t = 0; t < r.forced_tokens.size(); ++t) {
    double z = 0;
    for (int i = 0; i < v; ++i) z += std::exp(static_cast<double>(logits[t * v + i]));
    EXPECT_NEAR(logprobs[t], logits[t * v + r.forced_tokens[t]] - std::log(z), 1e-5);
  }
}

TEST_F(SchedulerTest, ShutdownFailsOutstandingRequests) {
  Start("m2-tiny", {64, 16, 1}, {});  // one slot: b waits behind a
  Collector running, waiting;
  ASSERT_TRUE(scheduler_->Submit(Greedy("a", {5, 6}, 4000), running.Sink()).ok());
  ASSERT_TRUE(scheduler_->Submit(Greedy("b", {5, 6}, 4000), waiting.Sink()).ok());
  scheduler_->Shutdown();
  running.Wait();
  waiting.Wait();
  EXPECT_EQ(running.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(waiting.status().code(), absl::StatusCode::kUnavailable);
  Collector late;
  EXPECT_EQ(scheduler_->Submit(Greedy("c", {5}, 1), late.Sink()).code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace afd::attention
