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
#include "common/kernels/matmul.h"
#include "common/quant/quant_loader.h"
#include "common/quant/quant_pack.h"
#include "common/status.h"
#include "common/weights.h"

namespace afd {
namespace {

// How a tensor's values are drawn. All draws are uniform (like nn.Linear's default init) with
// the given standard deviation, so activations stay O(1) through the layers:
//   in-projections 1/sqrt(fan_in); out-projections (o_proj, out_proj, w2) additionally
//   1/sqrt(2 * layers) (GPT-2 style) so the residual stream grows slowly; embeddings 1; norms
//   1 +- 0.1; router gate 1/sqrt(D); routing bias +-0.05.
//   Packed quantized tensors (kAwq*, kMlx*) quantize the bf16 values the generator would draw
//   for their float source tensors (QuantSource), so they hold the same model.
enum class Init {
  kUniform,
  kNorm,
  kFp8Codes,
  kFp8Scales,
  kAwqQweight,
  kAwqQzeros,
  kAwqScales,
  kMlxWeight,
  kMlxScales,
  kMlxBiases,
};

// The float matrices a packed tensor quantizes: one source (or one per stacked expert), each
// the [out, in] uniform tensor of that name and amplitude.
struct QuantSource {
  std::vector<std::string> sources;
  float amplitude = 0;
  int64_t out = 0, in = 0;
  int bits = 4, group = 128;
};

struct GenTensor {
  TensorSpec spec;
  Init init = Init::kUniform;
  float amplitude = 0;  // uniform half-width (kUniform), weight half-width (kFp8Scales)
  QuantSource quant;    // packed kinds only
};

constexpr float kSqrt3 = 1.7320508f;
constexpr int kMlxGateBits = 8;
constexpr int kMlxGateGroup = 64;
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
  static float LinearAmplitude(int64_t in, bool residual_out, int layers) {
    float std_dev = 1.0f / std::sqrt(static_cast<float>(in));
    if (residual_out) std_dev /= std::sqrt(2.0f * layers);
    return std_dev * kSqrt3;
  }
  void AddPacked(const std::string& name, DType dtype, std::vector<int64_t> shape, Init init,
                 const QuantSource& q) {
    Add(name, dtype, std::move(shape), init, q.amplitude);
    out_.back().quant = q;
  }
  // AWQ GEMM tensors of linear `prefix` [out, in].
  void AwqLinear(const std::string& prefix, int64_t out, int64_t in, float amplitude) {
    const QuantSource q{{prefix + ".weight"}, amplitude, out, in, 4, o_.quant_group};
    AddPacked(prefix + ".qweight", DType::kI32, {in, out / 8}, Init::kAwqQweight, q);
    AddPacked(prefix + ".qzeros", DType::kI32, {in / q.group, out / 8}, Init::kAwqQzeros, q);
    AddPacked(prefix + ".scales", DType::kF16, {in / q.group, out}, Init::kAwqScales, q);
  }
  // MLX affine tensors of `prefix` [experts..., out, in] quantizing `sources`.
  void MlxLinear(const std::string& prefix, std::vector<std::string> sources, int64_t out,
                 int64_t in, float amplitude, int bits, int group, bool stacked = false) {
    const int64_t experts = static_cast<int64_t>(sources.size());
    const QuantSource q{std::move(sources), amplitude, out, in, bits, group};
    std::vector<int64_t> lead;
    if (stacked) lead.push_back(experts);
    auto shape = [&](int64_t last) {
      std::vector<int64_t> v = lead;
      v.insert(v.end(), {out, last});
      return v;
    };
    AddPacked(prefix + ".weight", DType::kU32, shape(in * bits / 32), Init::kMlxWeight, q);
    AddPacked(prefix + ".scales", DType::kBF16, shape(in / group), Init::kMlxScales, q);
    AddPacked(prefix + ".biases", DType::kBF16, shape(in / group), Init::kMlxBiases, q);
  }
  bool AwqFits(int64_t out, int64_t in) const {
    return o_.quant == GenQuant::kAwq && in % o_.quant_group == 0 && out % 8 == 0;
  }
  bool MlxFits(int64_t in, int group) const {
    return o_.quant == GenQuant::kMlx && in % group == 0;
  }

