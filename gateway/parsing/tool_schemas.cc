#include "gateway/parsing/tool_schemas.h"

#include <charconv>
#include <cmath>
#include <exception>
#include <limits>
#include <string>
#include <system_error>

#include "gateway/parsing/minimax_markup.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

uint32_t TypeNameBits(std::string_view name) {
  const std::string n = Lower(name);
  if (n == "integer" || n == "int") return kTypeInteger;
  if (n == "number" || n == "float") return kTypeNumber;
  if (n == "boolean" || n == "bool") return kTypeBoolean;
  if (n == "object") return kTypeObject;
  if (n == "array") return kTypeArray;
  if (n == "string" || n == "str" || n == "text") return kTypeString;
  return kTypeOther;
}

uint32_t JsonValueTypeBits(const Json& v) {
  switch (v.type()) {
    case Json::value_t::boolean:
      return kTypeBoolean;
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return kTypeInteger;
    case Json::value_t::number_float:
      return kTypeNumber;
    case Json::value_t::string:
      return kTypeString;
    case Json::value_t::array:
      return kTypeArray;
    case Json::value_t::object:
      return kTypeObject;
    default:
      return kTypeOther;  // null
  }
}

uint32_t RawTypeSet(const Json& schema) {
  if (!schema.is_object()) return 0;
  uint32_t bits = 0;
  auto type = schema.find("type");
  if (type != schema.end()) {
    if (type->is_string()) {
      bits |= TypeNameBits(type->get_ref<const std::string&>());
    } else if (type->is_array()) {
      for (const Json& t : *type) {
        if (t.is_string()) bits |= TypeNameBits(t.get_ref<const std::string&>());
      }
    }
  }
  auto values = schema.find("enum");
  if (values != schema.end() && values->is_array()) {
    for (const Json& v : *values) bits |= JsonValueTypeBits(v);
  }
  for (const char* combinator : {"anyOf", "oneOf", "allOf"}) {
    auto entries = schema.find(combinator);
    if (entries == schema.end() || !entries->is_array()) continue;
    for (const Json& entry : *entries) bits |= SchemaTypeSet(entry);
  }
  return bits;
}

bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }

// [+-]?[0-9]+ within [-2^63, 2^64-1].
bool ParseInteger(std::string_view t, Json* out) {
  if (t.empty()) return false;
  bool negative = false;
  std::string_view digits = t;
  if (digits.front() == '+' || digits.front() == '-') {
    negative = digits.front() == '-';
    digits.remove_prefix(1);
  }
  if (digits.empty()) return false;
  for (char c : digits) {
    if (!IsAsciiDigit(c)) return false;
  }
  uint64_t magnitude = 0;
  const std::from_chars_result r =
      std::from_chars(digits.data(), digits.data() + digits.size(), magnitude);
  if (r.ec != std::errc() || r.ptr != digits.data() + digits.size()) return false;
  if (!negative) {
    *out = Json(magnitude);
    if (magnitude <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      *out = Json(static_cast<int64_t>(magnitude));
    }
    return true;
  }
  constexpr uint64_t kMinMagnitude = uint64_t{1} << 63;
  if (magnitude > kMinMagnitude) return false;
  *out = magnitude == kMinMagnitude ? Json(std::numeric_limits<int64_t>::min())
                                    : Json(-static_cast<int64_t>(magnitude));
  return true;
}

