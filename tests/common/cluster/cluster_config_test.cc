// cluster.yaml parsing, validation messages, serialization and the local-cluster generator.
#include "common/cluster/cluster_config.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "gtest/gtest.h"

namespace afd {
namespace {

constexpr char kFullConfig[] = R"(# a cluster
model: /models/m2
limits:
  max_sequences: 32        # sequences
  kv_blocks: 1000
  kv_block_tokens: 32
  max_prompt_tokens: 8192
  max_new_tokens: 512
  max_batch_tokens: 1024
  micro_batches: 3
  min_micro_batch_tokens: 64
  max_queue_depth: 10
  min_tile_prompt_tokens: 1
  replica_choice: pack
  kv_cache_dtype: bf16
deadlines:
  expert_call_ms: 250
  reconnect_initial_backoff_ms: 20
  reconnect_max_backoff_ms: 400
  startup_timeout_ms: 5000
gateways:
  - name: gw0
    address: gw.afd.svc:50050
    http_listen: 0.0.0.0:8080
attention_nodes:
  - name: attn0
    address: 10.0.0.2:50051
    listen: 0.0.0.0:50051
    threads: 8
expert_nodes:
  - name: e0
    address: unix:/tmp/afd-e0.sock
    experts: 0-63
    threads: 4
  - name: e1
    address: "[::1]:50061"
    experts: ["0-30:64-127", "31:all"]
  - name: e2
    address: dns:///e2.afd.svc:50062
)";

absl::Status ParseError(const std::string& yaml) {
  return ParseClusterConfig(yaml, "test.yaml").status();
}

TEST(ClusterConfigTest, ParsesEveryField) {
  absl::StatusOr<ClusterConfig> c = ParseClusterConfig(kFullConfig, "test.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_dir, "/models/m2");
  EXPECT_EQ(c->limits.max_sequences, 32);
  EXPECT_EQ(c->limits.kv_blocks, 1000);
  EXPECT_EQ(c->limits.kv_block_tokens, 32);
  EXPECT_EQ(c->limits.max_prompt_tokens, 8192);
  EXPECT_EQ(c->limits.max_new_tokens, 512);
  EXPECT_EQ(c->limits.max_batch_tokens, 1024);
  EXPECT_EQ(c->limits.micro_batches, 3);
  EXPECT_EQ(c->limits.min_micro_batch_tokens, 64);
  EXPECT_EQ(c->limits.max_queue_depth, 10);
  EXPECT_EQ(c->limits.min_tile_prompt_tokens, 1);
  EXPECT_EQ(c->limits.replica_choice, "pack");
  EXPECT_EQ(c->limits.kv_cache_dtype, "bf16");
  EXPECT_EQ(c->deadlines.expert_call_ms, 250);
  EXPECT_EQ(c->deadlines.reconnect_initial_backoff_ms, 20);
  EXPECT_EQ(c->deadlines.reconnect_max_backoff_ms, 400);
  EXPECT_EQ(c->deadlines.startup_timeout_ms, 5000);
  ASSERT_EQ(c->gateways.size(), 1u);
  EXPECT_EQ(c->gateways[0].http_listen, "0.0.0.0:8080");
  ASSERT_EQ(c->attention_nodes.size(), 1u);
  EXPECT_EQ(c->attention_nodes[0].node.threads, 8);
  EXPECT_EQ(ListenAddress(c->attention_nodes[0].node), "0.0.0.0:50051");
  ASSERT_EQ(c->expert_nodes.size(), 3u);
  const ExpertNodeConfig* e1 = c->FindExpertNode("e1");
  ASSERT_NE(e1, nullptr);
  EXPECT_EQ(FormatExpertSpec(e1->experts), "0-30:64-127;31:all");
  EXPECT_EQ(ListenAddress(e1->node), "[::]:50061");
  EXPECT_EQ(ListenAddress(c->FindExpertNode("e0")->node), "unix:/tmp/afd-e0.sock");
  EXPECT_EQ(ListenAddress(c->FindExpertNode("e2")->node), "[::]:50062");
  EXPECT_EQ(c->FindExpertNode("e2")->experts, ExpertSpec::All());  // default: everything
  EXPECT_EQ(c->FindExpertNode("attn0"), nullptr);
  EXPECT_NE(c->FindAttentionNode("attn0"), nullptr);
  EXPECT_NE(c->FindGateway("gw0"), nullptr);
}

TEST(ClusterConfigTest, DefaultsWhenSectionsAreMissing) {
  absl::StatusOr<ClusterConfig> c = ParseClusterConfig("model: m\n", "test.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->limits.max_sequences, LimitsConfig().max_sequences);
  EXPECT_EQ(c->limits.replica_choice, "spread");
  EXPECT_EQ(c->limits.kv_cache_dtype, "float32");
  EXPECT_EQ(c->deadlines.expert_call_ms, DeadlinesConfig().expert_call_ms);
  EXPECT_TRUE(c->expert_nodes.empty());
  EXPECT_FALSE(c->tls.enabled());
}

TEST(ClusterConfigTest, SerializesToYamlThatParsesBackEqual) {
  absl::StatusOr<ClusterConfig> c = ParseClusterConfig(kFullConfig, "test.yaml");
  ASSERT_TRUE(c.ok());
  const std::string yaml = ClusterConfigToYaml(*c);
  absl::StatusOr<ClusterConfig> back = ParseClusterConfig(yaml, "round-trip");
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << yaml;
  EXPECT_EQ(ClusterConfigToYaml(*back), yaml);
  EXPECT_EQ(back->FindExpertNode("e1")->experts, c->FindExpertNode("e1")->experts);
  EXPECT_EQ(back->deadlines.expert_call_ms, 250);
  EXPECT_EQ(back->limits.replica_choice, "pack");
  EXPECT_EQ(back->limits.kv_cache_dtype, "bf16");
}

TEST(ClusterConfigTest, ReportsErrorsWithFileLineAndKey) {
  struct Case {
    const char* yaml;
    const char* expected;
  };
  const Case cases[] = {
      {"model: m\nlimits:\n  max_sequencs: 3\n", "test.yaml:3: limits.max_sequencs: unknown key"},
      {"limits:\n  kv_blocks: lots\n", "test.yaml:2: limits.kv_blocks: expected an integer"},
      {"limits:\n  kv_blocks: 0\n", "limits.kv_blocks: 0 is outside [1,"},
      {"limits:\n  min_tile_prompt_tokens: -1\n",
       "limits.min_tile_prompt_tokens: -1 is outside [0,"},
      {"limits:\n  replica_choice: random\n",
       "test.yaml:2: limits.replica_choice: \"random\" is not spread or pack"},
      {"limits:\n  kv_cache_dtype: fp16\n",
       "test.yaml:2: limits.kv_cache_dtype: \"fp16\" is not float32 (fp32) or bfloat16 (bf16)"},
      {"expert_nodes:\n  - name: e0\n", "expert_nodes[0].address: missing"},
      {"expert_nodes:\n  - address: a:1\n", "expert_nodes[0].name: missing"},
      {"expert_nodes:\n  - {name: e0, address: localhost}\n", "is not host:port"},
      {"expert_nodes:\n  - {name: e0, address: 'h:99999'}\n", "port \"99999\""},
      {"expert_nodes:\n  - {name: e0, address: '::1:5'}\n", "IPv6 hosts go in brackets"},
      {"expert_nodes:\n  - {name: e0, address: 'h:1', experts: '5-2'}\n",
       "expert_nodes[0].experts: expert spec \"5-2\""},
      {"expert_nodes:\n  - {name: e0, address: 'h:1'}\n  - {name: e0, address: 'h:2'}\n",
       "node name \"e0\" is used twice"},
      {"expert_nodes:\n  - {name: e0, address: 'h:1'}\n  - {name: e1, address: 'h:1'}\n",
       "address \"h:1\" is used by two nodes"},
      {"expert_nodes:\n  - {name: 'e 0', address: 'h:1'}\n", "may hold only letters"},
      {"deadlines:\n  reconnect_initial_backoff_ms: 500\n  reconnect_max_backoff_ms: 100\n",
       "must not be below"},
      {"tls:\n  cert_file: a.pem\n", "cert_file and key_file go together"},
      {"gateways: 3\n", "gateways: expected a list of nodes"},
      {"model: [unclosed\n", "test.yaml:"},
      {"- just\n- a list\n", "expected a mapping of keys"},
      {"", "empty cluster config"},
  };
  for (const Case& c : cases) {
    absl::Status s = ParseError(c.yaml);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_NE(s.message().find(c.expected), std::string::npos)
        << "yaml:\n"
        << c.yaml << "\nmessage: " << s.message() << "\nexpected: " << c.expected;
  }
}

TEST(ClusterConfigTest, LoadsFromFileAndReportsMissingFiles) {
  const std::string path = ::testing::TempDir() + "/cluster_config_test.yaml";
  {
    std::ofstream out(path);
    out << kFullConfig;
  }
  absl::StatusOr<ClusterConfig> c = LoadClusterConfig(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->expert_nodes.size(), 3u);
  std::remove(path.c_str());
  EXPECT_EQ(LoadClusterConfig(path).status().code(), absl::StatusCode::kNotFound);
}

TEST(ClusterConfigTest, ValidatesAddresses) {
  EXPECT_TRUE(ValidateAddress("localhost:1", false).ok());
  EXPECT_TRUE(ValidateAddress("127.0.0.1:0", true).ok());
  EXPECT_FALSE(ValidateAddress("127.0.0.1:0", false).ok());
  EXPECT_TRUE(ValidateAddress("[::]:80", false).ok());
  EXPECT_TRUE(ValidateAddress("unix:/tmp/x.sock", false).ok());
  EXPECT_FALSE(ValidateAddress("unix:", false).ok());
  EXPECT_TRUE(ValidateAddress("dns:///svc.ns:443", false).ok());
  EXPECT_FALSE(ValidateAddress("svc", false).ok());
  EXPECT_FALSE(ValidateAddress(":80", false).ok());
}

TEST(MakeLocalClusterConfigTest, BuildsAValidSingleHostCluster) {
  LocalClusterOptions options;
  options.model_dir = "/m";
  options.num_experts = 8;
  options.num_expert_nodes = 3;
  options.replicas = 2;
  options.base_port = 41000;
  absl::StatusOr<ClusterConfig> c = MakeLocalClusterConfig(options);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->gateways[0].node.address, "127.0.0.1:41000");
  EXPECT_EQ(c->attention_nodes[0].node.address, "127.0.0.1:41001");
  ASSERT_EQ(c->expert_nodes.size(), 3u);
  EXPECT_EQ(c->expert_nodes[2].node.address, "127.0.0.1:41004");
  // The generated file is valid cluster.yaml.
  absl::StatusOr<ClusterConfig> back = ParseClusterConfig(ClusterConfigToYaml(*c));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->expert_nodes[1].experts, c->expert_nodes[1].experts);

  options.socket_dir = "/tmp/afd-test";
  c = MakeLocalClusterConfig(options);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->expert_nodes[0].node.address, "unix:/tmp/afd-test/expert0.sock");
  options.replicas = 4;
  EXPECT_EQ(MakeLocalClusterConfig(options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace afd
