// Engine self-consistency on checkpoints the golden set does not cover, generated with
// afd-gen-checkpoint's presets (tiny bf16, tiny FP8, text01-tiny): one-shot prefill, chunked
// prefill (Text-01: block path then recurrence), and token-by-token decode agree within 1e-4,
// a batch of different-length sequences equals each sequence run alone within 1e-5, and the
// thread count never changes a bit.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "attention_node/engine.h"
#include "attention_node/in_process_expert_backend.h"
#include "attention_node/kv_cache.h"
#include "attention_node/model_weights.h"
#include "common/checkpoint_gen.h"
#include "common/kernels/thread_pool.h"
#include "common/weights.h"
#include "gtest/gtest.h"

namespace afd::attention {
namespace {

struct Case {
  std::string preset;
  GenWeightDType dtype;
  std::string name;
};

class EngineConsistencyTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/afd_engine_consistency_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    CheckpointPreset preset = FindCheckpointPreset(GetParam().preset).value();
    GenCheckpointOptions gen;
    gen.dtype = GetParam().dtype;
    gen.seed = 1234;
    gen.spelling = preset.spelling;
    gen.fp8_block = 48;  // 64- and 128-wide tiny matrices end in ragged 16- and 32-wide blocks
    ASSERT_TRUE(GenerateCheckpoint(preset.config, dir_, gen).ok());
    config_ = LoadModelConfig(dir_).value();
    checkpoint_ = Checkpoint::Open(dir_).value();
    ASSERT_TRUE(ValidateCheckpoint(config_, *checkpoint_).ok());
    weights_ = ModelWeights::Load(config_, *checkpoint_).value();
    backend_ = InProcessExpertBackend::Create(config_, *checkpoint_, &pool_).value();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A fresh engine over a cache for `seqs` sequences of up to 64 tokens.
  void Fresh(int seqs) {
    KvCacheOptions options;
    options.block_size = 8;
    options.max_sequences = seqs;
    options.num_blocks = seqs * 8;
    cache_ = KvCache::Create(config_, options).value();
    engine_ = std::make_unique<Engine>(weights_.get(), cache_.get(), backend_.get(), &pool_);
    engine_->set_min_tile_prompt(1);  // these short prompts exercise the tiles on purpose
  }

  // Logits of every position of `tokens`, fed in chunks of the given sizes (the rest last).
  // prompt: the tokens are prompt tokens (StepInput::prompt_tokens: the tile kernels).
  std::vector<float> RunChunked(const std::vector<int32_t>& tokens, std::vector<int> chunks,
                                bool prompt = false) {
    Fresh(1);
    const int seq = cache_->AddSequence().value();
    std::vector<float> logits;
    size_t pos = 0;
    size_t c = 0;
    while (pos < tokens.size()) {
      const size_t n = c < chunks.size() ? std::min<size_t>(chunks[c++], tokens.size() - pos)
                                         : tokens.size() - pos;
      StepOutput out;
      const absl::Status s =
          engine_->Step({{seq, {tokens.data() + pos, n}, LogitsMode::kAll,
                          prompt ? static_cast<int64_t>(n) : 0}},
                        &out);
      EXPECT_TRUE(s.ok()) << s;
      logits.insert(logits.end(), out.logits.begin(), out.logits.end());
      pos += n;
    }
    return logits;
  }

  std::vector<int32_t> Tokens(int n, int salt) {
    std::vector<int32_t> t(n);
    for (int i = 0; i < n; ++i) t[i] = (i * 37 + salt * 101 + 11) % config_.vocab_size;
    return t;
  }

  static float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    float m = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
      m = std::max(m, std::fabs(a[i] - b[i]));
    }
    return m;
  }

  kernels::ThreadPool pool_{2};
  std::string dir_;
  ModelConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<ModelWeights> weights_;
  std::unique_ptr<InProcessExpertBackend> backend_;
  std::unique_ptr<KvCache> cache_;
  std::unique_ptr<Engine> engine_;
};

TEST_P(EngineConsistencyTest, ChunkedAndTokenByTokenMatchOneShotPrefill) {
  const std::vector<int32_t> tokens = Tokens(37, 1);  // crosses the 16-token lightning block
  const std::vector<float> one_shot = RunChunked(tokens, {});
  const float chunked = MaxAbsDiff(RunChunked(tokens, {5, 13, 1}), one_shot);
  const float two_chunks = MaxAbsDiff(RunChunked(tokens, {20}), one_shot);
  const float per_token = MaxAbsDiff(RunChunked(tokens, std::vector<int>(37, 1)), one_shot);
  EXPECT_LE(chunked, 1e-4f);
  EXPECT_LE(two_chunks, 1e-4f);
  EXPECT_LE(per_token, 1e-4f);
  std::printf("%s: vs one-shot prefill: chunks 5,13,1,18 %.3e; 20,17 %.3e; per token %.3e\n",
              GetParam().name.c_str(), chunked, two_chunks, per_token);
}

