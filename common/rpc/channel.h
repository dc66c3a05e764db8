// Client channels between afd nodes (TCP or unix sockets, optional TLS) tuned for the expert
// traffic: unlimited message size, fast reconnect backoff, keepalive pings, a private
// connection per channel; and health polling for launchers and peers. Stateless functions.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cluster/cluster_config.h"
#include "grpcpp/channel.h"

namespace afd::rpc {

struct ChannelOptions {
  int initial_backoff_ms = 50;  // first reconnect delay after a lost connection, ms
  int max_backoff_ms = 1000;    // cap of the doubling reconnect delay, ms
};

// INVALID_ARGUMENT for a malformed address, NOT_FOUND for unreadable TLS files. The channel
// connects lazily and reconnects by itself with the given backoff.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                           const TlsConfig& tls,
                                                           const ChannelOptions& options);

// One grpc.health.v1 Check of `service` ("" = liveness), waiting up to `timeout` for a
// connection: OK when SERVING, UNAVAILABLE (with the reported state or the RPC error) otherwise.
absl::Status CheckServing(grpc::Channel& channel, const std::string& service,
                          absl::Duration timeout);
// Polls CheckServing until OK or `timeout` passes: DEADLINE_EXCEEDED with the last error.
absl::Status WaitUntilServing(grpc::Channel& channel, const std::string& service,
                              absl::Duration timeout);

}  // namespace afd::rpc
