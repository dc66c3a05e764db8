// Synthetic checkpoint generator: presets, tensor list, init scales, streaming writer loop.
#include "common/checkpoint_gen.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <future>
#include <map>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "common/weights.h"

namespace afd {
namespace {

// How a tensor's values are drawn. All draws are uniform (like nn.Linear's default init) with
// the given standard deviation, so activations stay O(1) through the layers:
//   in-projections 1/sqrt(fan_in); out-projections (o_proj, out_proj, w2) additionally
//   1/sqrt(2 * layers) (GPT-2 style) so the residual stream grows slowly; embeddings 1; norms
//   1 +- 0.1; router gate 1/sqrt(D); routing bias +-0.05.
enum class Init { kUniform, kNorm, kFp8Codes, kFp8Scales };

struct GenTensor {
  TensorSpec spec;
  Init init = Init::kUniform;
  float amplitude = 0;  // uniform half-width (kUniform), weight half-width (kFp8Scales)
};

constexpr float kSqrt3 = 1.7320508f;
constexpr float kFp8Max = 448.0f;
constexpr int64_t kChunkElements = int64_t{1} << 20;

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Per-tensor stream: depends only on the seed and the tensor's name.
uint64_t TensorSeed(uint64_t seed, const std::string& name) {
  uint64_t h = 0xCBF29CE484222325ull;  // FNV-1a
  for (unsigned char c : name) {
    h ^= c;
    h *= 0x100000001B3ull;
  }
  uint64_t state = seed ^ h;
  return SplitMix64(state);
}

// Uniform in [-1, 1) from 24 random bits (via int32: a uint64 -> float conversion is a slow
// path on x86-64).
inline float UniformPm1(uint64_t bits24) {
  return static_cast<float>(static_cast<int32_t>(bits24)) * (2.0f / 16777216.0f) - 1.0f;
}

class TensorListBuilder {
 public:
  TensorListBuilder(const ModelConfig& c, const GenCheckpointOptions& o) : c_(c), o_(o) {}

  void Add(const std::string& name, DType dtype, std::vector<int64_t> shape, Init init,
           float amplitude) {
    GenTensor t;
    t.spec = TensorSpec{name, dtype, std::move(shape)};
    t.init = init;
    t.amplitude = amplitude;
    out_.push_back(std::move(t));
  }
  void Norm(const std::string& name, int64_t n) { Add(name, DType::kBF16, {n}, Init::kNorm, 0.1f); }
  // A linear layer [out, in]; `residual_out` marks projections back into the residual stream.
  void Linear(const std::string& prefix, int64_t out, int64_t in, bool residual_out) {
    float std_dev = 1.0f / std::sqrt(static_cast<float>(in));
    if (residual_out) std_dev /= std::sqrt(2.0f * c_.num_hidden_layers);
    const float amplitude = std_dev * kSqrt3;
    if (o_.dtype == GenWeightDType::kFp8) {
      const int64_t b = o_.fp8_block;
      Add(prefix + ".weight", DType::kF8E4M3, {out, in}, Init::kFp8Codes, kFp8Max);
      Add(prefix + ".weight_scale_inv", DType::kF32, {(out + b - 1) / b, (in + b - 1) / b},
          Init::kFp8Scales, amplitude);
    } else {
      Add(prefix + ".weight", DType::kBF16, {out, in}, Init::kUniform, amplitude);
    }
  }

