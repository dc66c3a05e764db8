// Engine on generated AWQ / MLX checkpoints the golden set does not cover (MLX 2/3/5/6/8 bits,
// groups 32/64/128, attention quantized or left float): the quantized engine must match the same
// engine on a float32 twin checkpoint whose every packed tensor was dequantized by the reference
// formula (QuantWeightAt: the transformers reference's procedure), prefill and decode within
// 1e-4; chunked prefill and token-by-token decode match one-shot prefill within 1e-4; a batch of
// different lengths equals each sequence alone within 1e-5.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "attention_node/engine.h"
#include "attention_node/in_process_expert_backend.h"
#include "attention_node/kv_cache.h"
#include "attention_node/model_weights.h"
#include "common/checkpoint_gen.h"
#include "common/kernels/quant_matmul.h"
#include "common/kernels/thread_pool.h"
#include "common/quant/quant_loader.h"
#include "common/safetensors_writer.h"
#include "common/weights.h"
#include "gtest/gtest.h"

namespace afd::attention {
namespace {

struct Case {
  GenQuant quant;
  int bits;
  int group;
  bool quantize_attention;
  std::string name;
};

ModelConfig SmallM2() {
  ModelConfig c = FindCheckpointPreset("tiny").value().config;
  c.vocab_size = 96;
  c.hidden_size = 128;
  c.intermediate_size = 128;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 32;
  c.rotary_dim = 16;
  c.num_local_experts = 8;
  c.num_experts_per_tok = 2;
  return c;
}

std::string TempDir() {
  char tmpl[] = "/tmp/afd_quant_engine_XXXXXX";
  const char* dir = mkdtemp(tmpl);
  return dir == nullptr ? std::string() : std::string(dir);
}

std::vector<uint8_t> AsBytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// Writes `dst`: the checkpoint in `src` with every AWQ / MLX module dequantized to F32
// (QuantWeightAt) under its float name (MLX stacks unstacked into experts.E.w1/w3/w2), every
// other tensor copied, and the config without quantization.
void WriteFloatTwin(const ModelConfig& config, const Checkpoint& src, const std::string& dst) {
  std::vector<std::pair<TensorSpec, std::vector<uint8_t>>> out;
  auto add_dequantized = [&](const std::string& name, const kernels::QuantMatrix& m) {
    std::vector<float> w(m.rows * m.cols);
    for (int64_t r = 0; r < m.rows; ++r) kernels::QuantDequantizeRow(m, r, w.data() + r * m.cols);
    out.push_back({TensorSpec{name, DType::kF32, {m.rows, m.cols}}, AsBytes(w)});
  };
  for (const std::string& name : src.Names()) {
    const TensorView t = src.Get(name).value();
    if (absl::EndsWith(name, ".qzeros") || absl::EndsWith(name, ".biases") ||
        absl::EndsWith(name, ".scales")) {
      continue;  // parts of packed modules, dequantized with their codes
    }
    if (absl::EndsWith(name, ".qweight")) {
      const std::string prefix = name.substr(0, name.size() - 8);
      const kernels::QuantMatrix m =
          quant::LoadAwqLinear(src, config, prefix, t.shape[1] * 8, t.shape[0]).value();
      add_dequantized(prefix + ".weight", m);
      continue;
    }
    const std::string prefix = name.substr(0, name.rfind('.'));
    if (t.dtype == DType::kU32 &&
        quant::DetectModuleFormat(src, prefix) == quant::ModuleFormat::kMlx) {
      const int bits = quant::MlxParamsFor(config, prefix).bits;
      const int64_t out_dim = t.shape[t.shape.size() - 2];
      const int64_t in = t.shape.back() * 32 / bits;
      if (t.shape.size() == 3) {
        // model.layers.L.block_sparse_moe.switch_mlp.<proj>
        const std::vector<std::string> parts = absl::StrSplit(prefix, '.');
        int layer = 0;
        ASSERT_TRUE(absl::SimpleAtoi(parts[2], &layer));
        const std::string proj = parts.back() == "gate_proj" ? "w1"
                                 : parts.back() == "up_proj" ? "w3"
                                                             : "w2";
        for (int e = 0; e < t.shape[0]; ++e) {
          add_dequantized(ExpertLinearName(layer, e, proj) + ".weight",
                          quant::LoadMlxLinear(src, config, prefix, out_dim, in, e,
                                               static_cast<int>(t.shape[0]))
                              .value());
        }
      } else {
        add_dequantized(name, quant::LoadMlxLinear(src, config, prefix, out_dim, in).value());
      }
      continue;
    }
    out.push_back({TensorSpec{name, t.dtype, t.shape}, std::vector<uint8_t>(t.data, t.data + t.bytes)});
  }
  std::vector<std::pair<TensorSpec, absl::Span<const uint8_t>>> tensors;
  for (const auto& [spec, bytes] : out) tensors.emplace_back(spec, absl::MakeConstSpan(bytes));
  std::filesystem::create_directories(dst);
  ASSERT_TRUE(WriteSafetensors(dst + "/model.safetensors", tensors).ok());
  ModelConfig plain = config;
  plain.weight_format = WeightFormat::kPlain;
  plain.quant_bits = plain.quant_group_size = 0;
  plain.quant_overrides.clear();
  plain.quant_skip_modules.clear();
  std::FILE* f = std::fopen((dst + "/config.json").c_str(), "w");
  ASSERT_NE(f, nullptr);
  const std::string json = ModelConfigToJson(plain, ConfigSpelling::kOriginal);
  std::fwrite(json.data(), 1, json.size(), f);
  std::fclose(f);
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

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

class QuantEngineTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    dir_ = TempDir();
    ASSERT_FALSE(dir_.empty());
    GenCheckpointOptions gen;
    gen.quant = GetParam().quant;
    gen.quant_bits = GetParam().bits;
    gen.quant_group = GetParam().group;
    gen.quantize_attention = GetParam().quantize_attention;
    gen.seed = 77;
    const absl::StatusOr<GenCheckpointStats> s = GenerateCheckpoint(SmallM2(), dir_ + "/q", gen);
    ASSERT_TRUE(s.ok()) << s.status();
    quantized_.Open(dir_ + "/q", &pool_);
    WriteFloatTwin(quantized_.config, *quantized_.checkpoint, dir_ + "/f");
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
  for (const auto& p : prompts) batch.push_back({cache->AddSequence().value(), p, LogitsMode::kAll});
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
    ::testing::Values(Case{GenQuant::kAwq, 4, 32, true, "awq_g32"},
                      Case{GenQuant::kAwq, 4, 128, false, "awq_g128_float_attention"},
                      Case{GenQuant::kMlx, 3, 32, true, "mlx3_g32"},
                      Case{GenQuant::kMlx, 5, 64, false, "mlx5_g64_float_attention"},
                      Case{GenQuant::kMlx, 6, 128, true, "mlx6_g128"},
                      Case{GenQuant::kMlx, 8, 64, true, "mlx8_g64"},
                      Case{GenQuant::kMlx, 2, 128, false, "mlx2_g128_float_attention"},
                      Case{GenQuant::kMlx, 4, 32, true, "mlx4_g32"}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace afd::attention
