// config.json -> ModelConfig for MiniMax-M2 and MiniMax-Text-01/M1, both key spellings.
#include "common/model_config.h"

#include <cmath>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace afd {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// Typed, non-throwing access to one JSON object; every error names the file and the key.
class Reader {
 public:
  Reader(const json& obj, std::string source, std::string prefix = "")
      : obj_(obj), source_(std::move(source)), prefix_(std::move(prefix)) {}

  // The key's value, or nullptr when absent or null.
  const json* Find(const std::string& key) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool Has(const std::string& key) const { return Find(key) != nullptr; }
  const std::string& source() const { return source_; }

  absl::Status Error(const std::string& key, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", prefix_, key, ": ", what));
  }

  absl::StatusOr<std::optional<int64_t>> Int(const std::string& key) const {
    const json* v = Find(key);
    if (v == nullptr) return std::optional<int64_t>();
    return ToInt(key, *v);
  }
  absl::StatusOr<int64_t> ToInt(const std::string& key, const json& v) const {
    if (v.is_number_unsigned()) {
      if (v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) return Error(key, "too large");
      return static_cast<int64_t>(v.get<uint64_t>());
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) {
        return static_cast<int64_t>(d);
      }
    }
    return Error(key, absl::StrCat("expected an integer, got ", v.dump()));
  }
  // A required positive int that fits `int`.
  absl::StatusOr<int> RequirePositive(const std::string& key) const {
    ASSIGN_OR_RETURN(std::optional<int64_t> v, Int(key));
    if (!v.has_value()) return Error(key, "required key is missing");
    return CheckPositive(key, *v);
  }
  absl::StatusOr<int> CheckPositive(const std::string& key, int64_t v) const {
    if (v <= 0 || v > (int64_t{1} << 30)) {
      return Error(key, absl::StrCat("must be a positive integer below 2^30, got ", v));
    }
    return static_cast<int>(v);
  }
  absl::StatusOr<std::optional<double>> Number(const std::string& key) const {
    const json* v = Find(key);
    if (v == nullptr) return std::optional<double>();
    if (!v->is_number()) return Error(key, absl::StrCat("expected a number, got ", v->dump()));
    return v->get<double>();
  }
  absl::StatusOr<std::optional<bool>> Bool(const std::string& key) const {
    const json* v = Find(key);
    if (v == nullptr) return std::optional<bool>();
    if (!v->is_boolean()) return Error(key, absl::StrCat("expected true/false, got ", v->dump()));
    return v->get<bool>();
  }
  absl::StatusOr<std::optional<std::string>> String(const std::string& key) const {
    std::optional<std::string> out;
    if (const json* v = Find(key)) {
      if (!v->is_string()) return Error(key, absl::StrCat("expected a string, got ", v->dump()));
      out.emplace(v->get<std::string>());
    }
    return out;
  }
  // Token ids may be an int, null, or a list (the first is used).
  absl::StatusOr<int> TokenId(const std::string& key) const {
    const json* v = Find(key);
    if (v == nullptr) return -1;
    const json* id = v;
    if (v->is_array()) {
      if (v->empty()) return -1;
      id = &(*v)[0];
    }
    ASSIGN_OR_RETURN(int64_t value, ToInt(key, *id));
    if (value < 0 || value > INT32_MAX) return Error(key, "token id out of range");
    return static_cast<int>(value);
  }

 private:
  const json& obj_;
  std::string source_;
  std::string prefix_;
};

// Two spellings of one number: either may be present; both present must agree.
absl::StatusOr<std::optional<double>> EitherNumber(const Reader& r, const std::string& a,
                                                   const std::string& b) {
  ASSIGN_OR_RETURN(std::optional<double> va, r.Number(a));
  ASSIGN_OR_RETURN(std::optional<double> vb, r.Number(b));
  if (va.has_value() && vb.has_value() && *va != *vb) {
    return r.Error(a, absl::StrCat("is ", *va, " but ", b, " is ", *vb));
  }
  return va.has_value() ? va : vb;
}

