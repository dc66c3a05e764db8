// ExpertNodeService on a real loopback server: correct rows, per-message errors that leave the
// stream and the node up, readiness while loading, and Describe.
#include "expert_node/expert_node_service.h"

#include <cstring>

#include "common/rpc/channel.h"
#include "common/rpc/expert_codec.h"
#include "expert_test_util.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"

namespace afd::expert {
namespace {

using expert_test::GoldenModel;
using expert_test::LocalExpertNode;
using expert_test::MakeRoutedBatch;
using expert_test::RoutedBatch;

class ExpertNodeServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Hosts experts 0-3 of every layer of m2-tiny (8 experts, top-2, hidden 64).
    absl::StatusOr<std::unique_ptr<LocalExpertNode>> node =
        LocalExpertNode::Start("e0", GoldenModel("m2-tiny"), "0-3", "127.0.0.1:0");
    ASSERT_TRUE(node.ok()) << node.status();
    node_ = *std::move(node);
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
        rpc::MakeChannel(node_->address(), {}, {});
    ASSERT_TRUE(channel.ok());
    stub_ = v1::ExpertNode::NewStub(*channel);
  }

  // A well-formed batch of `tokens` tokens, each routed to two of experts 0-3.
  v1::ExpertBatch GoodBatch(uint64_t id, int tokens) {
    batch_ = MakeRoutedBatch(1, tokens, 64, 2, 4, static_cast<uint32_t>(id));
    offsets_.clear();
    ids_.clear();
    for (int t = 0; t <= tokens; ++t) offsets_.push_back(2 * t);
    for (int32_t e : batch_.expert_ids) ids_.push_back(static_cast<uint32_t>(e));
    ExpertBatchView v;
    v.id = id;
    v.layer = 1;
    v.num_tokens = tokens;
    v.hidden_dim = 64;
    v.hidden = batch_.hidden.data();
    v.offsets = offsets_.data();
    v.expert_ids = ids_.data();
    v.weights = batch_.weights.data();
    v1::ExpertBatch proto;
    rpc::EncodeExpertBatch(v, v1::DTYPE_F32, &proto);
    return proto;
  }

  std::vector<float> ExpectedTerms() {
    std::vector<ExpertPair> pairs;
    for (int64_t t = 0; t < batch_.num_tokens; ++t) {
      for (int k = 0; k < 2; ++k) {
        pairs.push_back(
            {static_cast<int32_t>(t), batch_.expert_ids[t * 2 + k], batch_.weights[t * 2 + k]});
      }
    }
    const ModelConfig& c = node_->store().config();
    ExpertFfn ffn(c.hidden_size, c.intermediate_size, nullptr);
    std::vector<float> terms(pairs.size() * 64);
    EXPECT_TRUE(ffn.Run(
                       batch_.hidden.data(), batch_.num_tokens, pairs,
                       [&](int32_t e) { return node_->store().Find(1, e); }, terms.data())
                    .ok());
    return terms;
  }

  std::unique_ptr<LocalExpertNode> node_;
  std::unique_ptr<v1::ExpertNode::Stub> stub_;
  RoutedBatch batch_;
  std::vector<uint32_t> offsets_, ids_;
};

