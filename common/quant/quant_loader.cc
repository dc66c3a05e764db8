// AWQ / MLX module detection and checked views (see quant_loader.h).
#include "common/quant/quant_loader.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace afd::quant {
namespace {

bool ShapeIs(const TensorView& t, const std::vector<int64_t>& shape) { return t.shape == shape; }

absl::StatusOr<kernels::WeightType> ScaleType(const TensorView& t) {
  switch (t.dtype) {
    case DType::kF32:
      return kernels::WeightType::kF32;
    case DType::kBF16:
      return kernels::WeightType::kBF16;
    case DType::kF16:
      return kernels::WeightType::kF16;
    default:
      return absl::InvalidArgumentError(absl::StrCat(t.file, ": tensor '", t.name, "': dtype ",
                                                     DTypeName(t.dtype),
                                                     ", expected F16, BF16 or F32 scales"));
  }
}

absl::Status WrongShape(const TensorView& t, const std::vector<int64_t>& want,
                        const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(t.file, ": tensor '", t.name, "' is ",
                                                 ShapeString(t.shape), ", expected ",
                                                 ShapeString(want), " ", why));
}

absl::Status CheckProblem(const kernels::QuantMatrix& m, const std::string& prefix) {
  if (const char* problem = kernels::QuantMatrixProblem(m)) {
    return absl::InvalidArgumentError(absl::StrCat("'", prefix, "': ", problem));
  }
  return absl::OkStatus();
}

}  // namespace

ModuleFormat DetectModuleFormat(const Checkpoint& checkpoint, const std::string& prefix) {
  if (checkpoint.Has(prefix + ".qweight")) return ModuleFormat::kAwq;
  if (checkpoint.Has(prefix + ".scales") || checkpoint.Has(prefix + ".biases")) {
    absl::StatusOr<TensorView> weight = checkpoint.Get(prefix + ".weight");
    if (weight.ok() && weight->dtype == DType::kU32) return ModuleFormat::kMlx;
  }
  return ModuleFormat::kFloat;
}

MlxModuleParams MlxParamsFor(const ModelConfig& config, const std::string& path) {
  auto it = config.quant_overrides.find(path);
  if (it != config.quant_overrides.end()) {
    return {it->second.quantized, it->second.bits, it->second.group_size};
  }
  return {true, config.quant_bits, config.quant_group_size};
}

absl::StatusOr<kernels::QuantMatrix> LoadAwqLinear(const Checkpoint& checkpoint,
                                                   const ModelConfig& config,
                                                   const std::string& prefix, int64_t out,
                                                   int64_t in) {
  ASSIGN_OR_RETURN(TensorView qweight, checkpoint.Get(prefix + ".qweight"));
  absl::StatusOr<TensorView> scales = checkpoint.Get(prefix + ".scales");
  if (!scales.ok()) {
    return absl::NotFoundError(
        absl::StrCat(checkpoint.dir(), ": AWQ module '", prefix, "' has a qweight but no scales"));
  }
  int64_t group = config.weight_format == WeightFormat::kAwq ? config.quant_group_size : 0;
  if (group == -1) group = in;
  if (group == 0 && scales->shape.size() == 2 && scales->shape[0] > 0) {
    group = in / scales->shape[0];  // not declared: from the scales
  }
  if (group <= 0 || in % group != 0) {
    return absl::InvalidArgumentError(absl::StrCat("AWQ group_size ", group,
                                                   " does not divide the ", in,
                                                   " input features of '", prefix, "'"));
  }
  if (out % 8 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("AWQ '", prefix, "': ", out, " output features are not a multiple of 8"));
  }
  const std::string layout = absl::StrCat("for 4-bit AWQ codes (8 per int32 along the ", out,
                                          " outputs) of a [", out, ", ", in, "] linear");
  if (qweight.dtype != DType::kI32 && qweight.dtype != DType::kU32) {
    return absl::InvalidArgumentError(absl::StrCat(qweight.file, ": tensor '", qweight.name,
                                                   "': dtype ", DTypeName(qweight.dtype),
                                                   ", expected I32 packed nibbles"));
  }
  if (!ShapeIs(qweight, {in, out / 8})) return WrongShape(qweight, {in, out / 8}, layout);
  const void* zeros = nullptr;
  if (checkpoint.Has(prefix + ".qzeros")) {
    ASSIGN_OR_RETURN(TensorView qzeros, checkpoint.Get(prefix + ".qzeros"));
    if (qzeros.dtype != DType::kI32 && qzeros.dtype != DType::kU32) {
      return absl::InvalidArgumentError(absl::StrCat(qzeros.file, ": tensor '", qzeros.name,
                                                     "': dtype ", DTypeName(qzeros.dtype),
                                                     ", expected I32 packed zero points"));
    }
    if (!ShapeIs(qzeros, {in / group, out / 8})) {
      return WrongShape(qzeros, {in / group, out / 8},
                        absl::StrCat("(zero points of groups of ", group, " inputs) ", layout));
    }
    zeros = qzeros.data;
  } else if (config.quant_zero_point) {
    return absl::NotFoundError(absl::StrCat(checkpoint.dir(), ": AWQ module '", prefix,
                                            "' has no qzeros but zero_point is true"));
  }
  ASSIGN_OR_RETURN(kernels::WeightType scale_type, ScaleType(*scales));
  if (!ShapeIs(*scales, {in / group, out})) {
    return WrongShape(*scales, {in / group, out},
                      absl::StrCat("(one scale per group of ", group, " inputs and output)"));
  }
  kernels::QuantMatrix m;
  m.format = kernels::QuantFormat::kAwqInt4;
  m.rows = out;
  m.cols = in;
  m.bits = 4;
  m.group_size = static_cast<int>(group);
  m.data = qweight.data;
  m.zeros = zeros;
  m.scales = scales->data;
  m.scale_type = scale_type;
  RETURN_IF_ERROR(CheckProblem(m, prefix));
  return m;
}

