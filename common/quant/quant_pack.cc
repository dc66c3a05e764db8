// AutoAWQ / mlx quantizers and packers (see quant_pack.h).
#include "common/quant/quant_pack.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/kernels/matmul.h"

namespace afd::quant {
namespace {

constexpr int kAwqColumnOfSlot[8] = {0, 2, 4, 6, 1, 3, 5, 7};

}  // namespace

uint32_t PackAwqWord(const uint8_t codes[8]) {
  uint32_t word = 0;
  for (int s = 0; s < 8; ++s)
    word |= static_cast<uint32_t>(codes[kAwqColumnOfSlot[s]] & 0xF) << (4 * s);
  return word;
}

std::vector<uint32_t> PackMlxRow(const uint8_t* codes, int64_t count, int bits) {
  std::vector<uint32_t> words(static_cast<size_t>(count * bits / 32), 0);
  for (int64_t j = 0; j < count; ++j) {
    const int64_t bit = j * bits;
    const uint64_t v = static_cast<uint64_t>(codes[j] & ((1u << bits) - 1)) << (bit % 32);
    words[bit / 32] |= static_cast<uint32_t>(v);
    if ((bit % 32) + bits > 32) words[bit / 32 + 1] |= static_cast<uint32_t>(v >> 32);
  }
  return words;
}

uint16_t EncodeF16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const float a = std::fabs(value);
  if (std::isnan(value)) return sign | 0x7E00;
  if (a >= 65520.0f) return sign | 0x7BFF;  // saturate
  if (a < 6.103515625e-05f) {
    // Subnormal: multiples of 2^-24, round to nearest even.
    return sign | static_cast<uint16_t>(std::nearbyint(a * 16777216.0f));
  }
  uint32_t m;
  std::memcpy(&m, &a, 4);
  m += 0xFFFu + ((m >> 13) & 1u);  // round the mantissa to 10 bits, ties to even
  const uint32_t exp = (m >> 23) - 112;
  return sign | static_cast<uint16_t>((exp << 10) | ((m >> 13) & 0x3FF));
}

AwqGroup QuantizeAwqGroup(const float* values, int64_t count, uint8_t* codes) {
  float lo = values[0], hi = values[0];
  for (int64_t i = 1; i < count; ++i) {
    lo = std::min(lo, values[i]);
    hi = std::max(hi, values[i]);
  }
  AwqGroup g;
  g.scale_f16 = EncodeF16(std::max(hi - lo, 1e-5f) / 15.0f);
  const float scale = kernels::F16ToFloat(g.scale_f16);
  g.zero = static_cast<uint8_t>(std::clamp(-std::nearbyint(lo / scale), 0.0f, 15.0f));
  for (int64_t i = 0; i < count; ++i) {
    codes[i] = static_cast<uint8_t>(
        std::clamp(std::nearbyint(values[i] / scale) + static_cast<float>(g.zero), 0.0f, 15.0f));
  }
  return g;
}

MlxGroup QuantizeMlxGroup(const float* values, int64_t count, int bits, uint8_t* codes) {
  float lo = values[0], hi = values[0];
  for (int64_t i = 1; i < count; ++i) {
    lo = std::min(lo, values[i]);
    hi = std::max(hi, values[i]);
  }
  const float n = static_cast<float>((1 << bits) - 1);
  float scale, edge;
  if (std::fabs(lo) > std::fabs(hi)) {
    scale = (hi - lo) / n;
    edge = lo;
  } else {
    scale = -(hi - lo) / n;
    edge = hi;
  }
  if (std::fabs(scale) < 1e-7f) scale = scale < 0 ? -1e-7f : 1e-7f;
  const float q0 = std::nearbyint(edge / scale);
  float bias = 0.0f;
  if (q0 != 0.0f) {
    scale = edge / q0;
    bias = edge;
  }
  MlxGroup g;
  g.scale_bf16 = kernels::FloatToBf16(scale);
  g.bias_bf16 = kernels::FloatToBf16(bias);
  for (int64_t i = 0; i < count; ++i) {
    codes[i] =
        static_cast<uint8_t>(std::clamp(std::nearbyint((values[i] - bias) / scale), 0.0f, n));
  }
  return g;
}

}  // namespace afd::quant
