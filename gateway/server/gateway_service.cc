#include "gateway/server/gateway_service.h"

#include "absl/strings/str_cat.h"
#include "common/rpc/status_codec.h"
#include "common/status.h"
#include "gateway/chat/py_json.h"
#include "gateway/server/api_error.h"
#include "gateway/server/sse.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;

absl::StatusOr<Json> ParseField(const std::string& text, const std::string& field) {
  absl::StatusOr<Json> json = ParseJsonExact(text);
  if (!json.ok()) {
    return InvalidParam(field,
                        absl::StrCat(field, " is not valid JSON: ", json.status().message()));
  }
  return json;
}

}  // namespace

absl::StatusOr<Json> TextRequestToOpenAiBody(const v1::TextGenerateRequest& request) {
  const bool chat = !request.messages_json().empty();
  if (chat == !request.prompt().empty()) {
    return absl::InvalidArgumentError("set exactly one of prompt and messages_json");
  }
  Json body = Json::object();
  if (!request.model().empty()) body["model"] = request.model();
  if (chat) {
    ASSIGN_OR_RETURN(body["messages"], ParseField(request.messages_json(), "messages_json"));
    if (!request.tools_json().empty()) {
      ASSIGN_OR_RETURN(body["tools"], ParseField(request.tools_json(), "tools_json"));
    }
    const std::string& choice = request.tool_choice();
    if (choice == "auto" || choice == "none") {
      body["tool_choice"] = choice;
    } else if (!choice.empty()) {
      body["tool_choice"] = {{"type", "function"}, {"function", {{"name", choice}}}};
    }
    if (!request.reasoning_mode().empty()) body["reasoning_mode"] = request.reasoning_mode();
  } else {
    body["prompt"] = request.prompt();
  }
  const v1::SamplingParams& s = request.sampling();
  if (s.has_temperature()) body["temperature"] = s.temperature();
  if (s.has_top_p()) body["top_p"] = s.top_p();
  if (s.has_top_k()) body["top_k"] = s.top_k();
  if (s.has_min_p()) body["min_p"] = s.min_p();
  if (s.has_repetition_penalty()) body["repetition_penalty"] = s.repetition_penalty();
  if (s.has_presence_penalty()) body["presence_penalty"] = s.presence_penalty();
  if (s.has_frequency_penalty()) body["frequency_penalty"] = s.frequency_penalty();
  if (s.has_seed()) body["seed"] = s.seed();
  if (s.max_tokens() > 0) body["max_tokens"] = s.max_tokens();
  if (s.stop_token_ids_size() > 0) {
    body["stop_token_ids"] =
        Json(std::vector<int32_t>(s.stop_token_ids().begin(), s.stop_token_ids().end()));
  }
  if (s.ignore_eos()) body["ignore_eos"] = true;
  if (s.logprobs()) {
    if (chat) {
      body["logprobs"] = true;
      body["top_logprobs"] = s.top_logprobs();
    } else {
      body["logprobs"] = s.top_logprobs();
    }
  }
  if (request.stop_size() > 0) {
    body["stop"] = Json(std::vector<std::string>(request.stop().begin(), request.stop().end()));
  }
  if (request.include_special_tokens()) body["skip_special_tokens"] = false;
  body["stream"] = true;
  return body;
}

absl::Status GatewayService::Authenticate(const grpc::ServerContext& context) const {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  const std::string value =
      it == metadata.end() ? std::string() : std::string(it->second.data(), it->second.size());
  return core_->CheckApiKey(value);
}

grpc::Status GatewayService::Generate(grpc::ServerContext* context,
                                      const v1::GenerateRequest* request,
                                      grpc::ServerWriter<v1::GenerateResponse>* writer) {
  if (absl::Status s = Authenticate(*context); !s.ok()) return rpc::ToGrpcStatus(s);
  return rpc::ToGrpcStatus(core_->RunTokenRequest(
      *request, context, [writer](const v1::GenerateResponse& r) { return writer->Write(r); }));
}

grpc::Status GatewayService::GenerateText(grpc::ServerContext* context,
                                          const v1::TextGenerateRequest* request,
                                          grpc::ServerWriter<v1::TextGenerateResponse>* writer) {
  return rpc::ToGrpcStatus(RunText(context, *request, writer));
}

absl::Status GatewayService::RunText(grpc::ServerContext* context,
                                     const v1::TextGenerateRequest& request,
                                     grpc::ServerWriter<v1::TextGenerateResponse>* writer) {
  RETURN_IF_ERROR(Authenticate(*context));
  ASSIGN_OR_RETURN(Json body, TextRequestToOpenAiBody(request));
  absl::StatusOr<PreparedRequest> prepared;
  if (body.contains("messages")) {
    ASSIGN_OR_RETURN(ChatCompletionRequest chat, ParseChatCompletionRequest(DumpJson(body)));
    prepared = core_->PrepareChat(chat);
  } else {
    ASSIGN_OR_RETURN(CompletionRequest completion, ParseCompletionRequest(DumpJson(body)));
    prepared = core_->PrepareCompletion(completion);
  }
  if (!prepared.ok()) return prepared.status();
  ASSIGN_OR_RETURN(std::unique_ptr<Generation> generation,
                   Generation::Create(core_, *std::move(prepared)));
  CallOptions options;
  options.parent = context;
  RETURN_IF_ERROR(generation->Begin(options));
  const std::string& id = generation->prepared().header.id;
  const GenerationOutcome outcome = generation->Run([&](const OutputDelta& delta) {
    v1::TextGenerateResponse response;
    response.set_request_id(id);
    response.set_content(delta.content);
    response.set_reasoning_content(delta.reasoning);
    for (const ToolCallDelta& call : delta.tool_calls) {
      v1::ToolCallDelta* out = response.add_tool_calls();
      out->set_index(call.index);
      out->set_id(call.id);
      out->set_name(call.name);
      out->set_arguments(call.arguments);
    }
    for (const TokenLogprobEntry& entry : delta.logprobs) {
      v1::TokenLogprob* lp = response.add_logprobs();
      lp->set_token_id(entry.token_id);
      lp->set_logprob(entry.logprob);
      for (const auto& [token, logprob] : entry.top) {
        v1::TopLogprob* top = lp->add_top();
        top->set_token_id(token);
        top->set_logprob(logprob);
      }
    }
    return writer->Write(response);
  });
  RETURN_IF_ERROR(outcome.status);
  v1::TextGenerateResponse last;
  last.set_request_id(id);
  last.set_finish_reason(outcome.finish_reason);
  last.mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(outcome.usage.prompt_tokens));
  last.mutable_usage()->set_completion_tokens(
      static_cast<uint32_t>(outcome.usage.completion_tokens));
  writer->Write(last);
  return absl::OkStatus();
}

grpc::Status GatewayService::Abort(grpc::ServerContext* context, const v1::AbortRequest* request,
                                   v1::AbortResponse* response) {
  if (absl::Status s = Authenticate(*context); !s.ok()) return rpc::ToGrpcStatus(s);
  return rpc::ToGrpcStatus(core_->Abort(request->request_id()));
}

grpc::Status GatewayService::Describe(grpc::ServerContext* context,
                                      const v1::DescribeGatewayRequest* request,
                                      v1::GatewayInfo* response) {
  response->set_node_name(core_->options().node_name);
  response->set_served_model_name(core_->options().served_model_name);
  response->set_max_model_len(core_->max_model_len());
  for (v1::AttentionNodeInfo& info : core_->pool().Infos()) {
    *response->add_attention_nodes() = std::move(info);
  }
  return grpc::Status::OK;
}

}  // namespace afd::gateway
