// Quantized modules of AWQ int4 and MLX affine checkpoints (QUANT.md): which form each module is
// stored in, its per-module bits / group size, and checked zero-copy kernel views of its packed
// tensors (an MLX stacked expert is the byte range of its slice, nothing else is touched).
// Stateless free functions over immutable inputs; safe from any thread.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/kernels/quant_matmul.h"
#include "common/model_config.h"
#include "common/safetensors.h"

namespace afd::quant {

enum class ModuleFormat {
  kFloat,  // `<m>.weight` in f32/bf16/f16 (or FP8 with block scales)
  kAwq,    // `<m>.qweight` (+ `.qzeros`, `.scales`)
  kMlx,    // U32 `<m>.weight` + `.scales` + `.biases`
};

// How module `prefix` (e.g. "model.layers.0.self_attn.q_proj") is stored, from the tensors
// (QUANT.md §3): AWQ iff `<prefix>.qweight` exists; MLX iff `<prefix>.scales` or `.biases`
// exists next to a U32 `<prefix>.weight` (the other one missing is then an error of
// LoadMlxLinear, not a float module); float otherwise.
ModuleFormat DetectModuleFormat(const Checkpoint& checkpoint, const std::string& prefix);

// Bits and group size of MLX module `path` (its MLX module path, e.g.
// "model.layers.0.block_sparse_moe.gate"): the config's override for it, else the global ones.
struct MlxModuleParams {
  bool quantized = true;  // false: an override says the module is kept in float
  int bits = 0;
  int group_size = 0;
};
MlxModuleParams MlxParamsFor(const ModelConfig& config, const std::string& path);

// A checked view of AWQ module `prefix` as W [out, in]: qweight I32/U32 [in, out/8], qzeros
// I32/U32 [in/G, out/8] (required when the config says zero_point; without it every zero point
// is 8), scales F16/BF16/F32 [in/G, out]; G = the config's group_size (-1: in).
// NOT_FOUND naming a missing tensor; INVALID_ARGUMENT naming the tensor, its shape and the shape
// the declared 4 bits / group size need (or a group size that does not divide `in`).
absl::StatusOr<kernels::QuantMatrix> LoadAwqLinear(const Checkpoint& checkpoint,
                                                   const ModelConfig& config,
                                                   const std::string& prefix, int64_t out,
                                                   int64_t in);

// A checked view of MLX module `prefix` as W [out, in]: weight U32 [out, in*b/32], scales and
// biases [out, in/G] of one float dtype, with b / G from MlxParamsFor(prefix). With
// num_experts > 0 the tensors are stacked [num_experts, ...] and the view is expert `expert`'s
// contiguous slice. NOT_FOUND for a missing `.scales` / `.biases`; INVALID_ARGUMENT when the
// shapes do not match the declared bits / group (the message says what the shapes imply),
// when b * in is not whole words, or the group does not divide `in`.
absl::StatusOr<kernels::QuantMatrix> LoadMlxLinear(const Checkpoint& checkpoint,
                                                   const ModelConfig& config,
                                                   const std::string& prefix, int64_t out,
                                                   int64_t in, int expert = -1,
                                                   int num_experts = 0);

// LoadAwqLinear or LoadMlxLinear by DetectModuleFormat; FAILED_PRECONDITION for a float module.
absl::StatusOr<kernels::QuantMatrix> LoadQuantizedLinear(const Checkpoint& checkpoint,
                                                         const ModelConfig& config,
                                                         const std::string& prefix, int64_t out,
                                                         int64_t in);

// MLX stacks the experts of a layer and renames them (QUANT.md §2.3): proj "w1" (gate) ->
// "model.layers.L.block_sparse_moe.switch_mlp.gate_proj", "w3" -> "up_proj", "w2" ->
// "down_proj".
std::string MlxExpertStackName(int layer, absl::string_view proj);
// Whether layer `layer` stores its experts stacked (`switch_mlp.gate_proj.weight` exists).
bool HasStackedExperts(const Checkpoint& checkpoint, int layer);

// Checks the three stacked expert tensors of `layer` as a whole (every expert's slice), like
// LoadMlxLinear does for one.
absl::Status CheckStackedExperts(const Checkpoint& checkpoint, const ModelConfig& config,
                                 int layer);

}  // namespace afd::quant
