// Writers of the packed formats (QUANT.md): quantize fp32 weights the way AutoAWQ (GEMM,
// zero point) and mlx (affine) do, and pack codes into their words. Used by the checkpoint
// generator and tests; the serving path only reads. Stateless free functions; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

namespace afd::quant {

// AWQ GEMM word of 8 consecutive output columns' 4-bit codes (codes[j] = column c*8 + j): slot
// s receives column order [0,2,4,6,1,3,5,7][s]. codes {0..7} pack to 0x75316420.
uint32_t PackAwqWord(const uint8_t codes[8]);

// MLX row of `count` codes of `bits` bits as a little-endian bit stream in count*bits/32 words
// (count * bits must be a multiple of 32).
std::vector<uint32_t> PackMlxRow(const uint8_t* codes, int64_t count, int bits);

// AutoAWQ's zero-point quantization of one group of values (pseudo_quantize_tensor): scale =
// max(max - min, 1e-5) / 15, zero = clamp(-round(min / scale), 0, 15),
// q = clamp(round(v / scale) + zero, 0, 15). `scale` is returned as stored (fp16 bits).
struct AwqGroup {
  uint16_t scale_f16 = 0;
  uint8_t zero = 0;
};
AwqGroup QuantizeAwqGroup(const float* values, int64_t count, uint8_t* codes);

// mlx's affine quantization of one group (QUANT.md §2.4, negative scales included); scale and
// bias are returned as stored (bf16 bits).
struct MlxGroup {
  uint16_t scale_bf16 = 0;
  uint16_t bias_bf16 = 0;
};
MlxGroup QuantizeMlxGroup(const float* values, int64_t count, int bits, uint8_t* codes);

// Round to nearest even fp16 (saturating to the largest finite value).
uint16_t EncodeF16(float value);

}  // namespace afd::quant
