// Synthetic checkpoint generator: tiny and text01-tiny in bf16 and fp8, single and sharded,
// read back by Checkpoint + ValidateCheckpoint; determinism; init scales; the CLI.
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/checkpoint_gen.h"
#include "common/safetensors.h"
#include "common/weights.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/test_util.h"

namespace afd {
namespace {

using ::testing::HasSubstr;
using testing_util::MakeTempDir;
using testing_util::ReadFile;

// Independent decoders (MODEL.md §2.1) for checking what the generator wrote.
float DecodeFp8(uint8_t v) {
  const int sign = v >> 7, exp = (v >> 3) & 0xF, man = v & 7;
  const float mag = exp == 0 ? std::ldexp(man / 8.0f, -6) : std::ldexp(1.0f + man / 8.0f, exp - 7);
  return sign ? -mag : mag;
}
float DecodeBf16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  const uint32_t bits = uint32_t{h} << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

struct Stats {
  double mean = 0, std_dev = 0, max_abs = 0;
};
Stats Measure(const std::vector<float>& v) {
  Stats s;
  for (float x : v) s.mean += x;
  s.mean /= v.size();
  for (float x : v) {
    s.std_dev += (x - s.mean) * (x - s.mean);
    s.max_abs = std::max(s.max_abs, static_cast<double>(std::fabs(x)));
  }
  s.std_dev = std::sqrt(s.std_dev / v.size());
  return s;
}

// The dequantized values of a linear weight, whichever dtype the generator chose.
std::vector<float> Dequantize(const Checkpoint& ckpt, const ModelConfig& config,
                              const std::string& prefix, int64_t out, int64_t in) {
  absl::StatusOr<kernels::WeightView> w = LoadLinear(ckpt, config, prefix, out, in);
  EXPECT_TRUE(w.ok()) << w.status();
  std::vector<float> values;
  if (!w.ok()) return values;
  const uint8_t* data = static_cast<const uint8_t*>(w->data);
  const int64_t scale_cols = (in + w->block_cols - 1) / w->block_cols;
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t i = 0; i < in; ++i) {
      if (w->type == kernels::WeightType::kFp8E4M3) {
        values.push_back(DecodeFp8(data[o * in + i]) *
                         w->scales[(o / w->block_rows) * scale_cols + i / w->block_cols]);
      } else {
        values.push_back(DecodeBf16(data + 2 * (o * in + i)));
      }
    }
  }
  return values;
}

struct GenCase {
  std::string preset;
  GenWeightDType dtype;
  int shards;
};

class GenCheckpointTest : public ::testing::TestWithParam<GenCase> {};

