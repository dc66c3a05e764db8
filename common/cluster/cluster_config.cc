// cluster.yaml parsing, validation, serialization and generation (see cluster_config.h).
#include "common/cluster/cluster_config.h"

#include <algorithm>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/kv_dtype.h"
#include "common/status.h"
#include "yaml-cpp/yaml.h"

namespace afd {
namespace {

// Where a value came from, for messages: "cluster.yaml:12: expert_nodes[1].threads: ...".
absl::Status Error(const std::string& source, const YAML::Node& node, const std::string& path,
                   absl::string_view why) {
  const int line = node.Mark().line;  // -1 when yaml-cpp does not know
  return absl::InvalidArgumentError(absl::StrCat(
      source, line >= 0 ? absl::StrCat(":", line + 1) : std::string(), ": ", path, ": ", why));
}

std::string Join(const std::string& path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  absl::Status ExpectMap(const YAML::Node& node, const std::string& path,
                         std::initializer_list<const char*> keys) const {
    if (!node.IsMap()) return Error(source_, node, path, "expected a mapping of keys");
    for (const auto& kv : node) {
      const std::string key = kv.first.Scalar();
      bool known = false;
      for (const char* k : keys) known = known || key == k;
      if (!known) {
        return Error(
            source_, kv.first, Join(path, key),
            absl::StrCat("unknown key (expected one of: ", absl::StrJoin(keys, ", "), ")"));
      }
    }
    return absl::OkStatus();
  }

  // Leaves *out unchanged when the key is absent or null.
  absl::Status String(const YAML::Node& map, const char* key, const std::string& path,
                      std::string* out) const {
    const YAML::Node node = map[key];
    if (!node.IsDefined() || node.IsNull()) return absl::OkStatus();
    if (!node.IsScalar()) return Error(source_, node, Join(path, key), "expected a string");
    *out = node.Scalar();
    return absl::OkStatus();
  }

  absl::Status Int(const YAML::Node& map, const char* key, const std::string& path, int* out,
                   int min_value, int max_value = 1 << 30) const {
    const YAML::Node node = map[key];
    if (!node.IsDefined() || node.IsNull()) return absl::OkStatus();
    int value = 0;
    if (!node.IsScalar() || !absl::SimpleAtoi(node.Scalar(), &value)) {
      return Error(source_, node, Join(path, key),
                   absl::StrCat("expected an integer, got \"", node.Scalar(), "\""));
    }
    if (value < min_value || value > max_value) {
      return Error(source_, node, Join(path, key),
                   absl::StrCat(value, " is outside [", min_value, ", ", max_value, "]"));
    }
    *out = value;
    return absl::OkStatus();
  }

  absl::Status Node(const YAML::Node& yaml, const std::string& path, NodeConfig* node) const {
    RETURN_IF_ERROR(String(yaml, "name", path, &node->name));
    RETURN_IF_ERROR(String(yaml, "address", path, &node->address));
    RETURN_IF_ERROR(String(yaml, "listen", path, &node->listen));
    RETURN_IF_ERROR(Int(yaml, "threads", path, &node->threads, 0, 4096));
    if (node->name.empty()) return Error(source_, yaml, Join(path, "name"), "missing");
    for (char c : node->name) {
      if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.') {
        return Error(source_, yaml["name"], Join(path, "name"),
                     absl::StrCat("\"", node->name, "\" may hold only letters, digits, -, _, ."));
      }
    }
    if (node->address.empty()) return Error(source_, yaml, Join(path, "address"), "missing");
    absl::Status s = ValidateAddress(node->address, /*allow_port_zero=*/false);
    if (!s.ok()) return Error(source_, yaml["address"], Join(path, "address"), s.message());
    if (!node->listen.empty()) {
      s = ValidateAddress(node->listen, /*allow_port_zero=*/true);
      if (!s.ok()) return Error(source_, yaml["listen"], Join(path, "listen"), s.message());
    }
    return absl::OkStatus();
  }

