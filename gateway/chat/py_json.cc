#include "gateway/chat/py_json.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;

// Builds the ordered_json DOM from nlohmann's SAX events. Differences from nlohmann's own DOM
// builder: a number token spelled as an integer that does not fit 64 bits (nlohmann would store
// it as a double) is an error, and duplicate keys are found through a hash index once an object
// has more than a few members (ordered_map's own lookup is linear, which makes a 200k-entry
// vocabulary quadratic).
class ExactDomBuilder : public nlohmann::json_sax<Json> {
 public:
  explicit ExactDomBuilder(Json* root) : root_(root) {}

  bool null() override { return Add(Json(nullptr)); }
  bool boolean(bool v) override { return Add(Json(v)); }
  bool number_integer(number_integer_t v) override { return Add(Json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return Add(Json(v)); }
  bool number_float(number_float_t v, const string_t& spelling) override {
    if (spelling.find_first_of(".eE") == std::string::npos) {
      error_ = absl::StrCat("integer literal ", spelling, " is outside the 64-bit range");
      return false;
    }
    return Add(Json(v));
  }
  bool string(string_t& v) override { return Add(Json(std::move(v))); }
  bool binary(binary_t& /*v*/) override { return false; }
  bool start_object(std::size_t /*elements*/) override { return Open(Json::object()); }
  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool end_object() override { return Close(); }
  bool start_array(std::size_t /*elements*/) override { return Open(Json::array()); }
  bool end_array() override { return Close(); }
  bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& ex) override {
    if (error_.empty()) error_ = ex.what();
    return false;
  }

  const std::string& error() const { return error_; }

 private:
  // Objects with more members than this get a hash index of their keys.
  static constexpr size_t kIndexFrom = 16;

  struct OpenContainer {
    Json* value;
    std::unique_ptr<absl::flat_hash_map<std::string, size_t>> index;  // key -> position
  };

  bool Open(Json container) {
    Json* added = Place(std::move(container));
    stack_.push_back({added, nullptr});
    return true;
  }
  bool Close() {
    stack_.pop_back();
    return true;
  }
  bool Add(Json value) {
    Place(std::move(value));
    return true;
  }

  // Stores `value` in the innermost open container (under key_ for an object) and returns where
  // it lives. Only the innermost container grows, so pointers to the open ones stay valid.
  Json* Place(Json value) {
    if (stack_.empty()) {
      *root_ = std::move(value);
      return root_;
    }
    OpenContainer& top = stack_.back();
    if (top.value->is_array()) {
      Json::array_t& items = top.value->get_ref<Json::array_t&>();
      items.push_back(std::move(value));
      return &items.back();
    }
    // Python's dict: a repeated key keeps its first position and takes the last value. The
    // members are used as the plain vector they are: ordered_map's own insert searches linearly.
    Json::object_t::Container& members = top.value->get_ref<Json::object_t&>();
    std::optional<size_t> existing;
    if (top.index != nullptr) {
      auto it = top.index->find(key_);
      if (it != top.index->end()) existing = it->second;
    } else {
      for (size_t i = 0; i < members.size(); ++i) {
        if (members[i].first == key_) existing = i;
      }
    }
    if (existing.has_value()) {
      members[*existing].second = std::move(value);
      return &members[*existing].second;
    }
    if (top.index == nullptr && members.size() >= kIndexFrom) {
      top.index = std::make_unique<absl::flat_hash_map<std::string, size_t>>();
      for (size_t i = 0; i < members.size(); ++i) top.index->emplace(members[i].first, i);
    }
    if (top.index != nullptr) top.index->emplace(key_, members.size());
    members.emplace_back(std::move(key_), std::move(value));
    return &members.back().second;
  }

  Json* root_;
  std::vector<OpenContainer> stack_;
  std::string key_;
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

namespace {

// `indent` < 0: json.dumps' compact form (", " and ": "); else indent=`indent` at `depth`.
void Dump(const Json& value, int indent, int depth, std::string* out) {
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
    case Json::value_t::array:
    case Json::value_t::object:
      break;
  }
  const bool is_object = value.is_object();
  if (value.empty()) {
    out->append(is_object ? "{}" : "[]");
    return;
  }
  // Before each item: the separator (none before the first), then the line break and indent.
  auto separate = [&](bool first) {
    if (indent < 0) {
      if (!first) out->append(", ");
      return;
    }
    out->append(first ? "\n" : ",\n");
    out->append(static_cast<size_t>(indent) * (depth + 1), ' ');
  };
  out->push_back(is_object ? '{' : '[');
  bool first = true;
  if (is_object) {
    for (const auto& [key, item] : value.get_ref<const Json::object_t&>()) {
      separate(first);
      first = false;
      AppendPyJsonString(key, out);
      out->append(": ");
      Dump(item, indent, depth + 1, out);
    }
  } else {
    for (const Json& item : value.get_ref<const Json::array_t&>()) {
      separate(first);
      first = false;
      Dump(item, indent, depth + 1, out);
    }
  }
  if (indent >= 0) {
    out->push_back('\n');
    out->append(static_cast<size_t>(indent) * depth, ' ');
  }
  out->push_back(is_object ? '}' : ']');
}

}  // namespace

void AppendPyJson(const Json& value, std::string* out) { Dump(value, -1, 0, out); }

std::string PyJsonDumps(const Json& value) {
  std::string out;
  AppendPyJson(value, &out);
  return out;
}

std::string PyJsonDumpsIndented(const Json& value, int indent) {
  std::string out;
  Dump(value, indent < 0 ? 0 : indent, 0, &out);
  return out;
}

absl::StatusOr<Json> ParseJsonExact(std::string_view text) {
  Json root;
  ExactDomBuilder builder(&root);
  bool ok = false;
  try {
    ok = Json::sax_parse(text.begin(), text.end(), &builder, nlohmann::detail::input_format_t::json,
                         /*strict=*/true,
                         /*ignore_comments=*/false);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid JSON: ", e.what()));
  }
  if (!ok || !builder.error().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid JSON: ", builder.error().empty() ? "parse error" : builder.error()));
  }
  return root;
}

}  // namespace afd::gateway
