// WeightView: a non-owning view of one linear layer's weight matrix [out, in] in its
// checkpoint precision (fp32, bf16, fp16, FP8 e4m3 with block scales, or AWQ int4 / MLX affine
// packed codes with group scales). Kernels read it directly and widen to fp32 in registers;
// nothing here owns memory. Thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>

namespace afd::kernels {

enum class WeightType : uint8_t {
  kF32,
  kBF16,
  kF16,
  kFp8E4M3,  // OCP e4m3fn with fp32 block scales (`weight_scale_inv`, a multiplier)
  kAwqInt4,  // AutoAWQ GEMM int4 (QUANT.md §1): packed fields below
  kMlxAffine,  // mlx affine 2/3/4/5/6/8-bit (QUANT.md §2): packed fields below
};

struct WeightView {
  WeightType type = WeightType::kF32;
  int64_t rows = 0;  // out features
  int64_t cols = 0;  // in features
  // Row-major [rows, cols] elements of `type`; row stride is `cols` elements.
  const void* data = nullptr;
  // FP8 only: fp32 scales [ceil(rows/block_rows), ceil(cols/block_cols)], row-major.
  const float* scales = nullptr;
  int block_rows = 128;
  int block_cols = 128;
  // Packed types only (kernels::QuantMatrix in quant_matmul.h spells out the layouts): `data`
  // holds the codes (AWQ qweight u32 [cols, rows/8]; MLX u32 [rows, cols*bits/32]); groups of
  // `group_size` input columns share a scale and an AWQ zero point (`zeros`, nullptr: 8) or an
  // MLX bias; scales and biases are `group_type` (kF32, kBF16 or kF16).
  const void* zeros = nullptr;
  const void* group_scales = nullptr;
  const void* group_biases = nullptr;
  WeightType group_type = WeightType::kBF16;
  int bits = 0;
  int group_size = 0;

  bool IsPacked() const { return type == WeightType::kAwqInt4 || type == WeightType::kMlxAffine; }
  // Bytes per element of `data`; 0 for packed types (see Bytes()).
  size_t ElementBytes() const {
    switch (type) {
      case WeightType::kF32: return 4;
      case WeightType::kBF16:
      case WeightType::kF16: return 2;
      case WeightType::kFp8E4M3: return 1;
      case WeightType::kAwqInt4:
      case WeightType::kMlxAffine: return 0;
    }
    return 0;
  }
  // Bytes of weight data a full product reads (scales, zero points and biases included).
  size_t Bytes() const {
    if (IsPacked()) {
      const size_t groups = group_size > 0 ? static_cast<size_t>(rows) * (cols / group_size) : 0;
      const size_t scale = group_type == WeightType::kF32 ? 4 : 2;
      size_t b = static_cast<size_t>(rows) * cols * bits / 8 + groups * scale;
      if (type == WeightType::kMlxAffine) b += groups * scale;
      if (type == WeightType::kAwqInt4 && zeros != nullptr) b += groups / 2;
      return b;
    }
    size_t b = static_cast<size_t>(rows) * cols * ElementBytes();
    if (type == WeightType::kFp8E4M3) {
      b += sizeof(float) * ((rows + block_rows - 1) / block_rows) *
           ((cols + block_cols - 1) / block_cols);
    }
    return b;
  }
};

}  // namespace afd::kernels