  std::vector<GenTensor> Build() {
    const int64_t d_model = c_.hidden_size, inter = c_.intermediate_size;
    const int64_t experts = c_.num_local_experts;
    const bool m2 = c_.arch == Architecture::kMiniMaxM2;
    Add("model.embed_tokens.weight", DType::kBF16, {c_.vocab_size, d_model}, Init::kUniform,
        kSqrt3);
    for (int l = 0; l < c_.num_hidden_layers; ++l) {
      auto name = [&](const char* s) { return LayerTensorName(l, s); };
      Norm(name("input_layernorm.weight"), d_model);
      if (c_.IsLinearLayer(l)) {
        Linear(name("self_attn.qkv_proj"), 3 * c_.q_dim(), d_model, false);
        Linear(name("self_attn.output_gate"), c_.q_dim(), d_model, false);
        Linear(name("self_attn.out_proj"), d_model, c_.q_dim(), true);
        Norm(name("self_attn.norm.weight"), c_.q_dim());
      } else {
        Linear(name("self_attn.q_proj"), c_.q_dim(), d_model, false);
        Linear(name("self_attn.k_proj"), c_.kv_dim(), d_model, false);
        Linear(name("self_attn.v_proj"), c_.kv_dim(), d_model, false);
        Linear(name("self_attn.o_proj"), d_model, c_.q_dim(), true);
        if (m2 && c_.use_qk_norm) {
          Norm(name("self_attn.q_norm.weight"), c_.q_dim());
          Norm(name("self_attn.k_norm.weight"), c_.kv_dim());
        }
      }
      Norm(name("post_attention_layernorm.weight"), d_model);
      // The released M2 keeps the router in fp32; Text-01 stores it like the rest.
      Add(name("block_sparse_moe.gate.weight"), m2 ? DType::kF32 : DType::kBF16, {experts, d_model},
          Init::kUniform, kSqrt3 / std::sqrt(static_cast<float>(d_model)));
      if (m2 && c_.use_routing_bias) {
        Add(name("block_sparse_moe.e_score_correction_bias"), DType::kF32, {experts},
            Init::kUniform, 0.05f);
      }
      for (int e = 0; e < experts; ++e) {
        Linear(ExpertLinearName(l, e, "w1"), inter, d_model, false);
        Linear(ExpertLinearName(l, e, "w2"), d_model, inter, true);
        Linear(ExpertLinearName(l, e, "w3"), inter, d_model, false);
      }
    }
    Norm("model.norm.weight", d_model);
    if (!c_.tie_word_embeddings) {
      Add("lm_head.weight", DType::kBF16, {c_.vocab_size, d_model}, Init::kUniform,
          kSqrt3 / std::sqrt(static_cast<float>(d_model)));
    }
    return std::move(out_);
  }

 private:
  const ModelConfig& c_;
  const GenCheckpointOptions& o_;
  std::vector<GenTensor> out_;
};

// Fills dst[0..n) with encode(offset + scale * u), u uniform in [-1, 1): two values per
// 64-bit draw from `state`.
template <typename T, typename Encode>
void FillAffine(uint64_t& state, float offset, float scale, int64_t n, uint8_t* dst,
                Encode encode) {
  auto store = [&](int64_t i, uint64_t bits24) {
    const T value = encode(offset + scale * UniformPm1(bits24));
    std::memcpy(dst + i * sizeof(T), &value, sizeof(T));
  };
  int64_t i = 0;
  for (; i + 1 < n; i += 2) {
    const uint64_t r = SplitMix64(state);
    store(i, r >> 40);
    store(i + 1, (r >> 16) & 0xFFFFFF);
  }
  if (i < n) store(i, SplitMix64(state) >> 40);
}

// Double-buffered appends: while one chunk is being written on a background thread, the next
// is generated. At most two chunk buffers exist at a time.
class PipelinedAppender {
 public:
  explicit PipelinedAppender(SafetensorsWriter* writer) : writer_(writer) {}
  ~PipelinedAppender() { Wait().IgnoreError(); }

  // A free buffer of `bytes` bytes (the one no write in flight uses).
  std::vector<uint8_t>& NextBuffer(size_t bytes) {
    buffers_[next_].resize(bytes);
    return buffers_[next_];
  }
  // Queues the buffer last returned by NextBuffer for tensor `name`.
  absl::Status Submit(const std::string& name) {
    RETURN_IF_ERROR(Wait());
    std::vector<uint8_t>* buffer = &buffers_[next_];
    pending_ = std::async(std::launch::async,
                          [this, name, buffer] { return writer_->Append(name, *buffer); });
    next_ ^= 1;
    return absl::OkStatus();
  }
  // Waits for the write in flight.
  absl::Status Wait() {
    if (!pending_.valid()) return absl::OkStatus();
    return pending_.get();
  }

