// ApiError: an error as the OpenAI-compatible API reports it (HTTP status, OpenAI error JSON,
// optional Retry-After), and its mapping from absl::Status. Plain values and stateless functions;
// thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {

struct ApiError {
  int http_status = 500;
  std::string type;       // "invalid_request_error", "authentication_error", ...
  std::string message;    // what a user can act on
  std::string param;      // the offending request field, or empty (JSON null)
  std::string code;       // "context_length_exceeded", "model_not_found", ... or empty
  int retry_after_s = 0;  // > 0: send a Retry-After header (429, 503)

  // {"error": {"message", "type", "param", "code"}}, as OpenAI sends it.
  nlohmann::ordered_json ToJson() const;
};

// absl::Status payload keys the request parser and the gateway attach to a status so that the
// HTTP layer can fill `param` and `code` (absl::Cord values).
inline constexpr std::string_view kParamPayload = "afd.gateway/param";
inline constexpr std::string_view kCodePayload = "afd.gateway/code";

// INVALID_ARGUMENT `message` naming `param` (for the error's `param` field).
absl::Status InvalidParam(std::string_view param, std::string_view message);
// `status` with an OpenAI error `code` attached.
absl::Status WithErrorCode(absl::Status status, std::string_view code);

// HTTP mapping: INVALID_ARGUMENT/OUT_OF_RANGE/FAILED_PRECONDITION 400, UNAUTHENTICATED 401,
// PERMISSION_DENIED 403, NOT_FOUND 404, RESOURCE_EXHAUSTED 429 (Retry-After 1), CANCELLED 499,
// UNIMPLEMENTED 501, UNAVAILABLE 503 (Retry-After 1), DEADLINE_EXCEEDED 504, others 500.
ApiError ApiErrorFromStatus(const absl::Status& status);

}  // namespace afd::gateway
