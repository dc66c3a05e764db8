// Safetensors reader/writer: golden files open; every malformed file gives its specific error
// (code + message naming file and tensor) and never crashes (an ASan variant runs too).
#include "common/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/safetensors_writer.h"
#include "common/weights.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/test_util.h"

namespace afd {
namespace {

using ::testing::HasSubstr;
using testing_util::MakeTempDir;
using testing_util::RawSafetensors;
using testing_util::TestDataDir;
using testing_util::WriteFile;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir(); }

  // Writes raw bytes to <dir>/name and opens it.
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> OpenRaw(const std::string& bytes,
                                                           const std::string& name = "t.st") {
    path_ = dir_ + "/" + name;
    WriteFile(path_, bytes);
    return SafetensorsFile::Open(path_);
  }

  void ExpectError(const absl::StatusOr<std::unique_ptr<SafetensorsFile>>& result,
                   absl::StatusCode code, const std::string& substring) {
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), code) << result.status();
    EXPECT_THAT(std::string(result.status().message()), HasSubstr(substring));
    EXPECT_THAT(std::string(result.status().message()), HasSubstr(path_));
  }

  std::string dir_;
  std::string path_;
};

TEST_F(SafetensorsTest, OpensGoldenSingleFileAndReadsValues) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt =
      Checkpoint::Open(TestDataDir() + "/golden/m2-tiny");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->files().size(), 1u);
  // 2 globals + lm_head + 3 layers x (2 norms + 4 proj + 2 qk norms + gate + bias + 8x3).
  EXPECT_EQ((*ckpt)->Names().size(), 3u + 3u * (2 + 4 + 2 + 2 + 24));
  absl::StatusOr<TensorView> q = (*ckpt)->Get("model.layers.0.self_attn.q_proj.weight");
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->dtype, DType::kBF16);
  EXPECT_EQ(q->shape, (std::vector<int64_t>{128, 64}));
  EXPECT_EQ(q->bytes, 128u * 64 * 2);
  EXPECT_EQ(q->numel(), 128 * 64);
  absl::StatusOr<TensorView> bias =
      (*ckpt)->Get("model.layers.0.block_sparse_moe.e_score_correction_bias", {8},
                   std::vector<DType>{DType::kF32});
  ASSERT_TRUE(bias.ok()) << bias.status();
  // The golden routing bias is non-zero (README: "non-zero routing bias").
  const float* b = reinterpret_cast<const float*>(bias->data);
  bool any_nonzero = false;
  for (int i = 0; i < 8; ++i) any_nonzero |= b[i] != 0.0f;
  EXPECT_TRUE(any_nonzero);
  EXPECT_GT((*ckpt)->MappedBytes(), 800000u);
}

TEST_F(SafetensorsTest, OpensGoldenShardsThroughIndex) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt =
      Checkpoint::Open(TestDataDir() + "/golden/m2-fp8");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->files().size(), 2u);
  EXPECT_EQ((*ckpt)->Names().size(), 127u);
  absl::StatusOr<TensorView> w1 =
      (*ckpt)->Get("model.layers.1.block_sparse_moe.experts.7.w1.weight");
  ASSERT_TRUE(w1.ok()) << w1.status();
  EXPECT_EQ(w1->dtype, DType::kF8E4M3);
  EXPECT_EQ(w1->shape, (std::vector<int64_t>{192, 256}));
}

TEST_F(SafetensorsTest, GetChecksShapeAndDtype) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt =
      Checkpoint::Open(TestDataDir() + "/golden/m2-tiny");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const std::string name = "model.norm.weight";
  absl::StatusOr<TensorView> wrong_shape =
      (*ckpt)->Get(name, {65}, std::vector<DType>{DType::kBF16});
  ASSERT_EQ(wrong_shape.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(wrong_shape.status().message()),
              HasSubstr("'model.norm.weight': shape [64], expected [65]"));
  absl::StatusOr<TensorView> wrong_dtype =
      (*ckpt)->Get(name, {64}, std::vector<DType>{DType::kF32});
  ASSERT_EQ(wrong_dtype.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(wrong_dtype.status().message()), HasSubstr("dtype BF16, expected F32"));
  absl::StatusOr<TensorView> missing = (*ckpt)->Get("model.nope");
  ASSERT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("'model.nope' not found"));
}