absl::Status ParseLayerTypes(const Reader& r, ModelConfig* c) {
  std::optional<std::vector<LayerType>> from_strings, from_ints;
  if (const json* lt = r.Find("layer_types")) {
    if (!lt->is_array()) return r.Error("layer_types", "expected a list of strings");
    from_strings.emplace();
    for (const json& v : *lt) {
      if (v == "full_attention") {
        from_strings->push_back(LayerType::kFullAttention);
      } else if (v == "linear_attention") {
        from_strings->push_back(LayerType::kLinearAttention);
      } else {
        return r.Error("layer_types", absl::StrCat("unknown layer type ", v.dump(),
                                                   " (expected \"full_attention\" or "
                                                   "\"linear_attention\")"));
      }
    }
  }
  if (const json* at = r.Find("attn_type_list")) {
    if (!at->is_array()) return r.Error("attn_type_list", "expected a list of 0/1");
    from_ints.emplace();
    for (const json& v : *at) {
      ASSIGN_OR_RETURN(int64_t t, r.ToInt("attn_type_list", v));
      if (t != 0 && t != 1) {
        return r.Error("attn_type_list", absl::StrCat("entries must be 0 (linear) or 1 (full), "
                                                      "got ",
                                                      t));
      }
      from_ints->push_back(t == 1 ? LayerType::kFullAttention : LayerType::kLinearAttention);
    }
  }
  if (!from_strings.has_value() && !from_ints.has_value()) {
    return r.Error("layer_types",
                   "required key is missing (nor is attn_type_list given); "
                   "the layer pattern must come from the checkpoint");
  }
  const char* key = from_strings.has_value() ? "layer_types" : "attn_type_list";
  const std::vector<LayerType>& types = from_strings.has_value() ? *from_strings : *from_ints;
  if (from_strings.has_value() && from_ints.has_value() && *from_strings != *from_ints) {
    return r.Error("layer_types", "disagrees with attn_type_list");
  }
  if (static_cast<int>(types.size()) != c->num_hidden_layers) {
    return r.Error(key, absl::StrCat("has ", types.size(), " entries but num_hidden_layers is ",
                                     c->num_hidden_layers));
  }
  c->layer_types = types;
  return absl::OkStatus();
}