TEST_F(ExpertNodeServiceTest, ReturnsThePerPairTerms) {
  grpc::ClientContext context;
  auto stream = stub_->Forward(&context);
  for (uint64_t id = 1; id <= 3; ++id) {
    ASSERT_TRUE(stream->Write(GoodBatch(id, static_cast<int>(id * 3))));
    v1::ExpertResult result;
    ASSERT_TRUE(stream->Read(&result));
    EXPECT_EQ(result.id(), id);
    EXPECT_EQ(result.status().code(), 0) << result.status().message();
    const std::vector<float> expected = ExpectedTerms();
    ASSERT_EQ(result.rows().size(), expected.size() * 4);
    EXPECT_EQ(std::memcmp(result.rows().data(), expected.data(), expected.size() * 4), 0);
    EXPECT_GT(result.compute_ns(), 0u);
  }
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(ExpertNodeServiceTest, BadBatchesGetErrorsAndTheStreamStaysUp) {
  struct Case {
    const char* name;
    std::function<void(v1::ExpertBatch*)> mutate;
    int code;
    const char* expected;
  };
  const Case cases[] = {
      {"expert not hosted", [](v1::ExpertBatch* b) { b->set_expert_ids(1, 6); }, grpc::NOT_FOUND,
       "e0: does not host layer 1 experts 6"},
      {"expert outside the model", [](v1::ExpertBatch* b) { b->set_expert_ids(1, 8); },
       grpc::INVALID_ARGUMENT, "does not exist"},
      {"wrong hidden size",
       [](v1::ExpertBatch* b) {
         b->set_hidden_dim(32);
         b->mutable_hidden()->resize(b->num_tokens() * 32 * 4);
       },
       grpc::INVALID_ARGUMENT, "hidden size 32"},
      {"bad byte length", [](v1::ExpertBatch* b) { b->mutable_hidden()->resize(7); },
       grpc::INVALID_ARGUMENT, "hidden: 7 bytes"},
      {"malformed csr", [](v1::ExpertBatch* b) { b->set_offsets(1, 5); }, grpc::INVALID_ARGUMENT,
       "offsets"},
      {"layer outside the model", [](v1::ExpertBatch* b) { b->set_layer(3); },
       grpc::INVALID_ARGUMENT, "layer 3"},
      {"bad dtype", [](v1::ExpertBatch* b) { b->set_dtype(v1::DTYPE_UNSPECIFIED); },
       grpc::INVALID_ARGUMENT, "dtype"},
  };
  grpc::ClientContext context;
  auto stream = stub_->Forward(&context);
  uint64_t id = 100;
  for (const Case& c : cases) {
    v1::ExpertBatch bad = GoodBatch(++id, 2);
    c.mutate(&bad);
    ASSERT_TRUE(stream->Write(bad)) << c.name;
    v1::ExpertResult result;
    ASSERT_TRUE(stream->Read(&result)) << c.name;
    EXPECT_EQ(result.id(), id);
    EXPECT_EQ(result.status().code(), c.code) << c.name << ": " << result.status().message();
    EXPECT_NE(result.status().message().find(c.expected), std::string::npos)
        << c.name << ": " << result.status().message();
    EXPECT_EQ(result.num_rows(), 0u);
    // The same stream still serves a good batch.
    ASSERT_TRUE(stream->Write(GoodBatch(++id, 1))) << c.name;
    ASSERT_TRUE(stream->Read(&result)) << c.name;
    EXPECT_EQ(result.status().code(), 0) << c.name;
    EXPECT_EQ(result.num_rows(), 2u);
  }
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
  // And so does a new stream.
  grpc::ClientContext context2;
  auto stream2 = stub_->Forward(&context2);
  ASSERT_TRUE(stream2->Write(GoodBatch(1, 4)));
  v1::ExpertResult result;
  ASSERT_TRUE(stream2->Read(&result));
  EXPECT_EQ(result.status().code(), 0);
}

TEST_F(ExpertNodeServiceTest, DescribesWhatItHosts) {
  grpc::ClientContext context;
  v1::ExpertNodeInfo info;
  ASSERT_TRUE(stub_->Describe(&context, v1::DescribeExpertNodeRequest(), &info).ok());
  EXPECT_EQ(info.node_name(), "e0");
  EXPECT_TRUE(info.ready());
  EXPECT_EQ(info.model_type(), "minimax_m2");
  EXPECT_EQ(info.hidden_dim(), 64u);
  EXPECT_EQ(info.num_experts(), 8u);
  EXPECT_EQ(info.weight_dtype(), "BF16");
  ASSERT_EQ(info.hosted_size(), 3);
  EXPECT_EQ(info.hosted(2).layers(0), 2u);
  EXPECT_EQ(std::vector<uint32_t>(info.hosted(2).experts().begin(), info.hosted(2).experts().end()),
            (std::vector<uint32_t>{0, 1, 2, 3}));
  EXPECT_EQ(info.hosted_weight_bytes(), node_->store().hosted_bytes());
}

TEST(ExpertNodeServiceLoadingTest, IsNotReadyAndRefusesStreamsWhileLoading) {
  ComputePool compute(1);
  ExpertNodeService service("e9", &compute);
  const std::string name = v1::ExpertNode::service_full_name();
  absl::StatusOr<std::unique_ptr<rpc::NodeServer>> server =
      rpc::NodeServer::Start({"127.0.0.1:0", {}}, {{name, &service}});
  ASSERT_TRUE(server.ok());
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      rpc::MakeChannel("127.0.0.1:" + std::to_string((*server)->port()), {}, {});
  ASSERT_TRUE(channel.ok());
  EXPECT_TRUE(rpc::WaitUntilServing(**channel, "", absl::Seconds(5)).ok());
  EXPECT_FALSE(rpc::CheckServing(**channel, name, absl::Seconds(5)).ok());
  auto stub = v1::ExpertNode::NewStub(*channel);
  grpc::ClientContext context;
  auto stream = stub->Forward(&context);
  v1::ExpertResult result;
  EXPECT_FALSE(stream->Read(&result));
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::UNAVAILABLE);
  EXPECT_NE(status.error_message().find("still loading"), std::string::npos);
  grpc::ClientContext describe_context;
  v1::ExpertNodeInfo info;
  ASSERT_TRUE(stub->Describe(&describe_context, v1::DescribeExpertNodeRequest(), &info).ok());
  EXPECT_FALSE(info.ready());

  absl::StatusOr<std::unique_ptr<ExpertStore>> store =
      ExpertStore::Load(GoldenModel("m2-tiny"), ExpertSpec::All(), {});
  ASSERT_TRUE(store.ok());
  service.SetStore(store->get());
  (*server)->SetServing(name, true);
  EXPECT_TRUE(rpc::CheckServing(**channel, name, absl::Seconds(5)).ok());
  (*server)->Shutdown(absl::ZeroDuration());
}

}  // namespace
}  // namespace afd::expert
