#include "gateway/server/http_server.h"

#include <httplib.h>

#include <cstdio>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gateway/server/api_error.h"
#include "gateway/server/sse.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;

void SendError(httplib::Response& res, const ApiError& error) {
  res.status = error.http_status;
  if (error.retry_after_s > 0) res.set_header("Retry-After", std::to_string(error.retry_after_s));
  res.set_content(DumpJson(error.ToJson()), "application/json");
}

void SendStatus(httplib::Response& res, const absl::Status& status) {
  SendError(res, ApiErrorFromStatus(status));
}

void SendJson(httplib::Response& res, const Json& body) {
  res.status = 200;
  res.set_content(DumpJson(body), "application/json");
}

}  // namespace

// Every generation an HTTP request runs, so that Stop can cancel them.
class ActiveGenerations {
 public:
  void Add(Generation* g) {
    absl::MutexLock lock(&mu_);
    if (stopping_) g->Cancel();
    active_.insert(g);
  }
  void Remove(Generation* g) {
    absl::MutexLock lock(&mu_);
    active_.erase(g);
  }
  void CancelAll() {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (Generation* g : active_) g->Cancel();
  }

 private:
  absl::Mutex mu_;
  std::set<Generation*> active_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

namespace {

// One request's generation with its disconnect watch; shared by the handler and, for streams,
// the content provider that outlives it.
struct RequestState {
  ~RequestState() {
    watch.Reset();
    if (generation != nullptr) active->Remove(generation.get());
  }
  ActiveGenerations* active = nullptr;
  std::unique_ptr<Generation> generation;
  ScopedWatch watch;
};

// Writes a streamed response as server-sent events.
void StreamSse(const GatewayCore& core, RequestState* state, httplib::DataSink& sink) {
  Generation* generation = state->generation.get();
  const PreparedRequest& p = generation->prepared();
  const bool chat = p.output.chat;
  auto write = [&](const std::string& text) { return sink.write(text.data(), text.size()); };
  // With include_usage, every chunk carries "usage": null until the usage chunk (as OpenAI's).
  auto write_chunk = [&](Json chunk) {
    if (p.include_usage) chunk["usage"] = nullptr;
    return write(SseData(chunk));
  };
  if (chat && !write_chunk(ChatChunkJson(p.header, OutputDelta(), /*role=*/true, "", nullptr))) {
    generation->Cancel();
    return;
  }
  int64_t text_offset = 0;
  const GenerationOutcome outcome = generation->Run([&](const OutputDelta& delta) {
    Json logprobs = nullptr;
    Json chunk;
    if (chat) {
      if (p.logprobs) logprobs = ChatLogprobsJson(core.tokenizer(), delta.logprobs, p.top_logprobs);
      chunk = ChatChunkJson(p.header, delta, false, "", logprobs);
    } else {
      if (p.logprobs) {
        logprobs =
            CompletionLogprobsJson(core.tokenizer(), delta.logprobs, p.top_logprobs, text_offset);
      }
      text_offset += static_cast<int64_t>(delta.content.size());
      chunk = CompletionJson(p.header, delta.content, "", std::nullopt, logprobs);
    }
    return write_chunk(std::move(chunk));
  });
  if (outcome.client_gone) return;
  if (!outcome.status.ok()) {
    write(SseData(ApiErrorFromStatus(outcome.status).ToJson()));
    write(SseDone());
    return;
  }
  const Json last =
      chat ? ChatChunkJson(p.header, OutputDelta(), false, outcome.finish_reason, nullptr)
           : CompletionJson(p.header, "", outcome.finish_reason, std::nullopt, nullptr);
  if (!write_chunk(last)) return;
  if (p.include_usage && !write(SseData(UsageChunkJson(p.header, chat, outcome.usage)))) return;
  write(SseDone());
}

}  // namespace

HttpServer::HttpServer(GatewayCore* core, HttpOptions options)
    : core_(core),
      options_(std::move(options)),
      server_(std::make_unique<httplib::Server>()),
      watch_(std::make_unique<ConnectionWatch>()),
      active_(std::make_unique<ActiveGenerations>()) {
  Routes();
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Run(const httplib::Request& req, httplib::Response& res,
                     absl::StatusOr<PreparedRequest> prepared) {
  if (!prepared.ok()) return SendStatus(res, prepared.status());
  absl::StatusOr<std::unique_ptr<Generation>> created =
      Generation::Create(core_, *std::move(prepared));
  if (!created.ok()) return SendStatus(res, created.status());
  auto state = std::make_shared<RequestState>();
  state->active = active_.get();
  state->generation = *std::move(created);
  Generation* generation = state->generation.get();
  active_->Add(generation);
  const int fd = ConnectionWatch::FindSocket(req.local_port, req.remote_addr, req.remote_port);
  if (fd >= 0) {
    state->watch =
        ScopedWatch(watch_.get(), watch_->Add(fd, [generation] { generation->Cancel(); }));
  }
  CallOptions call;
  if (core_->options().request_timeout > absl::ZeroDuration()) {
    call.deadline = absl::Now() + core_->options().request_timeout;
  }
  if (const absl::Status begun = generation->Begin(call); !begun.ok()) {
    return SendStatus(res, begun);
  }
  const PreparedRequest& p = generation->prepared();
  if (p.stream) {
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    GatewayCore* core = core_;
    res.set_chunked_content_provider(
        "text/event-stream",
        [core, state](size_t /*offset*/, httplib::DataSink& sink) {
          StreamSse(*core, state.get(), sink);
          state->watch.Reset();
          sink.done();
          return true;
        },
        [state](bool /*success*/) { state->watch.Reset(); });
    return;
  }
  const GenerationOutcome outcome = generation->Run([](const OutputDelta&) { return true; });
  state->watch.Reset();
  if (!outcome.status.ok()) return SendStatus(res, outcome.status);
  const AssembledOutput& output = generation->assembler().result();
  if (p.output.chat) {
    const Json logprobs =
        p.logprobs ? ChatLogprobsJson(core_->tokenizer(), output.logprobs, p.top_logprobs)
                   : Json(nullptr);
    SendJson(res,
             ChatCompletionJson(p.header, output, outcome.finish_reason, outcome.usage, logprobs));
  } else {
    const Json logprobs =
        p.logprobs ? CompletionLogprobsJson(core_->tokenizer(), output.logprobs, p.top_logprobs, 0)
                   : Json(nullptr);
    SendJson(res,
             CompletionJson(p.header, output.text, outcome.finish_reason, outcome.usage, logprobs));
  }
}

void HttpServer::Routes() {
  httplib::Server& s = *server_;
  const int threads = options_.threads;
  s.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  s.set_payload_max_length(options_.max_body_bytes);
  s.set_read_timeout(options_.read_timeout_s, 0);
  s.set_write_timeout(options_.write_timeout_s, 0);
  s.set_tcp_nodelay(true);

  s.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    if (absl::Status s = core_->CheckApiKey(req.get_header_value("Authorization")); !s.ok()) {
      return SendStatus(res, s);
    }
    absl::StatusOr<ChatCompletionRequest> request = ParseChatCompletionRequest(req.body);
    if (!request.ok()) return SendStatus(res, request.status());
    Run(req, res, core_->PrepareChat(*request));
  });
  s.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    if (absl::Status s = core_->CheckApiKey(req.get_header_value("Authorization")); !s.ok()) {
      return SendStatus(res, s);
    }
    absl::StatusOr<CompletionRequest> request = ParseCompletionRequest(req.body);
    if (!request.ok()) return SendStatus(res, request.status());
    Run(req, res, core_->PrepareCompletion(*request));
  });
  s.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
    if (absl::Status s = core_->CheckApiKey(req.get_header_value("Authorization")); !s.ok()) {
      return SendStatus(res, s);
    }
    SendJson(res, ModelListJson(core_->options().served_model_name, start_time_,
                                core_->max_model_len()));
  });
  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (core_->pool().AnyReady()) {
      res.status = 200;
      res.set_content("{\"status\": \"ok\"}", "application/json");
    } else {
      SendStatus(res, absl::UnavailableError("no attention node is ready"));
    }
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.status = 200;
    res.set_content(core_->metrics().Render(core_->pool().Loads()),
                    "text/plain; version=0.0.4; charset=utf-8");
  });

  const size_t max_body_bytes = options_.max_body_bytes;
  s.set_error_handler(httplib::Server::HandlerWithResponse(
      [max_body_bytes](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        ApiError error;
        error.http_status = res.status;
        error.type = "invalid_request_error";
        if (res.status == 404) {
          error.message = absl::StrCat("no such endpoint: ", req.method, " ", req.path);
        } else if (res.status == 413) {
          error.message = absl::StrCat("the request body is larger than the ", max_body_bytes,
                                       " bytes this gateway accepts");
        } else {
          error.message = absl::StrCat("HTTP error ", res.status);
        }
        SendError(res, error);
        return httplib::Server::HandlerResponse::Handled;
      }));
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    SendStatus(res, absl::InternalError("internal error while handling the request"));
  });
  const bool log = options_.log_requests;
  s.set_logger([this, log](const httplib::Request& req, const httplib::Response& res) {
    core_->metrics().HttpResponse(res.status);
    if (log) {
      std::printf("afd-gateway: %s %s %s -> %d\n", req.remote_addr.c_str(), req.method.c_str(),
                  req.path.c_str(), res.status);
      std::fflush(stdout);
    }
  });
}

absl::Status HttpServer::Start() {
  start_time_ = absl::ToUnixSeconds(absl::Now());
  if (options_.port == 0) {
    port_ = server_->bind_to_any_port(options_.host);
    if (port_ <= 0) {
      return absl::UnavailableError(absl::StrCat("cannot bind HTTP on ", options_.host));
    }
  } else {
    if (!server_->bind_to_port(options_.host, options_.port)) {
      return absl::UnavailableError(
          absl::StrCat("cannot bind HTTP on ", options_.host, ":", options_.port, " (in use?)"));
    }
    port_ = options_.port;
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return absl::OkStatus();
}

void HttpServer::Stop() {
  active_->CancelAll();
  if (thread_.joinable()) {
    server_->stop();
    thread_.join();
  }
}

}  // namespace afd::gateway
