// Helpers shared by the quantized-checkpoint tests: a small MiniMax-M2 shape whose widths take
// every MLX group size, generated AWQ / MLX checkpoints of it, and the independent reference for
// them: a float32 twin checkpoint whose every packed tensor was dequantized by the plain
// QUANT.md formula (kernels::QuantWeightAt), served by the float engine. Not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/checkpoint_gen.h"
#include "common/model_config.h"
#include "common/safetensors.h"

namespace afd::quant_testing {

// MiniMax-M2 with vocab 96, hidden 128, 4 heads x 32 (2 KV), rotary 16, intermediate 128,
// `experts` experts top-2 (2 layers, the tiny preset's): every dimension a multiple of 128.
ModelConfig SmallM2(int experts);

// One generated quantized checkpoint.
struct QuantCase {
  GenQuant quant = GenQuant::kMlx;
  int bits = 4;
  int group = 64;
  bool quantize_attention = true;
  std::string name;  // test-name friendly, e.g. "mlx3_g32"
};

// Writes `case_`'s checkpoint of `config` (generator seed `seed`) into `dir`.
absl::Status GenerateQuantized(const ModelConfig& config, const QuantCase& case_, uint64_t seed,
                               const std::string& dir);

// Writes `dst`: the checkpoint `src` (with config `config`) with every AWQ / MLX module
// dequantized to F32 by QuantWeightAt under its float name (MLX expert stacks split into
// experts.E.w1/w3/w2), every other tensor copied, and config.json without quantization.
absl::Status WriteDequantizedTwin(const ModelConfig& config, const Checkpoint& src,
                                  const std::string& dst);

// max |a[i] - b[i]|; infinity when the sizes differ.
float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace afd::quant_testing
