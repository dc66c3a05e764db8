// Safetensors checkpoints: one file (SafetensorsFile) or a model directory with one file or
// shards + model.safetensors.index.json (Checkpoint). Files are mmap'd read-only and every
// header is validated before use; tensors are views into the mapping, never copies.
// Thread-safety: immutable after Open(); concurrent reads are safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace afd {

enum class DType : uint8_t { kF32, kF16, kBF16, kF8E4M3, kI64, kI32, kU32, kU8, kI8 };

// "F32", "BF16", ... as safetensors spells them.
const char* DTypeName(DType dtype);
size_t DTypeSize(DType dtype);
// The inverse of DTypeName; INVALID_ARGUMENT for a tag afd does not know (e.g. "F64", "BOOL").
absl::StatusOr<DType> ParseDType(absl::string_view name);
// "[3072, 6144]".
std::string ShapeString(absl::Span<const int64_t> shape);

// A view of one tensor inside a mapped file. Valid as long as its Checkpoint/file lives.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // little-endian elements, row-major
  size_t bytes = 0;
  std::string file;  // which file it lives in, for error messages

  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Maps `path` and validates its header: length inside the file, JSON well-formed, known
  // dtypes, offsets in range, non-overlapping, numel x dtype size == byte length, no overflow.
  // Error codes: NOT_FOUND / PERMISSION_DENIED (cannot open), DATA_LOSS (file shorter than its
  // header or data offsets say: truncated), INVALID_ARGUMENT (anything malformed in the header).
  // Every message starts with the path and names the tensor concerned.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // nullptr when absent.
  const TensorView* Find(const std::string& name) const;
  size_t file_bytes() const { return map_bytes_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A Hugging Face model directory's weights: `model.safetensors`, or the shards named by
// `model.safetensors.index.json` (every shard it names must exist and hold the tensors the
// index assigns to it). When both exist the index wins. Tensors a shard holds beyond those the
// index names are reachable too; the index decides where a name lives when shards repeat it.
class Checkpoint {
 public:
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  bool Has(const std::string& name) const;
  // NOT_FOUND naming the tensor and the directory when missing.
  absl::StatusOr<TensorView> Get(const std::string& name) const;
  // Same, and checks dtype is one of `dtypes` and shape == `shape`: INVALID_ARGUMENT naming
  // file, tensor, expected and actual otherwise.
  absl::StatusOr<TensorView> Get(const std::string& name, absl::Span<const int64_t> shape,
                                 absl::Span<const DType> dtypes) const;
  std::vector<std::string> Names() const;
  // Total mapped bytes of all files (for memory accounting).
  size_t MappedBytes() const;
  // The mapped files, in shard order.
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  Checkpoint() = default;
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

}  // namespace afd
