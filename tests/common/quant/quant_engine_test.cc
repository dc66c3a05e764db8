// Engine on generated AWQ / MLX checkpoints the golden set does not cover (MLX 2/3/5/6/8 bits,
// groups 32/64/128, attention quantized or left float): the quantized engine must match the same
// engine on a float32 twin checkpoint whose every packed tensor was dequantized by the reference
// formula (QuantWeightAt: the transformers reference's procedure; quant_test_util.h), prefill and
// decode within 1e-4; chunked prefill and token-by-token decode match one-shot prefill within 1e-4;
// a batch of different lengths equals each sequence alone within 1e-5.
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "attention_node/engine.h"
#include "attention_node/in_process_expert_backend.h"
#include "attention_node/kv_cache.h"
#include "attention_node/model_weights.h"
#include "common/kernels/thread_pool.h"
#include "common/weights.h"
#include "gtest/gtest.h"
#include "tests/common/quant/quant_test_util.h"

namespace afd::attention {
namespace {

using quant_testing::MaxAbsDiff;
using quant_testing::QuantCase;

std::string TempDir() {
  char tmpl[] = "/tmp/afd_quant_engine_XXXXXX";
  const char* dir = mkdtemp(tmpl);
  return dir == nullptr ? std::string() : std::string(dir);
}

// One model directory served in process.
struct Served {
  ModelConfig config;
  std::unique_ptr<Checkpoint> checkpoint;
  std::unique_ptr<ModelWeights> weights;
  std::unique_ptr<InProcessExpertBackend> backend;

  void Open(const std::string& dir, kernels::ThreadPool* pool) {
    config = LoadModelConfig(dir).value();
    checkpoint = Checkpoint::Open(dir).value();
    const absl::Status valid = ValidateCheckpoint(config, *checkpoint);
    ASSERT_TRUE(valid.ok()) << valid;
    weights = ModelWeights::Load(config, *checkpoint).value();
    backend = InProcessExpertBackend::Create(config, *checkpoint, pool).value();
  }

