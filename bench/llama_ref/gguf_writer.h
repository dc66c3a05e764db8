// A minimal GGUF (v3) writer: key/value metadata, then tensor infos, then the tensors' data,
// each aligned to 32 bytes (the format's default `general.alignment`). Enough to hand a
// checkpoint to llama.cpp for the reference benchmark (llama_ref_bench.cc); not a general
// converter. Tensor dims are given in ggml order (ne[0] = the contiguous, innermost axis).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace afd::bench::gguf {

// ggml tensor types used here (ggml.h's enum values).
enum class TensorType : uint32_t { kF32 = 0, kBF16 = 30 };

class Writer {
 public:
  void AddString(const std::string& key, const std::string& value);
  void AddU32(const std::string& key, uint32_t value);
  void AddF32(const std::string& key, float value);
  void AddBool(const std::string& key, bool value);
  void AddStringArray(const std::string& key, const std::vector<std::string>& values);
  void AddI32Array(const std::string& key, const std::vector<int32_t>& values);

  // `fill(out)` writes the tensor's bytes (product of dims x element size) when Write reaches
  // it, so large tensors are produced one at a time.
  using Fill = std::function<absl::Status(uint8_t* out)>;
  void AddTensor(const std::string& name, TensorType type, std::vector<int64_t> dims, Fill fill);

  // Writes the file (to `path`.tmp, renamed on success).
  absl::Status Write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    TensorType type;
    std::vector<int64_t> dims;
    Fill fill;
    uint64_t Bytes() const;
  };
  // Starts a key/value pair: the key and the value's GGUF type.
  void Key(const std::string& key, uint32_t type);

  std::string kv_;  // serialized key/value pairs
  uint64_t kv_count_ = 0;
  std::vector<Tensor> tensors_;
};

}  // namespace afd::bench::gguf
