// NodeServer: the gRPC server every afd node runs: binds the listen address (TCP or unix
// socket, optional TLS), serves the given services plus grpc.health.v1 (liveness on "" and
// readiness per service, NOT_SERVING until the node says it is ready) and server reflection.
// Thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cluster/cluster_config.h"
#include "grpcpp/server.h"

namespace afd::rpc {

// A service and its full name (generated `Foo::service_full_name()`), for health reporting.
struct NamedService {
  std::string name;
  grpc::Service* service = nullptr;  // borrowed
};

struct ServerOptions {
  std::string listen;  // "[::]:50051", "127.0.0.1:0" (any free port), "unix:/path"
  TlsConfig tls;       // plaintext when !tls.enabled()
};

class NodeServer {
 public:
  // services: borrowed; must outlive the server. Each starts NOT_SERVING under its full name
  // ("afd.v1.ExpertNode"); liveness ("") is SERVING as soon as the port is bound. UNAVAILABLE
  // when the address cannot be bound, INVALID_ARGUMENT/NOT_FOUND for unreadable TLS files.
  static absl::StatusOr<std::unique_ptr<NodeServer>> Start(
      const ServerOptions& options, const std::vector<NamedService>& services);
  ~NodeServer();

  // TCP port actually bound (useful with port 0); 0 for unix sockets.
  int port() const { return port_; }
  // Readiness of `service` (a full service name).
  void SetServing(const std::string& service, bool serving);
  // Stops accepting calls, cancels the ones still running after `grace`, and returns when all
  // handlers have finished. Idempotent.
  void Shutdown(absl::Duration grace);
  // Blocks until Shutdown completes.
  void Wait();

 private:
  NodeServer() = default;
  std::unique_ptr<grpc::Server> server_;
  std::atomic<bool> shut_down_{false};
  int port_ = 0;
};

}  // namespace afd::rpc