absl::Status ParseQuantization(const Reader& r, ModelConfig* c) {
  const json* mlx = r.Find("quantization");
  const json* qc = r.Find("quantization_config");
  if (mlx != nullptr && !mlx->is_object()) return r.Error("quantization", "expected an object");
  if (qc != nullptr && !qc->is_object()) {
    return r.Error("quantization_config", "expected an object");
  }
  const json* mlx_params = mlx;
  if (mlx == nullptr && qc != nullptr && !qc->contains("quant_method")) {
    if (!qc->contains("bits") && !qc->contains("group_size")) {
      return r.Error("quantization_config", "has no quant_method (and no MLX bits/group_size)");
    }
    mlx_params = qc;
  }
  if (mlx_params != nullptr) {
    const std::string key = mlx != nullptr ? "quantization" : "quantization_config";
    Reader qe(*mlx_params, r.source(), key + ".");
    ASSIGN_OR_RETURN(std::optional<std::string> mode, qe.String("mode"));
    if (mode.has_value() && *mode != "affine") {
      return r.Error(key, absl::StrCat("MLX mode '", *mode, "' is not supported (only affine)"));
    }
    ASSIGN_OR_RETURN(std::optional<int64_t> bits, qe.Int("bits"));
    ASSIGN_OR_RETURN(std::optional<int64_t> group, qe.Int("group_size"));
    c->weight_format = WeightFormat::kMlx;
    c->quant_bits = static_cast<int>(bits.value_or(4));
    c->quant_group_size = static_cast<int>(group.value_or(64));
    if (c->quant_bits < 2 || c->quant_bits > 8 || c->quant_bits == 7) {
      return r.Error(key + ".bits", absl::StrCat("MLX bits must be 2-6 or 8, got ", c->quant_bits));
    }
    if (c->quant_group_size <= 0) {
      return r.Error(key + ".group_size", "must be positive");
    }
    // Every other key is a module path: {"bits": b, "group_size": g[, "mode": "affine"]}, or
    // false for a module mlx-lm left unquantized.
    for (auto it = mlx_params->begin(); it != mlx_params->end(); ++it) {
      const std::string& path = it.key();
      if (path == "bits" || path == "group_size" || path == "mode") continue;
      const std::string entry = absl::StrCat(key, ".", path);
      QuantOverride o;
      if (it->is_boolean()) {
        o.quantized = it->get<bool>();
        o.bits = c->quant_bits;
        o.group_size = c->quant_group_size;
        c->quant_overrides[path] = o;
        continue;
      }
      if (!it->is_object()) {
        return r.Error(entry, absl::StrCat("expected {bits, group_size} or false, got ",
                                           it->dump()));
      }
      Reader oe(*it, r.source(), entry + ".");
      ASSIGN_OR_RETURN(std::optional<std::string> omode, oe.String("mode"));
      if (omode.has_value() && *omode != "affine") {
        return r.Error(entry,
                       absl::StrCat("MLX mode '", *omode, "' is not supported (only affine)"));
      }
      ASSIGN_OR_RETURN(std::optional<int64_t> obits, oe.Int("bits"));
      ASSIGN_OR_RETURN(std::optional<int64_t> ogroup, oe.Int("group_size"));
      o.bits = static_cast<int>(obits.value_or(c->quant_bits));
      o.group_size = static_cast<int>(ogroup.value_or(c->quant_group_size));
      if (o.bits < 2 || o.bits > 8 || o.bits == 7) {
        return r.Error(entry + ".bits", absl::StrCat("MLX bits must be 2-6 or 8, got ", o.bits));
      }
      if (o.group_size <= 0) return r.Error(entry + ".group_size", "must be positive");
      c->quant_overrides[path] = o;
    }
    return absl::OkStatus();
  }
  if (qc == nullptr) return absl::OkStatus();
  auto method_it = qc->find("quant_method");
  if (method_it == qc->end() || !method_it->is_string()) {
    return r.Error("quantization_config.quant_method", "expected a string");
  }
  const std::string method = absl::AsciiStrToLower(method_it->get<std::string>());
  if (method == "fp8") {
    auto wbs = qc->find("weight_block_size");
    if (wbs == qc->end() || !wbs->is_array() || wbs->size() != 2) {
      return r.Error("quantization_config.weight_block_size",
                     "fp8 needs a [rows, cols] block size (per-tensor FP8 is not supported)");
    }
    ASSIGN_OR_RETURN(int64_t br, r.ToInt("quantization_config.weight_block_size", (*wbs)[0]));
    ASSIGN_OR_RETURN(int64_t bc, r.ToInt("quantization_config.weight_block_size", (*wbs)[1]));
    if (br <= 0 || bc <= 0 || br > 65536 || bc > 65536) {
      return r.Error("quantization_config.weight_block_size", "block sizes must be positive");
    }
    auto fmt = qc->find("fmt");
    if (fmt != qc->end() && !fmt->is_null() &&
        !(fmt->is_string() && (*fmt == "float8_e4m3fn" || *fmt == "e4m3"))) {
      return r.Error("quantization_config.fmt",
                     absl::StrCat("only float8_e4m3fn is supported, got ", fmt->dump()));
    }
    c->weight_format = WeightFormat::kFp8Block;
    c->fp8_block_rows = static_cast<int>(br);
    c->fp8_block_cols = static_cast<int>(bc);
    return absl::OkStatus();
  }
  if (method == "awq") {
    Reader qe(*qc, r.source(), "quantization_config.");
    ASSIGN_OR_RETURN(std::optional<int64_t> bits, qe.Int("bits"));
    ASSIGN_OR_RETURN(std::optional<int64_t> group, qe.Int("group_size"));
    ASSIGN_OR_RETURN(std::optional<std::string> version, qe.String("version"));
    if (bits.value_or(4) != 4) {
      return r.Error("quantization_config.bits", "AWQ GEMM packs only 4 bits");
    }
    if (version.has_value() && absl::AsciiStrToLower(*version) != "gemm") {
      return r.Error("quantization_config.version",
                     absl::StrCat("AWQ version '", *version, "' is not supported (only gemm)"));
    }
    const int64_t g = group.value_or(128);
    if (g != -1 && g <= 0) return r.Error("quantization_config.group_size", "must be > 0 or -1");
    ASSIGN_OR_RETURN(std::optional<bool> zero_point, qe.Bool("zero_point"));
    c->weight_format = WeightFormat::kAwq;
    c->quant_bits = 4;
    c->quant_group_size = static_cast<int>(g);
    c->quant_zero_point = zero_point.value_or(true);
    if (const json* skip = qe.Find("modules_to_not_convert")) {
      if (!skip->is_array()) {
        return r.Error("quantization_config.modules_to_not_convert", "expected a list of strings");
      }
      for (const json& m : *skip) {
        if (!m.is_string()) {
          return r.Error("quantization_config.modules_to_not_convert",
                         absl::StrCat("expected strings, got ", m.dump()));
        }
        c->quant_skip_modules.push_back(m.get<std::string>());
      }
    }
    return absl::OkStatus();
  }
  if (method == "compressed-tensors") {
    return r.Error("quantization_config.quant_method",
                   "compressed-tensors checkpoints are not supported");
  }
  return r.Error("quantization_config.quant_method",
                 absl::StrCat("unsupported quant_method '", method, "'"));
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& source) {
  json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return absl::InvalidArgumentError(source + ": malformed JSON");
  if (!root.is_object()) return absl::InvalidArgumentError(source + ": not a JSON object");
  Reader r(root, source);
  ModelConfig c;

  // Architecture: model_type, or architectures[0] when model_type is absent or generic
  // (AWQ re-exports of M2 say "mixtral"; QUANT.md §1.1).
  ASSIGN_OR_RETURN(std::optional<std::string> model_type, r.String("model_type"));
  std::string arch_name;
  if (const json* archs = r.Find("architectures")) {
    if (archs->is_array() && !archs->empty() && (*archs)[0].is_string()) {
      arch_name = (*archs)[0].get<std::string>();
    }
  }
  const std::string mt = model_type.value_or("");
  if (mt == "minimax_m2" ||
      ((mt.empty() || mt == "mixtral") && arch_name == "MiniMaxM2ForCausalLM")) {
    c.arch = Architecture::kMiniMaxM2;
  } else if (mt == "minimax" || mt == "minimax_text_01" || mt == "minimax_m1" ||
             (mt.empty() &&
              (arch_name == "MiniMaxForCausalLM" || arch_name == "MiniMaxText01ForCausalLM" ||
               arch_name == "MiniMaxM1ForCausalLM"))) {
    c.arch = Architecture::kMiniMaxText01;
  } else if (mt.empty()) {
    return r.Error("model_type", "required key is missing");
  } else {
    return r.Error("model_type",
                   absl::StrCat("unknown model_type '", mt,
                                "' (expected minimax_m2, minimax, minimax_text_01 or minimax_m1)"));
  }
  const bool m2 = c.arch == Architecture::kMiniMaxM2;
  c.model_type = mt.empty() ? (m2 ? "minimax_m2" : "minimax") : mt;

  ASSIGN_OR_RETURN(c.vocab_size, r.RequirePositive("vocab_size"));
  ASSIGN_OR_RETURN(c.hidden_size, r.RequirePositive("hidden_size"));
  ASSIGN_OR_RETURN(c.intermediate_size, r.RequirePositive("intermediate_size"));
  ASSIGN_OR_RETURN(c.num_hidden_layers, r.RequirePositive("num_hidden_layers"));
  ASSIGN_OR_RETURN(c.num_attention_heads, r.RequirePositive("num_attention_heads"));
  ASSIGN_OR_RETURN(c.num_key_value_heads, r.RequirePositive("num_key_value_heads"));
  {
    ASSIGN_OR_RETURN(std::optional<int64_t> e, r.Int("num_local_experts"));
    ASSIGN_OR_RETURN(std::optional<int64_t> e2, r.Int("num_experts"));
    if (e.has_value() && e2.has_value() && *e != *e2) {
      return r.Error("num_local_experts", absl::StrCat("is ", *e, " but num_experts is ", *e2));
    }
    if (!e.has_value() && !e2.has_value()) {
      return r.Error("num_local_experts", "required key is missing");
    }
    ASSIGN_OR_RETURN(c.num_local_experts, r.CheckPositive("num_local_experts", e ? *e : *e2));
  }
  ASSIGN_OR_RETURN(c.num_experts_per_tok, r.RequirePositive("num_experts_per_tok"));
  if (c.num_experts_per_tok > c.num_local_experts) {
    return r.Error(
        "num_experts_per_tok",
        absl::StrCat(c.num_experts_per_tok, " exceeds num_local_experts ", c.num_local_experts));
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return r.Error("num_attention_heads",
                   absl::StrCat(c.num_attention_heads, " is not divisible by num_key_value_heads ",
                                c.num_key_value_heads));
  }
  {
    ASSIGN_OR_RETURN(std::optional<int64_t> hd, r.Int("head_dim"));
    if (hd.has_value()) {
      ASSIGN_OR_RETURN(c.head_dim, r.CheckPositive("head_dim", *hd));
    } else {
      if (c.hidden_size % c.num_attention_heads != 0) {
        return r.Error("head_dim", absl::StrCat("is missing and hidden_size ", c.hidden_size,
                                                " is not divisible by num_attention_heads ",
                                                c.num_attention_heads));
      }
      c.head_dim = c.hidden_size / c.num_attention_heads;
    }
  }

  ASSIGN_OR_RETURN(std::optional<std::string> act, r.String("hidden_act"));
  if (act.has_value() && *act != "silu") {
    return r.Error("hidden_act", absl::StrCat("'", *act, "' is not supported (only silu)"));
  }

  // RoPE: theta and the rotated dims (MODEL.md decision table).
  const json* rope_params = r.Find("rope_parameters");
  if (rope_params != nullptr && !rope_params->is_object()) {
    return r.Error("rope_parameters", "expected an object");
  }
  static const json kEmptyObject = json::object();
  Reader rp(rope_params != nullptr ? *rope_params : kEmptyObject, source, "rope_parameters.");
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    const json* obj = r.Find(key);
    if (obj == nullptr || !obj->is_object()) continue;
    for (const char* type_key : {"rope_type", "type"}) {
      auto it = obj->find(type_key);
      if (it != obj->end() && !it->is_null() && *it != "default") {
        return r.Error(key,
                       absl::StrCat("rope type ", it->dump(), " is not supported (only default)"));
      }
    }
  }
  {
    ASSIGN_OR_RETURN(std::optional<double> top, r.Number("rope_theta"));
    ASSIGN_OR_RETURN(std::optional<double> nested, rp.Number("rope_theta"));
    if (top.has_value() && nested.has_value() && *top != *nested) {
      return r.Error("rope_theta",
                     absl::StrCat("is ", *top, " but rope_parameters.rope_theta is ", *nested));
    }
    c.rope_theta = top ? *top : nested ? *nested : (m2 ? 5e6 : 1e6);
    if (!(c.rope_theta > 0)) return r.Error("rope_theta", "must be positive");
  }
  {
    // Each spelling gives a candidate; all present candidates must agree.
    std::optional<int64_t> rotary;
    std::string rotary_from;
    auto add = [&](const std::string& key, int64_t value) -> absl::Status {
      if (rotary.has_value() && *rotary != value) {
        return r.Error(key, absl::StrCat("implies ", value, " rotary dims but ", rotary_from,
                                         " implies ", *rotary));
      }
      rotary = value;
      rotary_from = key;
      return absl::OkStatus();
    };
    ASSIGN_OR_RETURN(std::optional<int64_t> rd, r.Int("rotary_dim"));
    if (rd.has_value()) RETURN_IF_ERROR(add("rotary_dim", *rd));
    ASSIGN_OR_RETURN(std::optional<double> p_top, r.Number("partial_rotary_factor"));
    ASSIGN_OR_RETURN(std::optional<double> p_nested, rp.Number("partial_rotary_factor"));
    for (auto [key, p] :
         {std::pair<std::string, std::optional<double>>{"partial_rotary_factor", p_top},
          {"rope_parameters.partial_rotary_factor", p_nested}}) {
      if (!p.has_value()) continue;
      if (!(*p > 0 && *p <= 1)) return r.Error(key, absl::StrCat("must be in (0, 1], got ", *p));
      // transformers: dim = int(head_dim * partial_rotary_factor).
      RETURN_IF_ERROR(add(key, static_cast<int64_t>(c.head_dim * *p)));
    }
    if (!rotary.has_value()) {
      rotary = m2 ? c.head_dim / 2 : c.head_dim;
      rotary_from = "default";
    }
    if (*rotary <= 0 || *rotary > c.head_dim) {
      return r.Error(
          rotary_from == "default" ? "rotary_dim" : rotary_from,
          absl::StrCat("rotary dims ", *rotary, " not in (0, head_dim ", c.head_dim, "]"));
    }
    if (*rotary % 2 != 0) {
      return r.Error(rotary_from,
                     absl::StrCat("rotary dims ", *rotary, " is odd (NeoX rotation pairs dims)"));
    }
    c.rotary_dim = static_cast<int>(*rotary);
  }

  {
    ASSIGN_OR_RETURN(std::optional<double> eps, r.Number("rms_norm_eps"));
    c.rms_norm_eps = eps.value_or(m2 ? 1e-6 : 1e-5);
    if (!(c.rms_norm_eps > 0)) return r.Error("rms_norm_eps", "must be positive");
  }
  ASSIGN_OR_RETURN(std::optional<bool> tie, r.Bool("tie_word_embeddings"));
  c.tie_word_embeddings = tie.value_or(false);
  ASSIGN_OR_RETURN(c.bos_token_id, r.TokenId("bos_token_id"));
  ASSIGN_OR_RETURN(c.eos_token_id, r.TokenId("eos_token_id"));
  {
    ASSIGN_OR_RETURN(std::optional<int64_t> mpe, r.Int("max_position_embeddings"));
    if (mpe.has_value()) {
      ASSIGN_OR_RETURN(c.max_position_embeddings, r.CheckPositive("max_position_embeddings", *mpe));
    } else {
      c.max_position_embeddings = m2 ? 196608 : 131072;
    }
  }
  {
    ASSIGN_OR_RETURN(std::optional<int64_t> shared, r.Int("shared_intermediate_size"));
    if (shared.value_or(0) != 0) {
      return r.Error("shared_intermediate_size",
                     absl::StrCat(*shared, ": shared experts are not supported"));
    }
  }

  if (m2) {
    ASSIGN_OR_RETURN(std::optional<std::string> scoring, r.String("scoring_func"));
    if (scoring.has_value() && *scoring != "sigmoid") {
      return r.Error("scoring_func", absl::StrCat("'", *scoring,
                                                  "' is not supported for minimax_m2 (only "
                                                  "sigmoid)"));
    }
    c.scoring = RouterScoring::kSigmoidWithBias;
    ASSIGN_OR_RETURN(std::optional<bool> qk_norm, r.Bool("use_qk_norm"));
    c.use_qk_norm = qk_norm.value_or(true);
    ASSIGN_OR_RETURN(std::optional<std::string> qk_type, r.String("qk_norm_type"));
    if (c.use_qk_norm && qk_type.has_value() && *qk_type != "per_layer") {
      return r.Error("qk_norm_type",
                     absl::StrCat("'", *qk_type, "' is not supported (only per_layer)"));
    }
    ASSIGN_OR_RETURN(std::optional<bool> bias, r.Bool("use_routing_bias"));
    c.use_routing_bias = bias.value_or(true);
    // attn_type_list / layer_types of M2 are ignored (every layer is full attention).
    c.layer_types.assign(c.num_hidden_layers, LayerType::kFullAttention);
  } else {
    c.scoring = RouterScoring::kSoftmax;
    c.use_qk_norm = false;
    c.use_routing_bias = false;
    RETURN_IF_ERROR(ParseLayerTypes(r, &c));
    ASSIGN_OR_RETURN(std::optional<int64_t> block, r.Int("block_size"));
    if (block.has_value()) {
      ASSIGN_OR_RETURN(c.block_size, r.CheckPositive("block_size", *block));
    }
    ASSIGN_OR_RETURN(std::optional<bool> postnorm, r.Bool("postnorm"));
    if (postnorm.has_value() && !*postnorm) {
      return r.Error("postnorm", "false (pre-norm residuals) is not supported");
    }
    struct Factor {
      const char* original;
      const char* transformers;
      double* out;
    };
    const Factor factors[] = {
        {"layernorm_full_attention_alpha", "full_attn_alpha_factor", &c.full_attn_alpha},
        {"layernorm_full_attention_beta", "full_attn_beta_factor", &c.full_attn_beta},
        {"layernorm_linear_attention_alpha", "linear_attn_alpha_factor", &c.linear_attn_alpha},
        {"layernorm_linear_attention_beta", "linear_attn_beta_factor", &c.linear_attn_beta},
        {"layernorm_mlp_alpha", "mlp_alpha_factor", &c.mlp_alpha},
        {"layernorm_mlp_beta", "mlp_beta_factor", &c.mlp_beta},
    };
    for (const Factor& f : factors) {
      ASSIGN_OR_RETURN(std::optional<double> v, EitherNumber(r, f.original, f.transformers));
      *f.out = v.value_or(1.0);
    }
    c.lightning_norm_eps = 1e-6;  // MODEL.md: independent of rms_norm_eps
  }
  RETURN_IF_ERROR(ParseQuantization(r, &c));
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir) {
  const std::string path =
      dir.empty() || dir.back() == '/' ? dir + "config.json" : dir + "/config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::UnavailableError(absl::StrCat(path, ": read failed"));
  return ParseModelConfig(text.str(), path);
}

