#include "gateway/tokenizer/python_json.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {
namespace {

using Json = nlohmann::json;

// SAX handler building a PythonJson tree.
class Builder : public nlohmann::json_sax<Json> {
 public:
  explicit Builder(PythonJson* root) : root_(root) {}
  const std::string& error() const { return error_; }

  bool null() override { return Add(PythonJson()); }
  bool boolean(bool v) override {
    PythonJson j;
    j.type = PythonJson::Type::kBool;
    j.boolean = v;
    return Add(std::move(j));
  }
  bool number_integer(number_integer_t v) override {
    PythonJson j;
    j.type = PythonJson::Type::kInt;
    j.int_value = v;
    return Add(std::move(j));
  }
  bool number_unsigned(number_unsigned_t v) override {
    PythonJson j;
    j.type = PythonJson::Type::kUint;
    j.uint_value = v;
    return Add(std::move(j));
  }
  bool number_float(number_float_t v, const string_t&) override {
    PythonJson j;
    j.type = PythonJson::Type::kFloat;
    j.float_value = v;
    return Add(std::move(j));
  }
  bool string(string_t& v) override { return Add(PythonJson::String(std::move(v))); }
  bool binary(binary_t&) override { return false; }
  bool start_object(std::size_t) override {
    Add(PythonJson::Object());
    stack_.push_back(last_);
    return true;
  }
  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool end_object() override {
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    PythonJson j;
    j.type = PythonJson::Type::kArray;
    Add(std::move(j));
    stack_.push_back(last_);
    return true;
  }
  bool end_array() override {
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& e) override {
    error_ = absl::StrCat("invalid JSON at byte ", position, ": ", e.what());
    return false;
  }

 private:
  bool Add(PythonJson v) {
    if (stack_.empty()) {
      *root_ = std::move(v);
      last_ = root_;
    } else if (stack_.back()->type == PythonJson::Type::kObject) {
      stack_.back()->members.emplace_back(std::move(key_), std::move(v));
      last_ = &stack_.back()->members.back().second;
    } else {
      stack_.back()->items.push_back(std::move(v));
      last_ = &stack_.back()->items.back();
    }
    return true;
  }

  PythonJson* root_;
  PythonJson* last_ = nullptr;
  std::vector<PythonJson*> stack_;  // open containers; the innermost is never moved
  std::string key_;
  std::string error_;
};

void AppendString(const std::string& s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      case '\b':
        *out += "\\b";
        break;
      case '\f':
        *out += "\\f";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned char>(c));
          *out += buf;
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

// Python's repr(float): the shortest digits that round-trip, fixed notation for exponents in
// [-4, 16), otherwise d.ddde+XX.
void AppendFloat(double v, std::string* out) {
  if (std::isnan(v)) {
    *out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    *out += v > 0 ? "Infinity" : "-Infinity";
    return;
  }
  char buf[64];
  int precision = 1;
  for (; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*e", precision - 1, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  // buf is [-]d[.ddd]e[+-]XX
  std::string s = buf;
  const bool negative = s[0] == '-';
  if (negative) s.erase(0, 1);
  const size_t e = s.find('e');
  const int exponent = std::atoi(s.c_str() + e + 1);
  std::string digits = s.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string result;
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      result = "0." + std::string(-exponent - 1, '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exponent + 1) {
      result = digits + std::string(exponent + 1 - digits.size(), '0') + ".0";
    } else {
      result = digits.substr(0, exponent + 1) + "." + digits.substr(exponent + 1);
    }
  } else {
    result = digits.substr(0, 1);
    if (digits.size() > 1) result += "." + digits.substr(1);
    char exp[16];
    std::snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    result += exp;
  }
  if (negative) out->push_back('-');
  *out += result;
}

void Dump(const PythonJson& v, int indent, std::string* out) {
  switch (v.type) {
    case PythonJson::Type::kNull:
      *out += "null";
      return;
    case PythonJson::Type::kBool:
      *out += v.boolean ? "true" : "false";
      return;
    case PythonJson::Type::kInt:
      *out += std::to_string(v.int_value);
      return;
    case PythonJson::Type::kUint:
      *out += std::to_string(v.uint_value);
      return;
    case PythonJson::Type::kFloat:
      AppendFloat(v.float_value, out);
      return;
    case PythonJson::Type::kString:
      AppendString(v.string_value, out);
      return;
    case PythonJson::Type::kArray: {
      if (v.items.empty()) {
        *out += "[]";
        return;
      }
      *out += "[";
      const std::string pad(indent + 2, ' ');
      for (size_t i = 0; i < v.items.size(); ++i) {
        *out += i == 0 ? "\n" : ",\n";
        *out += pad;
        Dump(v.items[i], indent + 2, out);
      }
      *out += "\n" + std::string(indent, ' ') + "]";
      return;
    }
    case PythonJson::Type::kObject: {
      if (v.members.empty()) {
        *out += "{}";
        return;
      }
      *out += "{";
      const std::string pad(indent + 2, ' ');
      for (size_t i = 0; i < v.members.size(); ++i) {
        *out += i == 0 ? "\n" : ",\n";
        *out += pad;
        AppendString(v.members[i].first, out);
        *out += ": ";
        Dump(v.members[i].second, indent + 2, out);
      }
      *out += "\n" + std::string(indent, ' ') + "}";
      return;
    }
  }
}

}  // namespace

PythonJson PythonJson::String(std::string s) {
  PythonJson j;
  j.type = Type::kString;
  j.string_value = std::move(s);
  return j;
}

PythonJson PythonJson::Object() {
  PythonJson j;
  j.type = Type::kObject;
  return j;
}

PythonJson* PythonJson::Find(std::string_view key) {
  for (auto& [k, v] : members) {
    if (k == key) return &v;
  }
  return nullptr;
}

const PythonJson* PythonJson::Find(std::string_view key) const {
  return const_cast<PythonJson*>(this)->Find(key);
}

void PythonJson::Set(std::string key, PythonJson value) {
  if (PythonJson* existing = Find(key)) {
    *existing = std::move(value);
  } else {
    members.emplace_back(std::move(key), std::move(value));
  }
}

absl::StatusOr<PythonJson> ParsePythonJson(std::string_view text) {
  PythonJson root;
  Builder builder(&root);
  if (!Json::sax_parse(text.begin(), text.end(), &builder)) {
    return absl::InvalidArgumentError(builder.error().empty() ? "invalid JSON" : builder.error());
  }
  return root;
}

std::string DumpPythonJson(const PythonJson& value) {
  std::string out;
  Dump(value, 0, &out);
  return out;
}

}  // namespace afd::gateway
