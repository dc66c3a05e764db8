// ClusterConfig: the runtime layout of an afd deployment as read from cluster.yaml (yaml-cpp):
// the nodes and their addresses, which (layer, expert)s each expert node hosts, limits,
// deadlines and TLS files (llama.cpp's cparams, next to ModelConfig's hparams). Plain value
// types with defaults; every binary reads the same file plus a flag naming itself.
// Thread-safety: plain values; the functions are stateless.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/cluster/expert_set.h"

namespace afd {

// Server/channel TLS. All empty: plaintext. cert_file + key_file: the node serves TLS;
// ca_file: peers are verified against it (and clients present cert/key when both are set).
struct TlsConfig {
  std::string cert_file;  // PEM certificate chain of this node
  std::string key_file;   // PEM private key of cert_file
  std::string ca_file;    // PEM roots used to verify peers

  bool enabled() const { return !cert_file.empty() || !ca_file.empty(); }
};

// What every node kind has.
struct NodeConfig {
  std::string name;     // unique across the cluster; `--node NAME` selects it
  std::string address;  // how peers reach it: "host:port", "[v6]:port", "unix:/path", "dns:///h:p"
  std::string listen;   // what it binds; empty: "[::]:port" for host:port, the same for unix:
  int threads = 0;      // compute threads; 0 = all hardware threads
};

struct ExpertNodeConfig {
  NodeConfig node;
  ExpertSpec experts = ExpertSpec::All();  // (layer, expert)s it hosts; default all
};

struct AttentionNodeConfig {
  NodeConfig node;
};

struct GatewayConfig {
  NodeConfig node;
  std::string http_listen;  // OpenAI-compatible HTTP listen address ("0.0.0.0:8080"); empty: off
};

// Admission and capacity limits of every attention node (and the gateway's queue).
struct LimitsConfig {
  int max_sequences = 64;       // sequences decoded together per attention node
  int kv_blocks = 4096;         // KV-cache blocks per attention node
  int kv_block_tokens = 16;     // tokens per KV block
  int max_prompt_tokens = 0;    // longest accepted prompt, tokens; 0 = the model's context
  int max_new_tokens = 4096;    // cap on a request's max_tokens (and its default)
  int max_batch_tokens = 2048;  // tokens per engine step (prefill is chunked to fit), tokens
  int micro_batches = 2;        // micro-batches per step ping-ponging with expert calls
  // Tokens a micro-batch must have for a step to be split: each part reads every weight it
  // touches again, so memory-bound steps (decode) run whole; large steps (prefill) ping-pong.
  int min_micro_batch_tokens = 128;
  int max_queue_depth = 256;    // waiting requests per attention node before RESOURCE_EXHAUSTED
  // Prompts of at least this many tokens run on the CPU's matrix tiles (AMX) where it has them,
  // shorter ones on the vector kernels; 0 = the engine's default for the weights' type
  // (Engine::set_min_tile_prompt: 64 bf16, 128 FP8). 1 = every prompt.
  int min_tile_prompt_tokens = 0;
  // Where an expert has replicas, which one serves a call's pairs: "spread" puts each expert on
  // the least loaded replica, so a layer's experts run in parallel on nodes with cores of their
  // own; "pack" keeps a call's experts on as few nodes as possible (the first live replicas in
  // the config's order), for nodes that share one machine's cores, where spreading only adds
  // contention and fan-out.
  std::string replica_choice = "spread";
  // Element type of the attention node's paged keys and values: "float32" (fp32, the default;
  // the numbers of the goldens) or "bfloat16" (bf16, half the bytes per cached token: twice the
  // tokens per kv_blocks budget and half the cache reads at long contexts; the scores and
  // outputs move by bf16 rounding). "fp32" / "bf16" are accepted too.
  std::string kv_cache_dtype = "float32";
};

struct DeadlinesConfig {
  int expert_call_ms = 10000;             // one expert-node call (per layer, per micro-batch), ms
  int reconnect_initial_backoff_ms = 50;  // first delay before reconnecting a lost node, ms
  int reconnect_max_backoff_ms = 1000;    // cap of the doubling reconnect delay, ms
  int startup_timeout_ms = 120000;        // how long a node waits for its peers to be ready, ms
};

struct ClusterConfig {
  std::string model_dir;  // Hugging Face checkpoint directory (config.json + safetensors)
  LimitsConfig limits;
  DeadlinesConfig deadlines;
  TlsConfig tls;
  std::vector<GatewayConfig> gateways;
  std::vector<AttentionNodeConfig> attention_nodes;
  std::vector<ExpertNodeConfig> expert_nodes;

