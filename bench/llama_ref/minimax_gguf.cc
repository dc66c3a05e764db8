#include "bench/llama_ref/minimax_gguf.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/llama_ref/gguf_writer.h"
#include "common/kernels/matmul.h"
#include "common/model_config.h"
#include "common/safetensors.h"

namespace afd::bench {
namespace {

using gguf::TensorType;

// Element i of `t` (F32 or BF16) as fp32.
float ElementAt(const TensorView& t, int64_t i) {
  if (t.dtype == DType::kBF16) {
    uint16_t v;
    std::memcpy(&v, t.data + 2 * i, 2);
    return kernels::Bf16ToFloat(v);
  }
  float f;
  std::memcpy(&f, t.data + 4 * i, 4);
  return f;
}

// Writes the elements of `t` as `type` (bf16 sources are copied bit for bit to bf16).
void Convert(const TensorView& t, TensorType type, uint8_t* out) {
  const int64_t n = t.numel();
  if (type == TensorType::kBF16 && t.dtype == DType::kBF16) {
    std::memcpy(out, t.data, t.bytes);
  } else if (type == TensorType::kBF16) {
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t v = kernels::FloatToBf16(ElementAt(t, i));
      std::memcpy(out + 2 * i, &v, 2);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const float f = ElementAt(t, i);
      std::memcpy(out + 4 * i, &f, 4);
    }
  }
}

// GPT-2's byte-to-unicode map, UTF-8 encoded: printable bytes stand for themselves, the others
// for code points 256 + k.
std::vector<std::string> ByteTokens() {
  std::vector<std::string> tokens(256);
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    const int cp = printable ? b : 256 + extra++;
    std::string s;
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    tokens[b] = s;
  }
  return tokens;
}

}  // namespace