  // A linear layer [out, in]; `residual_out` marks projections back into the residual stream.
  // `quantize`: packed when the options ask for a quantized format (and the shape allows).
  void Linear(const std::string& prefix, int64_t out, int64_t in, bool residual_out,
              bool quantize = false) {
    const float amplitude = LinearAmplitude(in, residual_out, c_.num_hidden_layers);
    if (quantize && AwqFits(out, in)) return AwqLinear(prefix, out, in, amplitude);
    if (quantize && MlxFits(in, o_.quant_group)) {
      return MlxLinear(prefix, {prefix + ".weight"}, out, in, amplitude, o_.quant_bits,
                       o_.quant_group);
    }
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
    if (MlxFits(d_model, o_.quant_group)) {
      MlxLinear("model.embed_tokens", {"model.embed_tokens.weight"}, c_.vocab_size, d_model,
                kSqrt3, o_.quant_bits, o_.quant_group);
    } else {
      Add("model.embed_tokens.weight", DType::kBF16, {c_.vocab_size, d_model}, Init::kUniform,
          kSqrt3);
    }
    const bool qa = o_.quantize_attention;
    for (int l = 0; l < c_.num_hidden_layers; ++l) {
      auto name = [&](const char* s) { return LayerTensorName(l, s); };
      Norm(name("input_layernorm.weight"), d_model);
      if (c_.IsLinearLayer(l)) {
        Linear(name("self_attn.qkv_proj"), 3 * c_.q_dim(), d_model, false, qa);
        Linear(name("self_attn.output_gate"), c_.q_dim(), d_model, false, qa);
        Linear(name("self_attn.out_proj"), d_model, c_.q_dim(), true, qa);
        Norm(name("self_attn.norm.weight"), c_.q_dim());
      } else {
        Linear(name("self_attn.q_proj"), c_.q_dim(), d_model, false, qa);
        Linear(name("self_attn.k_proj"), c_.kv_dim(), d_model, false, qa);
        Linear(name("self_attn.v_proj"), c_.kv_dim(), d_model, false, qa);
        Linear(name("self_attn.o_proj"), d_model, c_.q_dim(), true, qa);
        if (m2 && c_.use_qk_norm) {
          Norm(name("self_attn.q_norm.weight"), c_.q_dim());
          Norm(name("self_attn.k_norm.weight"), c_.kv_dim());
        }
      }
      Norm(name("post_attention_layernorm.weight"), d_model);
      // The released M2 keeps the router in fp32; Text-01 stores it like the rest.
      // MLX quantizes it too, at 8 bits / group 64 (mlx-lm's quant_predicate for MiniMax).
      if (MlxFits(d_model, kMlxGateGroup)) {
        MlxLinear(name("block_sparse_moe.gate"), {name("block_sparse_moe.gate.weight")}, experts,
                  d_model, kSqrt3 / std::sqrt(static_cast<float>(d_model)), kMlxGateBits,
                  kMlxGateGroup);
      } else {
        Add(name("block_sparse_moe.gate.weight"), m2 ? DType::kF32 : DType::kBF16,
            {experts, d_model}, Init::kUniform, kSqrt3 / std::sqrt(static_cast<float>(d_model)));
      }
      if (m2 && c_.use_routing_bias) {
        Add(name("block_sparse_moe.e_score_correction_bias"), DType::kF32, {experts},
            Init::kUniform, 0.05f);
      }
      if (o_.quant == GenQuant::kMlx) {
        // Stacked and renamed: w1 -> gate_proj, w3 -> up_proj, w2 -> down_proj.
        for (const char* proj : {"w1", "w3", "w2"}) {
          std::vector<std::string> sources;
          for (int e = 0; e < experts; ++e) {
            sources.push_back(ExpertLinearName(l, e, proj) + ".weight");
          }
          const bool down = std::string(proj) == "w2";
          MlxLinear(quant::MlxExpertStackName(l, proj), std::move(sources), down ? d_model : inter,
                    down ? inter : d_model,
                    LinearAmplitude(down ? inter : d_model, down, c_.num_hidden_layers),
                    o_.quant_bits, o_.quant_group, /*stacked=*/true);
        }
        continue;
      }
      for (int e = 0; e < experts; ++e) {
        Linear(ExpertLinearName(l, e, "w1"), inter, d_model, false, true);
        Linear(ExpertLinearName(l, e, "w2"), d_model, inter, true, true);
        Linear(ExpertLinearName(l, e, "w3"), inter, d_model, false, true);
      }
    }
    Norm("model.norm.weight", d_model);
    if (!c_.tie_word_embeddings && MlxFits(d_model, o_.quant_group)) {
      MlxLinear("lm_head", {"lm_head.weight"}, c_.vocab_size, d_model,
                kSqrt3 / std::sqrt(static_cast<float>(d_model)), o_.quant_bits, o_.quant_group);
    } else if (!c_.tie_word_embeddings) {
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

// Random access to the bf16 values WriteTensor draws for a kUniform tensor: value i comes from
// draw i / 2 of the tensor's SplitMix64 stream (a counter: draw k mixes state0 + (k+1) * step),
// even i from its high 24 bits, odd i from the next 24.
class SourceValues {
 public:
  SourceValues(uint64_t seed, const std::string& name, float amplitude)
      : state0_(TensorSeed(seed, name)), amplitude_(amplitude) {}
  // out[j] = value first + j, j < n.
  void Get(int64_t first, int64_t n, float* out) const {
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = first + j;
      uint64_t state = state0_ + static_cast<uint64_t>(i / 2) * 0x9E3779B97F4A7C15ull;
      const uint64_t r = SplitMix64(state);
      const uint64_t bits24 = i % 2 == 0 ? r >> 40 : (r >> 16) & 0xFFFFFF;
      out[j] = kernels::Bf16ToFloat(EncodeBf16(amplitude_ * UniformPm1(bits24)));
    }
  }

 private:
  uint64_t state0_;
  float amplitude_;
};

// Streams one packed tensor: MLX tensors row block by row block (of every stacked source in
// turn), AWQ tensors one input group at a time (each group needs all output rows).
absl::Status WriteQuantTensor(const GenTensor& t, uint64_t seed, PipelinedAppender& out) {
  const QuantSource& q = t.quant;
  const int64_t groups = q.in / q.group;
  std::vector<float> values;
  std::vector<uint8_t> codes;
  if (t.init == Init::kMlxWeight || t.init == Init::kMlxScales || t.init == Init::kMlxBiases) {
    const int64_t words = q.in * q.bits / 32;
    const int64_t row_bytes = t.init == Init::kMlxWeight ? words * 4 : groups * 2;
    const int64_t rows_per_chunk = std::max<int64_t>(1, (int64_t{4} << 20) / (q.in * 4));
    values.resize(q.in);
    codes.resize(q.in);
    for (const std::string& source : q.sources) {
      const SourceValues src(seed, source, q.amplitude);
      for (int64_t r0 = 0; r0 < q.out; r0 += rows_per_chunk) {
        const int64_t rn = std::min(rows_per_chunk, q.out - r0);
        uint8_t* dst = out.NextBuffer(static_cast<size_t>(rn * row_bytes)).data();
        for (int64_t r = r0; r < r0 + rn; ++r) {
          src.Get(r * q.in, q.in, values.data());
          uint8_t* row = dst + (r - r0) * row_bytes;
          for (int64_t g = 0; g < groups; ++g) {
            const quant::MlxGroup mg = quant::QuantizeMlxGroup(
                values.data() + g * q.group, q.group, q.bits, codes.data() + g * q.group);
            if (t.init == Init::kMlxScales) std::memcpy(row + 2 * g, &mg.scale_bf16, 2);
            if (t.init == Init::kMlxBiases) std::memcpy(row + 2 * g, &mg.bias_bf16, 2);
          }
          if (t.init == Init::kMlxWeight) {
            const std::vector<uint32_t> packed = quant::PackMlxRow(codes.data(), q.in, q.bits);
            std::memcpy(row, packed.data(), packed.size() * 4);
          }
        }
        RETURN_IF_ERROR(out.Submit(t.spec.name));
      }
    }
    return absl::OkStatus();
  }
  // AWQ: group g of inputs, every output o: codes[o * G + k] for input g * G + k.
  const SourceValues src(seed, q.sources[0], q.amplitude);
  values.resize(q.group);
  codes.resize(q.out * q.group);
  std::vector<quant::AwqGroup> params(q.out);
  uint8_t word_codes[8];
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t o = 0; o < q.out; ++o) {
      src.Get(o * q.in + g * q.group, q.group, values.data());
      params[o] = quant::QuantizeAwqGroup(values.data(), q.group, codes.data() + o * q.group);
    }
    if (t.init == Init::kAwqQweight) {
      uint8_t* dst = out.NextBuffer(static_cast<size_t>(q.group * q.out / 2)).data();
      for (int64_t k = 0; k < q.group; ++k) {
        for (int64_t c = 0; c < q.out / 8; ++c) {
          for (int j = 0; j < 8; ++j) word_codes[j] = codes[(c * 8 + j) * q.group + k];
          const uint32_t word = quant::PackAwqWord(word_codes);
          std::memcpy(dst + (k * (q.out / 8) + c) * 4, &word, 4);
        }
      }
    } else if (t.init == Init::kAwqQzeros) {
      uint8_t* dst = out.NextBuffer(static_cast<size_t>(q.out / 2)).data();
      for (int64_t c = 0; c < q.out / 8; ++c) {
        for (int j = 0; j < 8; ++j) word_codes[j] = params[c * 8 + j].zero;
        const uint32_t word = quant::PackAwqWord(word_codes);
        std::memcpy(dst + c * 4, &word, 4);
      }
    } else {
      uint8_t* dst = out.NextBuffer(static_cast<size_t>(q.out * 2)).data();
      for (int64_t o = 0; o < q.out; ++o) std::memcpy(dst + 2 * o, &params[o].scale_f16, 2);
    }
    RETURN_IF_ERROR(out.Submit(t.spec.name));
  }
  return absl::OkStatus();
}

// Streams one tensor into the writer, chunk by chunk.
absl::Status WriteTensor(const GenTensor& t, uint64_t seed, PipelinedAppender& out) {
  if (t.init >= Init::kAwqQweight) return WriteQuantTensor(t, seed, out);
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
    default:
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
  c.quant_overrides.clear();
  c.quant_skip_modules.clear();
  c.quant_zero_point = true;
  if (options.quant != GenQuant::kNone) {
    const int bits = options.quant_bits, group = options.quant_group;
    const bool mlx = options.quant == GenQuant::kMlx;
    if (options.dtype != GenWeightDType::kBF16) {
      return absl::InvalidArgumentError("generator: --quant quantizes the bf16 weights; "
                                        "it cannot be combined with fp8");
    }
    if (mlx ? !(bits >= 2 && bits <= 8 && bits != 7) : bits != 4) {
      return absl::InvalidArgumentError(absl::StrCat(
          "generator: ", mlx ? "MLX bits must be 2, 3, 4, 5, 6 or 8" : "AWQ bits must be 4",
          ", got ", bits));
    }
    if (mlx ? !(group == 32 || group == 64 || group == 128) : group <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "generator: ", mlx ? "MLX group must be 32, 64 or 128" : "AWQ group must be positive",
          ", got ", group));
    }
    // The experts are the point of quantizing: both of their input widths must take groups.
    if (c.hidden_size % group != 0 || c.intermediate_size % group != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "generator: group ", group, " does not divide hidden ", c.hidden_size,
          " and intermediate ", c.intermediate_size));
    }
    c.weight_format = mlx ? WeightFormat::kMlx : WeightFormat::kAwq;
    c.quant_bits = bits;
    c.quant_group_size = group;
    if (mlx && c.hidden_size % kMlxGateGroup == 0) {
      for (int l = 0; l < c.num_hidden_layers; ++l) {
        c.quant_overrides[LayerTensorName(l, "block_sparse_moe.gate")] =
            QuantOverride{true, kMlxGateBits, kMlxGateGroup};
      }
    }
    if (!mlx) {
      c.quant_skip_modules = {"gate", "lm_head"};
      if (!options.quantize_attention) c.quant_skip_modules.push_back("self_attn");
    }
  }
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
    std::map<std::string, std::string> metadata = {{"format", "pt"}};
    if (c.weight_format == WeightFormat::kMlx) metadata["format"] = "mlx";
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsWriter> writer,
                     SafetensorsWriter::Create(JoinPath(out_dir, shard.file_name), shard.tensors,
                                               metadata));
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
