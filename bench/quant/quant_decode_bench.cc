// Decode throughput at batch 1 of quantized checkpoints (AWQ int4, MLX affine) against the
// memory-bandwidth roofline, next to llama.cpp Q4_K_M on the same architecture.
//
// Run (Release build; quiet machine: the numbers are meaningless while other processes load the
// cores or the memory bus, so check the load average it prints first):
//   build/bin/afd-gen-checkpoint --preset m2-perf --out models/m2-perf-awq --quant awq
//   build/bin/afd-gen-checkpoint --preset m2-perf --out models/m2-perf-mlx4 --quant mlx --bits 4
//   build/bin/quant_decode_bench --model models/m2-perf-awq --model models/m2-perf-mlx4
//       [--model models/m2-perf-bf16] [--threads 2] [--tokens 64] [--prompt 128] [--runs 3]
// For each model: the in-process engine (every expert local) prefills a `prompt`-token prompt,
// then decodes `tokens` tokens greedily one at a time; reported are the prefill tokens/s, the
// decode tokens/s (best and median run), the bytes of weights one decode token reads (packed
// codes + scales + zero points / biases of the attention projections, the router, the lm_head,
// one embedding row, and top-k experts per layer), the read bandwidth of this machine measured
// with the same thread count, and the fraction of the roofline (bandwidth / bytes per token).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "attention_node/engine.h"
#include "attention_node/in_process_expert_backend.h"
#include "attention_node/kv_cache.h"
#include "attention_node/model_weights.h"
#include "bench/common/machine_limits.h"
#include "common/expert_ffn.h"
#include "common/kernels/thread_pool.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "common/weights.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr double kLlamaCppDecode = 81.9;    // tok/s, llama.cpp Q4_K_M, this machine kind, 2 threads
constexpr double kLlamaCppPrefill = 200.0;  // tok/s, same

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

const char* TypeName(afd::kernels::WeightType t) {
  switch (t) {
    case afd::kernels::WeightType::kF32:
      return "f32";
    case afd::kernels::WeightType::kBF16:
      return "bf16";
    case afd::kernels::WeightType::kF16:
      return "f16";
    case afd::kernels::WeightType::kFp8E4M3:
      return "fp8";
    case afd::kernels::WeightType::kAwqInt4:
      return "awq4";
    case afd::kernels::WeightType::kMlxAffine:
      return "mlx";
  }
  return "?";
}

struct Result {
  std::string model, experts_type;
  double bytes_per_token = 0;
  double prefill_tps = 0;
  double decode_best = 0, decode_median = 0;
};

