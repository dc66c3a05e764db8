#include "gateway/server/api_error.h"

#include <optional>

#include "absl/strings/cord.h"

namespace afd::gateway {
namespace {

std::optional<std::string> Payload(const absl::Status& status, std::string_view key) {
  auto value = status.GetPayload(absl::string_view(key.data(), key.size()));
  if (!value.has_value()) return std::nullopt;
  return std::string(*value);
}

// How a status code is reported over HTTP (see api_error.h); others are 500 internal_error.
struct HttpMapping {
  absl::StatusCode code;
  int http_status;
  const char* type;
  int retry_after_s;
};
constexpr HttpMapping kHttpMappings[] = {
    {absl::StatusCode::kInvalidArgument, 400, "invalid_request_error", 0},
    {absl::StatusCode::kOutOfRange, 400, "invalid_request_error", 0},
    {absl::StatusCode::kFailedPrecondition, 400, "invalid_request_error", 0},
    {absl::StatusCode::kUnauthenticated, 401, "authentication_error", 0},
    {absl::StatusCode::kPermissionDenied, 403, "permission_error", 0},
    {absl::StatusCode::kNotFound, 404, "not_found_error", 0},
    {absl::StatusCode::kResourceExhausted, 429, "rate_limit_error", 1},
    {absl::StatusCode::kCancelled, 499, "cancelled", 0},
    {absl::StatusCode::kUnimplemented, 501, "invalid_request_error", 0},
    {absl::StatusCode::kUnavailable, 503, "service_unavailable", 1},
    {absl::StatusCode::kDeadlineExceeded, 504, "timeout", 0},
};

}  // namespace

nlohmann::ordered_json ApiError::ToJson() const {
  nlohmann::ordered_json error = nlohmann::ordered_json::object();
  error["message"] = message;
  error["type"] = type;
  error["param"] = param.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(param);
  error["code"] = code.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(code);
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  out["error"] = std::move(error);
  return out;
}

absl::Status InvalidParam(std::string_view param, std::string_view message) {
  absl::Status status = absl::InvalidArgumentError(std::string(message));
  status.SetPayload(absl::string_view(kParamPayload.data(), kParamPayload.size()),
                    absl::Cord(std::string(param)));
  return status;
}

absl::Status WithErrorCode(absl::Status status, std::string_view code) {
  status.SetPayload(absl::string_view(kCodePayload.data(), kCodePayload.size()),
                    absl::Cord(std::string(code)));
  return status;
}

ApiError ApiErrorFromStatus(const absl::Status& status) {
  ApiError error;
  error.message = std::string(status.message());
  if (error.message.empty()) error.message = absl::StatusCodeToString(status.code());
  error.param = Payload(status, kParamPayload).value_or("");
  error.code = Payload(status, kCodePayload).value_or("");
  error.http_status = 500;
  error.type = "internal_error";
  for (const HttpMapping& m : kHttpMappings) {
    if (m.code != status.code()) continue;
    error.http_status = m.http_status;
    error.type = m.type;
    error.retry_after_s = m.retry_after_s;
  }
  if (status.code() == absl::StatusCode::kUnauthenticated && error.code.empty()) {
    error.code = "invalid_api_key";
  }
  return error;
}

}  // namespace afd::gateway