// Prompt tokens on the matrix tiles (where the CPU has them) agree with the vector kernels
// within the golden tolerance, one-shot or chunked.
TEST_P(EngineConsistencyTest, TilePromptMatchesVectorPrompt) {
  const std::vector<int32_t> tokens = Tokens(37, 5);
  const std::vector<float> vector = RunChunked(tokens, {});
  const float one_shot = MaxAbsDiff(RunChunked(tokens, {}, true), vector);
  const float chunked = MaxAbsDiff(RunChunked(tokens, {7, 1, 20}, true), vector);
  EXPECT_LE(one_shot, 1e-4f);
  EXPECT_LE(chunked, 1e-4f);
  std::printf("%s: tile prompt vs vector prompt: one-shot %.3e, chunked %.3e\n",
              GetParam().name.c_str(), one_shot, chunked);
}

// Prompts shorter than Engine::min_tile_prompt() stay on the vector kernels (bitwise the
// vector prompt); a longer prompt fed in chunks keeps every chunk on the tiles when the step
// says how long the whole prompt is (bitwise the one-shot tile prompt).
TEST_P(EngineConsistencyTest, ShortPromptsStayOnTheVectorKernels) {
  Fresh(1);
  EXPECT_EQ(Engine(weights_.get(), cache_.get(), backend_.get(), &pool_).min_tile_prompt(),
            GetParam().dtype == GenWeightDType::kFp8 ? Engine::kMinTilePromptFp8
                                                      : Engine::kMinTilePromptBf16);
  const std::vector<int32_t> tokens = Tokens(37, 5);
  const int v = config_.vocab_size;
  auto run = [&](int64_t threshold, std::vector<int64_t> chunks, bool tell_length) {
    Fresh(1);
    engine_->set_min_tile_prompt(threshold);
    const int seq = cache_->AddSequence().value();
    std::vector<float> logits;
    int64_t pos = 0;
    for (int64_t n : chunks) {
      StepOutput out;
      EXPECT_TRUE(engine_->Step({{seq, {tokens.data() + pos, static_cast<size_t>(n)},
                                  LogitsMode::kAll, n, tell_length ? 37 : 0}},
                                &out)
                      .ok());
      logits.insert(logits.end(), out.logits.begin(), out.logits.begin() + n * v);
      pos += n;
    }
    return logits;
  };
  const std::vector<float> vector = RunChunked(tokens, {});       // prompt_tokens 0
  const std::vector<float> tiles = RunChunked(tokens, {}, true);  // threshold 1 (Fresh)
  EXPECT_EQ(MaxAbsDiff(run(38, {37}, false), vector), 0.0f);       // shorter than the threshold
  EXPECT_EQ(MaxAbsDiff(run(37, {37}, false), tiles), 0.0f);        // exactly the threshold
  // Chunks of 20 and 17 of a 37-token prompt with threshold 30: tiles when the length is told.
  const std::vector<float> chunked_tiles = RunChunked(tokens, {20}, true);
  EXPECT_EQ(MaxAbsDiff(run(30, {20, 17}, true), chunked_tiles), 0.0f);
  EXPECT_EQ(MaxAbsDiff(run(30, {20, 17}, false), RunChunked(tokens, {20})), 0.0f);
}

// A step mixing one sequence's prompt (tiles) with another's generated token (vector
// kernels) gives each token exactly the bits it gets in a step of its own kind.
TEST_P(EngineConsistencyTest, MixedPromptAndDecodeStepKeepsEachTokensBits) {
  const std::vector<int32_t> a = Tokens(9, 6), b = Tokens(21, 7);
  const int v = config_.vocab_size;
  const int32_t next = 5 % v;
  // Alone: a's prompt then one generated token; b's prompt.
  Fresh(2);
  const int sa = cache_->AddSequence().value();
  StepOutput out;
  ASSERT_TRUE(engine_->Step({{sa, a, LogitsMode::kLast, 9}}, &out).ok());
  ASSERT_TRUE(engine_->Step({{sa, {&next, 1}, LogitsMode::kLast}}, &out).ok());
  const std::vector<float> a_decode = out.logits;
  const int sb = cache_->AddSequence().value();
  ASSERT_TRUE(engine_->Step({{sb, b, LogitsMode::kAll, 21}}, &out).ok());
  const std::vector<float> b_prompt = out.logits;
  // Together: a's prompt, then a's generated token in the same step as b's prompt.
  Fresh(2);
  const int ta = cache_->AddSequence().value(), tb = cache_->AddSequence().value();
  ASSERT_TRUE(engine_->Step({{ta, a, LogitsMode::kLast, 9}}, &out).ok());
  ASSERT_TRUE(engine_->Step({{ta, {&next, 1}, LogitsMode::kLast}, {tb, b, LogitsMode::kAll, 21}},
                            &out)
                  .ok());
  const std::vector<float> a_mixed(out.Row(out.first_row[0], v), out.Row(out.first_row[0] + 1, v));
  const std::vector<float> b_mixed(out.Row(out.first_row[1], v),
                                   out.Row(out.first_row[1] + out.num_rows[1], v));
  EXPECT_EQ(MaxAbsDiff(a_mixed, a_decode), 0.0f);
  EXPECT_EQ(MaxAbsDiff(b_mixed, b_prompt), 0.0f);
}

