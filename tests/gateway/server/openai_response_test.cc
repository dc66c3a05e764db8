// SSE framing and the JSON shapes of chat/text completion responses and chunks.
#include "gateway/server/openai_response.h"

#include "gateway/server/metrics.h"
#include "gateway/server/sse.h"
#include "gtest/gtest.h"
#include "tests/gateway/server/gateway_test_util.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;

TEST(SseTest, FramesEachChunkAsOneDataEvent) {
  Json chunk = {{"text", "line1\nline2"}, {"n", 1}};
  const std::string event = SseData(chunk);
  EXPECT_EQ(event, "data: {\"text\":\"line1\\nline2\",\"n\":1}\n\n");
  // Exactly one line before the blank line.
  EXPECT_EQ(event.find('\n'), event.size() - 2);
  EXPECT_EQ(SseDone(), "data: [DONE]\n\n");
  EXPECT_EQ(SseComment("ping\nx"), ": ping x\n\n");
}

TEST(SseTest, InvalidUtf8IsReplacedNotThrown) {
  const std::string event = SseData(Json{{"text", std::string("a\xff")}});
  EXPECT_EQ(event, "data: {\"text\":\"a\xEF\xBF\xBD\"}\n\n");
}

class ResponseJsonTest : public ::testing::Test {
 protected:
  void SetUp() override { tokenizer_ = testing::MiniTokenizer(); }
  ResponseHeader header_{"chatcmpl-1", 1700000000, "m"};
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(ResponseJsonTest, ChatCompletionWithToolCall) {
  AssembledOutput out;
  out.content = std::nullopt;
  out.reasoning_content = "think";
  out.tool_calls.push_back({"get_weather", Json::parse(R"({"city": "Paris", "days": 3})")});
  out.tool_call_ids.push_back("call_abc");
  const Json j = ChatCompletionJson(header_, out, "tool_calls", {10, 5}, nullptr);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["id"], "chatcmpl-1");
  const Json& message = j["choices"][0]["message"];
  EXPECT_EQ(message["role"], "assistant");
  EXPECT_TRUE(message["content"].is_null());
  EXPECT_EQ(message["reasoning_content"], "think");
  EXPECT_EQ(message["tool_calls"][0]["id"], "call_abc");
  EXPECT_EQ(message["tool_calls"][0]["type"], "function");
  EXPECT_EQ(message["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(message["tool_calls"][0]["function"]["arguments"],
            "{\"city\": \"Paris\", \"days\": 3}");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(j["usage"]["total_tokens"], 15);
}

TEST_F(ResponseJsonTest, ChatChunks) {
  const Json first = ChatChunkJson(header_, OutputDelta(), true, "", nullptr);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(first["choices"][0]["delta"]["content"], "");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());

  OutputDelta delta;
  delta.reasoning = "r";
  delta.tool_calls.push_back({0, "call_x", "f", "{\"a\": 1"});
  delta.tool_calls.push_back({1, "", "", "}"});
  const Json mid = ChatChunkJson(header_, delta, false, "", nullptr);
  const Json& d = mid["choices"][0]["delta"];
  EXPECT_FALSE(d.contains("content"));
  EXPECT_EQ(d["reasoning_content"], "r");
  EXPECT_EQ(d["tool_calls"][0]["id"], "call_x");
  EXPECT_EQ(d["tool_calls"][0]["function"]["name"], "f");
  EXPECT_FALSE(d["tool_calls"][1].contains("id"));
  EXPECT_EQ(d["tool_calls"][1]["function"]["arguments"], "}");

  const Json last = ChatChunkJson(header_, OutputDelta(), false, "stop", nullptr);
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(last["choices"][0]["delta"].empty());
  const Json usage = UsageChunkJson(header_, /*chat=*/true, {3, 4});
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 4);
}

TEST_F(ResponseJsonTest, LogprobsInBothFormats) {
  const int32_t a = 'a', b = 'b';
  std::vector<TokenLogprobEntry> entries = {{a, -0.25f, {{a, -0.25f}, {b, -2.0f}}},
                                            {b, -1.0f, {{b, -1.0f}, {a, -1.5f}}}};
  const Json chat = ChatLogprobsJson(*tokenizer_, entries, 1);
  EXPECT_EQ(chat["content"][0]["token"], "a");
  EXPECT_FLOAT_EQ(chat["content"][0]["logprob"].get<float>(), -0.25f);
  EXPECT_EQ(chat["content"][0]["bytes"], Json::array({97}));
  EXPECT_EQ(chat["content"][0]["top_logprobs"].size(), 1u);
  const Json text = CompletionLogprobsJson(*tokenizer_, entries, 2, 10);
  EXPECT_EQ(text["tokens"], Json::array({"a", "b"}));
  EXPECT_EQ(text["text_offset"], Json::array({10, 11}));
  EXPECT_FLOAT_EQ(text["top_logprobs"][1]["a"].get<float>(), -1.5f);
}

