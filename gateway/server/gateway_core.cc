#include "gateway/server/gateway_core.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/rpc/status_codec.h"
#include "common/status.h"
#include "gateway/server/api_error.h"

namespace afd::gateway {
namespace {

std::string NodeReason(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_STOP:
      return "stop";
    case v1::FINISH_REASON_LENGTH:
      return "length";
    case v1::FINISH_REASON_ABORT:
      return "abort";
    default:
      return "";
  }
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

absl::StatusOr<SamplingSettings> LoadGenerationDefaults(const std::string& dir) {
  SamplingSettings settings;
  const std::string path = dir + "/generation_config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return settings;
  std::ostringstream text;
  text << in.rdbuf();
  const nlohmann::json json = nlohmann::json::parse(text.str(), nullptr, false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  auto number = [&](const char* key) -> std::optional<float> {
    auto it = json.find(key);
    if (it == json.end() || !it->is_number()) return std::nullopt;
    return it->get<float>();
  };
  settings.temperature = number("temperature");
  settings.top_p = number("top_p");
  settings.min_p = number("min_p");
  settings.repetition_penalty = number("repetition_penalty");
  if (auto it = json.find("top_k"); it != json.end() && it->is_number_integer()) {
    settings.top_k = it->get<int32_t>();
  }
  return settings;
}

// ---- GatewayCore ----

GatewayCore::GatewayCore(GatewayOptions options, std::unique_ptr<Tokenizer> tokenizer,
                         std::unique_ptr<PromptEncoder> encoder,
                         std::unique_ptr<AttentionPool> pool)
    : options_(std::move(options)),
      tokenizer_(std::move(tokenizer)),
      encoder_(std::move(encoder)),
      pool_(std::move(pool)) {
  id_salt_ = std::random_device{}();
  id_salt_ = (id_salt_ << 32) ^ std::random_device{}();
}

absl::Status GatewayCore::CheckApiKey(std::string_view authorization) const {
  if (options_.api_key.empty()) return absl::OkStatus();
  absl::string_view header(authorization.data(), authorization.size());
  if (!absl::ConsumePrefix(&header, "Bearer ") && !absl::ConsumePrefix(&header, "bearer ")) {
    return absl::UnauthenticatedError(
        "missing API key: send it as the header `Authorization: Bearer <key>`");
  }
  if (!ConstantTimeEquals(std::string_view(header.data(), header.size()), options_.api_key)) {
    return absl::UnauthenticatedError("incorrect API key provided");
  }
  return absl::OkStatus();
}

absl::Status GatewayCore::CheckModel(std::string_view model) const {
  if (model.empty() || model == options_.served_model_name) return absl::OkStatus();
  return WithErrorCode(absl::NotFoundError(absl::StrCat("the model `", std::string(model),
                                                        "` does not exist; this server "
                                                        "serves `",
                                                        options_.served_model_name, "`")),
                       "model_not_found");
}

int64_t GatewayCore::max_model_len() const {
  int64_t len = options_.context_length;
  if (len <= 0) len = std::numeric_limits<int32_t>::max();
  return len;
}

std::string GatewayCore::NewRequestId(std::string_view prefix) const {
  const uint64_t n = next_id_.fetch_add(1);
  // A 64-bit mix of a per-process random salt and a counter: unique, not guessable in order.
  uint64_t x = id_salt_ + n * 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return absl::StrFormat("%s%016x%06x", std::string(prefix), x, n & 0xFFFFFF);
}

absl::Status GatewayCore::Admit() {
  if (in_flight_.fetch_add(1) >= options_.max_in_flight) {
    in_flight_.fetch_sub(1);
    return absl::ResourceExhaustedError(absl::StrCat("the gateway is overloaded (",
                                                     options_.max_in_flight,
                                                     " requests in flight); retry later"));
  }
  return absl::OkStatus();
}

void GatewayCore::Release() { in_flight_.fetch_sub(1); }

absl::StatusOr<int64_t> GatewayCore::CheckLengths(int64_t prompt_tokens,
                                                  std::optional<int64_t> requested) const {
  int64_t context =
      options_.context_length > 0 ? options_.context_length : std::numeric_limits<int32_t>::max();
  int64_t prompt_limit = context;
  if (options_.max_prompt_tokens > 0)
    prompt_limit = std::min(prompt_limit, options_.max_prompt_tokens);
  if (std::optional<v1::AttentionNodeInfo> info = pool_->ReadyInfo();
      info.has_value() && info->max_prompt_tokens() > 0) {
    prompt_limit = std::min<int64_t>(prompt_limit, info->max_prompt_tokens());
  }
  if (prompt_tokens > prompt_limit) {
    return WithErrorCode(
        absl::InvalidArgumentError(
            absl::StrCat("the prompt has ", prompt_tokens, " tokens, more than the ", prompt_limit,
                         " this deployment accepts (model context length ", context, " tokens)")),
        "context_length_exceeded");
  }
  const int64_t remaining = context - prompt_tokens;
  if (requested.has_value()) {
    if (*requested > options_.max_new_tokens) {
      return InvalidParam("max_tokens", absl::StrCat("max_tokens is ", *requested,
                                                     ", more than this "
                                                     "deployment's limit of ",
                                                     options_.max_new_tokens, " new tokens"));
    }
    if (*requested > remaining) {
      return WithErrorCode(
          InvalidParam(
              "max_tokens",
              absl::StrCat("this model's maximum context length is ", context,
                           " tokens; you requested ", prompt_tokens + *requested, " tokens (",
                           prompt_tokens, " in the prompt, ", *requested, " for the completion)")),
          "context_length_exceeded");
    }
    return *requested;
  }
  if (remaining < 1) {
    return WithErrorCode(
        absl::InvalidArgumentError(absl::StrCat("the prompt has ", prompt_tokens,
                                                " tokens and leaves no room in the model's "
                                                "context of ",
                                                context, " tokens")),
        "context_length_exceeded");
  }
  return std::min(options_.max_new_tokens, remaining);
}

absl::Status GatewayCore::FillSampling(const GenerationSettings& settings, int64_t max_tokens,
                                       v1::SamplingParams* s) const {
  const SamplingSettings& r = settings.sampling;
  const SamplingSettings& d = options_.default_sampling;
  auto pick = [](const auto& request, const auto& fallback) {
    return request.has_value() ? request : fallback;
  };
  if (auto v = pick(r.temperature, d.temperature)) s->set_temperature(*v);
  if (auto v = pick(r.top_p, d.top_p)) s->set_top_p(*v);
  if (auto v = pick(r.top_k, d.top_k)) s->set_top_k(*v);
  if (auto v = pick(r.min_p, d.min_p)) s->set_min_p(*v);
  if (auto v = pick(r.repetition_penalty, d.repetition_penalty)) s->set_repetition_penalty(*v);
  if (auto v = pick(r.presence_penalty, d.presence_penalty)) s->set_presence_penalty(*v);
  if (auto v = pick(r.frequency_penalty, d.frequency_penalty)) s->set_frequency_penalty(*v);
  if (r.seed.has_value()) s->set_seed(*r.seed);
  for (int32_t id : settings.stop_token_ids) s->add_stop_token_ids(id);
  s->set_ignore_eos(settings.ignore_eos);
  s->set_max_tokens(static_cast<uint32_t>(max_tokens));
  s->set_logprobs(settings.logprobs);
  s->set_top_logprobs(static_cast<uint32_t>(settings.logprobs ? settings.top_logprobs : 0));
  return absl::OkStatus();
}

absl::StatusOr<PreparedRequest> GatewayCore::Finalize(PreparedRequest prepared,
                                                      std::vector<int32_t> ids,
                                                      const GenerationSettings& settings) const {
  if (ids.empty()) return InvalidParam("prompt", "the prompt encodes to no tokens");
  prepared.prompt_tokens = static_cast<int64_t>(ids.size());
  std::optional<int64_t> requested = settings.max_tokens;
  if (prepared.request.forced_token_ids_size() > 0) {
    requested = prepared.request.forced_token_ids_size();
  }
  ASSIGN_OR_RETURN(int64_t max_tokens, CheckLengths(prepared.prompt_tokens, requested));
  v1::GenerateRequest& request = prepared.request;
  request.set_request_id(prepared.header.id);
  request.mutable_prompt_token_ids()->Assign(ids.begin(), ids.end());
  RETURN_IF_ERROR(FillSampling(settings, max_tokens, request.mutable_sampling()));
  const int64_t block = std::max(1, options_.kv_block_tokens);
  prepared.kv_blocks = (prepared.prompt_tokens + max_tokens + block - 1) / block;
  prepared.stream = settings.stream;
  prepared.include_usage = settings.include_usage;
  prepared.logprobs = settings.logprobs;
  prepared.top_logprobs = settings.top_logprobs;
  prepared.output.stop = settings.stop;
  prepared.output.skip_special_tokens = settings.skip_special_tokens;
  prepared.output.stream = settings.stream;
  return prepared;
}

absl::Status GatewayCore::CheckTextSupport() const {
  if (tokenizer_ != nullptr && encoder_ != nullptr) return absl::OkStatus();
  return absl::UnimplementedError(
      "this gateway has no tokenizer (the model directory has no tokenizer.json): only "
      "token-id requests (gRPC Gateway.Generate) are served");
}

absl::StatusOr<PreparedRequest> GatewayCore::PrepareChat(
    const ChatCompletionRequest& request) const {
  RETURN_IF_ERROR(CheckModel(request.model));
  RETURN_IF_ERROR(CheckTextSupport());
  const nlohmann::ordered_json tools =
      request.tool_choice == ToolChoice::kNone ? nlohmann::ordered_json() : request.tools;
  absl::StatusOr<std::vector<PromptSegment>> segments = RenderChatPromptSegments(
      request.messages, tools, /*add_generation_prompt=*/true, options_.chat_template);
  if (!segments.ok()) {
    return InvalidParam(
        "messages", absl::StrCat("cannot render the chat prompt: ", segments.status().message()));
  }
  PreparedRequest prepared;
  prepared.header.id = NewRequestId("chatcmpl-");
  prepared.header.created = absl::ToUnixSeconds(absl::Now());
  prepared.header.model = options_.served_model_name;
  prepared.output.chat = true;
  prepared.output.reasoning_mode = request.reasoning_mode.value_or(options_.reasoning_mode);
  prepared.output.tools = tools;
  if (request.tool_choice == ToolChoice::kFunction) {
    // No constrained decoding: the reasoning is closed and the call to the named function is
    // opened in the prompt, so the model continues with its parameters.
    PromptSegment start;
    start.text = absl::StrCat("</think>\n\n<minimax:tool_call>\n<invoke name=\"",
                              request.tool_choice_function, "\">\n");
    prepared.output.forced_prefix = start.text;
    segments->push_back(std::move(start));
  }
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, encoder_->EncodeSegments(*segments));
  if (request.forced_output.has_value()) {
    if (!options_.enable_forced_output) {
      return InvalidParam("afd_forced_output",
                          "afd_forced_output is a test switch; start the gateway with "
                          "--enable-forced-output to use it");
    }
    ASSIGN_OR_RETURN(std::vector<int32_t> forced, encoder_->EncodePlain(*request.forced_output));
    if (forced.empty()) return InvalidParam("afd_forced_output", "afd_forced_output is empty");
    prepared.request.mutable_forced_token_ids()->Assign(forced.begin(), forced.end());
  }
  GenerationSettings settings = request.generation;
  if (!settings.ignore_eos) {
    for (int32_t id : options_.chat_stop_token_ids) {
      if (std::find(settings.stop_token_ids.begin(), settings.stop_token_ids.end(), id) ==
          settings.stop_token_ids.end()) {
        settings.stop_token_ids.push_back(id);
      }
    }
  }
  return Finalize(std::move(prepared), std::move(ids), settings);
}

absl::StatusOr<PreparedRequest> GatewayCore::PrepareCompletion(
    const CompletionRequest& request) const {
  RETURN_IF_ERROR(CheckModel(request.model));
  RETURN_IF_ERROR(CheckTextSupport());
  PreparedRequest prepared;
  prepared.header.id = NewRequestId("cmpl-");
  prepared.header.created = absl::ToUnixSeconds(absl::Now());
  prepared.header.model = options_.served_model_name;
  prepared.output.chat = false;
  std::vector<int32_t> ids = request.prompt_token_ids;
  if (request.prompt_text.has_value()) {
    ASSIGN_OR_RETURN(ids, encoder_->EncodeWithSpecialTokens(*request.prompt_text));
  } else if (std::optional<v1::AttentionNodeInfo> info = pool_->ReadyInfo(); info.has_value()) {
    for (int32_t id : ids) {
      if (id >= static_cast<int32_t>(info->vocab_size())) {
        return InvalidParam("prompt", absl::StrCat("token id ", id, " is outside the vocabulary (",
                                                   info->vocab_size(), " tokens)"));
      }
    }
  }
  return Finalize(std::move(prepared), std::move(ids), request.generation);
}

absl::Status GatewayCore::PrepareTokenRequest(v1::GenerateRequest* request) const {
  if (request->prompt_token_ids_size() == 0) {
    return absl::InvalidArgumentError("prompt_token_ids is empty");
  }
  std::optional<int64_t> requested;
  if (request->sampling().max_tokens() > 0) requested = request->sampling().max_tokens();
  if (request->forced_token_ids_size() > 0) requested = request->forced_token_ids_size();
  ASSIGN_OR_RETURN(int64_t max_tokens, CheckLengths(request->prompt_token_ids_size(), requested));
  request->mutable_sampling()->set_max_tokens(static_cast<uint32_t>(max_tokens));
  if (request->request_id().empty()) {
    request->set_request_id(NewRequestId("gen-"));
  }
  return absl::OkStatus();
}

absl::Status GatewayCore::RunTokenRequest(
    v1::GenerateRequest request, const grpc::ServerContext* parent,
    const std::function<bool(const v1::GenerateResponse&)>& write) {
  RETURN_IF_ERROR(PrepareTokenRequest(&request));
  RETURN_IF_ERROR(Admit());
  const auto start = std::chrono::steady_clock::now();
  metrics_.RequestStarted();
  metrics_.PromptTokens(static_cast<uint64_t>(request.prompt_token_ids_size()));
  std::string outcome = "error";
  bool first_token = false;
  auto last = start;
  const absl::Status status = [&]() -> absl::Status {
    CallOptions options;
    options.parent = parent;
    if (options_.request_timeout > absl::ZeroDuration()) {
      options.deadline = absl::Now() + options_.request_timeout;
    }
    const int64_t block = std::max(1, options_.kv_block_tokens);
    options.kv_blocks =
        (request.prompt_token_ids_size() + request.sampling().max_tokens() + block - 1) / block;
    ASSIGN_OR_RETURN(std::unique_ptr<GenerateCall> call,
                     GenerateCall::Start(pool_.get(), request, options));
    v1::GenerateResponse response;
    while (call->Read(&response)) {
      const int n = response.token_ids_size();
      if (n > 0) {
        const auto now = std::chrono::steady_clock::now();
        if (!first_token) {
          first_token = true;
          metrics_.RequestFirstToken(Seconds(now - start));
        } else {
          for (int i = 0; i < n; ++i) metrics_.InterTokenLatency(Seconds(now - last) / n);
        }
        last = now;
        metrics_.GenerationTokens(static_cast<uint64_t>(n));
      }
      if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
        outcome = NodeReason(response.finish_reason());
      }
      if (!write(response)) {
        call->Cancel();
        outcome = "abort";
        return absl::CancelledError("the client went away");
      }
    }
    return call->Finish();
  }();
  metrics_.RequestFinished(status.ok() ? outcome : "error", first_token,
                           Seconds(std::chrono::steady_clock::now() - start));
  Release();
  return status;
}

absl::Status GatewayCore::Abort(const std::string& request_id) {
  std::optional<int> node = pool_->Find(request_id);
  if (!node.has_value()) {
    return absl::NotFoundError(absl::StrCat("no running request has id \"", request_id, "\""));
  }
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  v1::AbortRequest request;
  request.set_request_id(request_id);
  v1::AbortResponse response;
  return rpc::FromGrpcStatus(pool_->stub(*node)->Abort(&context, request, &response));
}

// ---- Generation ----

Generation::Generation(GatewayCore* core, PreparedRequest prepared)
    : core_(core), prepared_(std::move(prepared)) {
  assembler_ = std::make_unique<OutputAssembler>(&core_->tokenizer(), prepared_.output);
}

absl::StatusOr<std::unique_ptr<Generation>> Generation::Create(GatewayCore* core,
                                                               PreparedRequest prepared) {
  RETURN_IF_ERROR(core->Admit());
  auto generation = std::unique_ptr<Generation>(new Generation(core, std::move(prepared)));
  generation->counted_ = true;
  generation->start_ = std::chrono::steady_clock::now();
  core->metrics().RequestStarted();
  core->metrics().PromptTokens(static_cast<uint64_t>(generation->prepared_.prompt_tokens));
  return generation;
}

absl::Status Generation::Begin(const CallOptions& options) {
  CallOptions call_options = options;
  call_options.kv_blocks = prepared_.kv_blocks;
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return absl::CancelledError("the client went away");
    ASSIGN_OR_RETURN(call_, GenerateCall::Start(&core_->pool(), prepared_.request, call_options));
  }
  v1::GenerateResponse first;
  if (call_->Read(&first)) {
    first_ = std::move(first);
    return absl::OkStatus();
  }
  return call_->Finish();
}