  absl::Status Experts(const YAML::Node& yaml, const std::string& path, ExpertSpec* spec) const {
    const YAML::Node node = yaml["experts"];
    if (!node.IsDefined() || node.IsNull()) return absl::OkStatus();
    std::string text;
    if (node.IsScalar()) {
      text = node.Scalar();
    } else if (node.IsSequence()) {
      std::vector<std::string> parts;
      for (const auto& item : node) {
        if (!item.IsScalar()) {
          return Error(source_, item, Join(path, "experts"), "expected spec strings");
        }
        parts.push_back(item.Scalar());
      }
      text = absl::StrJoin(parts, ";");
    } else {
      return Error(source_, node, Join(path, "experts"),
                   "expected a spec string (\"0-63\", \"0-2:0-7;3:all\") or a list of them");
    }
    absl::StatusOr<ExpertSpec> parsed = ParseExpertSpec(text);
    if (!parsed.ok()) return Error(source_, node, Join(path, "experts"), parsed.status().message());
    *spec = *std::move(parsed);
    return absl::OkStatus();
  }

  template <typename T, typename Fn>
  absl::Status List(const YAML::Node& root, const char* key, std::vector<T>* out, Fn fn) const {
    const YAML::Node node = root[key];
    if (!node.IsDefined() || node.IsNull()) return absl::OkStatus();
    if (!node.IsSequence()) return Error(source_, node, key, "expected a list of nodes");
    for (size_t i = 0; i < node.size(); ++i) {
      T item;
      RETURN_IF_ERROR(fn(node[i], absl::StrCat(key, "[", i, "]"), &item));
      out->push_back(std::move(item));
    }
    return absl::OkStatus();
  }

  const std::string& source() const { return source_; }

