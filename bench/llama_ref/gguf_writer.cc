#include "bench/llama_ref/gguf_writer.h"

#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"

namespace afd::bench::gguf {
namespace {

constexpr uint64_t kAlignment = 32;

// GGUF value types.
constexpr uint32_t kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8, kArray = 9;

template <class T>
void Put(std::string* out, T v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(v));
}
void PutString(std::string* out, const std::string& s) {
  Put<uint64_t>(out, s.size());
  out->append(s);
}
uint64_t AlignUp(uint64_t v) { return (v + kAlignment - 1) / kAlignment * kAlignment; }

}  // namespace

void Writer::Key(const std::string& key, uint32_t type) {
  PutString(&kv_, key);
  Put(&kv_, type);
  ++kv_count_;
}

void Writer::AddString(const std::string& key, const std::string& value) {
  Key(key, kString);
  PutString(&kv_, value);
}
void Writer::AddU32(const std::string& key, uint32_t value) {
  Key(key, kU32);
  Put(&kv_, value);
}
void Writer::AddF32(const std::string& key, float value) {
  Key(key, kF32);
  Put(&kv_, value);
}
void Writer::AddBool(const std::string& key, bool value) {
  Key(key, kBool);
  Put<uint8_t>(&kv_, value ? 1 : 0);
}
void Writer::AddStringArray(const std::string& key, const std::vector<std::string>& values) {
  Key(key, kArray);
  Put(&kv_, kString);
  Put<uint64_t>(&kv_, values.size());
  for (const std::string& v : values) PutString(&kv_, v);
}
void Writer::AddI32Array(const std::string& key, const std::vector<int32_t>& values) {
  Key(key, kArray);
  Put(&kv_, kI32);
  Put<uint64_t>(&kv_, values.size());
  for (int32_t v : values) Put(&kv_, v);
}

void Writer::AddTensor(const std::string& name, TensorType type, std::vector<int64_t> dims,
                       Fill fill) {
  tensors_.push_back({name, type, std::move(dims), std::move(fill)});
}

uint64_t Writer::Tensor::Bytes() const {
  uint64_t n = type == TensorType::kF32 ? 4 : 2;
  for (int64_t d : dims) n *= static_cast<uint64_t>(d);
  return n;
}

absl::Status Writer::Write(const std::string& path) const {
  std::string head;
  head.append("GGUF");
  Put<uint32_t>(&head, 3);
  Put<uint64_t>(&head, tensors_.size());
  Put<uint64_t>(&head, kv_count_);
  head.append(kv_);
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    PutString(&head, t.name);
    Put<uint32_t>(&head, static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) Put<uint64_t>(&head, static_cast<uint64_t>(d));
    Put<uint32_t>(&head, static_cast<uint32_t>(t.type));
    Put<uint64_t>(&head, offset);
    offset = AlignUp(offset + t.Bytes());
  }
  head.resize(AlignUp(head.size()), '\0');

  const std::string tmp = path + ".tmp";
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(tmp.c_str(), "wb"), &std::fclose);
  if (f == nullptr) return absl::UnavailableError(absl::StrCat("cannot create ", tmp));
  // On any failure below the partial file is removed: no truncated GGUF is left behind.
  struct RemoveOnFailure {
    const std::string& path;
    bool keep = false;
    ~RemoveOnFailure() {
      if (!keep) std::remove(path.c_str());
    }
  } cleanup{tmp};
  auto write = [&](const void* p, size_t n) { return std::fwrite(p, 1, n, f.get()) == n; };
  if (!write(head.data(), head.size())) return absl::DataLossError("short write: " + tmp);
  std::vector<uint8_t> buffer;
  for (const Tensor& t : tensors_) {
    const uint64_t bytes = t.Bytes();
    buffer.assign(AlignUp(bytes), 0);
    if (absl::Status s = t.fill(buffer.data()); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(t.name, ": ", s.message()));
    }
    if (!write(buffer.data(), buffer.size())) return absl::DataLossError("short write: " + tmp);
  }
  if (std::fclose(f.release()) != 0) return absl::DataLossError("cannot close " + tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  cleanup.keep = true;
  return absl::OkStatus();
}

}  // namespace afd::bench::gguf
