// afd-attention-node: serves the afd.v1.AttentionNode gRPC service for one attention node of
// cluster.yaml (or a standalone one with --model): binds first (liveness SERVING, readiness
// NOT_SERVING), loads the dense weights (embedding, attention, norms, routers, lm_head; expert
// tensors are never read here), connects to the cluster's expert nodes (one RemoteExpertBackend
// per micro-batch lane; all experts in process when the cluster has no expert node), waits for
// them up to the startup timeout, then reports ready. SIGINT/SIGTERM stop it cleanly.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "attention_node/in_process_expert_backend.h"
#include "attention_node/kv_cache.h"
#include "attention_node/model_weights.h"
#include "attention_node/service/attention_node_service.h"
#include "attention_node/service/scheduler.h"
#include "common/cluster/cluster_config.h"
#include "common/kernels/thread_pool.h"
#include "common/model_config.h"
#include "common/rpc/node_bootstrap.h"
#include "common/rpc/server.h"
#include "common/safetensors.h"
#include "common/weights.h"
#include "expert_node/client/remote_expert_backend.h"

namespace {

void Usage(FILE* f) {
  std::fprintf(
      f,
      "usage: afd-attention-node --config cluster.yaml --node NAME [overrides]\n"
      "       afd-attention-node --model DIR --port N [overrides]\n\n"
      "Serves one attention node (afd.v1.AttentionNode over gRPC): KV cache, dense weights,\n"
      "continuous batching and sampling; the experts run on the cluster's expert nodes (in\n"
      "this process when the cluster has none).\n"
      "  --config FILE          cluster.yaml naming the nodes, limits, deadlines and TLS files\n"
      "  --node NAME            which attention node of the config this process is\n"
      "  --model DIR            checkpoint directory (overrides the config's `model`)\n"
      "  --port N               listen on [::]:N (0 = any free port, printed at start)\n"
      "  --listen ADDR          listen address, e.g. 127.0.0.1:50051 or unix:/tmp/a0.sock\n"
      "  --threads N            compute threads per micro-batch lane (default: config, else\n"
      "                         all cores)\n"
      "  --kv-blocks N          KV cache blocks (default: limits.kv_blocks)\n"
      "  --max-sequences N      sequences in the cache at once (default: limits.max_sequences)\n"
      "  --max-batch-tokens N   tokens per engine step (default: limits.max_batch_tokens)\n"
      "  --micro-batches N      micro-batches per step (default: limits.micro_batches)\n"
      "  --in-process-experts   run every expert in this process even if the config lists\n"
      "                         expert nodes\n");
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "afd-attention-node: %s\n", message.c_str());
  return 1;
}

// Bytes of the dense weights the forward pass reads (projections, router, norms, lm_head; the
// embedding table is counted too, though only the rows of the tokens seen are touched).
size_t DenseWeightBytes(const afd::attention::ModelWeights& w) {
  const afd::ModelConfig& c = w.config();
  size_t bytes = w.lm_head().Bytes() + w.embedding().Bytes() + w.final_norm().size() * 4;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const afd::attention::LayerWeights& layer = w.layer(l);
    for (const afd::kernels::WeightView* v :
         {&layer.full.q_proj, &layer.full.k_proj, &layer.full.v_proj, &layer.full.o_proj,
          &layer.lightning.qkv_proj, &layer.lightning.output_gate, &layer.lightning.out_proj,
          &layer.router}) {
      if (v->data != nullptr) bytes += v->Bytes();
    }
    bytes +=
        4 * (layer.input_norm.size() + layer.post_norm.size() + layer.router_bias.size() +
             layer.full.q_norm.size() + layer.full.k_norm.size() + layer.lightning.norm.size());
  }
  return bytes;
}

// Bytes of the paged K/V pools the cache allocates (keys and values of every full-attention
// layer, `element_bytes` each); lightning states are per sequence and small.
size_t KvBudgetBytes(const afd::ModelConfig& c, const afd::LimitsConfig& limits,
                     int element_bytes) {
  size_t full_layers = 0;
  for (int l = 0; l < c.num_hidden_layers; ++l) full_layers += c.IsLinearLayer(l) ? 0 : 1;
  return 2 * static_cast<size_t>(element_bytes) * full_layers *
         static_cast<size_t>(limits.kv_blocks) * limits.kv_block_tokens * c.num_key_value_heads *
         c.head_dim;
}

}  // namespace

