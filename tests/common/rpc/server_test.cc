// NodeServer: a real server on a loopback port / unix socket with grpc.health.v1 liveness and
// per-service readiness, and server reflection listing our services.
#include "common/rpc/server.h"

#include <unistd.h>

#include <fstream>

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

// A throwaway self-signed certificate for localhost / 127.0.0.1 (valid until 2125) and its key,
// made for this test only with:
//   openssl req -x509 -newkey rsa:2048 -nodes -days 36500 -subj /CN=localhost
//     -addext subjectAltName=DNS:localhost,IP:127.0.0.1   (one command line)
constexpr char kTestCert[] = R"(-----BEGIN CERTIFICATE-----
MIIDJzCCAg+gAwIBAgIUAtR8d54/Tnpd/wQPK7/+u6PFZl0wDQYJKoZIhvcNAQEL
BQAwFDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyMjEzMzE1OVoYDzIxMjYx
MDI5MTMzMTU5WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwggEiMA0GCSqGSIb3DQEB
AQUAA4IBDwAwggEKAoIBAQDEWlq2Aqs4DOKRBrxVm5zEYLRB5oUsHj7coHVFxpLN
ZMJ0JPrAB0fuGREd1mYsotwPAh2lH/TnbG15cw0chUupawwzNCFm7QSNBZVM6ytB
8LOr5BrU3Cb7EtKreA0ifW6sQkal9+TbL3uzuKYsynvp914Xj4lQN+iKxxT751Yz
+1wyaCbeMujLj2hgUk7Rox5jp4Qv6im2npMZNwV5ZVaU0F1DrnXTU0JPapU4UVSG
9tCsgbuOsRUrnOhScMrxSIBlxwV+IsU4p2EcuubxiwaroPPIFPf3Fpnubbz3tFLH
4J2R8uxkPoDnjwqM3rGT8FpZEugY/TsE9fTbQ6BQS1RpAgMBAAGjbzBtMB0GA1Ud
DgQWBBQ0S41GrEBJPn6CkEKKrwQNX/pCTzAfBgNVHSMEGDAWgBQ0S41GrEBJPn6C
kEKKrwQNX/pCTzAPBgNVHRMBAf8EBTADAQH/MBoGA1UdEQQTMBGCCWxvY2FsaG9z
dIcEfwAAATANBgkqhkiG9w0BAQsFAAOCAQEAdJbAhNKzW8aWtDaCyL05CV5aRuZx
Pgj8qoOL6qj96zP5cPCVU2g7XpP5/MlsfjoT6RJaZrasi11E3HTjsFY0lcPMt8pX
Dfqlf6HsRzeTMwyYI8XZAAfo82uuaFCW65TRlWs8T3oK0y7hqrxAFFLsF6Hbux2j
2olVeFJOiDMnpKR/uZTmAOkTFnYQcWZi16kmsXHP8UEcE7R1L4V6WdovKNL8cO0j
CiS4hqwhl9ilLIxFJ4E3+Aks1vy3lmiRHcixpVXqtSh6Au6iif2mcOvAfDeKsipt
OTyvLjueV+Gq780HoHibK0bVqjkMKk/BiYmfumxZLClLpEnfA7bLJ/iNIA==
-----END CERTIFICATE-----
)";
constexpr char kTestKey[] = R"(-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQDEWlq2Aqs4DOKR
BrxVm5zEYLRB5oUsHj7coHVFxpLNZMJ0JPrAB0fuGREd1mYsotwPAh2lH/TnbG15
cw0chUupawwzNCFm7QSNBZVM6ytB8LOr5BrU3Cb7EtKreA0ifW6sQkal9+TbL3uz
uKYsynvp914Xj4lQN+iKxxT751Yz+1wyaCbeMujLj2hgUk7Rox5jp4Qv6im2npMZ
NwV5ZVaU0F1DrnXTU0JPapU4UVSG9tCsgbuOsRUrnOhScMrxSIBlxwV+IsU4p2Ec
uubxiwaroPPIFPf3Fpnubbz3tFLH4J2R8uxkPoDnjwqM3rGT8FpZEugY/TsE9fTb
Q6BQS1RpAgMBAAECggEAOobOHAt+mqXokJ7n20KXf0dt42jBUC2xwhSH8CTo1BUR
CwqMvVlOPO+21OR3rx1aJ5UTXglA+AwvM3CyO0qWC2kviUGkJShH33sHDhbY3X5Q
J8/FmaYHbnYlWlvd2mZ16x2ULltOGXE1V5QV4Cr4tXv4zWAI52LKyzbdD9rcLIDd
ybeqSdyIrdk0gykjdAiec58g8Obl/4WknczT8Ke1jHwc2JBscQ8QaJK9+7vwgrTx
usZlUt3PZf9/XyP8Pv8+evATYxLvDxPjnPQU49swjKyWU1K4YnbzjSI29bSdYF03
s1U5I2rvmi2fHRWX2G/XLx5j+HHSMLWdnR1qbsN6WwKBgQDgYjMC9LEe5K90Zfsj
yALi8gDFxxMmQ7klBxPyty7AX0dGOEOOMZGWSZ51Dcg3VHvTkIOZ5QHuSiabD4Eo
msIsPtgh6gAgQPAlOQF+hWIw5EUoO2R21cBKLh02ZUm2ymvGv2Qt3RYZmFgLQva6
AVEn7pgPoFX9F3KqpdvyGDA7cwKBgQDgBQ3e+rkGmxi4IQf1uw3G+ftXqMMA3+2Z
YIuJaxN0wYp2MqTZPHlspsphxtjDXe5C5AT/Sp5eD9lEHMNVh5pn6X1Su8Rq5i6S
gl1Qflkl4N9MJMyAJRm2ta7SVUYkv23ac7D88FMbIpAnRPgoxMJc2A53RgZX4BUv
Dvy8hVxxswKBgEXJZPIzZm8kUwmRukVLrNIm0GSy4NrSz1+bzvF7VbgRKhrF3wT3
l781UGo5ih7jUMvhM30Gw834E//AF7yoPWIDfbc2jyl46Pe6viM6mup35KZ5qmpn
WrH3m7BSWlXWqSScXC0DiR8WybNe9Vuuky4nP/YEORpJU6mNglXOfhnPAoGAbsDw
76nDakmpufbSqaGWGSakJd2Qs1ECdg7uTb07fEDnhLJbH++vFJGNgzO9HTHGRxnW
gqTQkS6CuxMBW7rUEsW0KQAeBr/QjKyZF9+vkXOQ0mNrG3u8L8G5MdHpAOgHlrYV
7aefXs4CuPd3PSix8xb6Z+ud3TozHvXo7Ad/AdMCgYAWp3U9H5mdCdiylP8J8B10
ce7m3p09EA8RxAZBMKxbCTrbWAb4eHMwn1xDay1PeRj1Ef8oOawWMvCH+1fDRrVe
DlyQku6Oj+JeEjfGYwdbpyiGkKKCDR+T8zYWVPmGUPpDsoTcXEHpQHWYd0s+Dstx
sl0+O81OjwmB+3mwOcwDJA==
-----END PRIVATE KEY-----
)";