 private:
  std::string source_;
};

absl::Status ParseRoot(const Reader& r, const YAML::Node& root, ClusterConfig* config) {
  if (!root.IsDefined() || root.IsNull()) {
    return absl::InvalidArgumentError(absl::StrCat(r.source(), ": empty cluster config"));
  }
  RETURN_IF_ERROR(r.ExpectMap(
      root, "",
      {"model", "limits", "deadlines", "tls", "gateways", "attention_nodes", "expert_nodes"}));
  RETURN_IF_ERROR(r.String(root, "model", "", &config->model_dir));

  if (const YAML::Node n = root["limits"]; n.IsDefined() && !n.IsNull()) {
    RETURN_IF_ERROR(r.ExpectMap(
        n, "limits",
        {"max_sequences", "kv_blocks", "kv_block_tokens", "max_prompt_tokens", "max_new_tokens",
         "max_batch_tokens", "micro_batches", "min_micro_batch_tokens", "max_queue_depth",
         "min_tile_prompt_tokens", "replica_choice", "kv_cache_dtype"}));
    LimitsConfig& l = config->limits;
    RETURN_IF_ERROR(r.Int(n, "max_sequences", "limits", &l.max_sequences, 1));
    RETURN_IF_ERROR(r.Int(n, "kv_blocks", "limits", &l.kv_blocks, 1));
    RETURN_IF_ERROR(r.Int(n, "kv_block_tokens", "limits", &l.kv_block_tokens, 1, 4096));
    RETURN_IF_ERROR(r.Int(n, "max_prompt_tokens", "limits", &l.max_prompt_tokens, 0));
    RETURN_IF_ERROR(r.Int(n, "max_new_tokens", "limits", &l.max_new_tokens, 1));
    RETURN_IF_ERROR(r.Int(n, "max_batch_tokens", "limits", &l.max_batch_tokens, 1));
    RETURN_IF_ERROR(r.Int(n, "micro_batches", "limits", &l.micro_batches, 1, 64));
    RETURN_IF_ERROR(r.Int(n, "min_micro_batch_tokens", "limits", &l.min_micro_batch_tokens, 1));
    RETURN_IF_ERROR(r.Int(n, "max_queue_depth", "limits", &l.max_queue_depth, 0));
    RETURN_IF_ERROR(r.Int(n, "min_tile_prompt_tokens", "limits", &l.min_tile_prompt_tokens, 0));
    RETURN_IF_ERROR(r.String(n, "replica_choice", "limits", &l.replica_choice));
    if (l.replica_choice != "spread" && l.replica_choice != "pack") {
      return Error(r.source(), n["replica_choice"], "limits.replica_choice",
                   absl::StrCat("\"", l.replica_choice, "\" is not spread or pack"));
    }
    RETURN_IF_ERROR(r.String(n, "kv_cache_dtype", "limits", &l.kv_cache_dtype));
    if (!ParseKvDtype(l.kv_cache_dtype).ok()) {
      return Error(
          r.source(), n["kv_cache_dtype"], "limits.kv_cache_dtype",
          absl::StrCat("\"", l.kv_cache_dtype, "\" is not float32 (fp32) or bfloat16 (bf16)"));
    }
  }
  if (const YAML::Node n = root["deadlines"]; n.IsDefined() && !n.IsNull()) {
    RETURN_IF_ERROR(r.ExpectMap(n, "deadlines",
                                {"expert_call_ms", "reconnect_initial_backoff_ms",
                                 "reconnect_max_backoff_ms", "startup_timeout_ms"}));
    DeadlinesConfig& d = config->deadlines;
    RETURN_IF_ERROR(r.Int(n, "expert_call_ms", "deadlines", &d.expert_call_ms, 1));
    RETURN_IF_ERROR(
        r.Int(n, "reconnect_initial_backoff_ms", "deadlines", &d.reconnect_initial_backoff_ms, 1));
    RETURN_IF_ERROR(
        r.Int(n, "reconnect_max_backoff_ms", "deadlines", &d.reconnect_max_backoff_ms, 1));
    RETURN_IF_ERROR(r.Int(n, "startup_timeout_ms", "deadlines", &d.startup_timeout_ms, 1));
    if (d.reconnect_max_backoff_ms < d.reconnect_initial_backoff_ms) {
      return Error(r.source(), n, "deadlines.reconnect_max_backoff_ms",
                   "must not be below reconnect_initial_backoff_ms");
    }
  }
  if (const YAML::Node n = root["tls"]; n.IsDefined() && !n.IsNull()) {
    RETURN_IF_ERROR(r.ExpectMap(n, "tls", {"cert_file", "key_file", "ca_file"}));
    RETURN_IF_ERROR(r.String(n, "cert_file", "tls", &config->tls.cert_file));
    RETURN_IF_ERROR(r.String(n, "key_file", "tls", &config->tls.key_file));
    RETURN_IF_ERROR(r.String(n, "ca_file", "tls", &config->tls.ca_file));
    if (config->tls.cert_file.empty() != config->tls.key_file.empty()) {
      return Error(r.source(), n, "tls", "cert_file and key_file go together");
    }
  }

  RETURN_IF_ERROR(r.List(root, "gateways", &config->gateways,
                         [&](const YAML::Node& y, const std::string& path, GatewayConfig* g) {
                           RETURN_IF_ERROR(r.ExpectMap(
                               y, path, {"name", "address", "listen", "threads", "http_listen"}));
                           RETURN_IF_ERROR(r.Node(y, path, &g->node));
                           RETURN_IF_ERROR(r.String(y, "http_listen", path, &g->http_listen));
                           if (g->http_listen.empty()) return absl::OkStatus();
                           absl::Status s = ValidateAddress(g->http_listen, true);
                           if (s.ok() && absl::StartsWith(g->http_listen, "unix")) {
                             s = absl::InvalidArgumentError("must be host:port");
                           }
                           if (!s.ok()) {
                             return Error(r.source(), y["http_listen"], Join(path, "http_listen"),
                                          s.message());
                           }
                           return absl::OkStatus();
                         }));
  RETURN_IF_ERROR(
      r.List(root, "attention_nodes", &config->attention_nodes,
             [&](const YAML::Node& y, const std::string& path, AttentionNodeConfig* a) {
               RETURN_IF_ERROR(r.ExpectMap(y, path, {"name", "address", "listen", "threads"}));
               return r.Node(y, path, &a->node);
             }));
  RETURN_IF_ERROR(r.List(
      root, "expert_nodes", &config->expert_nodes,
      [&](const YAML::Node& y, const std::string& path, ExpertNodeConfig* e) {
        RETURN_IF_ERROR(r.ExpectMap(y, path, {"name", "address", "listen", "threads", "experts"}));
        RETURN_IF_ERROR(r.Node(y, path, &e->node));
        return r.Experts(y, path, &e->experts);
      }));

  // Names and addresses are unique across all kinds.
  std::set<std::string> names, addresses;
  std::vector<const NodeConfig*> all;
  for (const auto& g : config->gateways) all.push_back(&g.node);
  for (const auto& a : config->attention_nodes) all.push_back(&a.node);
  for (const auto& e : config->expert_nodes) all.push_back(&e.node);
  for (const NodeConfig* node : all) {
    if (!names.insert(node->name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(r.source(), ": node name \"", node->name, "\" is used twice"));
    }
    if (!addresses.insert(node->address).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(r.source(), ": address \"", node->address, "\" is used by two nodes"));
    }
  }
  return absl::OkStatus();
}