int main(int argc, char** argv) {
  afd::rpc::NodeFlags args;
  int threads = -1, kv_blocks = -1, max_sequences = -1, max_batch_tokens = -1, micro_batches = -1;
  bool in_process = false;
  afd::rpc::FlagReader flags("afd-attention-node", argc, argv, Usage);
  while (flags.Next()) {
    if (args.Parse(flags)) {
    } else if (flags.Is("--threads")) {
      flags.Int(&threads, 0);
    } else if (flags.Is("--kv-blocks")) {
      flags.Int(&kv_blocks, 1);
    } else if (flags.Is("--max-sequences")) {
      flags.Int(&max_sequences, 1);
    } else if (flags.Is("--max-batch-tokens")) {
      flags.Int(&max_batch_tokens, 1);
    } else if (flags.Is("--micro-batches")) {
      flags.Int(&micro_batches, 1);
    } else if (flags.Is("--in-process-experts")) {
      in_process = true;
    } else {
      flags.Unknown();
    }
  }

  // Flags -> settings: the config's entry, then the overrides.
  afd::ClusterConfig cluster;
  const afd::NodeConfig* entry = nullptr;
  if (!args.config_path.empty()) {
    absl::StatusOr<const afd::AttentionNodeConfig*> node =
        afd::rpc::LoadNodeEntry(&args, &afd::ClusterConfig::FindAttentionNode,
                                &afd::ClusterConfig::attention_nodes, "attention node", &cluster);
    if (!node.ok()) return Fail(std::string(node.status().message()));
    entry = &(*node)->node;
  } else if (args.node_name.empty()) {
    args.node_name = "attention";
  }
  if (args.model_dir.empty()) return Fail("no model: pass --model DIR or a --config with `model`");
  absl::StatusOr<afd::rpc::NodeListen> resolved =
      afd::rpc::ResolveNodeListen(entry, args.listen, args.port, threads);
  if (!resolved.ok()) return Fail(std::string(resolved.status().message()));
  args.listen = resolved->listen;
  const int node_threads = resolved->threads;
  afd::LimitsConfig& limits = cluster.limits;
  if (kv_blocks > 0) limits.kv_blocks = kv_blocks;
  if (max_sequences > 0) limits.max_sequences = max_sequences;
  if (max_batch_tokens > 0) limits.max_batch_tokens = max_batch_tokens;
  if (micro_batches > 0) limits.micro_batches = micro_batches;
  const bool remote = !in_process && !cluster.expert_nodes.empty();

  // SIGINT/SIGTERM are taken by Wait below; blocked before gRPC starts its threads.
  afd::rpc::StopSignals stop_signals;

  afd::attention::AttentionNodeService service(args.node_name);
  const std::string service_name = afd::v1::AttentionNode::service_full_name();
  absl::StatusOr<std::unique_ptr<afd::rpc::NodeServer>> server =
      afd::rpc::NodeServer::Start({args.listen, cluster.tls}, {{service_name, &service}});
  if (!server.ok()) return Fail(std::string(server.status().message()));
  std::printf("afd-attention-node: %s listening on %s port %d (loading %s)\n",
              args.node_name.c_str(), args.listen.c_str(), (*server)->port(),
              args.model_dir.c_str());
  std::fflush(stdout);
  auto fail_loading = [&](const absl::Status& s) {
    (*server)->Shutdown(absl::ZeroDuration());
    return Fail(absl::StrCat(args.node_name, ": ", s.message()));
  };

  // Dense weights only: ModelWeights views the non-expert tensors of the mapped checkpoint.
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<afd::ModelConfig> config = afd::LoadModelConfig(args.model_dir);
  if (!config.ok()) return fail_loading(config.status());
  absl::StatusOr<std::unique_ptr<afd::Checkpoint>> checkpoint =
      afd::Checkpoint::Open(args.model_dir);
  if (!checkpoint.ok()) return fail_loading(checkpoint.status());
  if (absl::Status s = afd::ValidateCheckpoint(*config, **checkpoint); !s.ok()) {
    return fail_loading(s);
  }
  absl::StatusOr<std::unique_ptr<afd::attention::ModelWeights>> weights =
      afd::attention::ModelWeights::Load(*config, **checkpoint);
  if (!weights.ok()) return fail_loading(weights.status());
  afd::attention::KvCacheOptions cache_options;
  cache_options.num_blocks = limits.kv_blocks;
  cache_options.block_size = limits.kv_block_tokens;
  cache_options.max_sequences = limits.max_sequences;
  absl::StatusOr<afd::attention::KvDtype> kv_dtype =
      afd::attention::ParseKvDtype(limits.kv_cache_dtype);
  if (!kv_dtype.ok()) return fail_loading(kv_dtype.status());
  cache_options.dtype = *kv_dtype;
  absl::StatusOr<std::unique_ptr<afd::attention::KvCache>> cache =
      afd::attention::KvCache::Create(*config, cache_options);
  if (!cache.ok()) return fail_loading(cache.status());

  // One lane per micro-batch in flight when the experts are remote; one lane in process.
  const int num_lanes = remote ? limits.micro_batches : 1;
  std::vector<std::unique_ptr<afd::kernels::ThreadPool>> pools;
  std::vector<std::unique_ptr<afd::attention::ExpertBackend>> backends;
  std::vector<afd::attention::SchedulerLane> lanes;
  for (int i = 0; i < num_lanes; ++i) {
    pools.push_back(std::make_unique<afd::kernels::ThreadPool>(node_threads));
    if (remote) {
      absl::StatusOr<std::unique_ptr<afd::attention::RemoteExpertBackend>> backend =
          afd::attention::RemoteExpertBackend::Create(*config, cluster);
      if (!backend.ok()) return fail_loading(backend.status());
      backends.push_back(std::move(*backend));
    } else {
      absl::StatusOr<std::unique_ptr<afd::attention::InProcessExpertBackend>> backend =
          afd::attention::InProcessExpertBackend::Create(*config, **checkpoint, pools.back().get());
      if (!backend.ok()) return fail_loading(backend.status());
      backends.push_back(std::move(*backend));
    }
    lanes.push_back({backends.back().get(), pools.back().get()});
  }
  if (remote) {
    std::printf("afd-attention-node: %s waiting up to %d ms for %zu expert nodes\n",
                args.node_name.c_str(), cluster.deadlines.startup_timeout_ms,
                cluster.expert_nodes.size());
    std::fflush(stdout);
    const absl::Time deadline =
        absl::Now() + absl::Milliseconds(cluster.deadlines.startup_timeout_ms);
    for (auto& backend : backends) {
      auto* r = static_cast<afd::attention::RemoteExpertBackend*>(backend.get());
      if (absl::Status s = r->WaitForNodes(deadline - absl::Now()); !s.ok()) {
        return fail_loading(s);
      }
    }
  }
  afd::attention::SchedulerOptions options;
  options.max_prompt_tokens = limits.max_prompt_tokens;
  options.max_new_tokens = limits.max_new_tokens;
  options.max_batch_tokens = limits.max_batch_tokens;
  options.micro_batches = limits.micro_batches;
  options.min_micro_batch_tokens = limits.min_micro_batch_tokens;
  options.max_queue_depth = limits.max_queue_depth;
  options.min_tile_prompt_tokens = limits.min_tile_prompt_tokens;
  absl::StatusOr<std::unique_ptr<afd::attention::Scheduler>> scheduler =
      afd::attention::Scheduler::Create(weights->get(), cache->get(), lanes, options);
  if (!scheduler.ok()) return fail_loading(scheduler.status());

  afd::v1::AttentionNodeInfo info;
  info.set_model_type(config->model_type);
  info.set_vocab_size(config->vocab_size);
  info.set_hidden_dim(config->hidden_size);
  info.set_num_layers(config->num_hidden_layers);
  info.set_eos_token_id(config->eos_token_id);
  info.set_max_sequences(limits.max_sequences);
  info.set_max_prompt_tokens(limits.max_prompt_tokens > 0 ? limits.max_prompt_tokens
                                                          : config->max_position_embeddings);
  info.set_kv_block_tokens(limits.kv_block_tokens);
  if (remote) {
    for (const auto& e : cluster.expert_nodes) info.add_expert_nodes(e.node.name);
  }
  service.SetReady(scheduler->get(), info);
  (*server)->SetServing(service_name, true);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t rss = afd::rpc::ResidentBytes();
  const size_t dense = DenseWeightBytes(**weights);
  const size_t kv = KvBudgetBytes(*config, limits, afd::attention::KvDtypeBytes(*kv_dtype));
  std::printf(
      "afd-attention-node: %s ready: %s, %d layers, experts %s, %d kv blocks of %d "
      "tokens (%s), %d micro-batch lane(s) x %d threads, ready in %.2f s; resident %.1f MiB = "
      "%.3fx (dense weights %.1f MiB + kv budget %.1f MiB)\n",
      args.node_name.c_str(), config->model_type.c_str(), config->num_hidden_layers,
      remote ? absl::StrCat("on ", cluster.expert_nodes.size(), " expert nodes (replica choice ",
                            cluster.limits.replica_choice, ")")
                   .c_str()
             : "in process",
      limits.kv_blocks, limits.kv_block_tokens, afd::attention::KvDtypeName(*kv_dtype), num_lanes,
      node_threads, seconds, rss / 1048576.0,
      static_cast<double>(rss) / static_cast<double>(dense + kv), dense / 1048576.0,
      kv / 1048576.0);
  std::fflush(stdout);

  const int signal_number = stop_signals.Wait();
  std::printf("afd-attention-node: %s stopping (signal %d)\n", args.node_name.c_str(),
              signal_number);
  std::fflush(stdout);
  (*scheduler)->Shutdown();
  (*server)->Shutdown(absl::Seconds(1));
  (*server)->Wait();
  return 0;
}
