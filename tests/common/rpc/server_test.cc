// NodeServer: a real server on a loopback port / unix socket with grpc.health.v1 liveness and
// per-service readiness, and server reflection listing our services.
#include "common/rpc/server.h"

#include <unistd.h>

#include "afd/v1/expert.grpc.pb.h"
#include "common/rpc/channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"

namespace afd::rpc {
namespace {

const std::string kService = v1::ExpertNode::service_full_name();

TEST(NodeServerTest, ReportsLivenessAndReadinessSeparately) {
  v1::ExpertNode::Service service;  // the generated base: every method is UNIMPLEMENTED
  absl::StatusOr<std::unique_ptr<NodeServer>> server =
      NodeServer::Start({"127.0.0.1:0", {}}, {{kService, &service}});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      MakeChannel("127.0.0.1:" + std::to_string((*server)->port()), {}, {});
  ASSERT_TRUE(channel.ok()) << channel.status();

  EXPECT_TRUE(WaitUntilServing(**channel, "", absl::Seconds(5)).ok());
  absl::Status ready = CheckServing(**channel, kService, absl::Seconds(5));
  EXPECT_EQ(ready.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(ready.message().find("NOT_SERVING"), std::string::npos) << ready;
  EXPECT_EQ(WaitUntilServing(**channel, kService, absl::Milliseconds(100)).code(),
            absl::StatusCode::kDeadlineExceeded);

  (*server)->SetServing(kService, true);
  EXPECT_TRUE(CheckServing(**channel, kService, absl::Seconds(5)).ok());
  // Unknown services are not "serving".
  EXPECT_FALSE(CheckServing(**channel, "afd.v1.Nope", absl::Seconds(5)).ok());

  (*server)->Shutdown(absl::ZeroDuration());
  EXPECT_FALSE(CheckServing(**channel, kService, absl::Milliseconds(500)).ok());
}

TEST(NodeServerTest, ServesOnUnixSockets) {
  v1::ExpertNode::Service service;
  const std::string path =
      ::testing::TempDir() + "/node_server_test." + std::to_string(getpid()) + ".sock";
  absl::StatusOr<std::unique_ptr<NodeServer>> server =
      NodeServer::Start({"unix:" + path, {}}, {{kService, &service}});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->port(), 0);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel("unix:" + path, {}, {});
  ASSERT_TRUE(channel.ok());
  (*server)->SetServing(kService, true);
  EXPECT_TRUE(WaitUntilServing(**channel, kService, absl::Seconds(5)).ok());
}

TEST(NodeServerTest, ReportsAnAddressThatCannotBeBound) {
  v1::ExpertNode::Service service;
  absl::StatusOr<std::unique_ptr<NodeServer>> first =
      NodeServer::Start({"127.0.0.1:0", {}}, {{kService, &service}});
  ASSERT_TRUE(first.ok());
  v1::ExpertNode::Service other;
  absl::StatusOr<std::unique_ptr<NodeServer>> second = NodeServer::Start(
      {"127.0.0.1:" + std::to_string((*first)->port()), {}}, {{kService, &other}});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find("cannot listen"), std::string::npos);
}

TEST(NodeServerTest, ReportsUnreadableTlsFiles) {
  v1::ExpertNode::Service service;
  TlsConfig tls;
  tls.cert_file = "/nonexistent/cert.pem";
  tls.key_file = "/nonexistent/key.pem";
  absl::StatusOr<std::unique_ptr<NodeServer>> server =
      NodeServer::Start({"127.0.0.1:0", tls}, {{kService, &service}});
  EXPECT_EQ(server.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(server.status().message().find("/nonexistent/cert.pem"), std::string::npos);
}

// Sends one ServerReflectionRequest{list_services: "*"} through a generic bidi call and
// returns the raw response bytes.
std::string ListServicesByReflection(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::CompletionQueue cq;
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  auto call = stub.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag;
  bool ok = false;
  call->StartCall(reinterpret_cast<void*>(1));
  if (!cq.Next(&tag, &ok) || !ok) return "start failed";
  // Field 7 (list_services), wire type 2, length 1, "*".
  const std::string request = std::string("\x3a\x01*", 3);
  grpc::Slice slice(request);
  grpc::ByteBuffer out(&slice, 1);
  call->Write(out, reinterpret_cast<void*>(2));
  if (!cq.Next(&tag, &ok) || !ok) return "write failed";
  grpc::ByteBuffer in;
  call->Read(&in, reinterpret_cast<void*>(3));
  if (!cq.Next(&tag, &ok) || !ok) return "read failed";
  std::vector<grpc::Slice> slices;
  in.Dump(&slices);
  std::string bytes;
  for (const grpc::Slice& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  context.TryCancel();
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(4));
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return bytes;
}

TEST(NodeServerTest, ServesReflection) {
  v1::ExpertNode::Service service;
  absl::StatusOr<std::unique_ptr<NodeServer>> server =
      NodeServer::Start({"127.0.0.1:0", {}}, {{kService, &service}});
  ASSERT_TRUE(server.ok());
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      MakeChannel("127.0.0.1:" + std::to_string((*server)->port()), {}, {});
  ASSERT_TRUE(channel.ok());
  const std::string listing = ListServicesByReflection(*channel);
  EXPECT_NE(listing.find("afd.v1.ExpertNode"), std::string::npos) << listing;
  EXPECT_NE(listing.find("grpc.health.v1.Health"), std::string::npos) << listing;
}

}  // namespace
}  // namespace afd::rpc
