// Conversions between absl::Status and gRPC's status (call level) or afd.v1.Status (one message
// inside a stream). The only place either conversion happens; both cap the message length so a
// runaway message cannot overflow HTTP/2 trailers. Stateless; safe from any thread.
#pragma once

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace afd {
namespace v1 {
class Status;
}  // namespace v1

namespace rpc {

// Longest status message sent; longer ones are cut and end in "...".
inline constexpr size_t kMaxStatusMessageBytes = 1024;

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

void ToProtoStatus(const absl::Status& status, v1::Status* proto);
absl::Status FromProtoStatus(const v1::Status& proto);

}  // namespace rpc
}  // namespace afd
