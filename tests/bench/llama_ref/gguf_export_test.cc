// The GGUF writer and the MiniMax-M2 export: the file is read back by an independent parser
// here (header, key/values, tensor infos, alignment, data) and compared with the checkpoint.
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "bench/llama_ref/gguf_writer.h"
#include "bench/llama_ref/minimax_gguf.h"
#include "common/kernels/matmul.h"
#include "common/safetensors.h"
#include "gtest/gtest.h"
#include "tests/common/test_util.h"

namespace afd::bench {
namespace {

using testing_util::MakeTempDir;
using testing_util::ReadFile;
using testing_util::TestDataDir;

// A GGUF file parsed back: scalar and string values by key, array lengths, tensor infos.
struct Parsed {
  uint32_t version = 0;
  std::map<std::string, uint64_t> ints;
  std::map<std::string, float> floats;
  std::map<std::string, std::string> strings;
  std::map<std::string, uint64_t> array_sizes;
  struct Info {
    std::vector<uint64_t> dims;
    uint32_t type;
    uint64_t offset;
  };
  std::map<std::string, Info> tensors;
  std::vector<std::string> order;
  uint64_t data_start = 0;
};

class Reader {
 public:
  explicit Reader(const std::string& bytes) : b_(bytes) {}
  template <class T>
  T Get() {
    T v{};
    if (at_ + sizeof(T) > b_.size()) {
      ok_ = false;
      return v;
    }
    std::memcpy(&v, b_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return v;
  }
  std::string String() {
    const uint64_t n = Get<uint64_t>();
    if (!ok_ || at_ + n > b_.size()) {
      ok_ = false;
      return "";
    }
    std::string s = b_.substr(at_, n);
    at_ += n;
    return s;
  }
  // Skips one value of GGUF type `type`; returns its integer value where it has one.
  uint64_t Skip(uint32_t type) {
    switch (type) {
      case 0:
      case 1:
      case 7:
        return Get<uint8_t>();
      case 2:
      case 3:
        return Get<uint16_t>();
      case 4:
      case 5:
      case 6:
        return Get<uint32_t>();
      case 10:
      case 11:
      case 12:
        return Get<uint64_t>();
      case 8:
        String();
        return 0;
      default:
        ok_ = false;
        return 0;
    }
  }
  size_t at() const { return at_; }
  bool ok() const { return ok_; }

 private:
  const std::string& b_;
  size_t at_ = 0;
  bool ok_ = true;
};

bool Parse(const std::string& bytes, Parsed* out) {
  Reader r(bytes);
  if (bytes.compare(0, 4, "GGUF") != 0) return false;
  r.Get<uint32_t>();
  out->version = r.Get<uint32_t>();
  const uint64_t n_tensors = r.Get<uint64_t>(), n_kv = r.Get<uint64_t>();
  for (uint64_t i = 0; i < n_kv && r.ok(); ++i) {
    const std::string key = r.String();
    const uint32_t type = r.Get<uint32_t>();
    if (type == 9) {
      const uint32_t elem = r.Get<uint32_t>();
      const uint64_t n = r.Get<uint64_t>();
      out->array_sizes[key] = n;
      for (uint64_t j = 0; j < n && r.ok(); ++j) r.Skip(elem);
    } else if (type == 8) {
      out->strings[key] = r.String();
    } else if (type == 6) {
      out->floats[key] = r.Get<float>();
    } else {
      out->ints[key] = r.Skip(type);
    }
  }
  for (uint64_t i = 0; i < n_tensors && r.ok(); ++i) {
    const std::string name = r.String();
    Parsed::Info info;
    const uint32_t n_dims = r.Get<uint32_t>();
    for (uint32_t d = 0; d < n_dims; ++d) info.dims.push_back(r.Get<uint64_t>());
    info.type = r.Get<uint32_t>();
    info.offset = r.Get<uint64_t>();
    out->tensors[name] = info;
    out->order.push_back(name);
  }
  out->data_start = (r.at() + 31) / 32 * 32;
  return r.ok();
}

uint64_t TensorBytes(const Parsed::Info& t) {
  uint64_t n = t.type == 0 ? 4 : 2;
  for (uint64_t d : t.dims) n *= d;
  return n;
}

TEST(GgufWriterTest, LayoutReadsBack) {
  gguf::Writer w;
  w.AddString("general.architecture", "test");
  w.AddU32("test.count", 7);
  w.AddF32("test.eps", 0.5f);
  w.AddBool("test.flag", true);
  w.AddStringArray("test.tokens", {"a", "bc", ""});
  w.AddI32Array("test.types", {1, 2});
  // 3 x 5 fp32 (60 bytes: the next tensor's offset must round up to 64) and 2 x 3 bf16.
  w.AddTensor("t0", gguf::TensorType::kF32, {3, 5}, [](uint8_t* out) {
    for (int i = 0; i < 15; ++i) {
      const float f = static_cast<float>(i) * 0.25f;
      std::memcpy(out + 4 * i, &f, 4);
    }
    return absl::OkStatus();
  });
  w.AddTensor("t1", gguf::TensorType::kBF16, {2, 3}, [](uint8_t* out) {
    for (int i = 0; i < 6; ++i) out[2 * i] = out[2 * i + 1] = static_cast<uint8_t>(i + 1);
    return absl::OkStatus();
  });
  const std::string path = MakeTempDir() + "/t.gguf";
  ASSERT_TRUE(w.Write(path).ok());
  const std::string bytes = ReadFile(path);
  Parsed p;
  ASSERT_TRUE(Parse(bytes, &p));
  EXPECT_EQ(p.version, 3u);
  EXPECT_EQ(p.strings["general.architecture"], "test");
  EXPECT_EQ(p.ints["test.count"], 7u);
  EXPECT_EQ(p.floats["test.eps"], 0.5f);
  EXPECT_EQ(p.ints["test.flag"], 1u);
  EXPECT_EQ(p.array_sizes["test.tokens"], 3u);
  EXPECT_EQ(p.array_sizes["test.types"], 2u);
  ASSERT_EQ(p.order, (std::vector<std::string>{"t0", "t1"}));
  EXPECT_EQ(p.tensors["t0"].dims, (std::vector<uint64_t>{3, 5}));
  EXPECT_EQ(p.tensors["t0"].offset, 0u);
  EXPECT_EQ(p.tensors["t1"].offset, 64u);
  EXPECT_EQ(p.tensors["t1"].type, 30u);
  EXPECT_EQ(p.data_start % 32, 0u);
  ASSERT_EQ(bytes.size(), p.data_start + 64 + 32);  // each tensor padded to 32 bytes
  float f;
  std::memcpy(&f, bytes.data() + p.data_start + 4 * 14, 4);
  EXPECT_EQ(f, 3.5f);
  EXPECT_EQ(static_cast<uint8_t>(bytes[p.data_start + 64 + 10]), 6);
}

TEST(GgufWriterTest, FailedFillLeavesNoFile) {
  gguf::Writer w;
  w.AddTensor("bad", gguf::TensorType::kF32, {4},
              [](uint8_t*) { return absl::DataLossError("source truncated"); });
  const std::string path = MakeTempDir() + "/bad.gguf";
  const absl::Status s = w.Write(path);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("bad: source truncated"), std::string::npos) << s;
  EXPECT_FALSE(ReadFile(path + ".tmp").size() > 0 || ReadFile(path).size() > 0);
  EXPECT_EQ(w.Write("/nonexistent-dir/x.gguf").code(), absl::StatusCode::kUnavailable);
}

TEST(MiniMaxGgufTest, ExportCarriesTheCheckpoint) {
  const std::string dir = TestDataDir() + "/golden/m2-tiny";
  const std::string path = MakeTempDir() + "/m2-tiny.gguf";
  ASSERT_TRUE(ExportMiniMaxGguf(dir, path).ok());
  const std::string bytes = ReadFile(path);
  Parsed p;
  ASSERT_TRUE(Parse(bytes, &p));
  EXPECT_EQ(p.strings["general.architecture"], "minimax-m2");
  EXPECT_EQ(p.ints["minimax-m2.block_count"], 3u);
  EXPECT_EQ(p.ints["minimax-m2.embedding_length"], 64u);
  EXPECT_EQ(p.ints["minimax-m2.expert_count"], 8u);
  EXPECT_EQ(p.ints["minimax-m2.expert_used_count"], 2u);
  EXPECT_EQ(p.ints["minimax-m2.rope.dimension_count"], 16u);
  EXPECT_EQ(p.ints["minimax-m2.attention.key_length"], 32u);
  EXPECT_EQ(p.ints["minimax-m2.expert_gating_func"], 2u);
  EXPECT_FLOAT_EQ(p.floats["minimax-m2.rope.freq_base"], 5e6f);
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok());
  const int64_t vocab = (*ckpt)->Get("lm_head.weight")->shape[0];
  EXPECT_EQ(p.array_sizes["tokenizer.ggml.tokens"], static_cast<uint64_t>(vocab));
  ASSERT_EQ(p.tensors.size(), 3u + 13u * 3u);
  uint64_t end = 0;
  for (const std::string& name : p.order) {
    const Parsed::Info& t = p.tensors[name];
    EXPECT_EQ(t.offset % 32, 0u) << name;
    EXPECT_GE(t.offset, end) << name;
    end = t.offset + TensorBytes(t);
  }
  EXPECT_EQ(bytes.size(), p.data_start + (end + 31) / 32 * 32);

