// Model weights in a Checkpoint: which tensors a ModelConfig needs (names, shapes, dtypes),
// a whole-checkpoint validation pass, and zero-copy kernel views of linear layers.
// Stateless free functions over immutable inputs; safe from any thread.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/kernels/weight_view.h"
#include "common/model_config.h"
#include "common/safetensors.h"

namespace afd {

// Checks that every tensor the model needs is present with the shape the config implies and an
// allowed dtype, before any of it is used (MODEL.md §1.3, §3.3; QUANT.md for AWQ/MLX):
//   M2: embed [V, D], norms [D], q/k/v/o_proj (+ q_norm [H*d], k_norm [Hkv*d] if use_qk_norm),
//       block_sparse_moe.gate [E, D] F32/BF16, e_score_correction_bias [E] if use_routing_bias,
//       experts.E.w1/w3 [I, D], w2 [D, I], lm_head [V, D] unless tie_word_embeddings.
//   Text-01: per layer type, linear: qkv_proj [3*H*d, D], output_gate [H*d, D],
//       out_proj [D, H*d], norm [H*d]; full: q/k/v/o_proj. Same MoE (no bias) and globals.
// Linear weights are checked like LoadLinear (FP8 needs weight_scale_inv of the block shape);
// AWQ (`.qweight/.qzeros/.scales`) and MLX (U32 `.weight` + `.scales/.biases`, stacked
// `switch_mlp` experts) modules are checked by their packed shapes. Tensors of layers
// >= num_hidden_layers (MTP) and any other extra tensors are ignored.
// Returns the first problem: NOT_FOUND (missing tensor, naming it), INVALID_ARGUMENT (wrong
// shape or dtype, naming file, tensor, expected and actual).
absl::Status ValidateCheckpoint(const ModelConfig& config, const Checkpoint& checkpoint);

// A view of the linear layer `<prefix>.weight` [out, in] (prefix e.g.
// "model.layers.0.self_attn.q_proj"), straight into the mapping (no copies; valid while
// `checkpoint` lives). F32/BF16/F16 weights give a plain view; F8_E4M3 weights also need
// `<prefix>.weight_scale_inv` F32 [ceil(out/br), ceil(in/bc)] with the config's block size
// (default 128x128). AWQ (`.qweight`) and MLX (U32 `.weight` + `.scales`) modules give a packed
// view (kAwqInt4 / kMlxAffine, common/quant/quant_loader.h: bits and group size per module,
// checked against the tensors). Errors: NOT_FOUND (weight, scales, zero points or biases
// missing), INVALID_ARGUMENT (shape, dtype, or misaligned data; packed shapes that do not fit
// the declared bits / group size).
absl::StatusOr<kernels::WeightView> LoadLinear(const Checkpoint& checkpoint,
                                               const ModelConfig& config, const std::string& prefix,
                                               int64_t out, int64_t in);

// A float vector [n] (norm weights, routing bias): F32, BF16 or F16, element-aligned.
absl::StatusOr<TensorView> LoadVector(const Checkpoint& checkpoint, const std::string& name,
                                      int64_t n);

// A float matrix [rows, cols] (embedding, router gate): F32, BF16 or F16, element-aligned.
absl::StatusOr<TensorView> LoadMatrix(const Checkpoint& checkpoint, const std::string& name,
                                      int64_t rows, int64_t cols);

// Checkpoint names (original MiniMax spelling).
// "model.layers.<layer>.<suffix>", e.g. LayerTensorName(3, "self_attn.q_proj").
std::string LayerTensorName(int layer, absl::string_view suffix);
// Linear prefix of one expert projection: "model.layers.L.block_sparse_moe.experts.E.<proj>"
// with proj "w1" (gate), "w3" (up) or "w2" (down).
std::string ExpertLinearName(int layer, int expert, absl::string_view proj);

// Brings the pages `w` reads (data, block scales, zero points, biases) into this process ahead
// of use (madvise MADV_POPULATE_READ; on kernels without it, MADV_WILLNEED and one read per
// page), so the first products do not stop on page faults. Only speed depends on it.
void PrefaultWeightPages(const kernels::WeightView& w);

}  // namespace afd
