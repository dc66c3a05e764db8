// afd-generate: in-process generation from token ids (all experts local, no network). Prints the
// generated ids of each sequence and the prefill / decode throughput.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "attention_node/engine.h"
#include "attention_node/in_process_expert_backend.h"
#include "attention_node/kv_cache.h"
#include "attention_node/model_weights.h"
#include "attention_node/sampler.h"
#include "attention_node/step_profile.h"
#include "common/cpu_steal.h"
#include "common/kernels/thread_pool.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "common/weights.h"
#ifdef AFD_HAVE_MACHINE_LIMITS
#include "bench/common/machine_limits.h"
#endif

namespace {

using afd::attention::LogitsMode;
using afd::attention::StepInput;
using afd::attention::StepOutput;

void Usage(FILE* f) {
  std::fprintf(
      f,
      "usage: afd-generate --model DIR --prompt-ids ID,ID,... [--max-tokens N] [--batch B]\n"
      "                    [--threads T] [--temperature X] [--top-k K] [--top-p P]\n"
      "                    [--min-p P] [--seed S] [--ignore-eos] [--block-size N]\n"
      "                    [--profile] [--vary-prompts] [--bf16-prefill]\n"
      "                    [--vector-prompt] [--min-tile-prompt N] [--warmup N]\n"
      "                    [--kv-cache float32|bfloat16]\n\n"
      "Generates from token ids with the whole model in this process and prints each\n"
      "sequence's new ids plus prefill and decode throughput (tokens/s).\n"
      "  --max-tokens N   tokens to generate per sequence (default 32)\n"
      "  --batch B        run B copies of the prompt as one batch (default 1)\n"
      "  --threads T      worker threads for the products (default 2)\n"
      "  --temperature X  0 = greedy (default); with --top-k/--top-p/--min-p/--seed\n"
      "  --ignore-eos     keep generating after the end-of-sequence token\n"
      "  --block-size N   KV cache block size in tokens (default 16)\n"
      "  --kv-cache T     KV cache element type: float32 (default) or bfloat16 (opt-in:\n"
      "                   half the bytes, keys and values rounded to bf16)\n"
      "  --vector-prompt  the prompt's products on the vector kernels (default: on the matrix\n"
      "                   tiles where the CPU has them, e.g. AMX; see kernels/tile_matmul.h)\n"
      "  --min-tile-prompt N  prompts shorter than N tokens stay on the vector kernels\n"
      "                   (default: the engine's, 64 bf16 / 128 FP8; 1 = every prompt)\n"
      "  --bf16-prefill   bf16 activations in the prompt step's attention projections and\n"
      "                   expert products (opt-in, for throughput: reduced precision;\n"
      "                   decode stays fp32)\n"
      "  --vary-prompts   give sequence b the prompt ids + 7919*b (mod vocab), so a batch's\n"
      "                   sequences differ and route to different experts\n"
      "  --warmup N       untimed passes before the timed run (default 1): the first\n"
      "                   prompt and two decode steps on a scratch sequence, so the timing\n"
      "                   does not include first touches of weights, caches and buffers\n"
      "  --profile        time each stage of the prefill and decode steps (ms per step),\n"
      "                   measure the read bandwidth and print decode against its roofline\n"
      "                   (weight bytes read per step / bandwidth)\n");
}

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string model;
  std::vector<int32_t> prompt;
  int max_tokens = 32;
  int batch = 1;
  int threads = 2;
  int block_size = 16;
  bool ignore_eos = false;
  bool profile = false;
  bool vary_prompts = false;
  bool bf16_prefill = false;
  afd::attention::KvDtype kv_dtype = afd::attention::KvDtype::kFloat32;
  bool vector_prompt = false;
  int min_tile_prompt = 0;  // 0: the engine's default
  int warmup = 1;
  afd::attention::SamplingParams sampling;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "afd-generate: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto bad = [&]() {
      std::fprintf(stderr, "afd-generate: bad value for %s\n", arg.c_str());
      return 2;
    };
    if (arg == "--help" || arg == "-h") {
      Usage(stdout);
      return 0;
    } else if (arg == "--model") {
      model = value();
    } else if (arg == "--prompt-ids") {
      for (absl::string_view s : absl::StrSplit(value(), ',', absl::SkipEmpty())) {
        int32_t id;
        if (!absl::SimpleAtoi(s, &id)) return bad();
        prompt.push_back(id);
      }
    } else if (arg == "--max-tokens") {
      if (!absl::SimpleAtoi(value(), &max_tokens) || max_tokens <= 0) return bad();
    } else if (arg == "--batch") {
      if (!absl::SimpleAtoi(value(), &batch) || batch <= 0) return bad();
    } else if (arg == "--threads") {
      if (!absl::SimpleAtoi(value(), &threads) || threads <= 0) return bad();
    } else if (arg == "--block-size") {
      if (!absl::SimpleAtoi(value(), &block_size) || block_size <= 0) return bad();
    } else if (arg == "--temperature") {
      if (!absl::SimpleAtof(value(), &sampling.temperature)) return bad();
    } else if (arg == "--top-k") {
      if (!absl::SimpleAtoi(value(), &sampling.top_k)) return bad();
    } else if (arg == "--top-p") {
      if (!absl::SimpleAtof(value(), &sampling.top_p)) return bad();
    } else if (arg == "--min-p") {
      if (!absl::SimpleAtof(value(), &sampling.min_p)) return bad();
    } else if (arg == "--seed") {
      if (!absl::SimpleAtoi(value(), &sampling.seed)) return bad();
    } else if (arg == "--ignore-eos") {
      ignore_eos = true;
    } else if (arg == "--profile") {
      profile = true;
    } else if (arg == "--vector-prompt") {
      vector_prompt = true;
    } else if (arg == "--min-tile-prompt") {
      if (!absl::SimpleAtoi(value(), &min_tile_prompt) || min_tile_prompt <= 0) return bad();
    } else if (arg == "--warmup") {
      if (!absl::SimpleAtoi(value(), &warmup) || warmup < 0) return bad();
    } else if (arg == "--bf16-prefill") {
      bf16_prefill = true;
    } else if (arg == "--kv-cache") {
      absl::StatusOr<afd::attention::KvDtype> dtype = afd::attention::ParseKvDtype(value());
      if (!dtype.ok()) {
        std::fprintf(stderr, "afd-generate: --kv-cache: %s\n", dtype.status().ToString().c_str());
        return 2;
      }
      kv_dtype = *dtype;
    } else if (arg == "--vary-prompts") {
      vary_prompts = true;
    } else {
      std::fprintf(stderr, "afd-generate: unknown argument '%s'\n\n", arg.c_str());
      Usage(stderr);
      return 2;
    }
  }
  if (model.empty() || prompt.empty()) {
    std::fprintf(stderr, "afd-generate: --model and --prompt-ids are required\n\n");
    Usage(stderr);
    return 2;
  }
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "afd-generate: %s\n", s.ToString().c_str());
    return 1;
  };

  double read_gbps = 0;  // measured before the model is mapped, so nothing else competes