  // nullptr when no node of that kind has this name.
  const ExpertNodeConfig* FindExpertNode(absl::string_view name) const;
  const AttentionNodeConfig* FindAttentionNode(absl::string_view name) const;
  const GatewayConfig* FindGateway(absl::string_view name) const;
};

// Parses cluster.yaml text. `source` names the file in messages. INVALID_ARGUMENT, with
// "source:line: key: reason", for YAML syntax errors, unknown keys, wrong value types,
// out-of-range values, malformed addresses or expert specs, and duplicate node names or
// addresses. yaml-cpp's exceptions are caught here and nowhere else.
absl::StatusOr<ClusterConfig> ParseClusterConfig(const std::string& yaml_text,
                                                 const std::string& source = "cluster.yaml");
// Reads and parses `path` (NOT_FOUND when it cannot be read).
absl::StatusOr<ClusterConfig> LoadClusterConfig(const std::string& path);
// Serializes `config` as cluster.yaml text that ParseClusterConfig reads back to equal values.
std::string ClusterConfigToYaml(const ClusterConfig& config);

// INVALID_ARGUMENT unless `address` is "host:port" (port 1-65535, or 0 if allow_port_zero),
// "[v6]:port", "unix:PATH", "unix-abstract:NAME" or a "dns:", "ipv4:", "ipv6:" URI.
absl::Status ValidateAddress(absl::string_view address, bool allow_port_zero);
// The address a node binds: `listen` if set, else "[::]:port" for host:port addresses and the
// address itself for unix sockets and URIs.
std::string ListenAddress(const NodeConfig& node);

// Expert placement: the expert specs of `num_nodes` nodes such that every expert of every layer
// lives on exactly `replicas` nodes and each node holds about replicas/num_nodes of them. The
// experts are cut into num_nodes contiguous chunks; node n hosts chunks n .. n+replicas-1
// (mod num_nodes). INVALID_ARGUMENT unless 1 <= replicas <= num_nodes <= num_experts.
absl::StatusOr<std::vector<ExpertSpec>> GenerateExpertPlacement(int num_experts, int num_nodes,
                                                                int replicas);

// A single-host cluster for the all-in-one mode: one gateway, `num_attention_nodes` attention
// nodes and `num_expert_nodes` expert nodes holding every expert `replicas` times, named gw0,
// attn0.., expert0..; addresses are unix sockets in `socket_dir` when it is non-empty, else
// 127.0.0.1 ports counting up from `base_port`.
struct LocalClusterOptions {
  std::string model_dir;
  int num_experts = 0;  // experts per layer of the model
  int num_expert_nodes = 1;
  int replicas = 1;
  int num_attention_nodes = 1;
  std::string socket_dir;    // e.g. "/tmp/afd-<pid>"; empty: TCP
  int base_port = 50050;     // gateway gets base_port, then attention and expert nodes
  int http_port = 8080;      // gateway HTTP port; 0: HTTP off
  int threads_per_node = 0;  // threads of each node; 0 = all hardware threads
};
absl::StatusOr<ClusterConfig> MakeLocalClusterConfig(const LocalClusterOptions& options);

}  // namespace afd
