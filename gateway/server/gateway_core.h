// GatewayCore: what the HTTP API and the gRPC Gateway service share: the tokenizer and prompt
// encoder, the attention-node pool, the deployment's settings and metrics. It turns validated
// OpenAI requests into node requests (template -> tokens, limits, defaults) and runs them
// (Generation: node stream -> detokenizer -> parsers -> deltas). Thread-safe; a Generation is
// driven by one thread, and Cancel may come from any.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "afd/v1/attention.pb.h"
#include "gateway/chat/chat_template.h"
#include "gateway/server/attention_pool.h"
#include "gateway/server/metrics.h"
#include "gateway/server/openai_request.h"
#include "gateway/server/openai_response.h"
#include "gateway/server/output_assembler.h"
#include "gateway/server/prompt_encoder.h"
#include "gateway/tokenizer/tokenizer.h"

namespace afd::gateway {

struct GatewayOptions {
  std::string node_name = "gateway";
  std::string served_model_name;  // the `model` clients send (and /v1/models lists)
  std::string api_key;            // empty: no authentication
  ReasoningMode reasoning_mode = ReasoningMode::kAppendThink;  // per deployment
  ChatTemplateOptions chat_template;
  bool enable_forced_output = false;  // honour the afd_forced_output test switch
  int64_t context_length = 0;         // model context (max_position_embeddings); 0: unknown
  int64_t max_prompt_tokens = 0;      // cluster.yaml limits.max_prompt_tokens; 0: context
  int64_t max_new_tokens = 4096;      // cluster.yaml limits.max_new_tokens (cap and default)
  int kv_block_tokens = 16;           // cluster.yaml limits.kv_block_tokens
  int64_t max_in_flight = 1024;       // requests in the gateway at once before 429
  absl::Duration request_timeout = absl::ZeroDuration();  // 0: no deadline
  SamplingSettings default_sampling;                      // from the model's generation_config.json
  std::vector<int32_t> chat_stop_token_ids;  // end-of-turn ids (e.g. `[e~[`), added for chat
};

// A request ready to send to an attention node, and how to present its output.
struct PreparedRequest {
  v1::GenerateRequest request;
  OutputOptions output;
  ResponseHeader header;
  int64_t prompt_tokens = 0;
  int64_t kv_blocks = 0;  // (prompt + max_tokens) / block, charged while routing
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;
  int top_logprobs = 0;
};

// The end of a generation.
struct GenerationOutcome {
  absl::Status status;        // OK, or what ended the generation (mid-stream node errors)
  std::string finish_reason;  // OpenAI's, when status is OK
  UsageCounts usage;
  bool client_gone = false;  // the sink refused a delta: the node request was cancelled
};

class GatewayCore;

// Sampling defaults from `dir`/generation_config.json (temperature, top_p, top_k, min_p,
// repetition_penalty), as vLLM applies them; none when the file is absent. INVALID_ARGUMENT for
// a malformed file.
absl::StatusOr<SamplingSettings> LoadGenerationDefaults(const std::string& dir);

// One running request. Create() admits it at the gateway; Begin() routes it and waits for the
// node's first response, so that admission errors (429, 503, 400) are known before a client sees
// any status line; Run() streams the rest.
class Generation {
 public:
  // Called with each non-empty delta; returns false when the client is gone.
  using DeltaSink = std::function<bool(const OutputDelta& delta)>;

  // RESOURCE_EXHAUSTED when the gateway is full.
  static absl::StatusOr<std::unique_ptr<Generation>> Create(GatewayCore* core,
                                                            PreparedRequest prepared);
  ~Generation();

  // Starts the node request and waits for its first response (or error). CANCELLED when
  // Cancel() came first.
  absl::Status Begin(const CallOptions& options);
  // Streams the output to `sink` until the end. Call once, after Begin succeeded.
  GenerationOutcome Run(const DeltaSink& sink);
  // Stops the node request (client disconnect); safe from any thread, before or during Begin
  // and Run.
  void Cancel();

