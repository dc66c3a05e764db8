// afd.v1.Tensor round trips and malformed tensors.
#include "common/rpc/tensor_codec.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace afd::rpc {
namespace {

TEST(TensorCodecTest, F32RoundTripIsExact) {
  const std::vector<float> values = {1.5f, -0.0f, 3.4e38f, 1e-45f, -2.25f, 7.0f};
  v1::Tensor proto;
  EncodeTensor(values, {2, 3}, v1::DTYPE_F32, &proto);
  EXPECT_EQ(proto.data().size(), values.size() * 4);
  std::vector<float> back;
  std::vector<int64_t> shape;
  ASSERT_TRUE(DecodeTensor(proto, &back, &shape).ok());
  EXPECT_EQ(shape, (std::vector<int64_t>{2, 3}));
  ASSERT_EQ(back.size(), values.size());
  EXPECT_EQ(std::memcmp(back.data(), values.data(), values.size() * 4), 0);
}

TEST(TensorCodecTest, Bf16RoundsToNearestEven) {
  const std::vector<float> values = {1.0f, 1.00390625f /* halfway: rounds to even 1.0 */,
                                     1.01171875f /* halfway: rounds up */, -3.0f};
  v1::Tensor proto;
  EncodeTensor(values, {4}, v1::DTYPE_BF16, &proto);
  EXPECT_EQ(proto.data().size(), 8u);
  std::vector<float> back;
  std::vector<int64_t> shape;
  ASSERT_TRUE(DecodeTensor(proto, &back, &shape).ok());
  EXPECT_EQ(back, (std::vector<float>{1.0f, 1.0f, 1.015625f, -3.0f}));
}

TEST(TensorCodecTest, RejectsMalformedTensors) {
  std::vector<float> back;
  std::vector<int64_t> shape;
  v1::Tensor proto;
  EncodeTensor(std::vector<float>{1, 2, 3}, {3}, v1::DTYPE_F32, &proto);
  proto.mutable_data()->pop_back();
  EXPECT_EQ(DecodeTensor(proto, &back, &shape).code(), absl::StatusCode::kInvalidArgument);
  EncodeTensor(std::vector<float>{1, 2, 3}, {3}, v1::DTYPE_F32, &proto);
  proto.set_dtype(v1::DTYPE_UNSPECIFIED);
  EXPECT_EQ(DecodeTensor(proto, &back, &shape).code(), absl::StatusCode::kInvalidArgument);
  EncodeTensor(std::vector<float>{1, 2, 3}, {3}, v1::DTYPE_F32, &proto);
  proto.set_shape(0, -3);
  EXPECT_EQ(DecodeTensor(proto, &back, &shape).code(), absl::StatusCode::kInvalidArgument);
  proto.clear_shape();
  proto.add_shape(int64_t{1} << 40);
  proto.add_shape(int64_t{1} << 40);
  EXPECT_EQ(DecodeTensor(proto, &back, &shape).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace afd::rpc