TEST_P(GenCheckpointTest, WritesCheckpointThatOpensAndValidates) {
  const GenCase& p = GetParam();
  absl::StatusOr<CheckpointPreset> preset = FindCheckpointPreset(p.preset);
  ASSERT_TRUE(preset.ok()) << preset.status();
  const std::string dir = MakeTempDir() + "/model";  // created by the generator
  GenCheckpointOptions options;
  options.dtype = p.dtype;
  options.num_shards = p.shards;
  options.seed = 42;
  options.spelling = preset->spelling;
  absl::StatusOr<GenCheckpointStats> stats = GenerateCheckpoint(preset->config, dir, options);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->shards, p.shards);
  EXPECT_EQ(stats->tensors,
            static_cast<int64_t>(GeneratedTensorSpecs(preset->config, options).size()));

  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->arch, preset->config.arch);
  EXPECT_EQ(config->rotary_dim, preset->config.rotary_dim);
  EXPECT_EQ(config->layer_types, preset->config.layer_types);
  EXPECT_EQ(config->weight_format,
            p.dtype == GenWeightDType::kFp8 ? WeightFormat::kFp8Block : WeightFormat::kPlain);
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->files().size(), static_cast<size_t>(p.shards));
  EXPECT_EQ(static_cast<int64_t>((*ckpt)->MappedBytes()), stats->file_bytes);
  absl::Status valid = ValidateCheckpoint(*config, **ckpt);
  EXPECT_TRUE(valid.ok()) << valid;
  if (p.shards > 1) {
    const std::string index = ReadFile(dir + "/model.safetensors.index.json");
    EXPECT_THAT(index, HasSubstr(absl::StrCat("\"total_size\": ", stats->tensor_bytes)));
  }

  // Init scales keep activations O(1): in-projections ~1/sqrt(fan_in), output projections
  // smaller still, norms ~1.
  const ModelConfig& c = *config;
  const int64_t d_model = c.hidden_size;
  const std::string attn_in = c.IsLinearLayer(0) ? "self_attn.qkv_proj" : "self_attn.q_proj";
  const int64_t attn_rows = c.IsLinearLayer(0) ? 3 * c.q_dim() : c.q_dim();
  Stats in_proj = Measure(Dequantize(**ckpt, c, LayerTensorName(0, attn_in), attn_rows, d_model));
  const double want = 1.0 / std::sqrt(static_cast<double>(d_model));
  EXPECT_NEAR(in_proj.std_dev, want, 0.25 * want);
  EXPECT_NEAR(in_proj.mean, 0.0, 0.1 * want);
  Stats down =
      Measure(Dequantize(**ckpt, c, ExpertLinearName(0, 1, "w2"), d_model, c.intermediate_size));
  EXPECT_LT(down.std_dev, 0.8 / std::sqrt(static_cast<double>(c.intermediate_size)));
  EXPECT_GT(down.std_dev, 0.0);
  absl::StatusOr<TensorView> norm = (*ckpt)->Get("model.norm.weight");
  ASSERT_TRUE(norm.ok());
  for (int64_t i = 0; i < d_model; ++i) {
    EXPECT_NEAR(DecodeBf16(norm->data + 2 * i), 1.0, 0.11);
  }
}

INSTANTIATE_TEST_SUITE_P(Presets, GenCheckpointTest,
                         ::testing::Values(GenCase{"tiny", GenWeightDType::kBF16, 1},
                                           GenCase{"tiny", GenWeightDType::kFp8, 3},
                                           GenCase{"text01-tiny", GenWeightDType::kBF16, 2},
                                           GenCase{"text01-tiny", GenWeightDType::kFp8, 1}),
                         [](const ::testing::TestParamInfo<GenCase>& info) {
                           std::string name =
                               info.param.preset + "_" +
                               (info.param.dtype == GenWeightDType::kFp8 ? "fp8" : "bf16") + "_" +
                               std::to_string(info.param.shards) + "shards";
                           for (char& ch : name) {
                             if (ch == '-') ch = '_';
                           }
                           return name;
                         });

// All files of a generated directory, name -> bytes.
std::map<std::string, std::string> Files(const std::string& dir, int shards) {
  std::map<std::string, std::string> files;
  files["config.json"] = ReadFile(dir + "/config.json");
  if (shards == 1) {
    files["model.safetensors"] = ReadFile(dir + "/model.safetensors");
  } else {
    files["index"] = ReadFile(dir + "/model.safetensors.index.json");
    for (int k = 1; k <= shards; ++k) {
      char name[64];
      std::snprintf(name, sizeof(name), "model-%05d-of-%05d.safetensors", k, shards);
      files[name] = ReadFile(dir + "/" + name);
    }
  }
  return files;
}