absl::StatusOr<kernels::QuantMatrix> LoadMlxLinear(const Checkpoint& checkpoint,
                                                   const ModelConfig& config,
                                                   const std::string& prefix, int64_t out,
                                                   int64_t in, int expert, int num_experts) {
  ASSIGN_OR_RETURN(TensorView weight, checkpoint.Get(prefix + ".weight"));
  absl::StatusOr<TensorView> scales = checkpoint.Get(prefix + ".scales");
  if (!scales.ok()) {
    return absl::NotFoundError(absl::StrCat(checkpoint.dir(), ": MLX module '", prefix,
                                            "' has a packed weight but no scales"));
  }
  absl::StatusOr<TensorView> biases = checkpoint.Get(prefix + ".biases");
  if (!biases.ok()) {
    return absl::NotFoundError(absl::StrCat(checkpoint.dir(), ": MLX module '", prefix,
                                            "' has scales but no biases (affine mode needs "
                                            "both)"));
  }
  if (weight.dtype != DType::kU32) {
    return absl::InvalidArgumentError(absl::StrCat(weight.file, ": tensor '", weight.name,
                                                   "': dtype ", DTypeName(weight.dtype),
                                                   ", expected U32 (MLX packed)"));
  }
  // Declared bits / group; a checkpoint whose config carries none is read by its shapes.
  MlxModuleParams p = MlxParamsFor(config, prefix);
  const bool declared = config.weight_format == WeightFormat::kMlx && p.bits > 0;
  if (declared && !p.quantized) {
    return absl::InvalidArgumentError(absl::StrCat("'", prefix,
                                                   "' is MLX-packed but the config's "
                                                   "quantization entry says it is not quantized"));
  }
  const int64_t words = weight.shape.empty() ? 0 : weight.shape.back();
  const int64_t groups = scales->shape.empty() ? 0 : scales->shape.back();
  if (!declared) {
    p.bits = (words * 32) % in == 0 ? static_cast<int>(words * 32 / in) : 0;
    p.group_size = groups > 0 && in % groups == 0 ? static_cast<int>(in / groups) : 0;
  }
  const int64_t bits = p.bits, group = p.group_size;
  if (!(bits >= 2 && bits <= 8 && bits != 7)) {
    return absl::InvalidArgumentError(
        absl::StrCat("MLX '", prefix, "': bits ", bits, " is not 2, 3, 4, 5, 6 or 8"));
  }
  if (group <= 0 || in % group != 0) {
    return absl::InvalidArgumentError(absl::StrCat("MLX group_size ", group,
                                                   " does not divide the ", in,
                                                   " input features of '", prefix, "'"));
  }
  if ((bits * in) % 32 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("MLX '", prefix, "': ", bits, " bits x ", in,
                                                   " input features is not a whole number of "
                                                   "uint32 words"));
  }
  std::vector<int64_t> want_weight, want_scales;
  if (num_experts > 0) {
    want_weight.push_back(num_experts);
    want_scales.push_back(num_experts);
  }
  want_weight.insert(want_weight.end(), {out, in * bits / 32});
  want_scales.insert(want_scales.end(), {out, in / group});
  if (!ShapeIs(weight, want_weight)) {
    std::string implied;
    if (words > 0 && (words * 32) % in == 0) {
      implied = absl::StrCat("; its last dimension implies ", words * 32 / in, " bits");
    }
    return WrongShape(
        weight, want_weight,
        absl::StrCat("for ", bits, "-bit MLX codes of a [", out, ", ", in, "] linear", implied));
  }
  for (const TensorView* t : {&*scales, &*biases}) {
    if (!ShapeIs(*t, want_scales)) {
      std::string implied;
      if (!t->shape.empty() && t->shape.back() > 0 && in % t->shape.back() == 0) {
        implied = absl::StrCat("; its last dimension implies group_size ", in / t->shape.back());
      }
      return WrongShape(*t, want_scales,
                        absl::StrCat("for MLX groups of ", group, " of ", in, " inputs", implied));
    }
  }
  ASSIGN_OR_RETURN(kernels::WeightType scale_type, ScaleType(*scales));
  if (biases->dtype != scales->dtype) {
    return absl::InvalidArgumentError(absl::StrCat(
        biases->file, ": tensor '", biases->name, "': dtype ", DTypeName(biases->dtype),
        ", expected the scales' ", DTypeName(scales->dtype)));
  }
  if (num_experts > 0 && (expert < 0 || expert >= num_experts)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", prefix, "': expert ", expert, " outside [0, ", num_experts, ")"));
  }
  const int64_t e = num_experts > 0 ? expert : 0;
  const size_t scale_bytes = DTypeSize(scales->dtype);
  kernels::QuantMatrix m;
  m.format = kernels::QuantFormat::kMlxAffine;
  m.rows = out;
  m.cols = in;
  m.bits = static_cast<int>(bits);
  m.group_size = static_cast<int>(group);
  m.data = weight.data + e * out * (in * bits / 32) * 4;
  m.scales = scales->data + e * out * (in / group) * scale_bytes;
  m.biases = biases->data + e * out * (in / group) * scale_bytes;
  m.scale_type = scale_type;
  RETURN_IF_ERROR(CheckProblem(m, prefix));
  return m;
}

