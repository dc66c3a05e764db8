// WeightView: a non-owning view of one linear layer's weight matrix [out, in] in its
// checkpoint precision (fp32, bf16, fp16 or FP8 e4m3 with block scales). Kernels read it
// directly and widen to fp32 in registers; nothing here owns memory. Thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>

namespace afd::kernels {

enum class WeightType : uint8_t {
  kF32,
  kBF16,
  kF16,
  kFp8E4M3,  // OCP e4m3fn with fp32 block scales (`weight_scale_inv`, a multiplier)
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

  size_t ElementBytes() const {
    switch (type) {
      case WeightType::kF32: return 4;
      case WeightType::kBF16:
      case WeightType::kF16: return 2;
      case WeightType::kFp8E4M3: return 1;
    }
    return 0;
  }
  // Bytes of weight data a full product reads (scales included).
  size_t Bytes() const {
    size_t b = static_cast<size_t>(rows) * cols * ElementBytes();
    if (type == WeightType::kFp8E4M3) {
      b += sizeof(float) * ((rows + block_rows - 1) / block_rows) *
           ((cols + block_cols - 1) / block_cols);
    }
    return b;
  }
};

}  // namespace afd::kernels