TEST_F(ResponseJsonTest, CompletionAndModels) {
  const Json c = CompletionJson({"cmpl-1", 1, "m"}, "text", "length", UsageCounts{2, 3}, nullptr);
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(c["choices"][0]["text"], "text");
  EXPECT_EQ(c["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(c["usage"]["prompt_tokens"], 2);
  const Json models = ModelListJson("m", 5, 4096);
  EXPECT_EQ(models["object"], "list");
  EXPECT_EQ(models["data"][0]["id"], "m");
  EXPECT_EQ(models["data"][0]["max_model_len"], 4096);
}

TEST(MetricsTest, PrometheusTextFormat) {
  GatewayMetrics metrics;
  metrics.RequestStarted();
  metrics.RequestStarted();
  metrics.PromptTokens(7);
  metrics.RequestFirstToken(0.02);
  metrics.InterTokenLatency(0.003);
  metrics.InterTokenLatency(0.5);
  metrics.GenerationTokens(3);
  metrics.RequestFinished("stop", true, 0.6);
  metrics.HttpResponse(200);
  metrics.HttpResponse(429);
  NodeLoad node;
  node.name = "attn0";
  node.ready = true;
  node.total_kv_blocks = 100;
  node.free_kv_blocks = 75;
  const std::string text = metrics.Render({node});
  for (const char* line :
       {"# TYPE afd_requests_running gauge\nafd_requests_running 0\n", "afd_requests_waiting 1\n",
        "afd_prompt_tokens_total 7\n", "afd_generation_tokens_total 3\n",
        "afd_requests_finished_total{outcome=\"stop\"} 1\n",
        "afd_http_responses_total{code=\"429\"} 1\n",
        "# TYPE afd_time_to_first_token_seconds histogram\n",
        "afd_time_to_first_token_seconds_bucket{le=\"0.01\"} 0\n",
        "afd_time_to_first_token_seconds_bucket{le=\"0.025\"} 1\n",
        "afd_time_to_first_token_seconds_bucket{le=\"+Inf\"} 1\n",
        "afd_time_to_first_token_seconds_count 1\n",
        "afd_inter_token_latency_seconds_bucket{le=\"0.005\"} 1\n",
        "afd_inter_token_latency_seconds_bucket{le=\"0.5\"} 2\n",
        "afd_inter_token_latency_seconds_sum 0.503\n",
        "afd_kv_cache_usage_ratio{node=\"attn0\"} 0.25\n",
        "afd_attention_node_ready{node=\"attn0\"} 1\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << "missing: " << line << "\nin:\n" << text;
  }
}

TEST(MetricsTest, RunningAndWaitingFollowTheRequestLifecycle) {
  GatewayMetrics metrics;
  auto gauges = [&metrics] {
    const std::string text = metrics.Render({});
    const size_t r = text.find("\nafd_requests_running ");
    const size_t w = text.find("\nafd_requests_waiting ");
    return text.substr(r + 22, text.find('\n', r + 1) - r - 22) + "/" +
           text.substr(w + 22, text.find('\n', w + 1) - w - 22);
  };
  EXPECT_EQ(gauges(), "0/0");
  metrics.RequestStarted();
  metrics.RequestStarted();
  metrics.RequestStarted();
  EXPECT_EQ(gauges(), "0/3");  // admitted, no token yet
  metrics.RequestFirstToken(0.1);
  EXPECT_EQ(gauges(), "1/2");
  metrics.RequestFinished("error", /*had_first_token=*/false, 0.2);  // failed while waiting
  EXPECT_EQ(gauges(), "1/1");
  metrics.RequestFinished("stop", /*had_first_token=*/true, 0.3);
  EXPECT_EQ(gauges(), "0/1");
  EXPECT_EQ(metrics.requests_in_flight(), 1);
  const std::string text = metrics.Render({});
  EXPECT_NE(text.find("afd_e2e_request_latency_seconds_count 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("afd_requests_finished_total{outcome=\"error\"} 1\n"), std::string::npos);
}

}  // namespace
}  // namespace afd::gateway