  const PreparedRequest& prepared() const { return prepared_; }
  const OutputAssembler& assembler() const { return *assembler_; }

 private:
  Generation(GatewayCore* core, PreparedRequest prepared);
  // Feeds one node response; returns the delta for the client.
  OutputDelta Consume(const v1::GenerateResponse& response);

  GatewayCore* core_;
  PreparedRequest prepared_;
  std::unique_ptr<OutputAssembler> assembler_;
  absl::Mutex mu_;  // guards call_ creation against Cancel
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<GenerateCall> call_;
  std::optional<v1::GenerateResponse> first_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_token_;
  bool had_first_token_ = false;
  bool counted_ = false;  // metrics RequestStarted was called
  std::string node_reason_;
};

class GatewayCore {
 public:
  // `tokenizer` and `encoder` may both be null: token-id requests only (text and chat
  // requests are UNIMPLEMENTED).
  GatewayCore(GatewayOptions options, std::unique_ptr<Tokenizer> tokenizer,
              std::unique_ptr<PromptEncoder> encoder, std::unique_ptr<AttentionPool> pool);

  // UNAUTHENTICATED unless no key is configured or `authorization` is "Bearer <key>".
  absl::Status CheckApiKey(std::string_view authorization) const;
  // NOT_FOUND (code model_not_found) unless empty or the served model name.
  absl::Status CheckModel(std::string_view model) const;

  // Renders, encodes and checks a request against the limits. INVALID_ARGUMENT for template
  // errors and too long prompts (code context_length_exceeded); UNAVAILABLE when no attention
  // node is ready (model limits unknown).
  absl::StatusOr<PreparedRequest> PrepareChat(const ChatCompletionRequest& request) const;
  absl::StatusOr<PreparedRequest> PrepareCompletion(const CompletionRequest& request) const;
  // A token-id request (gRPC Gateway.Generate): checks the limits and fills defaults.
  absl::Status PrepareTokenRequest(v1::GenerateRequest* request) const;
  // Runs a token-id request on a node, passing each response to `write` (false: the client is
  // gone). `parent`: the client's call, whose deadline and cancellation propagate.
  absl::Status RunTokenRequest(v1::GenerateRequest request, const grpc::ServerContext* parent,
                               const std::function<bool(const v1::GenerateResponse&)>& write);
  // Gateway.Abort: NOT_FOUND when no running request has this id.
  absl::Status Abort(const std::string& request_id);

  // Longest context the deployment serves (prompt + output), for /v1/models.
  int64_t max_model_len() const;
  std::string NewRequestId(std::string_view prefix) const;

  const GatewayOptions& options() const { return options_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const PromptEncoder& encoder() const { return *encoder_; }
  AttentionPool& pool() const { return *pool_; }
  GatewayMetrics& metrics() const { return metrics_; }

  // Admission at the gateway (RESOURCE_EXHAUSTED past max_in_flight).
  absl::Status Admit();
  void Release();

 private:
  // UNIMPLEMENTED without a tokenizer.
  absl::Status CheckTextSupport() const;
  // Token limits for a prompt of `prompt_tokens`: the max_tokens to send, or an error.
  absl::StatusOr<int64_t> CheckLengths(int64_t prompt_tokens,
                                       std::optional<int64_t> requested) const;
  // Fills the node request's sampling from the settings and the defaults.
  absl::Status FillSampling(const GenerationSettings& settings, int64_t max_tokens,
                            v1::SamplingParams* sampling) const;
  absl::StatusOr<PreparedRequest> Finalize(PreparedRequest prepared, std::vector<int32_t> ids,
                                           const GenerationSettings& settings) const;

  GatewayOptions options_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<PromptEncoder> encoder_;
  std::unique_ptr<AttentionPool> pool_;
  mutable GatewayMetrics metrics_;
  std::atomic<int64_t> in_flight_{0};
  mutable std::atomic<uint64_t> next_id_{0};
  uint64_t id_salt_ = 0;
};

}  // namespace afd::gateway
