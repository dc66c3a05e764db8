// absl::Status <-> grpc::Status / afd.v1.Status mapping.
#include "common/rpc/status_codec.h"

#include <string>

#include "afd/v1/tensor.pb.h"
#include "gtest/gtest.h"

namespace afd::rpc {
namespace {

TEST(StatusCodecTest, KeepsCodesAndMessages) {
  for (absl::Status s :
       {absl::OkStatus(), absl::InvalidArgumentError("bad shape"),
        absl::NotFoundError("expert 7: not hosted"), absl::UnavailableError("down"),
        absl::DeadlineExceededError("slow"), absl::ResourceExhaustedError("full")}) {
    const grpc::Status g = ToGrpcStatus(s);
    EXPECT_EQ(static_cast<int>(g.error_code()), static_cast<int>(s.code()));
    EXPECT_EQ(FromGrpcStatus(g), s);
    v1::Status proto;
    ToProtoStatus(s, &proto);
    EXPECT_EQ(FromProtoStatus(proto), s);
  }
}

TEST(StatusCodecTest, CapsLongMessages) {
  const std::string long_message(10 * kMaxStatusMessageBytes, 'x');
  const grpc::Status g = ToGrpcStatus(absl::InternalError(long_message));
  EXPECT_EQ(g.error_message().size(), kMaxStatusMessageBytes);
  EXPECT_EQ(g.error_message().substr(kMaxStatusMessageBytes - 3), "...");
  v1::Status proto;
  ToProtoStatus(absl::InternalError(long_message), &proto);
  EXPECT_EQ(proto.message().size(), kMaxStatusMessageBytes);
}

TEST(StatusCodecTest, UnknownCodesBecomeUnknown) {
  v1::Status proto;
  proto.set_code(99);
  proto.set_message("from the future");
  EXPECT_EQ(FromProtoStatus(proto).code(), absl::StatusCode::kUnknown);
}

}  // namespace
}  // namespace afd::rpc