// [+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?
bool IsDecimal(std::string_view t) {
  size_t i = 0;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
  size_t int_digits = 0;
  while (i < t.size() && IsAsciiDigit(t[i])) ++i, ++int_digits;
  size_t frac_digits = 0;
  if (i < t.size() && t[i] == '.') {
    ++i;
    while (i < t.size() && IsAsciiDigit(t[i])) ++i, ++frac_digits;
  }
  if (int_digits == 0 && frac_digits == 0) return false;
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
    size_t exp_digits = 0;
    while (i < t.size() && IsAsciiDigit(t[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == t.size();
}

// For a decimal that is out of a double's range: true if it is too large (overflow), false if it
// is too small (underflow). Uses the decimal exponent of its first non-zero digit.
bool DecimalOverflows(std::string_view body) {
  size_t i = 0;
  if (i < body.size() && (body[i] == '+' || body[i] == '-')) ++i;
  long long first_digit_exponent = 0;
  bool found = false;
  long long int_digits = 0;
  const size_t int_start = i;
  while (i < body.size() && IsAsciiDigit(body[i])) ++i, ++int_digits;
  for (size_t k = int_start; k < i && !found; ++k) {
    if (body[k] != '0') {
      first_digit_exponent = int_digits - static_cast<long long>(k - int_start) - 1;
      found = true;
    }
  }
  if (i < body.size() && body[i] == '.') {
    ++i;
    long long position = 0;
    while (i < body.size() && IsAsciiDigit(body[i])) {
      ++position;
      if (!found && body[i] != '0') {
        first_digit_exponent = -position;
        found = true;
      }
      ++i;
    }
  }
  long long exponent = 0;
  if (i < body.size() && (body[i] == 'e' || body[i] == 'E')) {
    ++i;
    bool negative = false;
    if (i < body.size() && (body[i] == '+' || body[i] == '-')) negative = body[i++] == '-';
    while (i < body.size() && IsAsciiDigit(body[i])) {
      if (exponent < 1000000000) exponent = exponent * 10 + (body[i] - '0');
      ++i;
    }
    if (negative) exponent = -exponent;
  }
  return found && first_digit_exponent + exponent > 0;
}

// A decimal whose nearest double is finite: an integer when integral and in [-2^63, 2^64).
bool ParseNumber(std::string_view t, Json* out) {
  if (!IsDecimal(t)) return false;
  std::string_view body = t;
  if (body.front() == '+') body.remove_prefix(1);
  double value = 0;
  const std::from_chars_result r =
      std::from_chars(body.data(), body.data() + body.size(), value, std::chars_format::general);
  // from_chars reports out-of-range results (overflow and underflow) without setting `value`.
  if (r.ptr != body.data() + body.size()) return false;
  if (r.ec == std::errc::result_out_of_range) {
    if (DecimalOverflows(body)) return false;  // not finite
    value = body.front() == '-' ? -0.0 : 0.0;  // underflow: the nearest double is zero
  } else if (r.ec != std::errc()) {
    return false;
  }
  if (!std::isfinite(value)) return false;
  constexpr double kTwo63 = 9223372036854775808.0;
  constexpr double kTwo64 = 18446744073709551616.0;
  if (std::floor(value) == value && value >= -kTwo63 && value < kTwo64) {
    if (value < 0) {
      *out = Json(static_cast<int64_t>(value));
    } else if (value < kTwo63) {
      *out = Json(static_cast<int64_t>(value));
    } else {
      *out = Json(static_cast<uint64_t>(value));
    }
    return true;
  }
  *out = Json(value);
  return true;
}

bool ParseBoolean(std::string_view t, Json* out) {
  const std::string l = Lower(t);
  if (l == "true" || l == "1" || l == "yes" || l == "on") {
    *out = Json(true);
    return true;
  }
  if (l == "false" || l == "0" || l == "no" || l == "off") {
    *out = Json(false);
    return true;
  }
  return false;
}

}  // namespace

uint32_t SchemaTypeSet(const Json& schema) {
  const uint32_t bits = RawTypeSet(schema);
  return bits == 0 ? kTypeString : bits;
}

bool ParseStrictJson(std::string_view text, Json* out) {
  if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") return false;  // nlohmann skips it
  try {
    Json parsed = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false,
                              /*ignore_comments=*/false);
    if (parsed.is_discarded()) return false;
    *out = std::move(parsed);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

Json ConvertArgumentValue(std::string_view value, uint32_t type_set) {
  if (type_set == 0) type_set = kTypeString;
  const std::string_view t = minimax::Trim(value);
  const std::string lower = Lower(t);
  if (lower == "null" || lower == "none" || lower == "nil") return Json(nullptr);
  Json result;
  if ((type_set & kTypeInteger) && ParseInteger(t, &result)) return result;
  if ((type_set & kTypeNumber) && ParseNumber(t, &result)) return result;
  if ((type_set & kTypeBoolean) && ParseBoolean(t, &result)) return result;
  if ((type_set & (kTypeObject | kTypeArray)) && ParseStrictJson(t, &result)) return result;
  if (type_set & kTypeString) return Json(std::string(value));
  if (ParseStrictJson(t, &result)) return result;
  return Json(std::string(value));
}

ToolSchemas::ToolSchemas(const Json& tools) {
  if (!tools.is_array() || tools.empty()) return;
  enabled_ = true;
  for (const Json& tool : tools) {
    if (!tool.is_object()) continue;
    auto function = tool.find("function");
    if (function == tool.end() || !function->is_object()) continue;
    auto name = function->find("name");
    if (name == function->end() || !name->is_string()) continue;
    const std::string& tool_name = name->get_ref<const std::string&>();
    if (types_.count(tool_name) != 0) continue;
    auto& params = types_[tool_name];
    auto parameters = function->find("parameters");
    if (parameters == function->end() || !parameters->is_object()) continue;
    auto properties = parameters->find("properties");
    if (properties == parameters->end() || !properties->is_object()) continue;
    for (const auto& [key, schema] : properties->items()) params[key] = SchemaTypeSet(schema);
  }
}

uint32_t ToolSchemas::ParameterTypeSet(std::string_view tool_name, std::string_view key) const {
  auto tool = types_.find(tool_name);
  if (tool == types_.end()) return kTypeString;
  auto param = tool->second.find(key);
  return param == tool->second.end() ? kTypeString : param->second;
}

Json ToolSchemas::ConvertValue(std::string_view tool_name, std::string_view key,
                               std::string_view value) const {
  return ConvertArgumentValue(value, ParameterTypeSet(tool_name, key));
}

}  // namespace afd::gateway
