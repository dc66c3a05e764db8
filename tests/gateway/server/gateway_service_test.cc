// The gRPC Gateway service's text and chat requests with no attention node behind it: the proto
// request maps onto the same OpenAI body the HTTP API checks, and errors come back with the gRPC
// codes of the HTTP statuses (API key 401 -> UNAUTHENTICATED, 400 -> INVALID_ARGUMENT, unknown
// model 404 -> NOT_FOUND, no capacity 503 -> UNAVAILABLE). Generation through real nodes is in
// tests/integration/gateway.
#include "gateway/server/gateway_service.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "tests/gateway/server/gateway_test_util.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;

TEST(TextRequestToOpenAiBodyTest, ChatRequestMapsToTheChatBody) {
  v1::TextGenerateRequest request;
  request.set_model("mini");
  request.set_messages_json(R"([{"role": "user", "content": "hi"}])");
  request.set_tools_json(R"([{"type": "function", "function": {"name": "f"}}])");
  request.set_tool_choice("f");
  request.set_reasoning_mode("split");
  request.add_stop("END");
  request.set_include_special_tokens(true);
  v1::SamplingParams* s = request.mutable_sampling();
  s->set_temperature(0.5f);
  s->set_max_tokens(7);
  s->set_logprobs(true);
  s->set_top_logprobs(3);
  s->set_seed(9);
  absl::StatusOr<Json> body = TextRequestToOpenAiBody(request);
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ((*body)["model"], "mini");
  EXPECT_EQ((*body)["messages"][0]["content"], "hi");
  EXPECT_EQ((*body)["tools"][0]["function"]["name"], "f");
  EXPECT_EQ((*body)["tool_choice"], Json::parse(R"({"type": "function",
                                                    "function": {"name": "f"}})"));
  EXPECT_EQ((*body)["reasoning_mode"], "split");
  EXPECT_EQ((*body)["stop"], Json::parse(R"(["END"])"));
  EXPECT_EQ((*body)["skip_special_tokens"], false);
  EXPECT_FLOAT_EQ((*body)["temperature"].get<float>(), 0.5f);
  EXPECT_EQ((*body)["max_tokens"], 7);
  EXPECT_EQ((*body)["logprobs"], true);  // chat: a flag plus top_logprobs
  EXPECT_EQ((*body)["top_logprobs"], 3);
  EXPECT_EQ((*body)["seed"], 9);
  EXPECT_EQ((*body)["stream"], true);
  // The body is one the HTTP API accepts.
  EXPECT_TRUE(ParseChatCompletionRequest(body->dump()).ok());

  request.set_tool_choice("none");
  EXPECT_EQ((*TextRequestToOpenAiBody(request))["tool_choice"], "none");
}

TEST(TextRequestToOpenAiBodyTest, CompletionRequestMapsToTheCompletionBody) {
  v1::TextGenerateRequest request;
  request.set_prompt("Once upon");
  request.mutable_sampling()->set_logprobs(true);
  request.mutable_sampling()->set_top_logprobs(2);
  absl::StatusOr<Json> body = TextRequestToOpenAiBody(request);
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ((*body)["prompt"], "Once upon");
  EXPECT_EQ((*body)["logprobs"], 2);  // completions: the number of alternatives
  EXPECT_FALSE(body->contains("messages"));
  EXPECT_TRUE(ParseCompletionRequest(body->dump()).ok());
}

