// afd.v1.Tensor codec (see tensor_codec.h).
#include "common/rpc/tensor_codec.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/kernels/matmul.h"

namespace afd::rpc {

void EncodeTensor(absl::Span<const float> values, absl::Span<const int64_t> shape, v1::DType dtype,
                  v1::Tensor* proto) {
  proto->set_dtype(dtype);
  proto->mutable_shape()->Assign(shape.begin(), shape.end());
  std::string* data = proto->mutable_data();
  if (dtype == v1::DTYPE_BF16) {
    data->resize(values.size() * sizeof(uint16_t));
    for (size_t i = 0; i < values.size(); ++i) {
      const uint16_t v = kernels::FloatToBf16(values[i]);
      std::memcpy(data->data() + i * sizeof(uint16_t), &v, sizeof(v));
    }
  } else {
    proto->set_dtype(v1::DTYPE_F32);
    data->resize(values.size() * sizeof(float));
    if (!values.empty()) std::memcpy(data->data(), values.data(), data->size());
  }
}

absl::Status DecodeTensor(const v1::Tensor& proto, std::vector<float>* values,
                          std::vector<int64_t>* shape) {
  size_t element_bytes = 0;
  switch (proto.dtype()) {
    case v1::DTYPE_F32:
      element_bytes = 4;
      break;
    case v1::DTYPE_BF16:
      element_bytes = 2;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("tensor: dtype ", v1::DType_Name(proto.dtype()), " is not supported"));
  }
  uint64_t numel = 1;
  for (int64_t dim : proto.shape()) {
    if (dim < 0 || (dim > 0 && numel > (uint64_t{1} << 40) / static_cast<uint64_t>(dim))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor: shape [", absl::StrJoin(proto.shape(), ", "), "] is negative or too large"));
    }
    numel *= static_cast<uint64_t>(dim);
  }
  if (proto.data().size() != numel * element_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor: ", proto.data().size(), " bytes for shape [",
                     absl::StrJoin(proto.shape(), ", "), "] of ", element_bytes, "-byte elements"));
  }
  values->resize(numel);
  const char* bytes = proto.data().data();
  if (element_bytes == 2) {
    for (uint64_t i = 0; i < numel; ++i) {
      uint16_t v;
      std::memcpy(&v, bytes + i * 2, 2);
      (*values)[i] = kernels::Bf16ToFloat(v);
    }
  } else if (numel > 0) {
    std::memcpy(values->data(), bytes, numel * 4);
  }
  shape->assign(proto.shape().begin(), proto.shape().end());
  return absl::OkStatus();
}

}  // namespace afd::rpc
