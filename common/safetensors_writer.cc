// Streaming safetensors writer and shard index.
#include "common/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace afd {
namespace {

using ordered_json = nlohmann::ordered_json;

constexpr size_t kBufferBytes = size_t{4} << 20;

absl::Status WriteAll(int fd, const uint8_t* data, size_t bytes, const std::string& path) {
  while (bytes > 0) {
    const ssize_t n = write(fd, data, bytes);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, absl::StrCat(path, ": write failed"));
    }
    data += n;
    bytes -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

}  // namespace

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(
    const std::string& path, std::vector<TensorSpec> specs,
    const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  for (const TensorSpec& spec : specs) {
    if (spec.name.empty() || spec.name == "__metadata__") {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": invalid tensor name '", spec.name, "'"));
    }
    if (!names.insert(spec.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", spec.name, "' listed twice"));
    }
    uint64_t bytes = DTypeSize(spec.dtype);
    for (int64_t d : spec.shape) {
      if (d < 0 || __builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes) ||
          bytes > static_cast<uint64_t>(INT64_MAX)) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor '", spec.name, "': bad shape ", ShapeString(spec.shape)));
      }
    }
  }
  std::stable_sort(specs.begin(), specs.end(), [](const TensorSpec& a, const TensorSpec& b) {
    return DTypeSize(a.dtype) > DTypeSize(b.dtype);
  });

  ordered_json header = ordered_json::object();
  if (!metadata.empty()) {
    ordered_json meta = ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  int64_t offset = 0;
  for (const TensorSpec& spec : specs) {
    ordered_json entry;
    entry["dtype"] = DTypeName(spec.dtype);
    entry["shape"] = spec.shape;
    entry["data_offsets"] = {offset, offset + spec.bytes()};
    header[spec.name] = entry;
    if (__builtin_add_overflow(offset, spec.bytes(), &offset)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": total size overflows"));
    }
  }
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');  // keep the data section 8-byte aligned

  std::unique_ptr<SafetensorsWriter> w(new SafetensorsWriter());
  w->path_ = path;
  w->partial_path_ = path + ".partial";
  w->order_ = std::move(specs);
  w->file_bytes_ = 8 + static_cast<int64_t>(text.size()) + offset;
  w->fd_ = open(w->partial_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (w->fd_ < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat(w->partial_path_, ": cannot create"));
  }
  w->buffer_.reserve(kBufferBytes);
  const uint64_t header_bytes = text.size();
  uint8_t len[8];
  std::memcpy(len, &header_bytes, 8);  // little-endian host
  w->buffer_.insert(w->buffer_.end(), len, len + 8);
  RETURN_IF_ERROR(w->Flush());
  RETURN_IF_ERROR(WriteAll(w->fd_, reinterpret_cast<const uint8_t*>(text.data()), text.size(),
                           w->partial_path_));
  // Skip leading empty tensors so Append's "current" is the first one with bytes.
  while (w->current_ < w->order_.size() && w->order_[w->current_].bytes() == 0) ++w->current_;
  return w;
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) close(fd_);
  if (!finished_ && !partial_path_.empty()) unlink(partial_path_.c_str());
}