TEST(GenCheckpointDeterminismTest, SameSeedGivesIdenticalBytesOtherSeedDiffers) {
  const std::string root = MakeTempDir();
  absl::StatusOr<CheckpointPreset> preset = FindCheckpointPreset("text01-tiny");
  ASSERT_TRUE(preset.ok());
  GenCheckpointOptions options;
  options.dtype = GenWeightDType::kFp8;
  options.num_shards = 2;
  options.seed = 7;
  ASSERT_TRUE(GenerateCheckpoint(preset->config, root + "/a", options).ok());
  ASSERT_TRUE(GenerateCheckpoint(preset->config, root + "/b", options).ok());
  const auto a = Files(root + "/a", 2);
  const auto b = Files(root + "/b", 2);
  for (const auto& [name, bytes] : a) {
    EXPECT_GT(bytes.size(), 0u) << name;
    EXPECT_TRUE(bytes == b.at(name)) << name << " differs between two runs with seed 7";
  }
  options.seed = 8;
  ASSERT_TRUE(GenerateCheckpoint(preset->config, root + "/c", options).ok());
  const auto c = Files(root + "/c", 2);
  EXPECT_EQ(a.at("config.json"), c.at("config.json"));
  EXPECT_NE(a.at("model-00001-of-00002.safetensors"), c.at("model-00001-of-00002.safetensors"));
}

TEST(GenCheckpointDeterminismTest, TensorValuesDoNotDependOnSharding) {
  const std::string root = MakeTempDir();
  absl::StatusOr<CheckpointPreset> preset = FindCheckpointPreset("tiny");
  ASSERT_TRUE(preset.ok());
  GenCheckpointOptions options;
  ASSERT_TRUE(GenerateCheckpoint(preset->config, root + "/one", options).ok());
  options.num_shards = 4;
  ASSERT_TRUE(GenerateCheckpoint(preset->config, root + "/four", options).ok());
  // Regenerating a directory with fewer shards leaves no stale index or shard behind.
  options.num_shards = 1;
  ASSERT_TRUE(GenerateCheckpoint(preset->config, root + "/four", options).ok());
  EXPECT_TRUE(ReadFile(root + "/four/model.safetensors.index.json").empty());
  options.num_shards = 4;
  ASSERT_TRUE(GenerateCheckpoint(preset->config, root + "/four", options).ok());
  absl::StatusOr<std::unique_ptr<Checkpoint>> one = Checkpoint::Open(root + "/one");
  absl::StatusOr<std::unique_ptr<Checkpoint>> four = Checkpoint::Open(root + "/four");
  ASSERT_TRUE(one.ok() && four.ok());
  EXPECT_EQ((*four)->files().size(), 4u);
  ASSERT_EQ((*one)->Names(), (*four)->Names());
  for (const std::string& name : (*one)->Names()) {
    TensorView x = *(*one)->Get(name);
    TensorView y = *(*four)->Get(name);
    ASSERT_EQ(x.bytes, y.bytes) << name;
    EXPECT_EQ(std::memcmp(x.data, y.data, x.bytes), 0) << name;
  }
}