TEST_F(SafetensorsTest, WriterRoundTripsAndAlignsByElementSize) {
  const std::vector<uint8_t> a = {1, 2, 3};  // U8 [3]
  std::vector<uint8_t> b(4 * 2);             // F32 [2]
  const float fb[2] = {1.5f, -2.25f};
  std::memcpy(b.data(), fb, 8);
  const std::vector<uint8_t> c = {7, 0};  // BF16 [1]
  const std::vector<uint8_t> empty;       // I64 [0, 4]
  absl::Status s = WriteSafetensors(dir_ + "/w.safetensors",
                                    {{TensorSpec{"a", DType::kU8, {3}}, a},
                                     {TensorSpec{"b", DType::kF32, {2}}, b},
                                     {TensorSpec{"c", DType::kBF16, {1}}, c},
                                     {TensorSpec{"e", DType::kI64, {0, 4}}, empty}},
                                    {{"format", "pt"}, {"note", "x"}});
  ASSERT_TRUE(s.ok()) << s;
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
      SafetensorsFile::Open(dir_ + "/w.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->metadata().at("note"), "x");
  ASSERT_EQ((*f)->tensors().size(), 4u);
  const TensorView* tb = (*f)->Find("b");
  ASSERT_NE(tb, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(tb->data) % 4, 0u);
  float got[2];
  std::memcpy(got, tb->data, 8);
  EXPECT_EQ(got[0], 1.5f);
  EXPECT_EQ(got[1], -2.25f);
  const TensorView* ta = (*f)->Find("a");
  ASSERT_NE(ta, nullptr);
  EXPECT_EQ(std::vector<uint8_t>(ta->data, ta->data + 3), a);
  EXPECT_EQ((*f)->Find("e")->bytes, 0u);
  EXPECT_EQ((*f)->Find("e")->shape, (std::vector<int64_t>{0, 4}));
  // Element size 4 first, then 2, then 1: every tensor is aligned.
  EXPECT_LT(tb->data, (*f)->Find("c")->data);
  EXPECT_LT((*f)->Find("c")->data, ta->data);
  struct stat st;
  EXPECT_NE(stat((dir_ + "/w.safetensors.partial").c_str(), &st), 0);
}

TEST_F(SafetensorsTest, WriterRejectsOutOfOrderOverflowAndIncompleteTensors) {
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> w = SafetensorsWriter::Create(
      dir_ + "/o.safetensors",
      {TensorSpec{"x", DType::kF32, {2}}, TensorSpec{"y", DType::kF32, {1}}});
  ASSERT_TRUE(w.ok()) << w.status();
  const uint8_t bytes[12] = {};
  absl::Status s = (*w)->Append("y", absl::MakeConstSpan(bytes, 4));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("expected 'x'"));
  s = (*w)->Append("x", absl::MakeConstSpan(bytes, 12));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("more than its 8"));
  ASSERT_TRUE((*w)->Append("x", absl::MakeConstSpan(bytes, 3)).ok());
  s = (*w)->Finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("'x' has 3 of its 8 bytes"));
  w->reset();  // abandoned: the partial file is removed, no final file appears
  struct stat st;
  EXPECT_NE(stat((dir_ + "/o.safetensors").c_str(), &st), 0);
  EXPECT_NE(stat((dir_ + "/o.safetensors.partial").c_str(), &st), 0);

  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> dup = SafetensorsWriter::Create(
      dir_ + "/d.safetensors",
      {TensorSpec{"x", DType::kF32, {2}}, TensorSpec{"x", DType::kF32, {1}}});
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> huge = SafetensorsWriter::Create(
      dir_ + "/h.safetensors", {TensorSpec{"x", DType::kF32, {int64_t{1} << 40, 1 << 30}}});
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SafetensorsTest, PlanShardsSplitsContiguouslyIntoNonEmptyBalancedShards) {
  std::vector<TensorSpec> specs;
  for (int i = 0; i < 10; ++i) specs.push_back({"t" + std::to_string(i), DType::kF32, {100}});
  absl::StatusOr<std::vector<ShardPlan>> plan = PlanShards(specs, 3);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->size(), 3u);
  EXPECT_EQ((*plan)[0].file_name, "model-00001-of-00003.safetensors");
  EXPECT_EQ((*plan)[2].file_name, "model-00003-of-00003.safetensors");
  size_t total = 0;
  std::vector<std::string> order;
  for (const ShardPlan& shard : *plan) {
    EXPECT_GE(shard.tensors.size(), 3u);
    EXPECT_LE(shard.tensors.size(), 4u);
    total += shard.tensors.size();
    for (const TensorSpec& s : shard.tensors) order.push_back(s.name);
  }
  EXPECT_EQ(total, 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(order[i], "t" + std::to_string(i));
  // One huge tensor first still leaves a tensor for every later shard.
  specs[0].shape = {1000000};
  plan = PlanShards(specs, 10);
  ASSERT_TRUE(plan.ok()) << plan.status();
  for (const ShardPlan& shard : *plan) EXPECT_EQ(shard.tensors.size(), 1u);
  EXPECT_EQ(PlanShards(specs, 11).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanShards(specs, 0).status().code(), absl::StatusCode::kInvalidArgument);
  plan = PlanShards(specs, 1);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ((*plan)[0].file_name, "model.safetensors");
}

