// Safetensors reader: mmap + header validation (format: 8-byte little-endian header length N,
// N bytes of JSON, then the data section that `data_offsets` index into).
#include "common/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace afd {
namespace {

using json = nlohmann::json;

// The reference implementation refuses headers above 100 MB; so do we (a 62-layer FP8 M2
// header is about 8 MB).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t bytes;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kF32, "F32", 4},        {DType::kF16, "F16", 2}, {DType::kBF16, "BF16", 2},
    {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kI64, "I64", 8}, {DType::kI32, "I32", 4},
    {DType::kU32, "U32", 4},        {DType::kU8, "U8", 1},   {DType::kI8, "I8", 1},
};

// Reads a non-negative integer that fits int64 from a JSON value.
bool JsonToNonNegative(const json& v, int64_t* out) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return false;
    *out = static_cast<int64_t>(u);
    return true;
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i < 0) return false;
    *out = i;
    return true;
  }
  return false;
}

std::string Quote(const std::string& name) { return absl::StrCat("tensor '", name, "'"); }

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

}  // namespace

const char* DTypeName(DType dtype) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.dtype == dtype) return info.name;
  }
  return "?";
}

size_t DTypeSize(DType dtype) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.dtype == dtype) return info.bytes;
  }
  return 0;
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  for (const DTypeInfo& info : kDTypes) {
    if (name == info.name) return info.dtype;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", name, "'"));
}

std::string ShapeString(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------
// SafetensorsFile

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot open"));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return absl::ErrnoToStatus(err, absl::StrCat(path, ": cannot stat"));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const uint64_t file_bytes = static_cast<uint64_t>(st.st_size);
  if (file_bytes < 8) {
    close(fd);
    return absl::DataLossError(absl::StrCat(path, ": truncated: file is ", file_bytes,
                                            " bytes, shorter than the 8-byte header length"));
  }
  void* map = mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  close(fd);
  if (map == MAP_FAILED) {
    return absl::ErrnoToStatus(map_errno, absl::StrCat(path, ": mmap failed"));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->map_ = map;
  file->map_bytes_ = file_bytes;
  const uint8_t* base = static_cast<const uint8_t*>(map);

  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, base, 8);  // little-endian host (x86-64, aarch64)
  if (header_bytes > file_bytes - 8) {
    return absl::DataLossError(absl::StrCat(path, ": truncated: header length ", header_bytes,
                                            " runs past the end of the file (", file_bytes,
                                            " bytes)"));
  }
  if (header_bytes > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": header length ", header_bytes,
                                                   " exceeds the limit of ", kMaxHeaderBytes));
  }
  const char* header_begin = reinterpret_cast<const char*>(base + 8);
  json header = json::parse(header_begin, header_begin + header_bytes, /*cb=*/nullptr,
                            /*allow_exceptions=*/false);
  if (header.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": malformed JSON header"));
  }
  if (!header.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": JSON header is not an object"));
  }
  const uint8_t* data = base + 8 + header_bytes;
  const uint64_t data_bytes = file_bytes - 8 - header_bytes;

  struct Range {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& entry = it.value();
    if (name == "__metadata__") {
      if (entry.is_null()) continue;
      if (!entry.is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": __metadata__ is not an object"));
      }
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat(path, ": __metadata__ value of '", m.key(), "' is not a string"));
        }
        file->metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat(path, ": ", Quote(name), ": ");
    if (!entry.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, "header entry is not an object"));
    }
    auto dtype_it = entry.find("dtype");
    auto shape_it = entry.find("shape");
    auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(where, "missing or non-string dtype"));
    }
    if (shape_it == entry.end() || !shape_it->is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(where, "missing or non-array shape"));
    }
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "data_offsets must be an array of two integers"));
    }
    absl::StatusOr<DType> dtype = ParseDType(dtype_it->get<std::string>());
    if (!dtype.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(where, dtype.status().message()));
    }
    TensorView view;
    view.name = name;
    view.dtype = *dtype;
    view.file = path;
    // numel * element size, with overflow checks on every product.
    uint64_t bytes = DTypeSize(*dtype);
    for (const json& dim : *shape_it) {
      int64_t d = 0;
      if (!JsonToNonNegative(dim, &d)) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, "shape entry ", dim.dump(), " is not a non-negative integer"));
      }
      view.shape.push_back(d);
      if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes) ||
          bytes > static_cast<uint64_t>(INT64_MAX)) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, "shape ", ShapeString(view.shape), "... overflows 64 bits"));
      }
    }
    int64_t begin = 0, end = 0;
    if (!JsonToNonNegative((*offsets_it)[0], &begin) ||
        !JsonToNonNegative((*offsets_it)[1], &end)) {
      return absl::InvalidArgumentError(absl::StrCat(where, "data_offsets ", offsets_it->dump(),
                                                     " are not non-negative integers"));
    }
    if (begin > end) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "data_offsets ", offsets_it->dump(), " end before they begin"));
    }
    if (static_cast<uint64_t>(end) > data_bytes) {
      return absl::DataLossError(absl::StrCat(where, "data_offsets ", offsets_it->dump(),
                                              " out of range: the data section holds ", data_bytes,
                                              " bytes (truncated file?)"));
    }
    const uint64_t stored = static_cast<uint64_t>(end - begin);
    if (stored != bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "shape ", ShapeString(view.shape), " of ", DTypeName(*dtype), " needs ", bytes,
          " bytes but data_offsets ", offsets_it->dump(), " span ", stored));
    }
    view.data = data + begin;
    view.bytes = stored;
    auto [pos, inserted] = file->tensors_.emplace(name, std::move(view));
    ranges.push_back({static_cast<uint64_t>(begin), static_cast<uint64_t>(end), &pos->first});
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < ranges.size(); ++i) {
    const Range& prev = ranges[i - 1];
    const Range& cur = ranges[i];
    // Empty tensors occupy no bytes and may share an offset with anything.
    if (cur.begin == cur.end || prev.begin == prev.end) continue;
    if (cur.begin < prev.end) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": ", Quote(*cur.name), " bytes [", cur.begin, ", ", cur.end, ") overlap ",
          Quote(*prev.name), " bytes [", prev.begin, ", ", prev.end, ")"));
    }
  }
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) munmap(map_, map_bytes_);
}