Generation::~Generation() {
  if (!counted_) return;
  call_.reset();  // cancels and drains a call still running
  const double elapsed = Seconds(std::chrono::steady_clock::now() - start_);
  core_->metrics().RequestFinished(node_reason_.empty() ? "error" : node_reason_, had_first_token_,
                                   elapsed);
  core_->Release();
}

void Generation::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (call_ != nullptr) call_->Cancel();
}

OutputDelta Generation::Consume(const v1::GenerateResponse& response) {
  const int n = response.token_ids_size();
  if (n > 0) {
    const auto now = std::chrono::steady_clock::now();
    if (!had_first_token_) {
      had_first_token_ = true;
      core_->metrics().RequestFirstToken(Seconds(now - start_));
    } else {
      const double per_token = Seconds(now - last_token_) / n;
      for (int i = 0; i < n; ++i) core_->metrics().InterTokenLatency(per_token);
    }
    last_token_ = now;
    core_->metrics().GenerationTokens(static_cast<uint64_t>(n));
  }
  std::vector<TokenLogprobEntry> logprobs;
  if (prepared_.logprobs) {
    for (const v1::TokenLogprob& lp : response.logprobs()) {
      TokenLogprobEntry entry;
      entry.token_id = lp.token_id();
      entry.logprob = lp.logprob();
      for (const v1::TopLogprob& top : lp.top())
        entry.top.emplace_back(top.token_id(), top.logprob());
      logprobs.push_back(std::move(entry));
    }
  }
  OutputDelta delta = assembler_->Feed(
      absl::MakeConstSpan(response.token_ids().data(), response.token_ids_size()), logprobs);
  if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
    node_reason_ = NodeReason(response.finish_reason());
  }
  return delta;
}