absl::StatusOr<kernels::QuantMatrix> LoadQuantizedLinear(const Checkpoint& checkpoint,
                                                         const ModelConfig& config,
                                                         const std::string& prefix, int64_t out,
                                                         int64_t in) {
  switch (DetectModuleFormat(checkpoint, prefix)) {
    case ModuleFormat::kAwq:
      return LoadAwqLinear(checkpoint, config, prefix, out, in);
    case ModuleFormat::kMlx:
      return LoadMlxLinear(checkpoint, config, prefix, out, in);
    case ModuleFormat::kFloat:
      break;
  }
  return absl::FailedPreconditionError(
      absl::StrCat(checkpoint.dir(), ": '", prefix, "' is not a quantized module"));
}

std::string MlxExpertStackName(int layer, absl::string_view proj) {
  const char* name = proj == "w1" ? "gate_proj" : proj == "w3" ? "up_proj" : "down_proj";
  return absl::StrCat("model.layers.", layer, ".block_sparse_moe.switch_mlp.", name);
}

bool HasStackedExperts(const Checkpoint& checkpoint, int layer) {
  return checkpoint.Has(MlxExpertStackName(layer, "w1") + ".weight");
}

absl::Status CheckStackedExperts(const Checkpoint& checkpoint, const ModelConfig& config,
                                 int layer) {
  const int64_t d = config.hidden_size, inter = config.intermediate_size;
  const int experts = config.num_local_experts;
  RETURN_IF_ERROR(
      LoadMlxLinear(checkpoint, config, MlxExpertStackName(layer, "w1"), inter, d, 0, experts)
          .status());
  RETURN_IF_ERROR(
      LoadMlxLinear(checkpoint, config, MlxExpertStackName(layer, "w3"), inter, d, 0, experts)
          .status());
  return LoadMlxLinear(checkpoint, config, MlxExpertStackName(layer, "w2"), d, inter, 0, experts)
      .status();
}

}  // namespace afd::quant
