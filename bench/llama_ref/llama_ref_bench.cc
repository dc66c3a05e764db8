// llama_ref_bench: llama.cpp itself, measured on this machine in the same run as afd, on the
// same model: the live form of issue 5/6's llama.cpp anchors (which were measured once, at a
// bandwidth this VM rarely shows again).
//
//   llama_ref_bench --lib DIR --model models/m2-perf-bf16 --work models/llama-ref
//       [--types bf16,q8_0,q4_k_m] [--threads 2] [--quantize-threads N] [--check-prompt 1,2,3]
//
// --lib: a directory with llama.cpp's shared libraries (libllama*.so, libggml*.so and the CPU
// backend variants), as bench/llama_ref/fetch_llama.sh unpacks them from the npm registry
// (@node-llama-cpp/linux-x64, a CPU build of ggml-org/llama.cpp with the minimax-m2
// architecture). They are loaded with dlopen, so afd never links against them.
// The checkpoint is exported once to WORK/model-bf16.gguf (minimax_gguf.h) and quantized with
// llama.cpp's own llama_model_quantize (Q8_0, Q4_K_M), each cached. Per type, like llama-bench:
// pp128 (one 128-token batch into an empty context; median of 5 after a warm-up) and tg64 (64
// single-token steps from an empty context; median of 3), with --threads threads.
// --check-prompt: the bf16 model's greedy continuation of these (positive) token ids (8 tokens), to
// compare with `afd generate` on the same checkpoint (the same model, so the same tokens).
#include <dlfcn.h>
#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/llama_ref/minimax_gguf.h"
#include "bench/nodes/bench_util.h"