std::string ModelConfigToJson(const ModelConfig& c, ConfigSpelling spelling) {
  const bool m2 = c.arch == Architecture::kMiniMaxM2;
  const bool original = spelling == ConfigSpelling::kOriginal;
  ordered_json j;
  if (m2) {
    j["architectures"] = {"MiniMaxM2ForCausalLM"};
    j["model_type"] = "minimax_m2";
  } else if (original) {
    j["architectures"] = {"MiniMaxText01ForCausalLM"};
    j["model_type"] = "minimax_text_01";
  } else {
    j["architectures"] = {"MiniMaxForCausalLM"};
    j["model_type"] = "minimax";
  }
  if (original) {
    ordered_json list = ordered_json::array();
    for (int i = 0; i < c.num_hidden_layers; ++i) {
      list.push_back(m2 || c.layer_types[i] == LayerType::kFullAttention ? 1 : 0);
    }
    j["attn_type_list"] = list;
  } else if (!m2) {
    ordered_json list = ordered_json::array();
    for (LayerType t : c.layer_types) {
      list.push_back(t == LayerType::kFullAttention ? "full_attention" : "linear_attention");
    }
    j["layer_types"] = list;
  }
  if (!m2) j["block_size"] = c.block_size;
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = "silu";
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_experts_per_tok"] = c.num_experts_per_tok;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["num_local_experts"] = c.num_local_experts;
  if (m2) {
    j["num_mtp_modules"] = 0;
    j["mtp_transformer_layers"] = 1;
    j["use_mtp"] = false;
    j["qk_norm_type"] = "per_layer";
    j["use_qk_norm"] = c.use_qk_norm;
  } else if (original) {
    j["postnorm"] = true;
  }
  j["rms_norm_eps"] = c.rms_norm_eps;
  const double partial = static_cast<double>(c.rotary_dim) / c.head_dim;
  if (original) {
    j["rope_theta"] = c.rope_theta;
    j["rotary_dim"] = c.rotary_dim;
  } else {
    ordered_json rope;
    rope["rope_type"] = "default";
    rope["rope_theta"] = c.rope_theta;
    rope["partial_rotary_factor"] = partial;
    j["rope_parameters"] = rope;
  }
  if (m2) {
    j["router_aux_loss_coef"] = 0.001;
    j["router_jitter_noise"] = 0.0;
    j["scoring_func"] = "sigmoid";
    j["use_routing_bias"] = c.use_routing_bias;
  } else if (original) {
    j["layernorm_full_attention_alpha"] = c.full_attn_alpha;
    j["layernorm_full_attention_beta"] = c.full_attn_beta;
    j["layernorm_linear_attention_alpha"] = c.linear_attn_alpha;
    j["layernorm_linear_attention_beta"] = c.linear_attn_beta;
    j["layernorm_mlp_alpha"] = c.mlp_alpha;
    j["layernorm_mlp_beta"] = c.mlp_beta;
  } else {
    j["full_attn_alpha_factor"] = c.full_attn_alpha;
    j["full_attn_beta_factor"] = c.full_attn_beta;
    j["linear_attn_alpha_factor"] = c.linear_attn_alpha;
    j["linear_attn_beta_factor"] = c.linear_attn_beta;
    j["mlp_alpha_factor"] = c.mlp_alpha;
    j["mlp_beta_factor"] = c.mlp_beta;
  }
  j["shared_intermediate_size"] = 0;
  j["sliding_window"] = nullptr;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["torch_dtype"] = "bfloat16";
  j["use_cache"] = true;
  j["vocab_size"] = c.vocab_size;
  if (c.bos_token_id >= 0) {
    j["bos_token_id"] = c.bos_token_id;
  } else {
    j["bos_token_id"] = nullptr;
  }
  if (c.eos_token_id >= 0) {
    j["eos_token_id"] = c.eos_token_id;
  } else {
    j["eos_token_id"] = nullptr;
  }
  switch (c.weight_format) {
    case WeightFormat::kPlain:
      break;
    case WeightFormat::kFp8Block: {
      ordered_json q;
      q["activation_scheme"] = "dynamic";
      q["fmt"] = "float8_e4m3fn";
      q["quant_method"] = "fp8";
      q["weight_block_size"] = {c.fp8_block_rows, c.fp8_block_cols};
      q["modules_to_not_convert"] = {"gate", "e_score_correction_bias", "lm_head"};
      j["quantization_config"] = q;
      break;
    }
    case WeightFormat::kAwq: {
      ordered_json q;
      q["quant_method"] = "awq";
      q["bits"] = c.quant_bits;
      q["group_size"] = c.quant_group_size;
      q["version"] = "gemm";
      q["zero_point"] = c.quant_zero_point;
      if (!c.quant_skip_modules.empty()) q["modules_to_not_convert"] = c.quant_skip_modules;
      j["quantization_config"] = q;
      break;
    }
    case WeightFormat::kMlx: {
      ordered_json q;
      q["group_size"] = c.quant_group_size;
      q["bits"] = c.quant_bits;
      q["mode"] = "affine";
      for (const auto& [path, o] : c.quant_overrides) {
        if (o.quantized) {
          q[path] = {{"group_size", o.group_size}, {"bits", o.bits}};
        } else {
          q[path] = false;
        }
      }
      j["quantization"] = q;
      j["quantization_config"] = q;
      break;
    }
  }
  return j.dump(2) + "\n";
}

}  // namespace afd
