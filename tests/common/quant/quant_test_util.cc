// Generated quantized checkpoints and their dequantized float32 twins (see quant_test_util.h).
#include "tests/common/quant/quant_test_util.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/kernels/quant_matmul.h"
#include "common/quant/quant_loader.h"
#include "common/safetensors_writer.h"
#include "common/status.h"
#include "common/weights.h"

namespace afd::quant_testing {

ModelConfig SmallM2(int experts) {
  ModelConfig c = FindCheckpointPreset("tiny").value().config;
  c.vocab_size = 96;
  c.hidden_size = 128;
  c.intermediate_size = 128;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 32;
  c.rotary_dim = 16;
  c.num_local_experts = experts;
  c.num_experts_per_tok = 2;
  return c;
}

absl::Status GenerateQuantized(const ModelConfig& config, const QuantCase& case_, uint64_t seed,
                               const std::string& dir) {
  GenCheckpointOptions gen;
  gen.quant = case_.quant;
  gen.quant_bits = case_.bits;
  gen.quant_group = case_.group;
  gen.quantize_attention = case_.quantize_attention;
  gen.seed = seed;
  return GenerateCheckpoint(config, dir, gen).status();
}

namespace {

using Tensors = std::vector<std::pair<TensorSpec, std::vector<uint8_t>>>;

void AddDequantized(const std::string& name, const kernels::QuantMatrix& m, Tensors* out) {
  std::vector<uint8_t> bytes(static_cast<size_t>(m.rows * m.cols) * sizeof(float));
  std::vector<float> row(m.cols);
  for (int64_t r = 0; r < m.rows; ++r) {
    kernels::QuantDequantizeRow(m, r, row.data());
    std::memcpy(bytes.data() + r * m.cols * sizeof(float), row.data(), m.cols * sizeof(float));
  }
  out->push_back({TensorSpec{name, DType::kF32, {m.rows, m.cols}}, std::move(bytes)});
}

// The module `prefix` of MLX weight `t` (U32 [out, in*b/32] or stacked [E, out, in*b/32]).
absl::Status AddMlx(const ModelConfig& config, const Checkpoint& src, const std::string& prefix,
                    const TensorView& t, Tensors* out) {
  const int bits = quant::MlxParamsFor(config, prefix).bits;
  if (bits <= 0 || t.shape.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat("'", prefix, "': no MLX bits"));
  }
  const int64_t rows = t.shape[t.shape.size() - 2];
  const int64_t in = t.shape.back() * 32 / bits;
  if (t.shape.size() == 2) {
    ASSIGN_OR_RETURN(kernels::QuantMatrix m, quant::LoadMlxLinear(src, config, prefix, rows, in));
    AddDequantized(prefix + ".weight", m, out);
    return absl::OkStatus();
  }
  // model.layers.L.block_sparse_moe.switch_mlp.<proj>
  const std::vector<std::string> parts = absl::StrSplit(prefix, '.');
  int layer = 0;
  if (parts.size() < 3 || !absl::SimpleAtoi(parts[2], &layer)) {
    return absl::InvalidArgumentError(absl::StrCat("'", prefix, "': no layer index"));
  }
  const std::string proj = parts.back() == "gate_proj" ? "w1"
                           : parts.back() == "up_proj" ? "w3"
                                                       : "w2";
  const int experts = static_cast<int>(t.shape[0]);
  for (int e = 0; e < experts; ++e) {
    ASSIGN_OR_RETURN(kernels::QuantMatrix m,
                     quant::LoadMlxLinear(src, config, prefix, rows, in, e, experts));
    AddDequantized(ExpertLinearName(layer, e, proj) + ".weight", m, out);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteDequantizedTwin(const ModelConfig& config, const Checkpoint& src,
                                  const std::string& dst) {
  Tensors out;
  for (const std::string& name : src.Names()) {
    ASSIGN_OR_RETURN(TensorView t, src.Get(name));
    if (absl::EndsWith(name, ".qzeros") || absl::EndsWith(name, ".biases") ||
        absl::EndsWith(name, ".scales")) {
      continue;  // parts of packed modules, dequantized with their codes
    }
    if (absl::EndsWith(name, ".qweight")) {
      const std::string prefix = name.substr(0, name.size() - 8);
      ASSIGN_OR_RETURN(kernels::QuantMatrix m,
                       quant::LoadAwqLinear(src, config, prefix, t.shape[1] * 8, t.shape[0]));
      AddDequantized(prefix + ".weight", m, &out);
      continue;
    }
    const std::string prefix = name.substr(0, name.rfind('.'));
    if (t.dtype == DType::kU32 &&
        quant::DetectModuleFormat(src, prefix) == quant::ModuleFormat::kMlx) {
      RETURN_IF_ERROR(AddMlx(config, src, prefix, t, &out));
      continue;
    }
    out.push_back({TensorSpec{name, t.dtype, t.shape}, {t.data, t.data + t.bytes}});
  }
  std::vector<std::pair<TensorSpec, absl::Span<const uint8_t>>> tensors;
  for (const auto& [spec, bytes] : out) tensors.emplace_back(spec, absl::MakeConstSpan(bytes));
  std::error_code ec;
  std::filesystem::create_directories(dst, ec);
  if (ec) return absl::InternalError(absl::StrCat("mkdir ", dst, ": ", ec.message()));
  RETURN_IF_ERROR(WriteSafetensors(dst + "/model.safetensors", tensors));
  ModelConfig plain = config;
  plain.weight_format = WeightFormat::kPlain;
  plain.quant_bits = plain.quant_group_size = 0;
  plain.quant_overrides.clear();
  plain.quant_skip_modules.clear();
  const std::string json = ModelConfigToJson(plain, ConfigSpelling::kOriginal);
  std::FILE* f = std::fopen((dst + "/config.json").c_str(), "w");
  if (f == nullptr) return absl::InternalError(absl::StrCat("cannot write ", dst, "/config.json"));
  const bool ok = std::fwrite(json.data(), 1, json.size(), f) == json.size();
  if (std::fclose(f) != 0 || !ok) return absl::InternalError("short write of config.json");
  return absl::OkStatus();
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

}  // namespace afd::quant_testing