// "host:port" -> port digits, after stripping URI schemes; empty when there is none.
absl::string_view PortOf(absl::string_view address) {
  for (absl::string_view scheme : {"dns:///", "dns:", "ipv4:", "ipv6:"}) {
    if (absl::ConsumePrefix(&address, scheme)) break;
  }
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return {};
  return address.substr(colon + 1);
}

void EmitNode(YAML::Emitter& out, const NodeConfig& node) {
  out << YAML::Key << "name" << YAML::Value << node.name;
  out << YAML::Key << "address" << YAML::Value << node.address;
  if (!node.listen.empty()) out << YAML::Key << "listen" << YAML::Value << node.listen;
  out << YAML::Key << "threads" << YAML::Value << node.threads;
}

}  // namespace

const ExpertNodeConfig* ClusterConfig::FindExpertNode(absl::string_view name) const {
  for (const auto& n : expert_nodes) {
    if (n.node.name == name) return &n;
  }
  return nullptr;
}

const AttentionNodeConfig* ClusterConfig::FindAttentionNode(absl::string_view name) const {
  for (const auto& n : attention_nodes) {
    if (n.node.name == name) return &n;
  }
  return nullptr;
}

const GatewayConfig* ClusterConfig::FindGateway(absl::string_view name) const {
  for (const auto& n : gateways) {
    if (n.node.name == name) return &n;
  }
  return nullptr;
}

absl::StatusOr<ClusterConfig> ParseClusterConfig(const std::string& yaml_text,
                                                 const std::string& source) {
  ClusterConfig config;
  Reader reader(source);
  // yaml-cpp reports syntax and conversion errors by throwing; this is the only place they
  // are caught, and they leave as INVALID_ARGUMENT with the position.
  try {
    const YAML::Node root = YAML::Load(yaml_text);
    RETURN_IF_ERROR(ParseRoot(reader, root, &config));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, e.mark.is_null() ? std::string() : absl::StrCat(":", e.mark.line + 1),
                     ": ", e.msg));
  }
  return config;
}

absl::StatusOr<ClusterConfig> LoadClusterConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read the cluster config"));
  std::stringstream text;
  text << in.rdbuf();
  return ParseClusterConfig(text.str(), path);
}

