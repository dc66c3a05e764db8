// Streaming safetensors writer: the header, with every offset precomputed from the tensor specs,
// goes first; then each tensor's bytes in layout order, in chunks of any size, so memory stays
// bounded whatever the file size. Plus shard planning and model.safetensors.index.json.
// Thread-compatible: one writer per file, used from one thread at a time.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/safetensors.h"

namespace afd {

// Name, dtype and shape of one tensor to write.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;

  int64_t numel() const;
  int64_t bytes() const { return numel() * static_cast<int64_t>(DTypeSize(dtype)); }
};

class SafetensorsWriter {
 public:
  // Validates `specs` (unique non-empty names, non-negative dims, no 64-bit overflow), lays
  // them out in order of decreasing element size (stable otherwise, as the reference writer
  // does, so each tensor is aligned to its element size), and writes the header to
  // `path`.partial. Finish() renames it to `path`. INVALID_ARGUMENT for bad specs; the errno
  // status when the file cannot be created.
  static absl::StatusOr<std::unique_ptr<SafetensorsWriter>> Create(
      const std::string& path, std::vector<TensorSpec> specs,
      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});
  // Removes the partial file unless Finish() succeeded.
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // The layout order: write tensors in exactly this order.
  const std::vector<TensorSpec>& order() const { return order_; }

  // Appends `bytes` to tensor `name`. `name` must be the tensor being written: the first in
  // order() not yet complete. FAILED_PRECONDITION when out of order or past its size.
  absl::Status Append(const std::string& name, absl::Span<const uint8_t> bytes);

  // Checks every tensor got all its bytes, flushes, closes and renames into place.
  absl::Status Finish();

  // Final size of the file (header included).
  int64_t file_bytes() const { return file_bytes_; }

 private:
  SafetensorsWriter() = default;
  absl::Status Flush();

  std::string path_;
  std::string partial_path_;
  int fd_ = -1;
  bool finished_ = false;
  std::vector<TensorSpec> order_;
  size_t current_ = 0;           // index into order_ of the tensor being written
  int64_t current_written_ = 0;  // bytes of it written so far
  int64_t file_bytes_ = 0;
  std::vector<uint8_t> buffer_;  // bounded write buffer
};

// Convenience for small files held in memory (tests, fixtures): writes `tensors` (each with
// exactly spec.bytes() bytes) to `path`.
absl::Status WriteSafetensors(
    const std::string& path,
    const std::vector<std::pair<TensorSpec, absl::Span<const uint8_t>>>& tensors,
    const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// One output file of a (possibly sharded) checkpoint.
struct ShardPlan {
  std::string file_name;            // "model.safetensors" or "model-0000k-of-0000n.safetensors"
  std::vector<TensorSpec> tensors;  // in the caller's order (the writer re-lays them out)
  int64_t bytes = 0;                // tensor bytes (headers excluded)
};

// Splits `specs`, in their order, into `num_shards` contiguous non-empty groups of about equal
// bytes, named like Hugging Face's shards (one shard: "model.safetensors").
// INVALID_ARGUMENT when num_shards < 1 or exceeds the tensor count.
absl::StatusOr<std::vector<ShardPlan>> PlanShards(const std::vector<TensorSpec>& specs,
                                                  int num_shards);

// Writes <dir>/model.safetensors.index.json mapping every tensor of `shards` to its file, with
// metadata.total_size = the sum of tensor bytes.
absl::Status WriteSafetensorsIndex(const std::string& dir, const std::vector<ShardPlan>& shards);

}  // namespace afd