TEST(GenCheckpointPresetTest, PresetsHaveTheAdvertisedShapes) {
  std::vector<std::string> names;
  for (const CheckpointPreset& p : CheckpointPresets()) names.push_back(p.name);
  EXPECT_THAT(names, ::testing::ElementsAre("tiny", "default", "m2-perf", "text01-tiny"));
  absl::StatusOr<CheckpointPreset> default_preset = FindCheckpointPreset("default");
  ASSERT_TRUE(default_preset.ok());
  const ModelConfig& d = default_preset->config;
  EXPECT_EQ(d.vocab_size, 200064);
  EXPECT_EQ(d.bos_token_id, 200034);
  EXPECT_EQ(d.eos_token_id, 200020);
  EXPECT_EQ(d.num_experts_per_tok, 4);
  absl::StatusOr<CheckpointPreset> perf_preset = FindCheckpointPreset("m2-perf");
  ASSERT_TRUE(perf_preset.ok());
  const ModelConfig& perf = perf_preset->config;
  EXPECT_EQ(perf.q_dim(), 1536);
  EXPECT_EQ(perf.rotary_dim, 64);
  int64_t bf16_bytes = 0, fp8_bytes = 0;
  for (const TensorSpec& s : GeneratedTensorSpecs(perf, {})) bf16_bytes += s.bytes();
  GenCheckpointOptions fp8;
  fp8.dtype = GenWeightDType::kFp8;
  for (const TensorSpec& s : GeneratedTensorSpecs(perf, fp8)) fp8_bytes += s.bytes();
  EXPECT_NEAR(bf16_bytes / 1e9, 5.77, 0.05);
  EXPECT_NEAR(fp8_bytes / 1e9, 2.99, 0.05);
  EXPECT_EQ(FindCheckpointPreset("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST(EncodeTest, Fp8RoundTripsEveryFiniteCodeAndRoundsToNearestEven) {
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7F) == 0x7F) continue;  // NaN
    const float v = DecodeFp8(static_cast<uint8_t>(code));
    const uint8_t back = EncodeFp8E4M3(v);
    if (code == 0x80) {
      EXPECT_EQ(back, 0x80);  // -0
    } else {
      EXPECT_EQ(back, code) << "value " << v;
    }
  }
  EXPECT_EQ(EncodeFp8E4M3(1000.0f), 0x7E);  // saturates at 448
  EXPECT_EQ(EncodeFp8E4M3(-1000.0f), 0xFE);
  EXPECT_EQ(EncodeFp8E4M3(1.0625f), 0x38);  // halfway 1 and 1.125 -> even mantissa (1.0)
  EXPECT_EQ(EncodeFp8E4M3(1.1875f), 0x3A);  // halfway 1.125 and 1.25 -> 1.25
  EXPECT_EQ(EncodeFp8E4M3(std::ldexp(1.5f, -9)), 0x02);  // subnormal tie 1.5/512 -> 2/512
  EXPECT_EQ(EncodeFp8E4M3(std::ldexp(1.0f, -11)), 0x00);
  EXPECT_EQ(EncodeBf16(1.0f), 0x3F80);
  EXPECT_EQ(EncodeBf16(1.00390625f), 0x3F80);  // tie -> even
  EXPECT_EQ(EncodeBf16(1.01171875f), 0x3F82);  // tie -> even (up)
  EXPECT_EQ(EncodeBf16(-2.0f), 0xC000);
}

// ---- the command ----------------------------------------------------------------------------

std::string GenBinary() {
  const char* build = std::getenv("AFD_BUILD_DIR");
  return std::string(build != nullptr ? build : ".") + "/bin/afd-gen-checkpoint";
}

int RunGen(const std::string& args, std::string* output) {
  const std::string cmd = GenBinary() + " " + args + " 2>&1";
  std::FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) output->append(buf, n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(GenCheckpointCommandTest, HelpListsPresetsAndBadArgsFail) {
  std::string out;
  ASSERT_EQ(RunGen("--help", &out), 0) << out;
  for (const char* preset : {"tiny", "default", "m2-perf", "text01-tiny"}) {
    EXPECT_THAT(out, HasSubstr(preset));
  }
  out.clear();
  EXPECT_EQ(RunGen("--preset tiny", &out), 2);
  EXPECT_THAT(out, HasSubstr("--out is required"));
  out.clear();
  EXPECT_EQ(RunGen("--preset huge --out /tmp/x", &out), 2);
  EXPECT_THAT(out, HasSubstr("unknown preset 'huge'"));
  out.clear();
  EXPECT_EQ(RunGen("--preset tiny --out /tmp/x --dtype fp16", &out), 2);
  out.clear();
  EXPECT_EQ(RunGen("--preset tiny --out /tmp/x --shards 0", &out), 2);
  out.clear();
  EXPECT_EQ(RunGen("--bogus", &out), 2);
}

TEST(GenCheckpointCommandTest, WritesAValidCheckpoint) {
  const std::string dir = MakeTempDir();
  std::string out;
  ASSERT_EQ(RunGen("--preset tiny --out " + dir + " --dtype=fp8 --seed 3 --shards 2", &out), 0)
      << out;
  EXPECT_THAT(out, HasSubstr("preset tiny, fp8, seed 3"));
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->weight_format, WeightFormat::kFp8Block);
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_TRUE(ValidateCheckpoint(*config, **ckpt).ok());
}

}  // namespace
}  // namespace afd
