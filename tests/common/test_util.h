// Helpers shared by the common/ tests: temp directories, raw file writing, fixture paths, and
// checkpoints built from the generator's tensor list with a mutation hook. Not thread-safe.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/checkpoint_gen.h"
#include "common/model_config.h"
#include "common/safetensors_writer.h"
#include "gtest/gtest.h"

namespace afd::testing_util {

// A fresh directory under the gtest temp dir.
inline std::string MakeTempDir() {
  std::string tmpl = ::testing::TempDir();
  if (!tmpl.empty() && tmpl.back() != '/') tmpl += '/';
  tmpl += "afd_common_XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  const char* dir = mkdtemp(buf.data());
  EXPECT_NE(dir, nullptr) << "mkdtemp failed for " << tmpl;
  return dir == nullptr ? std::string() : std::string(dir);
}

inline std::string TestDataDir() {
  const char* env = std::getenv("AFD_TEST_DATA");
  return env != nullptr ? std::string(env) : std::string("tests/data");
}

inline void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A safetensors file from raw parts: 8-byte length (`declared_length`, default the header's
// size), header text, then `data`.
inline std::string RawSafetensors(const std::string& header, const std::string& data,
                                  int64_t declared_length = -1) {
  const uint64_t n = declared_length < 0 ? header.size() : static_cast<uint64_t>(declared_length);
  std::string out(8, '\0');
  std::memcpy(&out[0], &n, 8);
  return out + header + data;
}

// Writes a checkpoint directory for `config` holding the generator's tensor list (zeros for
// data; FP8 scales zero too), after `mutate` edits the list. config.json is written as well.
inline void WriteCheckpointFromSpecs(
    const std::string& dir, const ModelConfig& config, const GenCheckpointOptions& options,
    const std::function<void(std::vector<TensorSpec>&)>& mutate = nullptr) {
  std::vector<TensorSpec> specs = GeneratedTensorSpecs(config, options);
  if (mutate) mutate(specs);
  ASSERT_FALSE(specs.empty());
  std::vector<std::string> buffers;
  buffers.reserve(specs.size());
  std::vector<std::pair<TensorSpec, absl::Span<const uint8_t>>> tensors;
  for (const TensorSpec& spec : specs) {
    buffers.emplace_back(static_cast<size_t>(spec.bytes()), '\0');
    tensors.emplace_back(
        spec, absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(buffers.back().data()),
                                        buffers.back().size()));
  }
  absl::Status s = WriteSafetensors(dir + "/model.safetensors", tensors);
  ASSERT_TRUE(s.ok()) << s;
  WriteFile(dir + "/config.json", ModelConfigToJson(config, options.spelling));
}

}  // namespace afd::testing_util