absl::Status SafetensorsWriter::Flush() {
  if (buffer_.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(WriteAll(fd_, buffer_.data(), buffer_.size(), partial_path_));
  buffer_.clear();
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Append(const std::string& name, absl::Span<const uint8_t> bytes) {
  if (finished_ || fd_ < 0) {
    return absl::FailedPreconditionError(absl::StrCat(path_, ": writer is closed"));
  }
  if (bytes.empty()) return absl::OkStatus();
  if (current_ >= order_.size() || order_[current_].name != name) {
    return absl::FailedPreconditionError(absl::StrCat(
        path_, ": tensor '", name, "' written out of order; expected '",
        current_ < order_.size() ? order_[current_].name : std::string("<none: all written>"),
        "'"));
  }
  const TensorSpec& spec = order_[current_];
  if (current_written_ + static_cast<int64_t>(bytes.size()) > spec.bytes()) {
    return absl::FailedPreconditionError(absl::StrCat(path_, ": tensor '", name, "' gets ",
                                                      current_written_ + bytes.size(),
                                                      " bytes, more than its ", spec.bytes()));
  }
  if (buffer_.size() + bytes.size() > kBufferBytes) RETURN_IF_ERROR(Flush());
  if (bytes.size() >= kBufferBytes) {
    RETURN_IF_ERROR(WriteAll(fd_, bytes.data(), bytes.size(), partial_path_));
  } else {
    buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
  }
  current_written_ += static_cast<int64_t>(bytes.size());
  if (current_written_ == spec.bytes()) {
    current_written_ = 0;
    ++current_;
    while (current_ < order_.size() && order_[current_].bytes() == 0) ++current_;
  }
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Finish() {
  if (finished_ || fd_ < 0) {
    return absl::FailedPreconditionError(absl::StrCat(path_, ": writer is closed"));
  }
  if (current_ < order_.size()) {
    return absl::FailedPreconditionError(absl::StrCat(path_, ": tensor '", order_[current_].name,
                                                      "' has ", current_written_, " of its ",
                                                      order_[current_].bytes(), " bytes"));
  }
  RETURN_IF_ERROR(Flush());
  const int fd = fd_;
  fd_ = -1;
  if (close(fd) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat(partial_path_, ": close failed"));
  }
  if (rename(partial_path_.c_str(), path_.c_str()) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat(path_, ": rename from .partial failed"));
  }
  finished_ = true;
  return absl::OkStatus();
}

absl::Status WriteSafetensors(
    const std::string& path,
    const std::vector<std::pair<TensorSpec, absl::Span<const uint8_t>>>& tensors,
    const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  std::map<std::string, absl::Span<const uint8_t>> data;
  for (const auto& [spec, bytes] : tensors) {
    if (static_cast<int64_t>(bytes.size()) != spec.bytes()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", spec.name, "' has ",
                                                     bytes.size(), " bytes, shape needs ",
                                                     spec.bytes()));
    }
    specs.push_back(spec);
    data[spec.name] = bytes;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsWriter> writer,
                   SafetensorsWriter::Create(path, std::move(specs), metadata));
  for (const TensorSpec& spec : writer->order()) {
    RETURN_IF_ERROR(writer->Append(spec.name, data[spec.name]));
  }
  return writer->Finish();
}

absl::StatusOr<std::vector<ShardPlan>> PlanShards(const std::vector<TensorSpec>& specs,
                                                  int num_shards) {
  if (num_shards < 1 || num_shards > static_cast<int>(specs.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot split ", specs.size(), " tensors into ", num_shards, " shards"));
  }
  int64_t total = 0;
  for (const TensorSpec& s : specs) total += s.bytes();
  std::vector<ShardPlan> shards(num_shards);
  size_t next = 0;
  int64_t written = 0;
  for (int k = 0; k < num_shards; ++k) {
    ShardPlan& shard = shards[k];
    shard.file_name = num_shards == 1
                          ? "model.safetensors"
                          : absl::StrFormat("model-%05d-of-%05d.safetensors", k + 1, num_shards);
    // Fill up to the (k+1)-th equal share of the bytes, leaving a tensor for each later shard;
    // the last shard takes the rest.
    const bool last = k + 1 == num_shards;
    const int64_t target = total * (k + 1) / num_shards;
    const size_t keep_for_rest = static_cast<size_t>(num_shards - k - 1);
    while (next < specs.size()) {
      if (!shard.tensors.empty() && !last &&
          (next + keep_for_rest >= specs.size() || written + specs[next].bytes() / 2 > target)) {
        break;
      }
      shard.tensors.push_back(specs[next]);
      shard.bytes += specs[next].bytes();
      written += specs[next].bytes();
      ++next;
    }
  }
  return shards;
}

absl::Status WriteSafetensorsIndex(const std::string& dir, const std::vector<ShardPlan>& shards) {
  int64_t total = 0;
  ordered_json map = ordered_json::object();
  for (const ShardPlan& shard : shards) {
    total += shard.bytes;
    for (const TensorSpec& spec : shard.tensors) map[spec.name] = shard.file_name;
  }
  ordered_json index;
  index["metadata"] = {{"total_size", total}};
  index["weight_map"] = map;
  const std::string text = index.dump(2) + "\n";
  const std::string path = JoinPath(dir, "model.safetensors.index.json");
  const std::string partial = path + ".partial";
  const int fd = open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat(partial, ": cannot create"));
  absl::Status s =
      WriteAll(fd, reinterpret_cast<const uint8_t*>(text.data()), text.size(), partial);
  if (close(fd) != 0 && s.ok()) s = absl::ErrnoToStatus(errno, partial + ": close failed");
  if (s.ok() && rename(partial.c_str(), path.c_str()) != 0) {
    s = absl::ErrnoToStatus(errno, path + ": rename failed");
  }
  if (!s.ok()) unlink(partial.c_str());
  return s;
}

}  // namespace afd