absl::Status ExportMiniMaxGguf(const std::string& checkpoint_dir, const std::string& out_path) {
  absl::StatusOr<ModelConfig> config = LoadModelConfig(checkpoint_dir);
  if (!config.ok()) return config.status();
  if (config->arch != Architecture::kMiniMaxM2 || config->weight_format != WeightFormat::kPlain) {
    return absl::InvalidArgumentError(absl::StrCat(
        checkpoint_dir, ": the export takes a plain (bf16/fp32) MiniMax-M2 checkpoint"));
  }
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(checkpoint_dir);
  if (!ckpt.ok()) return ckpt.status();
  const ModelConfig& c = *config;
  const Checkpoint& w = **ckpt;

  gguf::Writer out;
  const std::string arch = "minimax-m2";
  out.AddString("general.architecture", arch);
  out.AddString("general.name", "afd export of " + checkpoint_dir);
  out.AddU32("general.file_type", 32);  // LLAMA_FTYPE_MOSTLY_BF16
  out.AddU32(arch + ".context_length", 4096);
  out.AddU32(arch + ".embedding_length", c.hidden_size);
  out.AddU32(arch + ".block_count", c.num_hidden_layers);
  out.AddU32(arch + ".feed_forward_length", c.intermediate_size);
  out.AddU32(arch + ".expert_feed_forward_length", c.intermediate_size);
  out.AddU32(arch + ".attention.head_count", c.num_attention_heads);
  out.AddU32(arch + ".attention.head_count_kv", c.num_key_value_heads);
  out.AddU32(arch + ".attention.key_length", c.head_dim);
  out.AddU32(arch + ".attention.value_length", c.head_dim);
  out.AddF32(arch + ".attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
  out.AddU32(arch + ".rope.dimension_count", c.rotary_dim);
  out.AddF32(arch + ".rope.freq_base", static_cast<float>(c.rope_theta));
  out.AddU32(arch + ".expert_count", c.num_local_experts);
  out.AddU32(arch + ".expert_used_count", c.num_experts_per_tok);
  out.AddU32(arch + ".expert_gating_func", 2);  // sigmoid
  out.AddU32(arch + ".vocab_size", c.vocab_size);

  std::vector<std::string> tokens = ByteTokens();
  for (int i = 256; i < c.vocab_size; ++i) tokens.push_back(absl::StrCat("<|afd_", i, "|>"));
  tokens.resize(c.vocab_size);
  out.AddString("tokenizer.ggml.model", "gpt2");
  out.AddString("tokenizer.ggml.pre", "default");
  out.AddStringArray("tokenizer.ggml.tokens", tokens);
  out.AddI32Array("tokenizer.ggml.token_type", std::vector<int32_t>(tokens.size(), 1));
  out.AddStringArray("tokenizer.ggml.merges", {});
  out.AddU32("tokenizer.ggml.bos_token_id", c.bos_token_id >= 0 ? c.bos_token_id : 1);
  out.AddU32("tokenizer.ggml.eos_token_id", c.eos_token_id >= 0 ? c.eos_token_id : 2);
  out.AddBool("tokenizer.ggml.add_bos_token", false);

  // A tensor copied from one checkpoint tensor of the expected shape ([out, in] = ggml {in, out}).
  auto copy = [&](const std::string& name, const std::string& from, TensorType type,
                  std::vector<int64_t> dims) {
    std::vector<int64_t> shape(dims.rbegin(), dims.rend());
    out.AddTensor(name, type, dims, [&w, from, shape, type](uint8_t* dst) -> absl::Status {
      absl::StatusOr<TensorView> t = w.Get(from, shape, {DType::kBF16, DType::kF32});
      if (!t.ok()) return t.status();
      Convert(*t, type, dst);
      return absl::OkStatus();
    });
  };
  const int64_t d = c.hidden_size, f = c.intermediate_size, e = c.num_local_experts;
  const int64_t q = static_cast<int64_t>(c.num_attention_heads) * c.head_dim;
  const int64_t kv = static_cast<int64_t>(c.num_key_value_heads) * c.head_dim;
  copy("token_embd.weight", "model.embed_tokens.weight", TensorType::kBF16, {d, c.vocab_size});
  copy("output_norm.weight", "model.norm.weight", TensorType::kF32, {d});
  copy("output.weight", "lm_head.weight", TensorType::kBF16, {d, c.vocab_size});
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string blk = absl::StrCat("blk.", l, "."),
                      src = absl::StrCat("model.layers.", l, ".");
    copy(blk + "attn_norm.weight", src + "input_layernorm.weight", TensorType::kF32, {d});
    copy(blk + "attn_q.weight", src + "self_attn.q_proj.weight", TensorType::kBF16, {d, q});
    copy(blk + "attn_k.weight", src + "self_attn.k_proj.weight", TensorType::kBF16, {d, kv});
    copy(blk + "attn_v.weight", src + "self_attn.v_proj.weight", TensorType::kBF16, {d, kv});
    copy(blk + "attn_output.weight", src + "self_attn.o_proj.weight", TensorType::kBF16, {q, d});
    copy(blk + "attn_q_norm.weight", src + "self_attn.q_norm.weight", TensorType::kF32, {q});
    copy(blk + "attn_k_norm.weight", src + "self_attn.k_norm.weight", TensorType::kF32, {kv});
    copy(blk + "ffn_norm.weight", src + "post_attention_layernorm.weight", TensorType::kF32, {d});
    copy(blk + "ffn_gate_inp.weight", src + "block_sparse_moe.gate.weight", TensorType::kF32,
         {d, e});
    copy(blk + "exp_probs_b.bias", src + "block_sparse_moe.e_score_correction_bias",
         TensorType::kF32, {e});
    // Experts stacked [E, rows, cols] (ggml {cols, rows, E}): w1 gate, w3 up, w2 down.
    const struct {
      const char* name;
      const char* w;
      int64_t rows, cols;
    } stacks[] = {
        {"ffn_gate_exps", "w1", f, d}, {"ffn_up_exps", "w3", f, d}, {"ffn_down_exps", "w2", d, f}};
    for (const auto& s : stacks) {
      const int64_t rows = s.rows, cols = s.cols;
      const std::string prefix = src + "block_sparse_moe.experts.", which = s.w;
      out.AddTensor(blk + s.name + ".weight", TensorType::kBF16, {cols, rows, e},
                    [&w, prefix, which, rows, cols, e](uint8_t* dst) -> absl::Status {
                      for (int64_t x = 0; x < e; ++x) {
                        absl::StatusOr<TensorView> t =
                            w.Get(absl::StrCat(prefix, x, ".", which, ".weight"), {rows, cols},
                                  {DType::kBF16, DType::kF32});
                        if (!t.ok()) return t.status();
                        Convert(*t, TensorType::kBF16, dst + x * rows * cols * 2);
                      }
                      return absl::OkStatus();
                    });
    }
  }
  return out.Write(out_path);
}

}  // namespace afd::bench