// ---- malformed files ------------------------------------------------------------------------

TEST_F(SafetensorsTest, RejectsFileShorterThanHeaderLength) {
  ExpectError(OpenRaw(std::string("\x05\x00\x00", 3)), absl::StatusCode::kDataLoss,
              "truncated: file is 3 bytes");
  ExpectError(OpenRaw(""), absl::StatusCode::kDataLoss, "truncated: file is 0 bytes");
}

TEST_F(SafetensorsTest, RejectsHeaderLengthPastEndOfFile) {
  ExpectError(OpenRaw(RawSafetensors("{}", "", /*declared_length=*/4096)),
              absl::StatusCode::kDataLoss, "header length 4096 runs past the end of the file");
  // A huge length must not wrap around.
  ExpectError(OpenRaw(RawSafetensors("{}", "", /*declared_length=*/-2 & INT64_MAX)),
              absl::StatusCode::kDataLoss, "runs past the end of the file");
}

TEST_F(SafetensorsTest, RejectsTruncatedDataSection) {
  // Header promises 8 bytes of data; the file stops after 5.
  const std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ExpectError(OpenRaw(RawSafetensors(header, std::string(5, '\0'))), absl::StatusCode::kDataLoss,
              "tensor 'w': data_offsets [0,8] out of range");
}

TEST_F(SafetensorsTest, RejectsOutOfRangeOffsets) {
  const std::string header = R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"U8","shape":[4],"data_offsets":[100,104]}})";
  ExpectError(OpenRaw(RawSafetensors(header, std::string(8, '\0'))), absl::StatusCode::kDataLoss,
              "tensor 'b': data_offsets [100,104] out of range");
}

TEST_F(SafetensorsTest, RejectsOverlappingOffsets) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  ExpectError(OpenRaw(RawSafetensors(header, std::string(12, '\0'))),
              absl::StatusCode::kInvalidArgument, "tensor 'b' bytes [4, 12) overlap tensor 'a'");
}

TEST_F(SafetensorsTest, RejectsUnknownDtype) {
  const std::string header = R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})";
  ExpectError(OpenRaw(RawSafetensors(header, std::string(8, '\0'))),
              absl::StatusCode::kInvalidArgument, "tensor 'w': unknown dtype 'F64'");
}

TEST_F(SafetensorsTest, RejectsShapeByteSizeMismatch) {
  const std::string header = R"({"w":{"dtype":"BF16","shape":[3,2],"data_offsets":[0,10]}})";
  ExpectError(OpenRaw(RawSafetensors(header, std::string(10, '\0'))),
              absl::StatusCode::kInvalidArgument,
              "tensor 'w': shape [3, 2] of BF16 needs 12 bytes but data_offsets [0,10] span 10");
}

TEST_F(SafetensorsTest, RejectsShapeOverflow) {
  const std::string header =
      R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})";
  ExpectError(OpenRaw(RawSafetensors(header, "")), absl::StatusCode::kInvalidArgument,
              "tensor 'w': shape [4294967296, 4294967296]... overflows 64 bits");
  const std::string huge_dim =
      R"({"w":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,0]}})";
  ExpectError(OpenRaw(RawSafetensors(huge_dim, "")), absl::StatusCode::kInvalidArgument,
              "is not a non-negative integer");
}

TEST_F(SafetensorsTest, RejectsMalformedHeaderJson) {
  ExpectError(OpenRaw(RawSafetensors(R"({"w":{"dtype":"F32",)", "")),
              absl::StatusCode::kInvalidArgument, "malformed JSON header");
  ExpectError(OpenRaw(RawSafetensors("[1,2]", "")), absl::StatusCode::kInvalidArgument,
              "JSON header is not an object");
  ExpectError(OpenRaw(RawSafetensors(std::string("{\"\xff\":1}"), "")),
              absl::StatusCode::kInvalidArgument, "malformed JSON header");
}