std::string ClusterConfigToYaml(const ClusterConfig& config) {
  const LimitsConfig& l = config.limits;
  const DeadlinesConfig& d = config.deadlines;
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "model" << YAML::Value << config.model_dir;
  out << YAML::Key << "limits" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "max_sequences" << YAML::Value << l.max_sequences;
  out << YAML::Key << "kv_blocks" << YAML::Value << l.kv_blocks;
  out << YAML::Key << "kv_block_tokens" << YAML::Value << l.kv_block_tokens;
  out << YAML::Key << "max_prompt_tokens" << YAML::Value << l.max_prompt_tokens;
  out << YAML::Key << "max_new_tokens" << YAML::Value << l.max_new_tokens;
  out << YAML::Key << "max_batch_tokens" << YAML::Value << l.max_batch_tokens;
  out << YAML::Key << "micro_batches" << YAML::Value << l.micro_batches;
  out << YAML::Key << "min_micro_batch_tokens" << YAML::Value << l.min_micro_batch_tokens;
  out << YAML::Key << "max_queue_depth" << YAML::Value << l.max_queue_depth;
  out << YAML::Key << "min_tile_prompt_tokens" << YAML::Value << l.min_tile_prompt_tokens;
  out << YAML::Key << "replica_choice" << YAML::Value << l.replica_choice;
  out << YAML::Key << "kv_cache_dtype" << YAML::Value << l.kv_cache_dtype;
  out << YAML::EndMap;
  out << YAML::Key << "deadlines" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "expert_call_ms" << YAML::Value << d.expert_call_ms;
  out << YAML::Key << "reconnect_initial_backoff_ms" << YAML::Value
      << d.reconnect_initial_backoff_ms;
  out << YAML::Key << "reconnect_max_backoff_ms" << YAML::Value << d.reconnect_max_backoff_ms;
  out << YAML::Key << "startup_timeout_ms" << YAML::Value << d.startup_timeout_ms;
  out << YAML::EndMap;
  if (config.tls.enabled() || !config.tls.key_file.empty()) {
    out << YAML::Key << "tls" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "cert_file" << YAML::Value << config.tls.cert_file;
    out << YAML::Key << "key_file" << YAML::Value << config.tls.key_file;
    out << YAML::Key << "ca_file" << YAML::Value << config.tls.ca_file;
    out << YAML::EndMap;
  }
  out << YAML::Key << "gateways" << YAML::Value << YAML::BeginSeq;
  for (const auto& g : config.gateways) {
    out << YAML::BeginMap;
    EmitNode(out, g.node);
    if (!g.http_listen.empty()) out << YAML::Key << "http_listen" << YAML::Value << g.http_listen;
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::Key << "attention_nodes" << YAML::Value << YAML::BeginSeq;
  for (const auto& a : config.attention_nodes) {
    out << YAML::BeginMap;
    EmitNode(out, a.node);
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::Key << "expert_nodes" << YAML::Value << YAML::BeginSeq;
  for (const auto& e : config.expert_nodes) {
    out << YAML::BeginMap;
    EmitNode(out, e.node);
    out << YAML::Key << "experts" << YAML::Value << YAML::DoubleQuoted
        << FormatExpertSpec(e.experts);
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

absl::Status ValidateAddress(absl::string_view address, bool allow_port_zero) {
  for (absl::string_view scheme : {"unix:", "unix-abstract:"}) {
    if (absl::StartsWith(address, scheme)) {
      if (address.size() == scheme.size()) {
        return absl::InvalidArgumentError(absl::StrCat("\"", address, "\" has no socket path"));
      }
      return absl::OkStatus();
    }
  }
  absl::string_view rest = address;
  for (absl::string_view scheme : {"dns:///", "dns:", "ipv4:", "ipv6:"}) {
    if (absl::ConsumePrefix(&rest, scheme)) break;
  }
  const size_t colon = rest.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", address, "\" is not host:port or unix:/path"));
  }
  const absl::string_view host = rest.substr(0, colon);
  if (host.find(':') != absl::string_view::npos && !(host.front() == '[' && host.back() == ']')) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", address, "\": IPv6 hosts go in brackets, e.g. [::1]:50051"));
  }
  int port = -1;
  const absl::string_view port_text = rest.substr(colon + 1);
  if (port_text.empty() || !absl::SimpleAtoi(port_text, &port) || port < 0 || port > 65535 ||
      (port == 0 && !allow_port_zero)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", address, "\": port \"", port_text,
                                                   "\" is not in ", allow_port_zero ? 0 : 1,
                                                   "-65535"));
  }
  return absl::OkStatus();
}

