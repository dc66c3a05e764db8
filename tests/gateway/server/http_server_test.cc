// The HTTP API's own behaviour with no attention node behind it: authentication, validation,
// unknown models and endpoints, overload and no-capacity errors in OpenAI's error JSON, health
// and metrics. Generation through real nodes is in tests/integration/gateway.
#include "gateway/server/http_server.h"

#include <httplib.h>

#include <chrono>
#include <memory>
#include <thread>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/gateway/server/gateway_test_util.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::json;

class HttpServerTest : public ::testing::Test {
 protected:
  void Start(GatewayOptions options, size_t max_body_bytes = 64u << 20) {
    options.context_length = 64;
    options.max_new_tokens = 16;
    core_ = testing::MiniCore(options);
    ASSERT_NE(core_, nullptr);
    HttpOptions http;
    http.host = "127.0.0.1";
    http.port = 0;
    http.threads = 4;
    http.max_body_bytes = max_body_bytes;
    server_ = std::make_unique<HttpServer>(core_.get(), http);
    ASSERT_TRUE(server_->Start().ok());
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Stop();
  }

  httplib::Result Post(const std::string& path, const std::string& body,
                       const httplib::Headers& headers = {}) {
    return client_->Post(path.c_str(), headers, body, "application/json");
  }
  static Json Body(const httplib::Result& r) { return Json::parse(r->body, nullptr, false); }

  std::unique_ptr<GatewayCore> core_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

const char kChat[] = R"({"model": "mini", "messages": [{"role": "user", "content": "hi"}]})";

TEST_F(HttpServerTest, InvalidRequestIs400WithOpenAiErrorJson) {
  Start({});
  httplib::Result r = Post("/v1/chat/completions", R"({"messages": [], "model": "mini"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  const Json body = Body(r);
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_EQ(body["error"]["param"], "messages");
  r = Post("/v1/chat/completions", "not json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  r = Post("/v1/completions", R"({"prompt": "x", "n": 3})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(Body(r)["error"]["param"], "n");
}

TEST_F(HttpServerTest, UnknownModelIs404) {
  Start({});
  httplib::Result r =
      Post("/v1/chat/completions", R"({"model": "gpt-9", "messages": [{"role": "user",
           "content": "hi"}]})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(Body(r)["error"]["code"], "model_not_found");
}

TEST_F(HttpServerTest, PromptTooLongIs400ContextLength) {
  Start({});
  const std::string long_text(200, 'x');
  httplib::Result r = Post("/v1/completions", R"({"prompt": ")" + long_text + R"("})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(Body(r)["error"]["code"], "context_length_exceeded");
  r = Post("/v1/completions", R"({"prompt": "x", "max_tokens": 17})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(Body(r)["error"]["param"], "max_tokens");
}

TEST_F(HttpServerTest, NoAttentionNodeIs503WithRetryAfter) {
  Start({});
  httplib::Result r = Post("/v1/chat/completions", kChat);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->get_header_value("Retry-After"), "1");
  EXPECT_EQ(Body(r)["error"]["type"], "service_unavailable");
  r = client_->Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
}

TEST_F(HttpServerTest, OverloadedGatewayIs429WithRetryAfter) {
  GatewayOptions options;
  options.max_in_flight = 0;
  Start(options);
  httplib::Result r = Post("/v1/chat/completions", kChat);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429);
  EXPECT_EQ(r->get_header_value("Retry-After"), "1");
  EXPECT_EQ(Body(r)["error"]["type"], "rate_limit_error");
}

TEST_F(HttpServerTest, ApiKeyIsRequiredWhenConfigured) {
  GatewayOptions options;
  options.api_key = "sekret";
  Start(options);
  httplib::Result r = client_->Get("/v1/models");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(Body(r)["error"]["code"], "invalid_api_key");
  r = client_->Get("/v1/models", {{"Authorization", "Bearer wrong"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  r = Post("/v1/chat/completions", kChat, {{"Authorization", "Bearer nope"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  r = client_->Get("/v1/models", {{"Authorization", "Bearer sekret"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(Body(r)["data"][0]["id"], "mini");
  EXPECT_EQ(Body(r)["data"][0]["max_model_len"], 64);
  // Health and metrics stay open for probes and scrapers.
  r = client_->Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServerTest, OversizedBodyIs413WithOpenAiErrorJson) {
  Start({}, /*max_body_bytes=*/1024);
  const std::string body =
      R"({"messages": [{"role": "user", "content": ")" + std::string(4096, 'x') + R"("}]})";
  httplib::Result r = Post("/v1/chat/completions", body);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  const Json error = Body(r)["error"];
  EXPECT_EQ(error["type"], "invalid_request_error");
  EXPECT_NE(error["message"].get<std::string>().find("1024 bytes"), std::string::npos) << error;
}

TEST_F(HttpServerTest, UnknownEndpointIs404Json) {
  Start({});
  httplib::Result r = client_->Get("/v2/whatever");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_NE(Body(r)["error"]["message"].get<std::string>().find("/v2/whatever"), std::string::npos);
}

TEST_F(HttpServerTest, MetricsCountResponsesAndShowNodes) {
  Start({});
  Post("/v1/chat/completions", "{}");
  // Responses are counted once written, which may be just after the client has read them.
  httplib::Result r = client_->Get("/metrics");
  for (int i = 0; i < 100 && r &&
                  r->body.find("afd_http_responses_total{code=\"400\"} 1") == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    r = client_->Get("/metrics");
  }
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->get_header_value("Content-Type").find("text/plain"), std::string::npos);
  EXPECT_NE(r->body.find("afd_http_responses_total{code=\"400\"} 1"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("afd_attention_node_ready{node=\"attn0\"} 0"), std::string::npos);
  EXPECT_NE(r->body.find("# TYPE afd_inter_token_latency_seconds histogram"), std::string::npos);
}

TEST_F(HttpServerTest, ForcedOutputNeedsTheTestSwitch) {
  Start({});
  httplib::Result r = Post("/v1/chat/completions",
                           R"({"messages": [{"role": "user", "content": "hi"}],
                               "afd_forced_output": "x"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(Body(r)["error"]["param"], "afd_forced_output");
}

}  // namespace
}  // namespace afd::gateway