namespace {

// llama.cpp's parameter structs, passed and returned by value but only ever filled by its own
// *_default_params(): an oversized opaque buffer keeps the calling convention (large structs go
// through memory either way) without depending on the layout, which changes between releases.
struct Params {
  alignas(8) unsigned char bytes[2048];
};
// llama_batch, unchanged since 2023.
struct Batch {
  int32_t n_tokens;
  int32_t* token;
  float* embd;
  int32_t* pos;
  int32_t* n_seq_id;
  int32_t** seq_id;
  int8_t* logits;
};

struct Llama {
  void (*backend_init)();
  void (*log_set)(void (*)(int, const char*, void*), void*);
  Params (*model_default_params)();
  Params (*context_default_params)();
  Params (*quantize_default_params)();
  void* (*model_load)(const char*, Params);
  void (*model_free)(void*);
  void* (*init_from_model)(void*, Params);
  void (*free)(void*);
  void (*set_n_threads)(void*, int32_t, int32_t);
  Batch (*batch_get_one)(int32_t*, int32_t);
  int32_t (*decode)(void*, Batch);
  void (*synchronize)(void*);
  void* (*get_memory)(void*);
  void (*memory_clear)(void*, bool);
  float* (*get_logits_ith)(void*, int32_t);
  const void* (*model_get_vocab)(const void*);
  int32_t (*vocab_n_tokens)(const void*);
  uint32_t (*model_quantize)(const char*, const char*, const Params*);
};

bool Resolve(void* lib, const char* name, void* fn_ptr) {
  void* sym = dlsym(lib, name);
  if (sym == nullptr) {
    std::fprintf(stderr, "llama_ref_bench: %s is missing from libllama\n", name);
    return false;
  }
  std::memcpy(fn_ptr, &sym, sizeof(sym));
  return true;
}

std::string FirstMatch(const std::string& pattern) {
  glob_t g;
  std::string found;
  if (glob(pattern.c_str(), 0, nullptr, &g) == 0 && g.gl_pathc > 0) found = g.gl_pathv[0];
  globfree(&g);
  return found;
}

bool LoadLlama(const std::string& dir, Llama* api) {
  const std::string ggml_path = FirstMatch(dir + "/libggml.*so"),
                    llama_path = FirstMatch(dir + "/libllama.*so");
  void* ggml = ggml_path.empty() ? nullptr : dlopen(ggml_path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  void* lib = llama_path.empty() ? nullptr : dlopen(llama_path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (ggml == nullptr || lib == nullptr) {
    std::fprintf(stderr, "llama_ref_bench: cannot load llama.cpp from %s: %s\n", dir.c_str(),
                 dlerror());
    return false;
  }
  void (*load_all_from_path)(const char*) = nullptr;
  if (!Resolve(ggml, "ggml_backend_load_all_from_path", &load_all_from_path)) return false;
  load_all_from_path(dir.c_str());  // the CPU backend variant this CPU supports best
  return Resolve(lib, "llama_backend_init", &api->backend_init) &&
         Resolve(lib, "llama_log_set", &api->log_set) &&
         Resolve(lib, "llama_model_default_params", &api->model_default_params) &&
         Resolve(lib, "llama_context_default_params", &api->context_default_params) &&
         Resolve(lib, "llama_model_quantize_default_params", &api->quantize_default_params) &&
         Resolve(lib, "llama_model_load_from_file", &api->model_load) &&
         Resolve(lib, "llama_model_free", &api->model_free) &&
         Resolve(lib, "llama_init_from_model", &api->init_from_model) &&
         Resolve(lib, "llama_free", &api->free) &&
         Resolve(lib, "llama_set_n_threads", &api->set_n_threads) &&
         Resolve(lib, "llama_batch_get_one", &api->batch_get_one) &&
         Resolve(lib, "llama_decode", &api->decode) &&
         Resolve(lib, "llama_synchronize", &api->synchronize) &&
         Resolve(lib, "llama_get_memory", &api->get_memory) &&
         Resolve(lib, "llama_memory_clear", &api->memory_clear) &&
         Resolve(lib, "llama_get_logits_ith", &api->get_logits_ith) &&
         Resolve(lib, "llama_model_get_vocab", &api->model_get_vocab) &&
         Resolve(lib, "llama_vocab_n_tokens", &api->vocab_n_tokens) &&
         Resolve(lib, "llama_model_quantize", &api->model_quantize);
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Result {
  double pp_tps = 0, tg_tps = 0;
  bool ok = false;
};

Result Measure(const Llama& api, const std::string& gguf, int threads,
               const std::vector<int32_t>& check_prompt) {
  Result result;
  void* model = api.model_load(gguf.c_str(), api.model_default_params());
  if (model == nullptr) {
    std::fprintf(stderr, "llama_ref_bench: llama.cpp could not load %s\n", gguf.c_str());
    return result;
  }
  void* ctx = api.init_from_model(model, api.context_default_params());
  if (ctx == nullptr) {
    std::fprintf(stderr, "llama_ref_bench: no llama.cpp context for %s\n", gguf.c_str());
    api.model_free(model);
    return result;
  }
  api.set_n_threads(ctx, threads, threads);
  void* memory = api.get_memory(ctx);
  std::vector<int32_t> prompt(128);
  for (int i = 0; i < 128; ++i) prompt[i] = 100 + i;
  auto prefill = [&]() {
    api.memory_clear(memory, true);
    std::vector<int32_t> tokens = prompt;
    const auto t0 = std::chrono::steady_clock::now();
    const bool ok = api.decode(ctx, api.batch_get_one(tokens.data(), 128)) == 0;
    api.synchronize(ctx);
    return ok ? Seconds(t0) : -1.0;
  };
  auto generate = [&](int steps) {
    api.memory_clear(memory, true);
    int32_t token = 100;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) {
      if (api.decode(ctx, api.batch_get_one(&token, 1)) != 0) return -1.0;
      token = 100 + (token * 7 + i) % 1000;  // llama-bench feeds tokens without sampling
    }
    api.synchronize(ctx);
    return Seconds(t0);
  };
  if (prefill() < 0 || generate(4) < 0) {
    std::fprintf(stderr, "llama_ref_bench: llama_decode failed on %s\n", gguf.c_str());
  } else {
    std::vector<double> pp, tg;
    for (int r = 0; r < 5; ++r) pp.push_back(prefill());
    for (int r = 0; r < 3; ++r) tg.push_back(generate(64));
    result.pp_tps = 128 / Median(pp);
    result.tg_tps = 64 / Median(tg);
    result.ok = true;
  }
  if (!check_prompt.empty() && result.ok) {
    api.memory_clear(memory, true);
    std::vector<int32_t> tokens = check_prompt;
    const int32_t n_vocab = api.vocab_n_tokens(api.model_get_vocab(model));
    std::printf("greedy continuation of %s:", gguf.c_str());
    int32_t n = static_cast<int32_t>(tokens.size());
    int32_t* next = tokens.data();
    for (int step = 0; step < 8; ++step) {
      if (api.decode(ctx, api.batch_get_one(next, n)) != 0) break;
      const float* logits = api.get_logits_ith(ctx, -1);
      int32_t best = 0;
      for (int32_t v = 1; v < n_vocab; ++v) best = logits[v] > logits[best] ? v : best;
      std::printf(" %d", best);
      tokens.assign(1, best);
      next = tokens.data();
      n = 1;
    }
    std::printf("\n");
  }
  api.free(ctx);
  api.model_free(model);
  return result;
}

// The exit status of a flag with an unusable value.
int BadValue(const std::string& flag) {
  std::fprintf(stderr, "llama_ref_bench: bad value for %s\n", flag.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string lib, model, work;
  std::vector<std::string> types = {"bf16", "q8_0", "q4_k_m"};
  std::vector<int> check_prompt;
  int threads = 2, quantize_threads = 0;
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--lib") {
      lib = value();
    } else if (a == "--model") {
      model = value();
    } else if (a == "--work") {
      work = value();
    } else if (a == "--types") {
      types = absl::StrSplit(value(), ',', absl::SkipEmpty());
    } else if (a == "--threads") {
      if (!absl::SimpleAtoi(value(), &threads) || threads <= 0) return BadValue(a);
    } else if (a == "--quantize-threads") {
      if (!absl::SimpleAtoi(value(), &quantize_threads) || quantize_threads <= 0) {
        return BadValue(a);
      }
    } else if (a == "--check-prompt") {
      if (!afd::bench::ParseIntList(value(), &check_prompt)) return BadValue(a);
    } else if (a == "--verbose") {
      verbose = true;
    } else {
      std::fprintf(stderr,
                   "usage: llama_ref_bench --lib DIR --model CHECKPOINT_DIR --work DIR [--types "
                   "bf16,q8_0,q4_k_m] [--threads N] [--quantize-threads N] [--check-prompt IDS] "
                   "[--verbose]\n");
      return 2;
    }
  }
  if (lib.empty() || model.empty() || work.empty()) {
    std::fprintf(stderr, "llama_ref_bench: --lib, --model and --work are required\n");
    return 2;
  }
  Llama api;
  if (!LoadLlama(lib, &api)) return 1;
  if (!verbose) api.log_set([](int, const char*, void*) {}, nullptr);
  api.backend_init();
  mkdir(work.c_str(), 0755);
  const std::string bf16 = work + "/model-bf16.gguf";
  if (!Exists(bf16)) {
    std::printf("exporting %s to %s\n", model.c_str(), bf16.c_str());
    std::fflush(stdout);
    if (absl::Status s = afd::bench::ExportMiniMaxGguf(model, bf16); !s.ok()) {
      std::fprintf(stderr, "llama_ref_bench: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  int failures = 0;
  for (const std::string& type : types) {
    std::string gguf = bf16;
    if (type != "bf16") {
      const int ftype = type == "q8_0" ? 7 : type == "q4_k_m" ? 15 : -1;  // LLAMA_FTYPE_MOSTLY_*
      if (ftype < 0) {
        std::fprintf(stderr, "llama_ref_bench: unknown type %s (bf16, q8_0, q4_k_m)\n",
                     type.c_str());
        ++failures;
        continue;
      }
      gguf = work + "/model-" + type + ".gguf";
      if (!Exists(gguf)) {
        Params params = api.quantize_default_params();
        const int32_t nthread = quantize_threads > 0 ? quantize_threads : threads;
        std::memcpy(params.bytes, &nthread, 4);  // nthread, then ftype: the struct's first fields
        std::memcpy(params.bytes + 4, &ftype, 4);
        std::printf("quantizing to %s\n", gguf.c_str());
        std::fflush(stdout);
        if (api.model_quantize(bf16.c_str(), gguf.c_str(), &params) != 0) {
          std::fprintf(stderr, "llama_ref_bench: llama_model_quantize failed for %s\n",
                       type.c_str());
          ++failures;
          continue;
        }
      }
    }
    const Result r =
        Measure(api, gguf, threads, type == "bf16" ? check_prompt : std::vector<int32_t>());
    if (!r.ok) {
      ++failures;
      continue;
    }
    std::printf("llama.cpp %-7s threads %d: pp128 %.1f tok/s, tg64 %.2f tok/s\n", type.c_str(),
                threads, r.pp_tps, r.tg_tps);
    std::fflush(stdout);
  }
  return failures == 0 ? 0 : 1;
}