 private:
  SafetensorsWriter* writer_;
  std::vector<uint8_t> buffers_[2];
  int next_ = 0;
  std::future<absl::Status> pending_;
};

// Streams one tensor into the writer, chunk by chunk.
absl::Status WriteTensor(const GenTensor& t, uint64_t seed, PipelinedAppender& out) {
  uint64_t state = TensorSeed(seed, t.spec.name);
  // Every init is affine in u: value = offset + scale * u.
  float offset = 0, scale = t.amplitude;
  switch (t.init) {
    case Init::kUniform:
    case Init::kFp8Codes:
      break;
    case Init::kNorm:
      offset = 1.0f;
      break;
    case Init::kFp8Scales:
      // Per block: the dequant multiplier that maps ±448 onto ±(amplitude * 0.9..1.1).
      offset = t.amplitude / kFp8Max;
      scale = 0.1f * offset;
      break;
  }
  const int64_t numel = t.spec.numel();
  const size_t elem = DTypeSize(t.spec.dtype);
  for (int64_t begin = 0; begin < numel; begin += kChunkElements) {
    const int64_t n = std::min(kChunkElements, numel - begin);
    uint8_t* dst = out.NextBuffer(static_cast<size_t>(n) * elem).data();
    switch (t.spec.dtype) {
      case DType::kBF16:
        FillAffine<uint16_t>(state, offset, scale, n, dst, [](float v) { return EncodeBf16(v); });
        break;
      case DType::kF32:
        FillAffine<float>(state, offset, scale, n, dst, [](float v) { return v; });
        break;
      case DType::kF8E4M3:
        FillAffine<uint8_t>(state, offset, scale, n, dst, [](float v) { return EncodeFp8E4M3(v); });
        break;
      default:
        return absl::InternalError(absl::StrCat("generator: unexpected dtype for ", t.spec.name));
    }
    RETURN_IF_ERROR(out.Submit(t.spec.name));
  }
  return absl::OkStatus();
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

absl::Status MakeDirs(const std::string& dir) {
  std::string path;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    path = dir.substr(0, pos);
    if (path.empty()) continue;
    if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot create directory"));
    }
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(dir, ": not a directory"));
  }
  return absl::OkStatus();
}

// model.safetensors, model.safetensors.index.json, model-NNNNN-of-NNNNN.safetensors.
bool IsCheckpointFileName(const std::string& name) {
  if (name == "model.safetensors" || name == "model.safetensors.index.json") return true;
  int k = 0, n = 0, consumed = 0;
  return std::sscanf(name.c_str(), "model-%5d-of-%5d.safetensors%n", &k, &n, &consumed) == 2 &&
         consumed == static_cast<int>(name.size());
}

absl::Status RemoveStaleCheckpointFiles(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return absl::ErrnoToStatus(errno, absl::StrCat(dir, ": cannot list"));
  std::vector<std::string> stale;
  while (dirent* e = readdir(d)) {
    if (IsCheckpointFileName(e->d_name)) stale.push_back(e->d_name);
  }
  closedir(d);
  for (const std::string& name : stale) {
    const std::string path = JoinPath(dir, name);
    if (unlink(path.c_str()) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot remove stale file"));
    }
  }
  return absl::OkStatus();
}

absl::Status WriteTextFile(const std::string& path, const std::string& text) {
  const std::string partial = path + ".partial";
  std::FILE* f = std::fopen(partial.c_str(), "wb");
  if (f == nullptr) return absl::ErrnoToStatus(errno, absl::StrCat(partial, ": cannot create"));
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok) {
    unlink(partial.c_str());
    return absl::UnavailableError(absl::StrCat(partial, ": write failed"));
  }
  if (rename(partial.c_str(), path.c_str()) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat(path, ": rename failed"));
  }
  return absl::OkStatus();
}

