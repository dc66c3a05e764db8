// The example configurations in deploy/ stay valid: deploy/cluster.yaml and the cluster.yaml
// inside the Kubernetes ConfigMap parse, and their nodes and placements are consistent with the
// StatefulSets (pod names = node names).
#include <fstream>
#include <sstream>
#include <string>

#include "common/cluster/cluster_config.h"
#include "common/cluster/expert_set.h"
#include "gtest/gtest.h"

namespace afd {
namespace {

std::string SourceDir() { return std::string(AFD_SOURCE_DIR); }

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Every expert of every layer is hosted by at least one node.
void ExpectFullPlacement(const ClusterConfig& config, int layers, int experts) {
  std::vector<bool> covered(static_cast<size_t>(layers) * experts, false);
  for (const ExpertNodeConfig& node : config.expert_nodes) {
    absl::StatusOr<ExpertSet> set = ExpertSet::FromSpec(node.experts, layers, experts);
    ASSERT_TRUE(set.ok()) << node.node.name << ": " << set.status();
    for (int l = 0; l < layers; ++l) {
      for (int e = 0; e < experts; ++e) {
        if (set->Contains(l, e)) covered[static_cast<size_t>(l) * experts + e] = true;
      }
    }
  }
  for (size_t i = 0; i < covered.size(); ++i) EXPECT_TRUE(covered[i]) << "expert " << i;
}

TEST(DeployConfigTest, ExampleClusterYamlParses) {
  absl::StatusOr<ClusterConfig> config = LoadClusterConfig(SourceDir() + "/deploy/cluster.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->gateways.size(), 1u);
  EXPECT_EQ(config->gateways[0].http_listen, "0.0.0.0:8080");
  EXPECT_EQ(config->attention_nodes.size(), 2u);
  EXPECT_EQ(config->expert_nodes.size(), 4u);
  ExpectFullPlacement(*config, 62, 256);  // MiniMax-M2: 62 layers x 256 experts
}

TEST(DeployConfigTest, KubernetesConfigMapParses) {
  const std::string manifest = Read(SourceDir() + "/deploy/k8s/configmap.yaml");
  const size_t start = manifest.find("cluster.yaml: |\n");
  ASSERT_NE(start, std::string::npos);
  // The block scalar: the following lines, indented by 4 spaces.
  std::istringstream lines(manifest.substr(start + 16));
  std::string line, yaml;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.rfind("    ", 0) != 0) break;
    yaml += (line.size() >= 4 ? line.substr(4) : "") + "\n";
  }
  absl::StatusOr<ClusterConfig> config = ParseClusterConfig(yaml, "configmap.yaml");
  ASSERT_TRUE(config.ok()) << config.status() << "\n" << yaml;
  EXPECT_EQ(config->attention_nodes.size(), 2u);
  EXPECT_EQ(config->expert_nodes.size(), 4u);
  for (size_t i = 0; i < config->expert_nodes.size(); ++i) {
    EXPECT_EQ(config->expert_nodes[i].node.name, "afd-expert-" + std::to_string(i));
  }
  for (size_t i = 0; i < config->attention_nodes.size(); ++i) {
    EXPECT_EQ(config->attention_nodes[i].node.name, "afd-attention-" + std::to_string(i));
  }
  ExpectFullPlacement(*config, 62, 256);
  // The StatefulSets create exactly these pods.
  EXPECT_NE(Read(SourceDir() + "/deploy/k8s/expert-nodes.yaml").find("replicas: 4"),
            std::string::npos);
  EXPECT_NE(Read(SourceDir() + "/deploy/k8s/attention-nodes.yaml").find("replicas: 2"),
            std::string::npos);
}

}  // namespace
}  // namespace afd
