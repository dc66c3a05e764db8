// NodeServer (see server.h).
#include "common/rpc/server.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/rpc/tls_files.h"
#include "common/status.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace afd::rpc {

absl::StatusOr<std::unique_ptr<NodeServer>> NodeServer::Start(
    const ServerOptions& options, const std::vector<NamedService>& services) {
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (options.tls.enabled()) {
    if (options.tls.cert_file.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(options.listen,
                       ": tls.ca_file alone cannot serve TLS; set cert_file "
                       "and key_file"));
    }
    ASSIGN_OR_RETURN(TlsPem pem, ReadTlsFiles(options.tls));
    grpc::SslServerCredentialsOptions ssl(
        pem.root_certs.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                               : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = pem.root_certs;
    ssl.pem_key_cert_pairs.push_back({pem.private_key, pem.cert_chain});
    credentials = grpc::SslServerCredentials(ssl);
  }

  // Both are process-wide switches read by ServerBuilder::BuildAndStart.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  std::unique_ptr<NodeServer> node(new NodeServer());
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, credentials, &node->port_);
  // gRPC enables SO_REUSEPORT by default: two nodes could then share a port silently.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(-1);
  builder.SetMaxSendMessageSize(-1);
  // Clients ping idle connections every 10 s to notice dead peers; accept that.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  for (const NamedService& s : services) builder.RegisterService(s.service);
  node->server_ = builder.BuildAndStart();
  const bool unix_socket = absl::StartsWith(options.listen, "unix");
  if (node->server_ == nullptr || (!unix_socket && node->port_ == 0)) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen, " (address in use or not local?)"));
  }
  if (unix_socket) node->port_ = 0;
  grpc::HealthCheckServiceInterface* health = node->server_->GetHealthCheckService();
  for (const NamedService& s : services) health->SetServingStatus(s.name, false);
  health->SetServingStatus("", true);
  return node;
}

NodeServer::~NodeServer() {
  if (server_ == nullptr) return;  // never started
  Shutdown(absl::ZeroDuration());
  server_->Wait();
}

void NodeServer::SetServing(const std::string& service, bool serving) {
  server_->GetHealthCheckService()->SetServingStatus(service, serving);
}

void NodeServer::Shutdown(absl::Duration grace) {
  if (shut_down_.exchange(true)) return;
  server_->GetHealthCheckService()->Shutdown();
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
}

void NodeServer::Wait() { server_->Wait(); }

}  // namespace afd::rpc