TEST_F(SafetensorsTest, RejectsMalformedEntries) {
  const struct {
    std::string header;
    std::string message;
  } cases[] = {
      {R"({"w":5})", "tensor 'w': header entry is not an object"},
      {R"({"w":{"shape":[1],"data_offsets":[0,4]}})", "tensor 'w': missing or non-string dtype"},
      {R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", "tensor 'w': missing or non-array shape"},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})",
       "tensor 'w': data_offsets must be an array of two integers"},
      {R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})",
       "shape entry -1 is not a non-negative integer"},
      {R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})",
       "shape entry 1.5 is not a non-negative integer"},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", "end before they begin"},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":["0",4]}})",
       "are not non-negative integers"},
      {R"({"__metadata__":{"format":1}})", "__metadata__ value of 'format' is not a string"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.header);
    ExpectError(OpenRaw(RawSafetensors(c.header, std::string(4, '\0'))),
                absl::StatusCode::kInvalidArgument, c.message);
  }
}

TEST_F(SafetensorsTest, AcceptsPaddedHeaderAndEmptyTensors) {
  std::string header = R"({"a":{"dtype":"I64","shape":[0],"data_offsets":[0,0]},)"
                       R"("b":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})";
  header.append(8 - header.size() % 8, ' ');
  const int32_t v = -7;
  std::string data(4, '\0');
  std::memcpy(&data[0], &v, 4);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = OpenRaw(RawSafetensors(header, data));
  ASSERT_TRUE(f.ok()) << f.status();
  int32_t got;
  std::memcpy(&got, (*f)->Find("b")->data, 4);
  EXPECT_EQ(got, -7);
}

TEST_F(SafetensorsTest, OpenReportsMissingFile) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
      SafetensorsFile::Open(dir_ + "/does-not-exist.safetensors");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("does-not-exist.safetensors"));
}

// ---- checkpoint directories -----------------------------------------------------------------

TEST_F(SafetensorsTest, CheckpointReportsMissingShard) {
  WriteFile(dir_ + "/model.safetensors.index.json",
            R"({"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
            R"("b":"model-00002-of-00002.safetensors"}})");
  ASSERT_TRUE(
      WriteSafetensors(dir_ + "/model-00001-of-00002.safetensors",
                       {{TensorSpec{"a", DType::kU8, {1}},
                         absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>("x"), 1)}})
          .ok());
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir_);
  ASSERT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(ckpt.status().message()),
              HasSubstr("shard 'model-00002-of-00002.safetensors' (holding 1 tensors, e.g. "
                        "tensor 'b') does not exist"));
}

TEST_F(SafetensorsTest, CheckpointReportsTensorMissingFromItsShard) {
  WriteFile(dir_ + "/model.safetensors.index.json",
            R"({"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}})");
  const uint8_t byte = 1;
  ASSERT_TRUE(WriteSafetensors(dir_ + "/s1.safetensors",
                               {{TensorSpec{"a", DType::kU8, {1}}, absl::MakeConstSpan(&byte, 1)}})
                  .ok());
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir_);
  ASSERT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(ckpt.status().message()),
              HasSubstr("s1.safetensors: tensor 'b', which the index assigns to this shard, is "
                        "missing"));
}

TEST_F(SafetensorsTest, CheckpointRejectsBadIndex) {
  WriteFile(dir_ + "/model.safetensors.index.json", "{\"weight_map\": {");
  EXPECT_THAT(std::string(Checkpoint::Open(dir_).status().message()),
              HasSubstr("model.safetensors.index.json: malformed JSON"));
  WriteFile(dir_ + "/model.safetensors.index.json", R"({"metadata":{}})");
  EXPECT_THAT(std::string(Checkpoint::Open(dir_).status().message()),
              HasSubstr("missing \"weight_map\" object"));
  WriteFile(dir_ + "/model.safetensors.index.json", R"({"weight_map":{"a":"../x.safetensors"}})");
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir_);
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ckpt.status().message()), HasSubstr("not a plain file name"));
}

TEST_F(SafetensorsTest, CheckpointPassesShardErrorsThrough) {
  WriteFile(dir_ + "/model.safetensors.index.json", R"({"weight_map":{"a":"s.safetensors"}})");
  WriteFile(dir_ + "/s.safetensors", RawSafetensors("{\"a\":", ""));
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir_);
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ckpt.status().message()), HasSubstr("s.safetensors: malformed JSON"));
}

TEST_F(SafetensorsTest, CheckpointReportsEmptyDirectory) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir_);
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(ckpt.status().message()),
              HasSubstr("no model.safetensors or model.safetensors.index.json"));
  EXPECT_EQ(Checkpoint::Open(dir_ + "/nope").status().code(), absl::StatusCode::kNotFound);
}

