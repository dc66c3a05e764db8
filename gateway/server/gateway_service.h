// GatewayService: the afd.v1.Gateway gRPC service over a GatewayCore: token-id Generate,
// text/chat GenerateText (checked exactly as the HTTP API's bodies), Abort and Describe. Thin
// handlers; thread-safe.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "afd/v1/gateway.grpc.pb.h"
#include "gateway/server/gateway_core.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {

class GatewayService final : public v1::Gateway::Service {
 public:
  explicit GatewayService(GatewayCore* core) : core_(core) {}

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override;
  grpc::Status GenerateText(grpc::ServerContext* context, const v1::TextGenerateRequest* request,
                            grpc::ServerWriter<v1::TextGenerateResponse>* writer) override;
  grpc::Status Abort(grpc::ServerContext* context, const v1::AbortRequest* request,
                     v1::AbortResponse* response) override;
  grpc::Status Describe(grpc::ServerContext* context, const v1::DescribeGatewayRequest* request,
                        v1::GatewayInfo* response) override;

 private:
  // The API key from the call's `authorization` metadata (as the HTTP header).
  absl::Status Authenticate(const grpc::ServerContext& context) const;
  absl::Status RunText(grpc::ServerContext* context, const v1::TextGenerateRequest& request,
                       grpc::ServerWriter<v1::TextGenerateResponse>* writer);

  GatewayCore* core_;
};

// The OpenAI request body (chat when messages_json is set, else completion) equivalent to
// `request`, streaming. INVALID_ARGUMENT for malformed messages/tools JSON or both/no inputs.
absl::StatusOr<nlohmann::ordered_json> TextRequestToOpenAiBody(
    const v1::TextGenerateRequest& request);

}  // namespace afd::gateway