#ifdef AFD_HAVE_MACHINE_LIMITS
  if (profile) read_gbps = afd::bench::MeasureReadBandwidth(threads, 0.5);
#endif
  const auto t_load = std::chrono::steady_clock::now();
  auto config = afd::LoadModelConfig(model);
  if (!config.ok()) return fail(config.status());
  auto checkpoint = afd::Checkpoint::Open(model);
  if (!checkpoint.ok()) return fail(checkpoint.status());
  if (absl::Status s = afd::ValidateCheckpoint(*config, **checkpoint); !s.ok()) return fail(s);
  auto weights = afd::attention::ModelWeights::Load(*config, **checkpoint);
  if (!weights.ok()) return fail(weights.status());
  afd::kernels::ThreadPool pool(threads);
  auto backend = afd::attention::InProcessExpertBackend::Create(*config, **checkpoint, &pool);
  if (!backend.ok()) return fail(backend.status());
  afd::attention::KvCacheOptions cache_options;
  cache_options.block_size = block_size;
  cache_options.dtype = kv_dtype;
  // The warm-up passes (if any) run on one scratch sequence of the prompt and two tokens.
  const int scratch = warmup > 0 ? 1 : 0;
  cache_options.max_sequences = batch + scratch;
  const int64_t max_len = static_cast<int64_t>(prompt.size()) + max_tokens;
  const int64_t warmup_len = static_cast<int64_t>(prompt.size()) + 2;
  cache_options.num_blocks = batch * ((max_len + block_size - 1) / block_size) +
                             scratch * ((warmup_len + block_size - 1) / block_size);
  auto cache = afd::attention::KvCache::Create(*config, cache_options);
  if (!cache.ok()) return fail(cache.status());
  afd::attention::Engine engine(weights->get(), cache->get(), backend->get(), &pool);
  if (min_tile_prompt > 0) engine.set_min_tile_prompt(min_tile_prompt);

  // --vary-prompts: sequence b's prompt is the prompt with every id shifted by 7919 * b (mod
  // the vocabulary), so that the batch routes to different experts.
  std::vector<std::vector<int32_t>> prompts(batch, prompt);
  if (vary_prompts) {
    for (int b = 0; b < batch; ++b) {
      for (int32_t& id : prompts[b]) {
        id = static_cast<int32_t>((int64_t{id} + int64_t{7919} * b) % config->vocab_size);
      }
    }
  }
  std::vector<int> seqs;
  std::vector<afd::attention::Sampler> samplers;
  std::vector<std::vector<int32_t>> generated(batch);
  std::vector<StepInput> inputs;
  for (int b = 0; b < batch; ++b) {
    auto seq = (*cache)->AddSequence();
    if (!seq.ok()) return fail(seq.status());
    afd::attention::SamplingParams p = sampling;
    p.seed = sampling.seed + b;
    auto sampler = afd::attention::Sampler::Create(p, prompts[b]);
    if (!sampler.ok()) return fail(sampler.status());
    seqs.push_back(*seq);
    samplers.push_back(std::move(*sampler));
    inputs.push_back({*seq, prompts[b], LogitsMode::kLast,
                      vector_prompt ? 0 : static_cast<int64_t>(prompts[b].size())});
  }
  const int vocab = config->vocab_size;
  std::fprintf(stderr, "loaded %s in %.2f s (%d layers, %d experts, %d threads)\n", model.c_str(),
               Seconds(t_load, std::chrono::steady_clock::now()), config->num_hidden_layers,
               config->num_local_experts, threads);

  afd::attention::StepProfile prefill_profile, decode_profile;
  auto use_profile = [&](afd::attention::StepProfile* p) {
    if (!profile) return;
    engine.set_profile(p);
    (*backend)->set_profile(p);
  };
  // Sampling time of a step, attributed to its profile.
  auto sampled = [&](afd::attention::StepProfile* p, std::chrono::steady_clock::time_point since) {
    if (profile) {
      p->Add(afd::attention::ProfileStage::kSampling,
             Seconds(since, std::chrono::steady_clock::now()));
    }
  };

  StepOutput out;
  // Untimed passes: the prompt and two decode steps on a scratch sequence, freed after.
  for (int w = 0; w < warmup; ++w) {
    auto seq = (*cache)->AddSequence();
    if (!seq.ok()) return fail(seq.status());
    const StepInput first = {*seq, prompts[0], LogitsMode::kLast, inputs[0].prompt_tokens};
    if (absl::Status s = engine.Step({first}, &out); !s.ok()) return fail(s);
    for (int step = 0; step < 2; ++step) {
      const int32_t token = prompts[0][step % prompts[0].size()];
      const StepInput next = {*seq, absl::MakeConstSpan(&token, 1), LogitsMode::kLast};
      if (absl::Status s = engine.Step({next}, &out); !s.ok()) return fail(s);
    }
    if (absl::Status s = (*cache)->FreeSequence(*seq); !s.ok()) return fail(s);
  }
  use_profile(&prefill_profile);
  auto set_activations = [&](afd::kernels::Activations a) {
    engine.set_activations(a);
    (*backend)->set_activations(a);
  };
  if (bf16_prefill) set_activations(afd::kernels::Activations::kBF16);
  afd::StealMeter steal;
  const auto t0 = std::chrono::steady_clock::now();
  if (absl::Status s = engine.Step(inputs, &out); !s.ok()) return fail(s);
  const auto t1 = std::chrono::steady_clock::now();
  const double prefill_steal = steal.Fraction();
  steal.Restart();
  set_activations(afd::kernels::Activations::kF32);
  use_profile(&decode_profile);
  std::vector<bool> done(batch, false);
  std::vector<int32_t> last(batch);
  for (int b = 0; b < batch; ++b) {
    last[b] = samplers[b].Sample({out.Row(out.first_row[b], vocab), size_t(vocab)}).token;
    generated[b].push_back(last[b]);
    done[b] = (!ignore_eos && last[b] == config->eos_token_id) || max_tokens == 1;
  }
  sampled(&prefill_profile, t1);
  int64_t decode_tokens = 0;
  int decode_steps = 0;
  std::vector<double> step_seconds;  // each decode step, sampling included
  for (int step = 1; step < max_tokens; ++step) {
    const auto t_step = std::chrono::steady_clock::now();
    inputs.clear();
    std::vector<int> which;
    for (int b = 0; b < batch; ++b) {
      if (done[b]) continue;
      inputs.push_back({seqs[b], absl::MakeConstSpan(&last[b], 1), LogitsMode::kLast});
      which.push_back(b);
    }
    if (inputs.empty()) break;
    if (absl::Status s = engine.Step(inputs, &out); !s.ok()) return fail(s);
    const auto t_sample = std::chrono::steady_clock::now();
    decode_tokens += static_cast<int64_t>(inputs.size());
    ++decode_steps;
    // Sequences sample independently: spread them over the pool.
    pool.ParallelFor(static_cast<int64_t>(which.size()), [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        const int b = which[j];
        last[b] = samplers[b].Sample({out.Row(out.first_row[j], vocab), size_t(vocab)}).token;
      }
    });
    for (size_t j = 0; j < which.size(); ++j) {
      const int b = which[j];
      generated[b].push_back(last[b]);
      if ((!ignore_eos && last[b] == config->eos_token_id) ||
          static_cast<int>(generated[b].size()) >= max_tokens) {
        done[b] = true;
      }
    }
    sampled(&decode_profile, t_sample);
    step_seconds.push_back(Seconds(t_step, std::chrono::steady_clock::now()));
  }
  const auto t2 = std::chrono::steady_clock::now();
  const double decode_steal = steal.Fraction();

  for (int b = 0; b < batch; ++b) {
    std::printf("sequence %d:", b);
    for (int32_t t : generated[b]) std::printf(" %d", t);
    std::printf("\n");
  }
  const double prefill_s = Seconds(t0, t1);
  const double decode_s = Seconds(t1, t2);
  std::printf("prefill: %lld tokens in %.3f s = %.1f tokens/s\n",
              static_cast<long long>(prompt.size()) * batch, prefill_s,
              prompt.size() * batch / prefill_s);
  double best_step_s = 0, median_step_s = 0;
  if (decode_tokens > 0) {
    std::vector<double> sorted = step_seconds;
    std::sort(sorted.begin(), sorted.end());
    best_step_s = sorted.front();
    median_step_s = sorted[sorted.size() / 2];
    std::printf(
        "decode:  %lld tokens in %.3f s = %.2f tokens/s (batch %d, %.1f ms/step; best %.1f, "
        "median %.1f)\n",
        static_cast<long long>(decode_tokens), decode_s, decode_tokens / decode_s, batch,
        1e3 * decode_s / decode_steps, 1e3 * best_step_s, 1e3 * median_step_s);
  }
  if (prefill_steal >= 0 && decode_steal >= 0) {
    // On a VM: the share of CPU time the hypervisor gave other guests meanwhile.
    std::printf("CPU steal: prefill %.1f %%, decode %.1f %%\n", 100.0 * prefill_steal,
                100.0 * decode_steal);
  }
  if (profile) {
    std::printf("\n");
    const std::pair<std::string, const afd::attention::StepProfile*> columns[] = {
        {"prefill", &prefill_profile}, {"decode", &decode_profile}};
    std::fputs(afd::attention::FormatStepProfiles(columns).c_str(), stdout);
    if (decode_tokens > 0 && read_gbps > 0) {
      // Roofline: every decode step reads its weights once at the measured bandwidth.
      const double bytes_per_step =
          static_cast<double>(decode_profile.weight_bytes) / decode_profile.steps;
      const double roofline_step_s = bytes_per_step / (read_gbps * 1e9);
      const double achieved_step_s = decode_s / decode_steps;
      std::printf(
          "read bandwidth (%d threads): %.1f GB/s; decode reads %.1f MB of weights per step: "
          "roofline %.1f ms/step = %.1f tokens/s\n"
          "achieved: mean %.1f ms/step = %.1f%% of roofline (%.1f GB/s); median step %.1f%%, "
          "best step %.1f%%\n",
          threads, read_gbps, 1e-6 * bytes_per_step, 1e3 * roofline_step_s,
          decode_tokens / (decode_steps * roofline_step_s), 1e3 * achieved_step_s,
          100.0 * roofline_step_s / achieved_step_s, 1e-9 * bytes_per_step / achieved_step_s,
          100.0 * roofline_step_s / median_step_s, 100.0 * roofline_step_s / best_step_s);
    } else if (read_gbps <= 0) {
      std::printf("read bandwidth: not measured (built without bench/common)\n");
    }
  }
  return 0;
}
