// ExpertBatch / ExpertResult codec: round trips (gathered rows, bf16), and every malformed
// field a peer could send.
#include "common/rpc/expert_codec.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace afd::rpc {
namespace {

class ExpertCodecTest : public ::testing::Test {
 protected:
  // 3 tokens of hidden 4 taken from rows 4, 0, 2 of a 5-row matrix.
  void SetUp() override {
    for (int i = 0; i < 5 * 4; ++i) all_rows_.push_back(0.25f * i - 1.0f);
    view_.id = 42;
    view_.layer = 7;
    view_.num_tokens = 3;
    view_.hidden_dim = 4;
    view_.hidden = all_rows_.data();
    view_.token_index = token_index_.data();
    view_.offsets = offsets_.data();
    view_.expert_ids = ids_.data();
    view_.weights = weights_.data();
    view_.fold = fold_.data();
    view_.tiles = tiles_.data();
  }

  std::vector<float> all_rows_;
  std::vector<int32_t> token_index_ = {4, 0, 2};
  std::vector<uint32_t> offsets_ = {0, 2, 2, 5};
  std::vector<uint32_t> ids_ = {1, 6, 0, 2, 3};
  std::vector<float> weights_ = {0.5f, 0.25f, 0.125f, 0.0625f, 0.03125f};
  std::vector<uint32_t> fold_ = {2, 0, 1};
  std::vector<uint8_t> tiles_ = {1, 0, 1};
  ExpertBatchView view_;
};

TEST_F(ExpertCodecTest, F32RoundTripGathersRowsExactly) {
  v1::ExpertBatch proto;
  EncodeExpertBatch(view_, v1::DTYPE_F32, &proto);
  // Serialize and parse, as the wire does.
  v1::ExpertBatch wire;
  ASSERT_TRUE(wire.ParseFromString(proto.SerializeAsString()));
  std::vector<float> scratch;
  ExpertBatchView back;
  ASSERT_TRUE(DecodeExpertBatch(wire, &scratch, &back).ok());
  EXPECT_EQ(back.id, 42u);
  EXPECT_EQ(back.layer, 7);
  EXPECT_EQ(back.num_tokens, 3);
  EXPECT_EQ(back.hidden_dim, 4);
  EXPECT_EQ(back.token_index, nullptr);
  for (int t = 0; t < 3; ++t) {
    EXPECT_EQ(std::memcmp(back.row(t), view_.row(t), 16), 0) << "token " << t;
  }
  EXPECT_EQ(std::vector<uint32_t>(back.offsets, back.offsets + 4), offsets_);
  EXPECT_EQ(std::vector<uint32_t>(back.expert_ids, back.expert_ids + 5), ids_);
  EXPECT_EQ(std::vector<float>(back.weights, back.weights + 5), weights_);
  ASSERT_NE(back.fold, nullptr);
  EXPECT_EQ(std::vector<uint32_t>(back.fold, back.fold + 3), fold_);
  ASSERT_NE(back.tiles, nullptr);
  EXPECT_EQ(std::vector<uint8_t>(back.tiles, back.tiles + 3), tiles_);
}

TEST_F(ExpertCodecTest, NoTileTokensSendsNoTilesField) {
  tiles_ = {0, 0, 0};
  v1::ExpertBatch proto;
  EncodeExpertBatch(view_, v1::DTYPE_F32, &proto);
  EXPECT_TRUE(proto.tiles().empty());
  std::vector<float> scratch;
  ExpertBatchView back;
  ASSERT_TRUE(DecodeExpertBatch(proto, &scratch, &back).ok());
  EXPECT_EQ(back.tiles, nullptr);
}

TEST_F(ExpertCodecTest, Bf16HalvesTheHiddenBytes) {
  v1::ExpertBatch proto;
  EncodeExpertBatch(view_, v1::DTYPE_BF16, &proto);
  EXPECT_EQ(proto.hidden().size(), 3u * 4 * 2);
  std::vector<float> scratch;
  ExpertBatchView back;
  ASSERT_TRUE(DecodeExpertBatch(proto, &scratch, &back).ok());
  // Every test value is a multiple of 1/4 within bf16's 8 significant bits: exact.
  for (int t = 0; t < 3; ++t) {
    EXPECT_EQ(std::memcmp(back.row(t), view_.row(t), 16), 0) << "token " << t;
  }
}

TEST_F(ExpertCodecTest, NoFoldFieldMeansNoFolding) {
  view_.fold = nullptr;
  v1::ExpertBatch proto;
  EncodeExpertBatch(view_, v1::DTYPE_F32, &proto);
  EXPECT_EQ(proto.fold_size(), 0);
  std::vector<float> scratch;
  ExpertBatchView back;
  ASSERT_TRUE(DecodeExpertBatch(proto, &scratch, &back).ok());
  EXPECT_EQ(back.fold, nullptr);
  EXPECT_EQ(ExpertResultRows(back), 5);
}

TEST_F(ExpertCodecTest, RejectsEveryMalformedField) {
  struct Case {
    const char* name;
    void (*mutate)(v1::ExpertBatch*);
    const char* expected;
  };
  const Case cases[] = {
      {"short hidden", [](v1::ExpertBatch* p) { p->mutable_hidden()->pop_back(); }, "hidden:"},
      {"long hidden", [](v1::ExpertBatch* p) { p->mutable_hidden()->append("1234"); }, "hidden:"},
      {"zero hidden dim", [](v1::ExpertBatch* p) { p->set_hidden_dim(0); }, "hidden_dim"},
      {"wrong hidden dim", [](v1::ExpertBatch* p) { p->set_hidden_dim(3); }, "hidden:"},
      {"unknown dtype", [](v1::ExpertBatch* p) { p->set_dtype(v1::DTYPE_UNSPECIFIED); }, "dtype"},
      {"offsets too short", [](v1::ExpertBatch* p) { p->mutable_offsets()->RemoveLast(); },
       "offsets"},
      {"offsets beyond pairs", [](v1::ExpertBatch* p) { p->set_offsets(3, 6); },
       "expert_ids/weights"},
      {"missing weight", [](v1::ExpertBatch* p) { p->mutable_weights()->RemoveLast(); },
       "expert_ids/weights"},
      {"first offset", [](v1::ExpertBatch* p) { p->set_offsets(0, 1); }, "offsets[0]"},
      {"decreasing offsets", [](v1::ExpertBatch* p) { p->set_offsets(2, 1); }, "decrease"},
      {"unsorted ids", [](v1::ExpertBatch* p) { p->set_expert_ids(1, 0); }, "ascending"},
      {"fold length", [](v1::ExpertBatch* p) { p->add_fold(0); }, "fold"},
      {"fold too big", [](v1::ExpertBatch* p) { p->set_fold(1, 1); }, "fold"},
      {"tiles length", [](v1::ExpertBatch* p) { p->mutable_tiles()->push_back(1); }, "tiles"},
      {"tiles value", [](v1::ExpertBatch* p) { (*p->mutable_tiles())[1] = 2; }, "tiles"},
  };
  for (const Case& c : cases) {
    v1::ExpertBatch proto;
    EncodeExpertBatch(view_, v1::DTYPE_F32, &proto);
    c.mutate(&proto);
    std::vector<float> scratch;
    ExpertBatchView back;
    absl::Status s = DecodeExpertBatch(proto, &scratch, &back);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(s.message().find(c.expected), std::string::npos) << c.name << ": " << s;
  }
}

TEST_F(ExpertCodecTest, EmptyBatchIsValid) {
  view_.num_tokens = 0;
  v1::ExpertBatch proto;
  EncodeExpertBatch(view_, v1::DTYPE_F32, &proto);
  std::vector<float> scratch;
  ExpertBatchView back;
  ASSERT_TRUE(DecodeExpertBatch(proto, &scratch, &back).ok());
  EXPECT_EQ(back.num_pairs(), 0);
}

TEST(ExpertResultCodecTest, RoundTripAndMismatches) {
  const std::vector<float> rows = {1, 2, 3, 4, 5, 6};
  v1::ExpertResult proto;
  EncodeExpertResult(9, rows.data(), 3, 2, 1234, &proto);
  v1::ExpertResult wire;
  ASSERT_TRUE(wire.ParseFromString(proto.SerializeAsString()));
  std::vector<float> scratch;
  absl::StatusOr<const float*> back = DecodeExpertResult(wire, 9, 3, 2, &scratch);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(std::memcmp(*back, rows.data(), 24), 0);
  EXPECT_EQ(wire.compute_ns(), 1234u);
  EXPECT_EQ(DecodeExpertResult(wire, 8, 3, 2, &scratch).status().code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(DecodeExpertResult(wire, 9, 2, 2, &scratch).status().code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(DecodeExpertResult(wire, 9, 3, 3, &scratch).status().code(),
            absl::StatusCode::kInternal);
}

TEST(ExpertResultCodecTest, CarriesTheNodesError) {
  v1::ExpertResult proto;
  EncodeExpertResultError(5, absl::NotFoundError("e0: does not host layer 1 experts 3"), &proto);
  std::vector<float> scratch;
  absl::StatusOr<const float*> back = DecodeExpertResult(proto, 5, 1, 4, &scratch);
  EXPECT_EQ(back.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(back.status().message(), "e0: does not host layer 1 experts 3");
}

}  // namespace
}  // namespace afd::rpc
