// absl::Status <-> grpc::Status / afd.v1.Status (see status_codec.h).
#include "common/rpc/status_codec.h"

#include <string>

#include "afd/v1/tensor.pb.h"

namespace afd::rpc {
namespace {

std::string Capped(absl::string_view message) {
  if (message.size() <= kMaxStatusMessageBytes) return std::string(message);
  return std::string(message.substr(0, kMaxStatusMessageBytes - 3)) + "...";
}

// absl::StatusCode and grpc::StatusCode share the google.rpc.Code numbering 0..16.
bool KnownCode(int code) { return code >= 0 && code <= 16; }

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), Capped(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  const int code = status.error_code();
  return absl::Status(
      KnownCode(code) ? static_cast<absl::StatusCode>(code) : absl::StatusCode::kUnknown,
      status.error_message());
}

void ToProtoStatus(const absl::Status& status, v1::Status* proto) {
  proto->set_code(static_cast<int32_t>(status.code()));
  if (status.ok()) {
    proto->clear_message();
  } else {
    proto->set_message(Capped(status.message()));
  }
}

absl::Status FromProtoStatus(const v1::Status& proto) {
  if (proto.code() == 0) return absl::OkStatus();
  return absl::Status(KnownCode(proto.code()) ? static_cast<absl::StatusCode>(proto.code())
                                              : absl::StatusCode::kUnknown,
                      proto.message());
}

}  // namespace afd::rpc