  // Expert 5 of layer 1's down projection: ggml {48, 64, 8}, its slice the checkpoint's bytes.
  const Parsed::Info& down = p.tensors["blk.1.ffn_down_exps.weight"];
  EXPECT_EQ(down.dims, (std::vector<uint64_t>{48, 64, 8}));
  absl::StatusOr<TensorView> w2 =
      (*ckpt)->Get("model.layers.1.block_sparse_moe.experts.5.w2.weight");
  ASSERT_TRUE(w2.ok());
  ASSERT_EQ(w2->dtype, DType::kBF16);
  EXPECT_EQ(
      std::memcmp(bytes.data() + p.data_start + down.offset + 5 * w2->bytes, w2->data, w2->bytes),
      0);
  // A norm widened to fp32, element by element.
  const Parsed::Info& norm = p.tensors["blk.2.attn_k_norm.weight"];
  EXPECT_EQ(norm.type, 0u);
  absl::StatusOr<TensorView> kn = (*ckpt)->Get("model.layers.2.self_attn.k_norm.weight");
  ASSERT_TRUE(kn.ok());
  for (int64_t i = 0; i < kn->numel(); ++i) {
    uint16_t h;
    std::memcpy(&h, kn->data + 2 * i, 2);
    float f;
    std::memcpy(&f, bytes.data() + p.data_start + norm.offset + 4 * i, 4);
    EXPECT_EQ(f, kernels::Bf16ToFloat(h)) << i;
  }
}

TEST(MiniMaxGgufTest, RefusesQuantizedCheckpoints) {
  const absl::Status s =
      ExportMiniMaxGguf(TestDataDir() + "/golden/m2-fp8", MakeTempDir() + "/fp8.gguf");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

}  // namespace
}  // namespace afd::bench
