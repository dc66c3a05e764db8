#include "gateway/chat/py_json.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;

// The DOM builder nlohmann uses for parse(), with one change: a number token spelled as an
// integer that nlohmann had to store as a double (it does not fit 64 bits) is an error.
class ExactNumberSax : public nlohmann::detail::json_sax_dom_parser<Json> {
 public:
  explicit ExactNumberSax(Json& root)
      : nlohmann::detail::json_sax_dom_parser<Json>(root, /*allow_exceptions_=*/false) {}

  // Hides the base version; sax_parse is a template over this class, so this one is called.
  bool number_float(Json::number_float_t value, const Json::string_t& spelling) {
    if (spelling.find_first_of(".eE") == std::string::npos) {
      error_ = absl::StrCat("integer literal ", spelling, " is outside the 64-bit range");
      return false;
    }
    return nlohmann::detail::json_sax_dom_parser<Json>::number_float(value, spelling);
  }

  bool parse_error(std::size_t position, const std::string& last_token,
                   const nlohmann::detail::exception& ex) {
    if (error_.empty()) error_ = ex.what();
    return nlohmann::detail::json_sax_dom_parser<Json>::parse_error(position, last_token, ex);
  }

  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

void AppendFloat(double value, std::string* out) { out->append(PyFloatRepr(value)); }

}  // namespace

void AppendPyJsonString(std::string_view text, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xf]);
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

std::string PyFloatRepr(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  if (value == 0) return std::signbit(value) ? "-0.0" : "0.0";

  // Shortest round-trip digits, as d.ddde[+-]x.
  char buf[64];
  const std::to_chars_result res =
      std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  const std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));
  size_t i = 0;
  std::string out;
  if (sci[i] == '-') {
    out.push_back('-');
    ++i;
  }
  const size_t e_pos = sci.find('e');
  std::string digits;
  for (size_t k = i; k < e_pos; ++k) {
    if (sci[k] != '.') digits.push_back(sci[k]);
  }
  int exponent = 0;
  std::from_chars(sci.data() + e_pos + 1 + (sci[e_pos + 1] == '+' ? 1 : 0), sci.data() + sci.size(),
                  exponent);

  if (exponent < -4 || exponent >= 16) {
    out.push_back(digits[0]);
    if (digits.size() > 1) {
      out.push_back('.');
      out.append(digits, 1, std::string::npos);
    }
    char exp_buf[16];
    std::snprintf(exp_buf, sizeof(exp_buf), "e%c%02d", exponent < 0 ? '-' : '+',
                  exponent < 0 ? -exponent : exponent);
    out.append(exp_buf);
  } else if (exponent >= 0) {
    const size_t int_len = static_cast<size_t>(exponent) + 1;
    if (digits.size() <= int_len) {
      out.append(digits);
      out.append(int_len - digits.size(), '0');
      out.append(".0");
    } else {
      out.append(digits, 0, int_len);
      out.push_back('.');
      out.append(digits, int_len, std::string::npos);
    }
  } else {
    out.append("0.");
    out.append(static_cast<size_t>(-exponent - 1), '0');
    out.append(digits);
  }
  return out;
}

void AppendPyJson(const Json& value, std::string* out) {
  switch (value.type()) {
    case Json::value_t::null:
    case Json::value_t::discarded:
    case Json::value_t::binary:
      out->append("null");
      return;
    case Json::value_t::boolean:
      out->append(value.get_ref<const Json::boolean_t&>() ? "true" : "false");
      return;
    case Json::value_t::number_integer:
      out->append(std::to_string(value.get_ref<const Json::number_integer_t&>()));
      return;
    case Json::value_t::number_unsigned:
      out->append(std::to_string(value.get_ref<const Json::number_unsigned_t&>()));
      return;
    case Json::value_t::number_float:
      AppendFloat(value.get_ref<const Json::number_float_t&>(), out);
      return;
    case Json::value_t::string:
      AppendPyJsonString(value.get_ref<const Json::string_t&>(), out);
      return;
    case Json::value_t::array: {
      out->push_back('[');
      bool first = true;
      for (const Json& item : value.get_ref<const Json::array_t&>()) {
        if (!first) out->append(", ");
        first = false;
        AppendPyJson(item, out);
      }
      out->push_back(']');
      return;
    }
    case Json::value_t::object: {
      out->push_back('{');
      bool first = true;
      for (const auto& [key, item] : value.get_ref<const Json::object_t&>()) {
        if (!first) out->append(", ");
        first = false;
        AppendPyJsonString(key, out);
        out->append(": ");
        AppendPyJson(item, out);
      }
      out->push_back('}');
      return;
    }
  }
}

std::string PyJsonDumps(const Json& value) {
  std::string out;
  AppendPyJson(value, &out);
  return out;
}

absl::StatusOr<Json> ParseJsonExact(std::string_view text) {
  Json root;
  ExactNumberSax sax(root);
  bool ok = false;
  try {
    ok = Json::sax_parse(text.begin(), text.end(), &sax, nlohmann::detail::input_format_t::json,
                         /*strict=*/true, /*ignore_comments=*/false);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid JSON: ", e.what()));
  }
  if (!ok || sax.is_errored() || !sax.error().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid JSON: ", sax.error().empty() ? "parse error" : sax.error()));
  }
  return root;
}

}  // namespace afd::gateway