ModelConfig M2Preset(int vocab, int hidden, int layers, int heads, int kv_heads, int head_dim,
                     int rotary, int experts, int top_k, int inter, int bos, int eos,
                     int max_positions) {
  ModelConfig c;
  c.arch = Architecture::kMiniMaxM2;
  c.model_type = "minimax_m2";
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.head_dim = head_dim;
  c.rotary_dim = rotary;
  c.rope_theta = 5e6;
  c.rms_norm_eps = 1e-6;
  c.num_local_experts = experts;
  c.num_experts_per_tok = top_k;
  c.scoring = RouterScoring::kSigmoidWithBias;
  c.use_qk_norm = true;
  c.use_routing_bias = true;
  c.bos_token_id = bos;
  c.eos_token_id = eos;
  c.max_position_embeddings = max_positions;
  c.layer_types.assign(layers, LayerType::kFullAttention);
  return c;
}

std::vector<CheckpointPreset> MakePresets() {
  std::vector<CheckpointPreset> presets;
  presets.push_back({"tiny",
                     "MiniMax-M2, vocab 1024, hidden 64, 2 layers, 4 heads x 32 (2 KV), rotary "
                     "16, 8 experts top-2, intermediate 64 (~0.9 MB bf16)",
                     M2Preset(1024, 64, 2, 4, 2, 32, 16, 8, 2, 64, 1, 2, 4096),
                     ConfigSpelling::kOriginal});
  presets.push_back({"default",
                     "MiniMax-M2 served by `./setup.sh run`: vocab 200064 (MiniMax tokenizer), "
                     "hidden 256, 4 layers, 8 heads x 32 (2 KV), rotary 16, 16 experts top-4, "
                     "intermediate 256, bos 200034 eos 200020 (~230 MB bf16)",
                     M2Preset(200064, 256, 4, 8, 2, 32, 16, 16, 4, 256, 200034, 200020, 196608),
                     ConfigSpelling::kOriginal});
  presets.push_back({"m2-perf",
                     "MiniMax-M2 proportions for throughput work: hidden 1536, 12 layers, 12 "
                     "heads x 128 (2 KV), rotary 64, 64 experts top-8, intermediate 768, vocab "
                     "32000 (~5.8 GB bf16, ~2.9 GB fp8)",
                     M2Preset(32000, 1536, 12, 12, 2, 128, 64, 64, 8, 768, 1, 2, 196608),
                     ConfigSpelling::kOriginal});
  ModelConfig t;
  t.arch = Architecture::kMiniMaxText01;
  t.model_type = "minimax";
  t.vocab_size = 1024;
  t.hidden_size = 64;
  t.intermediate_size = 64;
  t.num_hidden_layers = 4;
  t.num_attention_heads = 4;
  t.num_key_value_heads = 2;
  t.head_dim = 16;
  t.rotary_dim = 16;
  t.rope_theta = 10000;
  t.rms_norm_eps = 1e-5;
  t.num_local_experts = 4;
  t.num_experts_per_tok = 2;
  t.scoring = RouterScoring::kSoftmax;
  t.bos_token_id = 1;
  t.eos_token_id = 2;
  t.max_position_embeddings = 4096;
  t.layer_types = {LayerType::kLinearAttention, LayerType::kLinearAttention,
                   LayerType::kFullAttention, LayerType::kLinearAttention};
  t.block_size = 16;
  t.full_attn_alpha = 1.7;
  t.full_attn_beta = 0.9;
  t.linear_attn_alpha = 1.3;
  t.linear_attn_beta = 1.1;
  t.mlp_alpha = 1.5;
  t.mlp_beta = 0.8;
  presets.push_back({"text01-tiny",
                     "MiniMax-Text-01 hybrid (transformers spelling): vocab 1024, hidden 64, "
                     "layers linear,linear,full,linear, 4 heads x 16 (2 KV), block 16, "
                     "alpha/beta != 1, 4 experts softmax top-2, intermediate 64",
                     t, ConfigSpelling::kTransformers});
  return presets;
}

}  // namespace

uint16_t EncodeBf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

