// HttpServer: the OpenAI-compatible HTTP API of the gateway on cpp-httplib:
//   POST /v1/chat/completions  (SSE when "stream": true)
//   POST /v1/completions       (SSE when "stream": true)
//   GET  /v1/models, GET /health, GET /metrics (Prometheus text)
// Errors are OpenAI error JSON with the matching HTTP status; a client that disconnects has its
// attention-node request cancelled. Handlers run on a pool of `threads` threads (one per open
// request). Thread-safe; Start once, Stop from any thread.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "gateway/server/connection_watch.h"
#include "gateway/server/gateway_core.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace afd::gateway {

class ActiveGenerations;

struct HttpOptions {
  std::string host = "0.0.0.0";
  int port = 8080;   // 0: any free port
  int threads = 64;  // concurrent requests (each streaming request holds a thread)
  size_t max_body_bytes = 64u << 20;
  int read_timeout_s = 60;    // waiting for the request body, s
  int write_timeout_s = 60;   // a blocked write to a slow client, s
  bool log_requests = false;  // one line per request on stdout
};

class HttpServer {
 public:
  HttpServer(GatewayCore* core, HttpOptions options);
  ~HttpServer();

  // Binds and starts serving on a background thread. UNAVAILABLE when the port cannot be bound.
  absl::Status Start();
  // The bound port (after Start).
  int port() const { return port_; }
  // Stops accepting, finishes running requests' writes and joins the thread. Idempotent.
  void Stop();

 private:
  void Routes();
  // Runs a prepared request and writes the response (JSON, SSE or an error).
  void Run(const httplib::Request& req, httplib::Response& res,
           absl::StatusOr<PreparedRequest> prepared);

  GatewayCore* core_;
  HttpOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::unique_ptr<ConnectionWatch> watch_;
  std::unique_ptr<ActiveGenerations> active_;
  std::thread thread_;
  int port_ = 0;
  int64_t start_time_ = 0;
};

}  // namespace afd::gateway
