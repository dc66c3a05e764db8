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
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      error.http_status = 400;
      error.type = "invalid_request_error";
      break;
    case absl::StatusCode::kUnauthenticated:
      error.http_status = 401;
      error.type = "authentication_error";
      if (error.code.empty()) error.code = "invalid_api_key";
      break;
    case absl::StatusCode::kPermissionDenied:
      error.http_status = 403;
      error.type = "permission_error";
      break;
    case absl::StatusCode::kNotFound:
      error.http_status = 404;
      error.type = "not_found_error";
      break;
    case absl::StatusCode::kResourceExhausted:
      error.http_status = 429;
      error.type = "rate_limit_error";
      error.retry_after_s = 1;
      break;
    case absl::StatusCode::kCancelled:
      error.http_status = 499;
      error.type = "cancelled";
      break;
    case absl::StatusCode::kUnimplemented:
      error.http_status = 501;
      error.type = "invalid_request_error";
      break;
    case absl::StatusCode::kUnavailable:
      error.http_status = 503;
      error.type = "service_unavailable";
      error.retry_after_s = 1;
      break;
    case absl::StatusCode::kDeadlineExceeded:
      error.http_status = 504;
      error.type = "timeout";
      break;
    default:
      error.http_status = 500;
      error.type = "internal_error";
      break;
  }
  return error;
}

}  // namespace afd::gateway