TEST_P(EngineConsistencyTest, BatchOfDifferentLengthsEqualsEachAlone) {
  const std::vector<std::vector<int32_t>> prompts = {Tokens(3, 2), Tokens(29, 3), Tokens(17, 4)};
  const int v = config_.vocab_size;
  // Alone: prefill, then 4 decode steps feeding fixed tokens.
  std::vector<std::vector<float>> alone;
  for (const auto& p : prompts) {
    Fresh(1);
    const int seq = cache_->AddSequence().value();
    StepOutput out;
    ASSERT_TRUE(engine_->Step({{seq, p, LogitsMode::kAll}}, &out).ok());
    std::vector<float> rows = out.logits;
    for (int t = 0; t < 4; ++t) {
      const int32_t next = (t * 7 + 3) % v;
      ASSERT_TRUE(engine_->Step({{seq, {&next, 1}, LogitsMode::kLast}}, &out).ok());
      rows.insert(rows.end(), out.logits.begin(), out.logits.end());
    }
    alone.push_back(rows);
  }
  Fresh(3);
  std::vector<int> seqs;
  std::vector<StepInput> batch;
  for (const auto& p : prompts) {
    seqs.push_back(cache_->AddSequence().value());
    batch.push_back({seqs.back(), p, LogitsMode::kAll});
  }
  std::vector<std::vector<float>> together(prompts.size());
  StepOutput out;
  ASSERT_TRUE(engine_->Step(batch, &out).ok());
  for (size_t i = 0; i < prompts.size(); ++i) {
    together[i].assign(out.Row(out.first_row[i], v),
                       out.Row(out.first_row[i] + out.num_rows[i], v));
  }
  for (int t = 0; t < 4; ++t) {
    const int32_t next = (t * 7 + 3) % v;
    batch.clear();
    for (int s : seqs) batch.push_back({s, {&next, 1}, LogitsMode::kLast});
    ASSERT_TRUE(engine_->Step(batch, &out).ok());
    for (size_t i = 0; i < prompts.size(); ++i) {
      together[i].insert(together[i].end(), out.Row(i, v), out.Row(i + 1, v));
    }
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    const float diff = MaxAbsDiff(together[i], alone[i]);
    EXPECT_LE(diff, 1e-5f) << "sequence " << i;
    std::printf("%s: sequence %zu batched vs alone %.3e\n", GetParam().name.c_str(), i, diff);
  }
}

// A step's per-token work (norms, RoPE, KV writes, router, top-k) is split over the threads by
// tokens once a step is large: any thread count gives the bits of one thread.
TEST_P(EngineConsistencyTest, ThreadCountsGiveTheSameBits) {
  const std::vector<std::vector<int32_t>> prompts = {Tokens(40, 5), Tokens(23, 6)};
  const int v = config_.vocab_size;
  auto run = [&](kernels::ThreadPool* pool) {
    Fresh(2);
    Engine engine(weights_.get(), cache_.get(), backend_.get(), pool);
    std::vector<int> seqs;
    std::vector<StepInput> batch;
    for (const auto& p : prompts) {
      seqs.push_back(cache_->AddSequence().value());
      batch.push_back({seqs.back(), p, LogitsMode::kAll});
    }
    StepOutput out;
    EXPECT_TRUE(engine.Step(batch, &out).ok());
    std::vector<float> logits = out.logits;
    for (int t = 0; t < 3; ++t) {
      const int32_t next = (t * 11 + 5) % v;
      batch.clear();
      for (int s : seqs) batch.push_back({s, {&next, 1}, LogitsMode::kLast});
      EXPECT_TRUE(engine.Step(batch, &out).ok());
      logits.insert(logits.end(), out.logits.begin(), out.logits.end());
    }
    return logits;
  };
  const std::vector<float> one = run(nullptr);
  kernels::ThreadPool three(3);
  const std::vector<float> many = run(&three);
  ASSERT_EQ(one.size(), many.size());
  EXPECT_EQ(std::memcmp(one.data(), many.data(), sizeof(float) * one.size()), 0);
}

INSTANTIATE_TEST_SUITE_P(Presets, EngineConsistencyTest,
                         ::testing::Values(Case{"tiny", GenWeightDType::kBF16, "tiny_bf16"},
                                           Case{"tiny", GenWeightDType::kFp8, "tiny_fp8"},
                                           Case{"text01-tiny", GenWeightDType::kBF16,
                                                "text01_tiny_bf16"}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace afd::attention