  // Logits of every position of `tokens`, fed in chunks of the given sizes (the rest last).
  std::vector<float> Run(const std::vector<int32_t>& tokens, const std::vector<int>& chunks,
                         kernels::ThreadPool* pool) {
    KvCacheOptions options;
    options.block_size = 8;
    options.max_sequences = 1;
    options.num_blocks = 8;
    std::unique_ptr<KvCache> cache = KvCache::Create(config, options).value();
    Engine engine(weights.get(), cache.get(), backend.get(), pool);
    const int seq = cache->AddSequence().value();
    std::vector<float> logits;
    size_t pos = 0, c = 0;
    while (pos < tokens.size()) {
      const size_t n = c < chunks.size() ? std::min<size_t>(chunks[c++], tokens.size() - pos)
                                         : tokens.size() - pos;
      StepOutput out;
      const absl::Status s = engine.Step({{seq, {tokens.data() + pos, n}, LogitsMode::kAll}}, &out);
      EXPECT_TRUE(s.ok()) << s;
      logits.insert(logits.end(), out.logits.begin(), out.logits.end());
      pos += n;
    }
    return logits;
  }
};

class QuantEngineTest : public ::testing::TestWithParam<QuantCase> {
 protected:
  void SetUp() override {
    dir_ = TempDir();
    ASSERT_FALSE(dir_.empty());
    const ModelConfig config = quant_testing::SmallM2(/*experts=*/8);
    const absl::Status s = quant_testing::GenerateQuantized(config, GetParam(), 77, dir_ + "/q");
    ASSERT_TRUE(s.ok()) << s;
    quantized_.Open(dir_ + "/q", &pool_);
    const absl::Status t =
        quant_testing::WriteDequantizedTwin(quantized_.config, *quantized_.checkpoint, dir_ + "/f");
    ASSERT_TRUE(t.ok()) << t;
    twin_.Open(dir_ + "/f", &pool_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<int32_t> Tokens(int n, int salt) const {
    std::vector<int32_t> t(n);
    for (int i = 0; i < n; ++i) t[i] = (i * 37 + salt * 101 + 11) % 96;
    return t;
  }

  kernels::ThreadPool pool_{2};
  std::string dir_;
  Served quantized_, twin_;
};

TEST_P(QuantEngineTest, MatchesTheDequantizedFloatModel) {
  // One-shot prefill (the prefill kernels) and token by token (the decode kernels).
  const std::vector<int32_t> tokens = Tokens(21, 1);
  const std::vector<float> want = twin_.Run(tokens, {}, &pool_);
  const float prefill = MaxAbsDiff(quantized_.Run(tokens, {}, &pool_), want);
  const float decode = MaxAbsDiff(quantized_.Run(tokens, std::vector<int>(21, 1), &pool_), want);
  EXPECT_LE(prefill, 1e-4f);
  EXPECT_LE(decode, 1e-4f);
  std::printf("%s: vs dequantized fp32 twin: prefill %.3e, token by token %.3e\n",
              GetParam().name.c_str(), prefill, decode);
  // The packed model differs from the float one it was quantized from: the test can fail.
  float scale = 0;
  for (float v : want) scale = std::max(scale, std::fabs(v));
  EXPECT_GT(scale, 1e-2f);
}

TEST_P(QuantEngineTest, ChunkedAndBatchedAgree) {
  const std::vector<int32_t> tokens = Tokens(29, 2);
  const std::vector<float> one_shot = quantized_.Run(tokens, {}, &pool_);
  EXPECT_LE(MaxAbsDiff(quantized_.Run(tokens, {5, 13, 1}, &pool_), one_shot), 1e-4f);
  EXPECT_LE(MaxAbsDiff(quantized_.Run(tokens, {3, 3, 3}, nullptr), one_shot), 1e-4f);
  // A batch of different lengths equals each alone.
  const std::vector<std::vector<int32_t>> prompts = {Tokens(3, 3), Tokens(17, 4), Tokens(9, 5)};
  KvCacheOptions options;
  options.block_size = 8;
  options.max_sequences = 3;
  options.num_blocks = 12;
  std::unique_ptr<KvCache> cache = KvCache::Create(quantized_.config, options).value();
  Engine engine(quantized_.weights.get(), cache.get(), quantized_.backend.get(), &pool_);
  std::vector<StepInput> batch;
  for (const auto& p : prompts)
    batch.push_back({cache->AddSequence().value(), p, LogitsMode::kAll});
  StepOutput out;
  ASSERT_TRUE(engine.Step(batch, &out).ok());
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::vector<float> together(out.Row(out.first_row[i], 96),
                                      out.Row(out.first_row[i] + out.num_rows[i], 96));
    EXPECT_LE(MaxAbsDiff(together, quantized_.Run(prompts[i], {}, &pool_)), 1e-5f) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Formats, QuantEngineTest,
    ::testing::Values(QuantCase{GenQuant::kAwq, 4, 32, true, "awq_g32"},
                      QuantCase{GenQuant::kAwq, 4, 128, false, "awq_g128_float_attention"},
                      QuantCase{GenQuant::kMlx, 3, 32, true, "mlx3_g32"},
                      QuantCase{GenQuant::kMlx, 5, 64, false, "mlx5_g64_float_attention"},
                      QuantCase{GenQuant::kMlx, 6, 128, true, "mlx6_g128"},
                      QuantCase{GenQuant::kMlx, 8, 64, true, "mlx8_g64"},
                      QuantCase{GenQuant::kMlx, 2, 128, false, "mlx2_g128_float_attention"},
                      QuantCase{GenQuant::kMlx, 4, 32, true, "mlx4_g32"},
                      QuantCase{GenQuant::kMlx, 4, 128, false, "mlx4_g128_float_attention"}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace afd::attention