std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name + "." + std::to_string(getpid());
  std::ofstream(path) << text;
  return path;
}

TEST(NodeServerTest, ServesMutualTls) {
  TlsConfig tls;
  tls.cert_file = WriteTemp("afd_test_cert.pem", kTestCert);
  tls.key_file = WriteTemp("afd_test_key.pem", kTestKey);
  tls.ca_file = tls.cert_file;  // the peers present this same certificate
  v1::ExpertNode::Service service;
  absl::StatusOr<std::unique_ptr<NodeServer>> server =
      NodeServer::Start({"127.0.0.1:0", tls}, {{kService, &service}});
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->SetServing(kService, true);
  const std::string address = "127.0.0.1:" + std::to_string((*server)->port());

  absl::StatusOr<std::shared_ptr<grpc::Channel>> secure = MakeChannel(address, tls, {});
  ASSERT_TRUE(secure.ok()) << secure.status();
  EXPECT_TRUE(CheckServing(**secure, kService, absl::Seconds(5)).ok());

  // Plaintext, and TLS without a client certificate, are refused.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> plain = MakeChannel(address, {}, {});
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(CheckServing(**plain, kService, absl::Milliseconds(500)).ok());
  TlsConfig no_client_cert;
  no_client_cert.ca_file = tls.ca_file;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> anonymous =
      MakeChannel(address, no_client_cert, {});
  ASSERT_TRUE(anonymous.ok());
  EXPECT_FALSE(CheckServing(**anonymous, kService, absl::Milliseconds(500)).ok());
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
