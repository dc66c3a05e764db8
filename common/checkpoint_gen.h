// Synthetic MiniMax checkpoints: random weights in the real on-disk layout (original MiniMax
// tensor names, config.json, FP8 e4m3 + weight_scale_inv block scales, shards + index),
// deterministic from a seed and written tensor by tensor through a bounded buffer, so any model
// size needs only a few MiB of memory. Stateless functions; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/safetensors_writer.h"

namespace afd {

// A named model shape the generator knows (`afd-gen-checkpoint --preset NAME`).
struct CheckpointPreset {
  std::string name;
  std::string description;
  ModelConfig config;       // weight_format is set by the generator from the dtype
  ConfigSpelling spelling;  // key names of the config.json it writes
};

// tiny, default, m2-perf, text01-tiny (in that order).
const std::vector<CheckpointPreset>& CheckpointPresets();
// NOT_FOUND listing the known names when `name` is not one of them.
absl::StatusOr<CheckpointPreset> FindCheckpointPreset(const std::string& name);

enum class GenWeightDType {
  kBF16,  // every tensor bf16, except the router gate and routing bias in fp32 (as released)
  kFp8,   // attention and expert projections FP8 e4m3 + fp32 weight_scale_inv blocks
};

// Packed quantized output (QUANT.md): the float weights the bf16 generator draws (same seed,
// same values), quantized as AutoAWQ or mlx would.
enum class GenQuant {
  kNone,
  kAwq,  // experts (and attention unless quantize_attention is false) as AWQ GEMM int4
         // qweight / qzeros / fp16 scales; router, embeddings, lm_head, norms stay float
  kMlx,  // mlx affine: experts stacked as switch_mlp.{gate,up,down}_proj, attention (unless
         // quantize_attention is false), embeddings and lm_head at quant_bits; the router gate
         // at 8 bits / group 64 (per-module overrides); norms bf16, routing bias fp32
};

struct GenCheckpointOptions {
  GenWeightDType dtype = GenWeightDType::kBF16;
  uint64_t seed = 0;
  int num_shards = 1;  // 1: model.safetensors; N: model-0000k-of-0000N + index.json
  ConfigSpelling spelling = ConfigSpelling::kOriginal;
  int fp8_block = 128;  // FP8 block size [fp8_block, fp8_block]
  GenQuant quant = GenQuant::kNone;  // needs dtype kBF16
  int quant_bits = 4;                // AWQ: 4; MLX: 2, 3, 4, 5, 6 or 8
  int quant_group = 128;             // input columns per group (a module whose input is not a
                                     // multiple of it stays float, as mlx-lm does)
  bool quantize_attention = true;
};

struct GenCheckpointStats {
  int64_t tensors = 0;
  int64_t tensor_bytes = 0;  // sum of tensor payloads
  int64_t file_bytes = 0;    // sum of safetensors file sizes
  int shards = 0;
};

// The tensors (names, dtypes, shapes) the generator writes for `config` with `options`, in
// model order (embed, layers 0.., final norm, lm_head unless tied).
std::vector<TensorSpec> GeneratedTensorSpecs(const ModelConfig& config,
                                             const GenCheckpointOptions& options);

// Writes config.json and the weights of `config` into `out_dir` (created if missing; stale
// model*.safetensors / index files there are replaced). Same config, options and seed give
// byte-identical files; each tensor's values depend only on the seed and its name.
absl::StatusOr<GenCheckpointStats> GenerateCheckpoint(const ModelConfig& config,
                                                      const std::string& out_dir,
                                                      const GenCheckpointOptions& options);

// Scalar encoders the generator uses (round to nearest even; FP8 saturates at ±448).
uint16_t EncodeBf16(float value);
uint8_t EncodeFp8E4M3(float value);

}  // namespace afd