GenerationOutcome Generation::Run(const DeltaSink& sink) {
  GenerationOutcome outcome;
  bool stopped = false;
  auto process = [&](const v1::GenerateResponse& response) {
    const OutputDelta delta = Consume(response);
    if (!delta.empty() && !sink(delta)) {
      outcome.client_gone = true;
      call_->Cancel();
      return false;
    }
    if (assembler_->stopped()) {
      stopped = true;
      call_->Cancel();
      return false;
    }
    return true;
  };
  bool running = true;
  if (first_.has_value()) {
    running = process(*first_);
    first_.reset();
  }
  v1::GenerateResponse response;
  while (running) {
    if (!call_->Read(&response)) {
      outcome.status = call_->Finish();
      break;
    }
    running = process(response);
  }
  if (!outcome.status.ok() && call_->cancelled() && !stopped) outcome.client_gone = true;
  if (outcome.client_gone) {
    node_reason_ = "abort";
    outcome.status = absl::CancelledError("the client went away");
    return outcome;
  }
  if (stopped) node_reason_ = "stop";
  // The forced-output test switch: the canned text is the whole turn, as if the model ended it.
  if (prepared_.request.forced_token_ids_size() > 0 && node_reason_ == "length") {
    node_reason_ = "stop";
  }
  if (!outcome.status.ok()) return outcome;
  const OutputDelta last = assembler_->Finish();
  if (!last.empty() && !sink(last)) outcome.client_gone = true;
  if (node_reason_.empty()) node_reason_ = "stop";
  outcome.finish_reason = assembler_->FinishReason(node_reason_);
  outcome.usage.prompt_tokens = prepared_.prompt_tokens;
  outcome.usage.completion_tokens = assembler_->completion_tokens();
  return outcome;
}

}  // namespace afd::gateway