uint8_t EncodeFp8E4M3(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const float mag = std::fabs(value);
  if (std::isnan(value)) return 0x7F;
  if (!(mag < kFp8Max)) return sign | 0x7E;  // saturate (e4m3fn has no infinity)
  if (mag < 0.015625f) {
    // Subnormals (and the smallest normal after rounding): multiples of 2^-9.
    return sign | static_cast<uint8_t>(std::nearbyint(mag * 512.0f));
  }
  uint32_t m;
  std::memcpy(&m, &mag, 4);
  m += 0x7FFFFu + ((m >> 20) & 1u);               // round the mantissa to 3 bits, ties to even
  const uint32_t code = (m >> 20) - (120u << 3);  // rebias exponent 127 -> 7
  return sign | static_cast<uint8_t>(code > 0x7Eu ? 0x7Eu : code);
}

const std::vector<CheckpointPreset>& CheckpointPresets() {
  static const std::vector<CheckpointPreset>* presets =
      new std::vector<CheckpointPreset>(MakePresets());
  return *presets;
}

absl::StatusOr<CheckpointPreset> FindCheckpointPreset(const std::string& name) {
  std::vector<std::string> names;
  for (const CheckpointPreset& p : CheckpointPresets()) {
    if (p.name == name) return p;
    names.push_back(p.name);
  }
  return absl::NotFoundError(
      absl::StrCat("unknown preset '", name, "' (known: ", absl::StrJoin(names, ", "), ")"));
}

std::vector<TensorSpec> GeneratedTensorSpecs(const ModelConfig& config,
                                             const GenCheckpointOptions& options) {
  std::vector<TensorSpec> specs;
  for (GenTensor& t : TensorListBuilder(config, options).Build()) {
    specs.push_back(std::move(t.spec));
  }
  return specs;
}

absl::StatusOr<GenCheckpointStats> GenerateCheckpoint(const ModelConfig& config,
                                                      const std::string& out_dir,
                                                      const GenCheckpointOptions& options) {
  if (options.fp8_block <= 0) {
    return absl::InvalidArgumentError("generator: fp8 block size must be positive");
  }
  ModelConfig c = config;
  if (options.dtype == GenWeightDType::kFp8) {
    c.weight_format = WeightFormat::kFp8Block;
    c.fp8_block_rows = c.fp8_block_cols = options.fp8_block;
  } else {
    c.weight_format = WeightFormat::kPlain;
  }
  c.quant_bits = c.quant_group_size = 0;
  // What we write must read back: parse our own config.json before writing any weights.
  const std::string config_json = ModelConfigToJson(c, options.spelling);
  const std::string config_path = JoinPath(out_dir, "config.json");
  RETURN_IF_ERROR(ParseModelConfig(config_json, config_path + " (generated)").status());

  std::vector<GenTensor> tensors = TensorListBuilder(c, options).Build();
  std::vector<TensorSpec> specs;
  std::map<std::string, const GenTensor*> by_name;
  for (const GenTensor& t : tensors) {
    specs.push_back(t.spec);
    by_name[t.spec.name] = &t;
  }
  ASSIGN_OR_RETURN(std::vector<ShardPlan> shards, PlanShards(specs, options.num_shards));

  RETURN_IF_ERROR(MakeDirs(out_dir));
  RETURN_IF_ERROR(RemoveStaleCheckpointFiles(out_dir));
  GenCheckpointStats stats;
  for (const ShardPlan& shard : shards) {
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsWriter> writer,
                     SafetensorsWriter::Create(JoinPath(out_dir, shard.file_name), shard.tensors));
    PipelinedAppender out(writer.get());
    for (const TensorSpec& spec : writer->order()) {
      auto it = by_name.find(spec.name);
      if (it == by_name.end()) return absl::InternalError("generator: lost " + spec.name);
      RETURN_IF_ERROR(WriteTensor(*it->second, options.seed, out));
      ++stats.tensors;
      stats.tensor_bytes += spec.bytes();
    }
    RETURN_IF_ERROR(out.Wait());
    RETURN_IF_ERROR(writer->Finish());
    stats.file_bytes += writer->file_bytes();
    ++stats.shards;
  }
  if (shards.size() > 1) RETURN_IF_ERROR(WriteSafetensorsIndex(out_dir, shards));
  RETURN_IF_ERROR(WriteTextFile(config_path, config_json));
  return stats;
}

}  // namespace afd
