// Request parsing and validation of /v1/chat/completions and /v1/completions bodies.
#include "gateway/server/openai_request.h"

#include <string>

#include "gateway/server/api_error.h"
#include "gtest/gtest.h"

namespace afd::gateway {
namespace {

const char kMessages[] = R"("messages": [{"role": "user", "content": "Hi"}])";

std::string Chat(const std::string& extra) {
  return std::string("{") + kMessages + (extra.empty() ? "" : ", " + extra) + "}";
}

// The HTTP error a body produces.
ApiError ChatError(const std::string& body) {
  absl::StatusOr<ChatCompletionRequest> r = ParseChatCompletionRequest(body);
  EXPECT_FALSE(r.ok()) << body;
  return ApiErrorFromStatus(r.ok() ? absl::OkStatus() : r.status());
}

TEST(ChatRequestTest, ParsesSamplingAndOptions) {
  absl::StatusOr<ChatCompletionRequest> r = ParseChatCompletionRequest(Chat(
      R"("model": "m", "temperature": 0.5, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
         "presence_penalty": 0.5, "frequency_penalty": -0.5, "repetition_penalty": 1.1,
         "seed": 7, "max_tokens": 12, "stop": ["END", "\n\n"], "stream": true,
         "stream_options": {"include_usage": true}, "logprobs": true, "top_logprobs": 3,
         "n": 1, "user": "ignored", "stop_token_ids": [5], "ignore_eos": true)"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model, "m");
  const GenerationSettings& g = r->generation;
  EXPECT_FLOAT_EQ(*g.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(*g.sampling.top_p, 0.9f);
  EXPECT_EQ(*g.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(*g.sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(*g.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(*g.sampling.frequency_penalty, -0.5f);
  EXPECT_FLOAT_EQ(*g.sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(*g.sampling.seed, 7u);
  EXPECT_EQ(*g.max_tokens, 12);
  EXPECT_EQ(g.stop, (std::vector<std::string>{"END", "\n\n"}));
  EXPECT_TRUE(g.stream);
  EXPECT_TRUE(g.include_usage);
  EXPECT_TRUE(g.logprobs);
  EXPECT_EQ(g.top_logprobs, 3);
  EXPECT_EQ(g.stop_token_ids, std::vector<int32_t>{5});
  EXPECT_TRUE(g.ignore_eos);
  EXPECT_FALSE(r->reasoning_mode.has_value());
}

TEST(ChatRequestTest, MaxCompletionTokensWinsAndStopMayBeAString) {
  absl::StatusOr<ChatCompletionRequest> r = ParseChatCompletionRequest(
      Chat(R"("max_tokens": 5, "max_completion_tokens": 9, "stop": "x", "seed": -1)"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r->generation.max_tokens, 9);
  EXPECT_EQ(r->generation.stop, std::vector<std::string>{"x"});
  EXPECT_EQ(*r->generation.sampling.seed, ~uint64_t{0});
}

TEST(ChatRequestTest, NullFieldsAreUnset) {
  absl::StatusOr<ChatCompletionRequest> r = ParseChatCompletionRequest(
      Chat(R"("temperature": null, "stop": null, "tools": null, "max_tokens": null)"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->generation.sampling.temperature.has_value());
  EXPECT_TRUE(r->tools.is_null());
}

TEST(ChatRequestTest, RejectsInvalidValuesNamingTheField) {
  struct Case {
    std::string body;
    std::string param;
  };
  const Case cases[] = {
      {Chat(R"("temperature": 3)"), "temperature"},
      {Chat(R"("temperature": "hot")"), "temperature"},
      {Chat(R"("top_p": 0)"), "top_p"},
      {Chat(R"("top_k": -2)"), "top_k"},
      {Chat(R"("max_tokens": 0)"), "max_tokens"},
      {Chat(R"("max_tokens": 1.5)"), "max_tokens"},
      {Chat(R"("n": 2)"), "n"},
      {Chat(R"("stream_options": {"include_usage": true})"), "stream_options"},
      {Chat(R"("stop": [""])"), "stop"},
      {Chat(R"("stop": [1])"), "stop"},
      {Chat(R"("top_logprobs": 2)"), "top_logprobs"},
      {Chat(R"("logprobs": true, "top_logprobs": 21)"), "top_logprobs"},
      {Chat(R"("tool_choice": "required")"), "tool_choice"},
      {Chat(R"("tool_choice": {"type": "function", "function": {"name": "f"}})"), "tool_choice"},
      {Chat(R"("tools": [{"type": "function"}])"), "tools[0]"},
      {Chat(R"("reasoning_mode": "both")"), "reasoning_mode"},
      {Chat(R"("response_format": {"type": "json_object"})"), "response_format"},
      {Chat(R"("logit_bias": {"5": 10})"), "logit_bias"},
      {R"({"messages": []})", "messages"},
      {R"({"model": "m"})", "messages"},
      {R"({"messages": [{"role": "wizard", "content": "x"}]})", "messages[0]"},
      {R"({"messages": ["hi"]})", "messages[0]"},
  };
  for (const Case& c : cases) {
    const ApiError error = ChatError(c.body);
    EXPECT_EQ(error.http_status, 400) << c.body;
    EXPECT_EQ(error.type, "invalid_request_error") << c.body;
    EXPECT_EQ(error.param, c.param) << c.body << ": " << error.message;
  }
}

TEST(ChatRequestTest, RejectsBodiesThatAreNotJsonObjects) {
  for (const char* body : {"", "{", "[1]", "\"x\"", "{\"messages\": [1,]}"}) {
    const ApiError error = ChatError(body);
    EXPECT_EQ(error.http_status, 400) << body;
    EXPECT_NE(error.message.find("JSON"), std::string::npos) << error.message;
  }
}

TEST(ChatRequestTest, ToolChoiceVariants) {
  const std::string tools =
      R"("tools": [{"type": "function", "function": {"name": "get_weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])";
  absl::StatusOr<ChatCompletionRequest> r = ParseChatCompletionRequest(Chat(tools));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tool_choice, ToolChoice::kAuto);
  EXPECT_TRUE(r->tools.is_array());

  r = ParseChatCompletionRequest(Chat(tools + R"(, "tool_choice": "none")"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tool_choice, ToolChoice::kNone);

  r = ParseChatCompletionRequest(Chat(
      tools + R"(, "tool_choice": {"type": "function", "function": {"name": "get_weather"}})"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tool_choice, ToolChoice::kFunction);
  EXPECT_EQ(r->tool_choice_function, "get_weather");

  // An empty list turns tools off.
  r = ParseChatCompletionRequest(Chat(R"("tools": [])"));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->tools.is_null());
}

TEST(ChatRequestTest, ReasoningModeOverrides) {
  absl::StatusOr<ChatCompletionRequest> r =
      ParseChatCompletionRequest(Chat(R"("reasoning_mode": "split")"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->reasoning_mode, ReasoningMode::kSplit);
  r = ParseChatCompletionRequest(Chat(R"("separate_reasoning": false)"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->reasoning_mode, ReasoningMode::kAppendThink);
  // reasoning_mode wins over separate_reasoning.
  r = ParseChatCompletionRequest(
      Chat(R"("separate_reasoning": true, "reasoning_mode": "append_think")"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->reasoning_mode, ReasoningMode::kAppendThink);
  r = ParseChatCompletionRequest(Chat(R"("chat_template_kwargs": {"anything": 1})"));
  EXPECT_TRUE(r.ok());
  r = ParseChatCompletionRequest(Chat(R"("chat_template_kwargs": 3)"));
  EXPECT_FALSE(r.ok());
}

TEST(ChatRequestTest, DeveloperRoleIsTheSystemRole) {
  absl::StatusOr<ChatCompletionRequest> r = ParseChatCompletionRequest(
      R"({"messages": [{"role": "developer", "content": "Be brief."},
                       {"role": "user", "content": "Hi"}]})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->messages[0]["role"], "system");
}

TEST(ChatRequestTest, KeepsFloatSpellingOfToolArguments) {
  absl::StatusOr<ChatCompletionRequest> r = ParseChatCompletionRequest(
      R"({"messages": [{"role": "user", "content": "x"},
          {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
           "function": {"name": "f", "arguments": {"v": 3.0}}}]}]})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->messages[1]["tool_calls"][0]["function"]["arguments"]["v"].is_number_float());
}

TEST(CompletionRequestTest, PromptForms) {
  absl::StatusOr<CompletionRequest> r = ParseCompletionRequest(R"({"prompt": "Once"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r->prompt_text, "Once");
  EXPECT_EQ(*r->generation.max_tokens, kDefaultCompletionMaxTokens);

  r = ParseCompletionRequest(R"({"prompt": ["Once"], "max_tokens": 3})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r->prompt_text, "Once");
  EXPECT_EQ(*r->generation.max_tokens, 3);

  r = ParseCompletionRequest(R"({"prompt": [1, 2, 3]})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->prompt_token_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_FALSE(r->prompt_text.has_value());

  r = ParseCompletionRequest(R"({"prompt": [[4, 5]], "logprobs": 2})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->prompt_token_ids, (std::vector<int32_t>{4, 5}));
  EXPECT_TRUE(r->generation.logprobs);
  EXPECT_EQ(r->generation.top_logprobs, 2);
}

TEST(CompletionRequestTest, RejectsUnsupportedForms) {
  for (const char* body :
       {R"({})", R"({"prompt": ""})", R"({"prompt": []})", R"({"prompt": ["a", "b"]})",
        R"({"prompt": [1, -2]})", R"({"prompt": "x", "echo": true})",
        R"({"prompt": "x", "suffix": "y"})", R"({"prompt": "x", "best_of": 2})",
        R"({"prompt": "x", "logprobs": 30})", R"({"prompt": 5})"}) {
    absl::StatusOr<CompletionRequest> r = ParseCompletionRequest(body);
    EXPECT_FALSE(r.ok()) << body;
    EXPECT_EQ(ApiErrorFromStatus(r.status()).http_status, 400) << body;
  }
}

TEST(ApiErrorTest, MapsStatusCodesToHttp) {
  EXPECT_EQ(ApiErrorFromStatus(absl::UnauthenticatedError("x")).http_status, 401);
  EXPECT_EQ(ApiErrorFromStatus(absl::UnauthenticatedError("x")).code, "invalid_api_key");
  EXPECT_EQ(ApiErrorFromStatus(absl::NotFoundError("x")).http_status, 404);
  const ApiError overloaded = ApiErrorFromStatus(absl::ResourceExhaustedError("full"));
  EXPECT_EQ(overloaded.http_status, 429);
  EXPECT_EQ(overloaded.retry_after_s, 1);
  EXPECT_EQ(ApiErrorFromStatus(absl::UnavailableError("x")).http_status, 503);
  EXPECT_EQ(ApiErrorFromStatus(absl::DeadlineExceededError("x")).http_status, 504);
  EXPECT_EQ(ApiErrorFromStatus(absl::InternalError("x")).http_status, 500);

  const ApiError context = ApiErrorFromStatus(
      WithErrorCode(absl::InvalidArgumentError("too long"), "context_length_exceeded"));
  EXPECT_EQ(context.http_status, 400);
  const nlohmann::ordered_json json = context.ToJson();
  EXPECT_EQ(json["error"]["message"], "too long");
  EXPECT_EQ(json["error"]["type"], "invalid_request_error");
  EXPECT_TRUE(json["error"]["param"].is_null());
  EXPECT_EQ(json["error"]["code"], "context_length_exceeded");
}

}  // namespace
}  // namespace afd::gateway