std::string ListenAddress(const NodeConfig& node) {
  if (!node.listen.empty()) return node.listen;
  if (absl::StartsWith(node.address, "unix")) return node.address;
  return absl::StrCat("[::]:", PortOf(node.address));
}

absl::StatusOr<std::vector<ExpertSpec>> GenerateExpertPlacement(int num_experts, int num_nodes,
                                                                int replicas) {
  if (replicas < 1 || num_nodes < replicas || num_experts < num_nodes) {
    return absl::InvalidArgumentError(absl::StrCat("expert placement: need 1 <= replicas (",
                                                   replicas, ") <= expert nodes (", num_nodes,
                                                   ") <= experts per layer (", num_experts, ")"));
  }
  // Chunk c = experts [c*E/N, (c+1)*E/N).
  auto chunk_begin = [&](int c) { return static_cast<int>(int64_t{c} * num_experts / num_nodes); };
  std::vector<ExpertSpec> specs(num_nodes);
  for (int n = 0; n < num_nodes; ++n) {
    std::vector<int> chunks;
    for (int r = 0; r < replicas; ++r) chunks.push_back((n + r) % num_nodes);
    std::sort(chunks.begin(), chunks.end());
    ExpertSpecEntry entry;
    entry.layers.all = true;
    if (replicas == num_nodes) {
      entry.experts.all = true;
    } else {
      for (int c : chunks) {
        const int first = chunk_begin(c), last = chunk_begin(c + 1) - 1;
        if (!entry.experts.ranges.empty() && entry.experts.ranges.back().second + 1 == first) {
          entry.experts.ranges.back().second = last;
        } else {
          entry.experts.ranges.emplace_back(first, last);
        }
      }
    }
    specs[n].entries.push_back(std::move(entry));
  }
  return specs;
}

absl::StatusOr<ClusterConfig> MakeLocalClusterConfig(const LocalClusterOptions& options) {
  ASSIGN_OR_RETURN(
      std::vector<ExpertSpec> specs,
      GenerateExpertPlacement(options.num_experts, options.num_expert_nodes, options.replicas));
  if (options.num_attention_nodes < 1) {
    return absl::InvalidArgumentError("local cluster: need at least one attention node");
  }
  ClusterConfig config;
  config.model_dir = options.model_dir;
  int next_port = options.base_port;
  auto address = [&](const std::string& name) {
    if (!options.socket_dir.empty()) {
      return absl::StrCat("unix:", options.socket_dir, "/", name, ".sock");
    }
    return absl::StrCat("127.0.0.1:", next_port++);
  };
  GatewayConfig gateway;
  gateway.node = {"gw0", address("gw0"), "", options.threads_per_node};
  if (options.http_port > 0) gateway.http_listen = absl::StrCat("127.0.0.1:", options.http_port);
  config.gateways.push_back(gateway);
  for (int i = 0; i < options.num_attention_nodes; ++i) {
    const std::string name = absl::StrCat("attn", i);
    AttentionNodeConfig attention;
    attention.node = {name, address(name), "", options.threads_per_node};
    config.attention_nodes.push_back(attention);
  }
  for (int i = 0; i < options.num_expert_nodes; ++i) {
    const std::string name = absl::StrCat("expert", i);
    ExpertNodeConfig expert;
    expert.node = {name, address(name), "", options.threads_per_node};
    expert.experts = specs[i];
    config.expert_nodes.push_back(expert);
  }
  if (options.socket_dir.empty() && (options.base_port < 1 || next_port - 1 > 65535)) {
    return absl::InvalidArgumentError(absl::StrCat("local cluster: ports ", options.base_port, "-",
                                                   next_port - 1, " are not all valid"));
  }
  return config;
}

}  // namespace afd