// ---- checkpoint vs model config -------------------------------------------------------------

class CheckpointSchemaTest : public SafetensorsTest {
 protected:
  ModelConfig TinyM2() {
    absl::StatusOr<CheckpointPreset> p = FindCheckpointPreset("tiny");
    EXPECT_TRUE(p.ok());
    return p->config;
  }
  absl::Status Validate(const ModelConfig& config) {
    absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir_);
    if (!ckpt.ok()) return ckpt.status();
    return ValidateCheckpoint(config, **ckpt);
  }
};

TEST_F(CheckpointSchemaTest, ReportsMissingTensor) {
  const ModelConfig config = TinyM2();
  testing_util::WriteCheckpointFromSpecs(dir_, config, {}, [](std::vector<TensorSpec>& specs) {
    specs.erase(std::remove_if(specs.begin(), specs.end(),
                               [](const TensorSpec& s) {
                                 return s.name ==
                                        "model.layers.1.block_sparse_moe.experts.5.w3.weight";
                               }),
                specs.end());
  });
  absl::Status s = Validate(config);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("'model.layers.1.block_sparse_moe.experts.5.w3.weight' not found"));
}

TEST_F(CheckpointSchemaTest, ReportsWrongWeightScaleInvShape) {
  ModelConfig config = TinyM2();
  config.weight_format = WeightFormat::kFp8Block;
  GenCheckpointOptions options;
  options.dtype = GenWeightDType::kFp8;
  testing_util::WriteCheckpointFromSpecs(dir_, config, options, [](std::vector<TensorSpec>& s) {
    for (TensorSpec& spec : s) {
      if (spec.name == "model.layers.0.self_attn.o_proj.weight_scale_inv") spec.shape = {1, 2};
    }
  });
  absl::Status s = Validate(config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("tensor 'model.layers.0.self_attn.o_proj.weight_scale_inv': "
                        "weight_scale_inv is F32 [1, 2], expected F32 [1, 1] for a [64, 128] "
                        "weight in [128, 128] blocks"));
}

TEST_F(CheckpointSchemaTest, ReportsMissingWeightScaleInv) {
  ModelConfig config = TinyM2();
  config.weight_format = WeightFormat::kFp8Block;
  GenCheckpointOptions options;
  options.dtype = GenWeightDType::kFp8;
  testing_util::WriteCheckpointFromSpecs(dir_, config, options, [](std::vector<TensorSpec>& s) {
    s.erase(std::remove_if(s.begin(), s.end(),
                           [](const TensorSpec& t) {
                             return t.name == "model.layers.1.self_attn.k_proj.weight_scale_inv";
                           }),
            s.end());
  });
  absl::Status s = Validate(config);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("FP8 weight without its scales "
                        "'model.layers.1.self_attn.k_proj.weight_scale_inv'"));
}

TEST_F(CheckpointSchemaTest, ReportsWrongShapeAndDtype) {
  const ModelConfig config = TinyM2();
  testing_util::WriteCheckpointFromSpecs(dir_, config, {}, [](std::vector<TensorSpec>& s) {
    for (TensorSpec& spec : s) {
      if (spec.name == "model.layers.0.self_attn.k_proj.weight") spec.shape = {32, 64};
    }
  });
  absl::Status s = Validate(config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("'model.layers.0.self_attn.k_proj.weight': shape [32, 64], expected "
                        "[64, 64]"));

  testing_util::WriteCheckpointFromSpecs(dir_, config, {}, [](std::vector<TensorSpec>& s) {
    for (TensorSpec& spec : s) {
      if (spec.name == "model.layers.1.block_sparse_moe.gate.weight") spec.dtype = DType::kI32;
    }
  });
  s = Validate(config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("'model.layers.1.block_sparse_moe.gate.weight': dtype I32, expected F32 "
                        "or BF16"));
}

TEST_F(CheckpointSchemaTest, IgnoresMtpLayersAndExtraTensors) {
  const ModelConfig config = TinyM2();
  testing_util::WriteCheckpointFromSpecs(dir_, config, {}, [](std::vector<TensorSpec>& s) {
    // An MTP layer (index == num_hidden_layers) with a shape no real layer has.
    s.push_back({"model.layers.2.self_attn.q_proj.weight", DType::kBF16, {7, 3}});
    s.push_back({"model.layers.2.eh_proj.weight", DType::kF32, {64, 128}});
  });
  absl::Status s = Validate(config);
  EXPECT_TRUE(s.ok()) << s;
}

}  // namespace
}  // namespace afd