const TensorView* SafetensorsFile::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

// ---------------------------------------------------------------------------------------------
// Checkpoint

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  if (!IsDirectory(dir)) {
    return absl::NotFoundError(absl::StrCat(dir, ": not a directory"));
  }
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->dir_ = dir;
  const std::string index_path = JoinPath(dir, "model.safetensors.index.json");
  const std::string single_path = JoinPath(dir, "model.safetensors");

  if (IsRegularFile(index_path)) {
    std::ifstream in(index_path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in.good() && !in.eof()) {
      return absl::UnavailableError(absl::StrCat(index_path, ": read failed"));
    }
    const std::string body = text.str();
    json index = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
    if (index.is_discarded() || !index.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": malformed JSON"));
    }
    auto map_it = index.find("weight_map");
    if (map_it == index.end() || !map_it->is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": missing \"weight_map\" object"));
    }
    // shard file name -> tensors the index assigns to it
    std::map<std::string, std::vector<std::string>> by_shard;
    for (auto it = map_it->begin(); it != map_it->end(); ++it) {
      if (!it.value().is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map entry for ",
                                                       Quote(it.key()), " is not a string"));
      }
      const std::string shard = it.value().get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
        return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map names shard '",
                                                       shard, "' for ", Quote(it.key()),
                                                       ", which is not a plain file name"));
      }
      by_shard[shard].push_back(it.key());
    }
    if (by_shard.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map is empty"));
    }
    for (const auto& [shard, names] : by_shard) {
      const std::string shard_path = JoinPath(dir, shard);
      if (!IsRegularFile(shard_path)) {
        return absl::NotFoundError(absl::StrCat(index_path, ": shard '", shard, "' (holding ",
                                                names.size(), " tensors, e.g. ",
                                                Quote(names.front()), ") does not exist"));
      }
      ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(shard_path));
      for (const std::string& name : names) {
        const TensorView* view = file->Find(name);
        if (view == nullptr) {
          return absl::NotFoundError(absl::StrCat(shard_path, ": ", Quote(name),
                                                  ", which the index assigns to this shard, "
                                                  "is missing"));
        }
        ckpt->index_[name] = view;
      }
      ckpt->files_.push_back(std::move(file));
    }
    // Tensors the index does not name stay reachable (first shard wins).
    for (const auto& file : ckpt->files_) {
      for (const auto& [name, view] : file->tensors()) ckpt->index_.emplace(name, &view);
    }
    return ckpt;
  }
  if (IsRegularFile(single_path)) {
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(single_path));
    for (const auto& [name, view] : file->tensors()) ckpt->index_[name] = &view;
    ckpt->files_.push_back(std::move(file));
    return ckpt;
  }
  return absl::NotFoundError(absl::StrCat(
      dir, ": no model.safetensors or model.safetensors.index.json in this directory"));
}

bool Checkpoint::Has(const std::string& name) const { return index_.count(name) != 0; }

absl::StatusOr<TensorView> Checkpoint::Get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    return absl::NotFoundError(absl::StrCat(dir_, ": ", Quote(name), " not found"));
  }
  return *it->second;
}

absl::StatusOr<TensorView> Checkpoint::Get(const std::string& name, absl::Span<const int64_t> shape,
                                           absl::Span<const DType> dtypes) const {
  ASSIGN_OR_RETURN(TensorView view, Get(name));
  if (std::find(dtypes.begin(), dtypes.end(), view.dtype) == dtypes.end()) {
    std::vector<std::string> names;
    for (DType d : dtypes) names.push_back(DTypeName(d));
    return absl::InvalidArgumentError(absl::StrCat(view.file, ": ", Quote(name), ": dtype ",
                                                   DTypeName(view.dtype), ", expected ",
                                                   absl::StrJoin(names, " or ")));
  }
  if (!std::equal(view.shape.begin(), view.shape.end(), shape.begin(), shape.end())) {
    return absl::InvalidArgumentError(absl::StrCat(view.file, ": ", Quote(name), ": shape ",
                                                   ShapeString(view.shape), ", expected ",
                                                   ShapeString(shape)));
  }
  return view;
}

std::vector<std::string> Checkpoint::Names() const {
  std::vector<std::string> names;
  names.reserve(index_.size());
  for (const auto& [name, view] : index_) names.push_back(name);
  return names;
}

size_t Checkpoint::MappedBytes() const {
  size_t total = 0;
  for (const auto& file : files_) total += file->file_bytes();
  return total;
}

}  // namespace afd
