// Codec between afd.v1.Tensor (raw little-endian bytes + dtype + shape) and fp32 buffers, for
// logits and other tensors in the attention/gateway messages. Stateless functions.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "afd/v1/tensor.pb.h"

namespace afd::rpc {

// values: prod(shape) floats, row-major. dtype F32 (exact) or BF16 (round to nearest even).
void EncodeTensor(absl::Span<const float> values, absl::Span<const int64_t> shape, v1::DType dtype,
                  v1::Tensor* proto);

// Widens into *values (resized) and copies the shape. INVALID_ARGUMENT for an unknown dtype,
// a negative dimension, or bytes != prod(shape) x element size.
absl::Status DecodeTensor(const v1::Tensor& proto, std::vector<float>* values,
                          std::vector<int64_t>* shape);

}  // namespace afd::rpc
