// Order-preserving JSON document printed byte-for-byte like Python's json.dumps(value, indent=2,
// ensure_ascii=False), to rewrite tokenizer.json files reproducibly. Plain value type; not
// thread-safe to mutate.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace afd::gateway {

struct PythonJson {
  enum class Type { kNull, kBool, kInt, kUint, kFloat, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  int64_t int_value = 0;
  uint64_t uint_value = 0;
  double float_value = 0;
  std::string string_value;
  std::vector<PythonJson> items;                            // kArray
  std::vector<std::pair<std::string, PythonJson>> members;  // kObject, in document order

  static PythonJson String(std::string s);
  static PythonJson Object();

  // Member `key` of an object, or nullptr.
  PythonJson* Find(std::string_view key);
  const PythonJson* Find(std::string_view key) const;
  // Sets member `key`, keeping its position if it exists, else appending it.
  void Set(std::string key, PythonJson value);
};

absl::StatusOr<PythonJson> ParsePythonJson(std::string_view text);

// json.dumps(value, indent=2, ensure_ascii=False), without a trailing newline.
std::string DumpPythonJson(const PythonJson& value);

}  // namespace afd::gateway
