// Tensor requirements of MiniMax-M2 / Text-01 checkpoints and zero-copy linear views.
#include "common/weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <iterator>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/quant/quant_loader.h"
#include "common/status.h"

namespace afd {
namespace {

constexpr DType kFloatDTypes[] = {DType::kF32, DType::kBF16, DType::kF16};
constexpr DType kRouterDTypes[] = {DType::kF32, DType::kBF16};

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

absl::Status CheckAligned(const TensorView& view) {
  const size_t align = DTypeSize(view.dtype);
  if (align > 1 && reinterpret_cast<uintptr_t>(view.data) % align != 0) {
    return absl::InvalidArgumentError(absl::StrCat(view.file, ": tensor '", view.name,
                                                   "': data is not aligned to ", align, " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<TensorView> GetAligned(const Checkpoint& ckpt, const std::string& name,
                                      absl::Span<const int64_t> shape,
                                      absl::Span<const DType> dtypes) {
  ASSIGN_OR_RETURN(TensorView view, ckpt.Get(name, shape, dtypes));
  RETURN_IF_ERROR(CheckAligned(view));
  return view;
}

// A linear module in whatever form the checkpoint stores it.
// AWQ (`.qweight/.qzeros/.scales`) and MLX (U32 `.weight` + `.scales/.biases`) modules are
// checked by common/quant (through LoadLinear) against the declared bits / group size.
absl::Status CheckLinear(const Checkpoint& ckpt, const ModelConfig& config,
                         const std::string& prefix, int64_t out, int64_t in) {
  return LoadLinear(ckpt, config, prefix, out, in).status();
}

// Embedding or router gate: a float matrix, or MLX-quantized like a linear layer.
absl::Status CheckMatrix(const Checkpoint& ckpt, const ModelConfig& config,
                         const std::string& prefix, int64_t rows, int64_t cols,
                         absl::Span<const DType> dtypes) {
  if (quant::DetectModuleFormat(ckpt, prefix) != quant::ModuleFormat::kFloat) {
    return quant::LoadQuantizedLinear(ckpt, config, prefix, rows, cols).status();
  }
  return GetAligned(ckpt, prefix + ".weight", {rows, cols}, dtypes).status();
}

absl::Status CheckAttention(const Checkpoint& ckpt, const ModelConfig& c, int layer) {
  const int64_t d_model = c.hidden_size;
  auto name = [&](const char* s) { return LayerTensorName(layer, s); };
  if (c.IsLinearLayer(layer)) {
    RETURN_IF_ERROR(CheckLinear(ckpt, c, name("self_attn.qkv_proj"), 3 * c.q_dim(), d_model));
    RETURN_IF_ERROR(CheckLinear(ckpt, c, name("self_attn.output_gate"), c.q_dim(), d_model));
    RETURN_IF_ERROR(CheckLinear(ckpt, c, name("self_attn.out_proj"), d_model, c.q_dim()));
    return LoadVector(ckpt, name("self_attn.norm.weight"), c.q_dim()).status();
  }
  RETURN_IF_ERROR(CheckLinear(ckpt, c, name("self_attn.q_proj"), c.q_dim(), d_model));
  RETURN_IF_ERROR(CheckLinear(ckpt, c, name("self_attn.k_proj"), c.kv_dim(), d_model));
  RETURN_IF_ERROR(CheckLinear(ckpt, c, name("self_attn.v_proj"), c.kv_dim(), d_model));
  RETURN_IF_ERROR(CheckLinear(ckpt, c, name("self_attn.o_proj"), d_model, c.q_dim()));
  if (c.arch == Architecture::kMiniMaxM2 && c.use_qk_norm) {
    RETURN_IF_ERROR(LoadVector(ckpt, name("self_attn.q_norm.weight"), c.q_dim()).status());
    RETURN_IF_ERROR(LoadVector(ckpt, name("self_attn.k_norm.weight"), c.kv_dim()).status());
  }
  return absl::OkStatus();
}

absl::Status CheckMoe(const Checkpoint& ckpt, const ModelConfig& c, int layer) {
  const int64_t d_model = c.hidden_size, inter = c.intermediate_size;
  const int64_t experts = c.num_local_experts;
  RETURN_IF_ERROR(CheckMatrix(ckpt, c, LayerTensorName(layer, "block_sparse_moe.gate"), experts,
                              d_model, kRouterDTypes));
  if (c.arch == Architecture::kMiniMaxM2 && c.use_routing_bias) {
    RETURN_IF_ERROR(GetAligned(ckpt,
                               LayerTensorName(layer, "block_sparse_moe.e_score_correction_bias"),
                               {experts}, kRouterDTypes)
                        .status());
  }
  if (quant::HasStackedExperts(ckpt, layer)) return quant::CheckStackedExperts(ckpt, c, layer);
  for (int e = 0; e < c.num_local_experts; ++e) {
    RETURN_IF_ERROR(CheckLinear(ckpt, c, ExpertLinearName(layer, e, "w1"), inter, d_model));
    RETURN_IF_ERROR(CheckLinear(ckpt, c, ExpertLinearName(layer, e, "w3"), inter, d_model));
    RETURN_IF_ERROR(CheckLinear(ckpt, c, ExpertLinearName(layer, e, "w2"), d_model, inter));
  }
  return absl::OkStatus();
}

}  // namespace

std::string LayerTensorName(int layer, absl::string_view suffix) {
  return absl::StrCat("model.layers.", layer, ".", suffix);
}

std::string ExpertLinearName(int layer, int expert, absl::string_view proj) {
  return absl::StrCat("model.layers.", layer, ".block_sparse_moe.experts.", expert, ".", proj);
}

absl::StatusOr<TensorView> LoadVector(const Checkpoint& checkpoint, const std::string& name,
                                      int64_t n) {
  return GetAligned(checkpoint, name, {n}, kFloatDTypes);
}

absl::StatusOr<TensorView> LoadMatrix(const Checkpoint& checkpoint, const std::string& name,
                                      int64_t rows, int64_t cols) {
  return GetAligned(checkpoint, name, {rows, cols}, kFloatDTypes);
}

absl::StatusOr<kernels::WeightView> LoadLinear(const Checkpoint& checkpoint,
                                               const ModelConfig& config, const std::string& prefix,
                                               int64_t out, int64_t in) {
  if (quant::DetectModuleFormat(checkpoint, prefix) != quant::ModuleFormat::kFloat) {
    // AWQ / MLX packed: a checked view of the codes, scales and zero points / biases.
    ASSIGN_OR_RETURN(kernels::QuantMatrix m,
                     quant::LoadQuantizedLinear(checkpoint, config, prefix, out, in));
    return kernels::AsWeightView(m);
  }
  ASSIGN_OR_RETURN(TensorView weight, checkpoint.Get(prefix + ".weight"));
  const std::string where = absl::StrCat(weight.file, ": tensor '", weight.name, "': ");
  kernels::WeightView view;
  switch (weight.dtype) {
    case DType::kF32:
      view.type = kernels::WeightType::kF32;
      break;
    case DType::kBF16:
      view.type = kernels::WeightType::kBF16;
      break;
    case DType::kF16:
      view.type = kernels::WeightType::kF16;
      break;
    case DType::kF8E4M3:
      view.type = kernels::WeightType::kFp8E4M3;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(where, "dtype ", DTypeName(weight.dtype),
                                                     " is not a linear weight dtype (F32, BF16, "
                                                     "F16, F8_E4M3)"));
  }
  const int64_t expected[] = {out, in};
  if (!std::equal(weight.shape.begin(), weight.shape.end(), std::begin(expected),
                  std::end(expected))) {
    return absl::InvalidArgumentError(absl::StrCat(where, "shape ", ShapeString(weight.shape),
                                                   ", expected ", ShapeString(expected)));
  }
  RETURN_IF_ERROR(CheckAligned(weight));
  view.rows = out;
  view.cols = in;
  view.data = weight.data;
  if (view.type == kernels::WeightType::kFp8E4M3) {
    const int br = config.fp8_block_rows, bc = config.fp8_block_cols;
    const std::string scale_name = prefix + ".weight_scale_inv";
    absl::StatusOr<TensorView> scales = checkpoint.Get(scale_name);
    if (!scales.ok()) {
      return absl::NotFoundError(
          absl::StrCat(where, "FP8 weight without its scales '", scale_name, "'"));
    }
    const int64_t want[] = {CeilDiv(out, br), CeilDiv(in, bc)};
    if (scales->dtype != DType::kF32 ||
        !std::equal(scales->shape.begin(), scales->shape.end(), std::begin(want), std::end(want))) {
      return absl::InvalidArgumentError(
          absl::StrCat(scales->file, ": tensor '", scale_name, "': weight_scale_inv is ",
                       DTypeName(scales->dtype), " ", ShapeString(scales->shape), ", expected F32 ",
                       ShapeString(want), " for a ", ShapeString(expected), " weight in [", br,
                       ", ", bc, "] blocks"));
    }
    RETURN_IF_ERROR(CheckAligned(*scales));
    view.scales = reinterpret_cast<const float*>(scales->data);
    view.block_rows = br;
    view.block_cols = bc;
  }
  return view;
}

absl::Status ValidateCheckpoint(const ModelConfig& config, const Checkpoint& checkpoint) {
  const ModelConfig& c = config;
  if (static_cast<int>(c.layer_types.size()) != c.num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat("config: layer_types has ", c.layer_types.size(),
                                                   " entries for ", c.num_hidden_layers,
                                                   " layers"));
  }
  const int64_t vocab = c.vocab_size, d_model = c.hidden_size;
  RETURN_IF_ERROR(CheckMatrix(checkpoint, c, "model.embed_tokens", vocab, d_model, kFloatDTypes));
  RETURN_IF_ERROR(LoadVector(checkpoint, "model.norm.weight", d_model).status());
  if (!c.tie_word_embeddings || checkpoint.Has("lm_head.weight")) {
    RETURN_IF_ERROR(CheckLinear(checkpoint, c, "lm_head", vocab, d_model));
  }
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    RETURN_IF_ERROR(
        LoadVector(checkpoint, LayerTensorName(layer, "input_layernorm.weight"), d_model).status());
    RETURN_IF_ERROR(
        LoadVector(checkpoint, LayerTensorName(layer, "post_attention_layernorm.weight"), d_model)
            .status());
    RETURN_IF_ERROR(CheckAttention(checkpoint, c, layer));
    RETURN_IF_ERROR(CheckMoe(checkpoint, c, layer));
  }
  return absl::OkStatus();
}

namespace {

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14
#endif

void PrefaultRange(const void* data, size_t bytes) {
  if (data == nullptr || bytes == 0) return;
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data) / page * page;
  const uintptr_t end = reinterpret_cast<uintptr_t>(data) + bytes;
  void* start = reinterpret_cast<void*>(begin);
  if (madvise(start, end - begin, MADV_POPULATE_READ) == 0) return;
  madvise(start, end - begin, MADV_WILLNEED);
  volatile uint8_t sink = 0;
  for (uintptr_t q = begin; q < end; q += page) sink ^= *reinterpret_cast<const uint8_t*>(q);
  (void)sink;
}

}  // namespace

void PrefaultWeightPages(const kernels::WeightView& w) {
  const size_t rows = static_cast<size_t>(w.rows);
  const size_t cols = static_cast<size_t>(w.cols);
  if (w.IsPacked()) {
    const size_t groups = w.group_size > 0 ? rows * (cols / w.group_size) : 0;
    const size_t scale = w.group_type == kernels::WeightType::kF32 ? 4 : 2;
    PrefaultRange(w.data, rows * cols * w.bits / 8);
    PrefaultRange(w.group_scales, groups * scale);
    PrefaultRange(w.group_biases, groups * scale);
    PrefaultRange(w.zeros, groups / 2);
    return;
  }
  const size_t data_bytes = rows * cols * w.ElementBytes();
  PrefaultRange(w.data, data_bytes);
  if (w.scales != nullptr) PrefaultRange(w.scales, w.Bytes() - data_bytes);
}

}  // namespace afd
