// Channels and health polling (see channel.h).
#include "common/rpc/channel.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "common/rpc/status_codec.h"
#include "common/rpc/tls_files.h"
#include "common/status.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace afd::rpc {

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                           const TlsConfig& tls,
                                                           const ChannelOptions& options) {
  RETURN_IF_ERROR(ValidateAddress(address, /*allow_port_zero=*/false));
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (tls.enabled()) {
    ASSIGN_OR_RETURN(TlsPem pem, ReadTlsFiles(tls));
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.root_certs;
    ssl.pem_private_key = pem.private_key;
    ssl.pem_cert_chain = pem.cert_chain;
    credentials = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, options.initial_backoff_ms);
  // (GRPC_ARG_MIN_RECONNECT_BACKOFF_MS stays at gRPC's 20 s: it is the connect timeout.)
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, options.max_backoff_ms);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // A connection of its own: two backends in one process never share (or break) a socket.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, credentials, args);
}

absl::Status CheckServing(grpc::Channel& channel, const std::string& service,
                          absl::Duration timeout) {
  // The stub only borrows the channel for this call.
  std::shared_ptr<grpc::Channel> borrowed(&channel, [](grpc::Channel*) {});
  auto stub = grpc::health::v1::Health::NewStub(borrowed);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  // Wait for a connection (this call's polling also drives the channel's reconnection).
  context.set_wait_for_ready(true);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    absl::Status s = FromGrpcStatus(status);
    return absl::UnavailableError(absl::StrCat(
        "health of \"", service, "\": ", absl::StatusCodeToString(s.code()), ": ", s.message()));
  }
  if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    return absl::UnavailableError(absl::StrCat(
        "health of \"", service,
        "\": ", grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status())));
  }
  return absl::OkStatus();
}

absl::Status WaitUntilServing(grpc::Channel& channel, const std::string& service,
                              absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last;
  do {
    last = CheckServing(channel, service, absl::Seconds(1));
    if (last.ok()) return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (absl::Now() < deadline);
  return absl::DeadlineExceededError(
      absl::StrCat("not serving after ", absl::FormatDuration(timeout), ": ", last.message()));
}

}  // namespace afd::rpc