int Bench(const std::string& dir, int threads, int tokens, int prompt_len, int runs,
          afd::kernels::ThreadPool& pool, Result* result) {
  using namespace afd;
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt =
      config.ok() ? Checkpoint::Open(dir)
                  : absl::StatusOr<std::unique_ptr<Checkpoint>>(config.status());
  if (!ckpt.ok()) {
    std::fprintf(stderr, "%s: %s\n", dir.c_str(), ckpt.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<attention::ModelWeights>> weights =
      attention::ModelWeights::Load(*config, **ckpt);
  absl::StatusOr<std::unique_ptr<attention::InProcessExpertBackend>> backend =
      weights.ok()
          ? attention::InProcessExpertBackend::Create(*config, **ckpt, &pool)
          : absl::StatusOr<std::unique_ptr<attention::InProcessExpertBackend>>(weights.status());
  if (!backend.ok()) {
    std::fprintf(stderr, "%s: %s\n", dir.c_str(), backend.status().ToString().c_str());
    return 1;
  }
  // Bytes one decode token reads.
  const ModelConfig& c = *config;
  double bytes = (*weights)->lm_head().Bytes();
  bytes += static_cast<double>((*weights)->embedding().Bytes()) / c.vocab_size;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const attention::LayerWeights& lw = (*weights)->layer(l);
    bytes += lw.full.q_proj.Bytes() + lw.full.k_proj.Bytes() + lw.full.v_proj.Bytes() +
             lw.full.o_proj.Bytes() + lw.router.Bytes();
    absl::StatusOr<ExpertWeights> e = LoadExpertWeights(**ckpt, c, l, 0);
    if (!e.ok()) {
      std::fprintf(stderr, "%s: %s\n", dir.c_str(), e.status().ToString().c_str());
      return 1;
    }
    bytes += static_cast<double>(c.num_experts_per_tok) *
             (e->w1.Bytes() + e->w2.Bytes() + e->w3.Bytes());
    if (l == 0) result->experts_type = TypeName(e->w1.type);
  }
  result->model = dir;
  result->bytes_per_token = bytes;

  std::vector<int32_t> prompt(prompt_len);
  for (int i = 0; i < prompt_len; ++i) prompt[i] = (i * 7919 + 13) % c.vocab_size;
  std::vector<double> decode_tps;
  double best_prefill = 0;
  // Run -1 is an untimed warm-up (first touches of weights, caches and buffers).
  for (int run = -1; run < runs; ++run) {
    attention::KvCacheOptions options;
    options.block_size = 16;
    options.max_sequences = 1;
    options.num_blocks = (prompt_len + tokens + 16) / 16 + 1;
    std::unique_ptr<attention::KvCache> cache = attention::KvCache::Create(c, options).value();
    attention::Engine engine(weights->get(), cache.get(), backend->get(), &pool);
    const int seq = cache->AddSequence().value();
    attention::StepOutput out;
    const auto t0 = Clock::now();
    // The prompt as afd-generate runs it: prompt tokens (the matrix tiles where the CPU has
    // them).
    absl::Status s = engine.Step({{seq, prompt, attention::LogitsMode::kLast, prompt_len}}, &out);
    const auto t1 = Clock::now();
    if (!s.ok()) {
      std::fprintf(stderr, "%s: %s\n", dir.c_str(), s.ToString().c_str());
      return 1;
    }
    if (run >= 0) best_prefill = std::max(best_prefill, prompt_len / Seconds(t0, t1));
    int32_t next = static_cast<int32_t>(std::max_element(out.logits.begin(), out.logits.end()) -
                                        out.logits.begin());
    const auto t2 = Clock::now();
    for (int t = 0; t < tokens; ++t) {
      s = engine.Step({{seq, {&next, 1}, attention::LogitsMode::kLast}}, &out);
      if (!s.ok()) {
        std::fprintf(stderr, "%s: %s\n", dir.c_str(), s.ToString().c_str());
        return 1;
      }
      next = static_cast<int32_t>(std::max_element(out.logits.begin(), out.logits.end()) -
                                  out.logits.begin());
    }
    if (run >= 0) decode_tps.push_back(tokens / Seconds(t2, Clock::now()));
  }
  std::sort(decode_tps.begin(), decode_tps.end());
  result->prefill_tps = best_prefill;
  result->decode_best = decode_tps.back();
  result->decode_median = decode_tps[decode_tps.size() / 2];
  (void)threads;
  return 0;
}

void Usage(std::FILE* f) {
  std::fprintf(f,
               "usage: quant_decode_bench --model DIR [--model DIR ...] [--threads T]\n"
               "                          [--tokens N] [--prompt P] [--runs R]\n"
               "Decode tokens/s at batch 1 (in-process engine), bytes of weights per token,\n"
               "the machine's read bandwidth and the roofline fraction, next to llama.cpp\n"
               "Q4_K_M (%.1f tok/s decode, %.0f tok/s prefill, 2 threads, same machine kind).\n",
               kLlamaCppDecode, kLlamaCppPrefill);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> models;
  int threads = 2, tokens = 64, prompt = 128, runs = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "quant_decode_bench: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      Usage(stdout);
      return 0;
    } else if (arg == "--model") {
      models.push_back(value());
    } else if (arg == "--threads") {
      threads = std::atoi(value());
    } else if (arg == "--tokens") {
      tokens = std::atoi(value());
    } else if (arg == "--prompt") {
      prompt = std::atoi(value());
    } else if (arg == "--runs") {
      runs = std::atoi(value());
    } else {
      std::fprintf(stderr, "quant_decode_bench: unknown argument '%s'\n", arg.c_str());
      Usage(stderr);
      return 2;
    }
  }
  if (models.empty() || threads < 1 || tokens < 1 || prompt < 1 || runs < 1) {
    Usage(stderr);
    return 2;
  }
  double load[3] = {0, 0, 0};
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
    std::fclose(f);
  }
  const double bw = afd::bench::MeasureReadBandwidth(threads, 0.3);
  afd::kernels::ThreadPool pool(threads);
  std::printf("threads %d, load average %.2f %.2f %.2f%s\n", threads, load[0], load[1], load[2],
              load[0] > 1.5 ? "  (machine busy: numbers unreliable)" : "");
  std::printf("read bandwidth %.1f GB/s (bench/common MeasureReadBandwidth, %d threads)\n\n", bw,
              threads);
  std::printf("%-34s %-6s %9s %9s %8s %9s %9s %9s %7s %8s\n", "model", "expert", "MB/token",
              "prefill", "vs 200", "decode", "median", "roofline", "%roof", "vs 81.9");
  for (const std::string& m : models) {
    Result r;
    const afd::StealMeter steal;
    if (Bench(m, threads, tokens, prompt, runs, pool, &r) != 0) return 1;
    const double roof = bw * 1e9 / r.bytes_per_token;
    std::printf("%-34s %-6s %9.1f %9.1f %7.2fx %9.1f %9.1f %9.1f %6.0f%% %7.2fx%s\n", m.c_str(),
                r.experts_type.c_str(), r.bytes_per_token / 1e6, r.prefill_tps,
                r.prefill_tps / kLlamaCppPrefill, r.decode_best, r.decode_median, roof,
                100 * r.decode_best / roof, r.decode_best / kLlamaCppDecode,
                afd::StealNote(steal.Fraction()).c_str());
  }
  std::printf(
      "\ntok/s: prefill of a %d-token prompt (best run), decode of %d tokens at batch 1\n"
      "(best and median of %d runs); roofline = bandwidth / bytes per token.\n"
      "llama.cpp Q4_K_M on this machine kind: %.1f tok/s decode, %.0f tok/s prefill.\n",
      prompt, tokens, runs, kLlamaCppDecode, kLlamaCppPrefill);
  return 0;
}