TEST(TextRequestToOpenAiBodyTest, ExactlyOneInputAndValidJson) {
  v1::TextGenerateRequest neither;
  EXPECT_EQ(TextRequestToOpenAiBody(neither).status().code(), absl::StatusCode::kInvalidArgument);
  v1::TextGenerateRequest both;
  both.set_prompt("x");
  both.set_messages_json("[]");
  EXPECT_EQ(TextRequestToOpenAiBody(both).status().code(), absl::StatusCode::kInvalidArgument);
  v1::TextGenerateRequest bad_tools;
  bad_tools.set_messages_json(R"([{"role": "user", "content": "x"}])");
  bad_tools.set_tools_json("[oops");
  absl::StatusOr<Json> body = TextRequestToOpenAiBody(bad_tools);
  EXPECT_EQ(body.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(body.status().message().find("tools_json"), std::string::npos) << body.status();
}

// The service in process, on a gateway whose only attention node is not there.
class GatewayServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GatewayOptions options;
    options.context_length = 4096;
    options.api_key = "sekret";
    core_ = testing::MiniCore(options);
    ASSERT_NE(core_, nullptr);
    service_ = std::make_unique<GatewayService>(core_.get());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::Gateway::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  // Runs GenerateText to the end; returns its status.
  grpc::Status Text(const v1::TextGenerateRequest& request, const std::string& key = "sekret") {
    grpc::ClientContext context;
    if (!key.empty()) context.AddMetadata("authorization", "Bearer " + key);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto reader = stub_->GenerateText(&context, request);
    v1::TextGenerateResponse response;
    while (reader->Read(&response)) {
    }
    return reader->Finish();
  }

  static v1::TextGenerateRequest Chat(const std::string& messages_json) {
    v1::TextGenerateRequest request;
    request.set_messages_json(messages_json);
    return request;
  }

  std::unique_ptr<GatewayCore> core_;
  std::unique_ptr<GatewayService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Gateway::Stub> stub_;
};

const char kHi[] = R"([{"role": "user", "content": "hi"}])";

TEST_F(GatewayServiceTest, ApiKeyIsRequiredForEveryGeneration) {
  EXPECT_EQ(Text(Chat(kHi), "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Text(Chat(kHi), "wrong").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext context;
  v1::GenerateRequest tokens;
  tokens.add_prompt_token_ids(1);
  auto reader = stub_->Generate(&context, tokens);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(GatewayServiceTest, ErrorsHaveTheHttpApisMeaning) {
  // 400: malformed JSON, an invalid message, a tool_choice naming no declared tool, a bad mode.
  EXPECT_EQ(Text(Chat("[not json")).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Text(Chat(R"([{"role": "wizard", "content": "x"}])")).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::TextGenerateRequest undeclared = Chat(kHi);
  undeclared.set_tool_choice("get_weather");  // names a function that is not in tools
  EXPECT_EQ(Text(undeclared).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::TextGenerateRequest bad_mode = Chat(kHi);
  bad_mode.set_reasoning_mode("sometimes");
  EXPECT_EQ(Text(bad_mode).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // 404: unknown model.
  v1::TextGenerateRequest other = Chat(kHi);
  other.set_model("gpt-9");
  const grpc::Status not_found = Text(other);
  EXPECT_EQ(not_found.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(not_found.error_message().find("gpt-9"), std::string::npos);
  // 400: too long for the context.
  v1::TextGenerateRequest too_long;
  too_long.set_prompt(std::string(5000, 'x'));
  EXPECT_EQ(Text(too_long).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // 503: a valid chat and a valid completion, but no attention node is ready.
  EXPECT_EQ(Text(Chat(kHi)).error_code(), grpc::StatusCode::UNAVAILABLE);
  v1::TextGenerateRequest completion;
  completion.set_prompt("Once upon a time");
  EXPECT_EQ(Text(completion).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GatewayServiceTest, DescribeNamesTheModelAndNodes) {
  grpc::ClientContext context;
  v1::GatewayInfo info;
  ASSERT_TRUE(stub_->Describe(&context, {}, &info).ok());
  EXPECT_EQ(info.served_model_name(), "mini");
  EXPECT_EQ(info.max_model_len(), 4096);
  ASSERT_EQ(info.attention_nodes_size(), 1);
  EXPECT_FALSE(info.attention_nodes(0).ready());
}

}  // namespace
}  // namespace afd::gateway
