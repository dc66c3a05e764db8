// Tokenizer throughput: encode (and decode) MB/s of afd::gateway::Tokenizer on a ~10 MB mixed
// text built deterministically from the golden corpora: the texts of every case of the four
// tests/data/tokenizers/*/golden.json files (~80 KB), joined with "\n", repeated to at least
// 10 MiB. Encode = the 10 MB text (word cache warm after the first copy), EncodeCold = one copy on
// a fresh tokenizer, EncodeShortRequests = ~1 KB requests, Decode, Load = reading tokenizer.json.
//
// --reference compares with the reference instead: the same text (--reference_mib, default 1 MiB,
// because tokenizers.js manages well under 1 MB/s) is encoded by afd and by @huggingface/tokenizers
// under node (hf_tokenizers_bench.mjs), best of --reference_repeat (default 2) each, and a table of
// both MB/s, their ratio and both token counts is printed (exit 1 if the counts differ).
//
// Run (after the tokenizer fixtures exist, e.g. `ctest -R tokenizer_fetch`):
//   build/bin/tokenizer_bench [--benchmark_filter=Encode]
//   ninja -C build hf_tokenizers_js && build/bin/tokenizer_bench --reference
// Environment: AFD_TOKENIZERS_DIR (default <build>/tokenizers, one folder per tokenizer),
// AFD_TEST_DATA (default <source>/tests/data) and AFD_HF_TOKENIZERS_JS (default
// <build>/bench/tokenizer/js/node_modules).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gateway/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace {

constexpr size_t kTargetBytes = 10u << 20;
const char* const kNames[] = {"gpt4o", "qwen3", "deepseek_v3", "minimax-m2-synthetic"};

std::string EnvOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every golden case text of the four tokenizers joined with "\n" (~80 KB, the first case being
// the empty text), byte-identical to hf_tokenizers_bench.mjs's; empty if the golden files are
// missing.
const std::string& UnitText() {
  static const std::string* unit = [] {
    const std::string data = EnvOr("AFD_TEST_DATA", AFD_SOURCE_DIR "/tests/data");
    auto* out = new std::string;
    bool first = true;  // joined as JavaScript's join does: the first text may be empty
    for (const char* name : kNames) {
      const auto golden = nlohmann::json::parse(
          ReadFile(data + "/tokenizers/" + name + "/golden.json"), nullptr, false);
      if (golden.is_discarded()) {
        out->clear();
        return out;
      }
      for (const auto& c : golden["cases"]) {
        if (!first) *out += '\n';
        first = false;
        *out += c["text"].get<std::string>();
      }
    }
    return out;
  }();
  return *unit;
}

// The unit repeated (joined with "\n") to at least `bytes` bytes; hf_tokenizers_bench.mjs
// builds the same text.
std::string RepeatUnit(size_t bytes) {
  std::string out;
  while (!UnitText().empty() && out.size() < bytes) {
    if (!out.empty()) out += '\n';
    out += UnitText();
  }
  return out;
}

// The benchmark text: the unit repeated to at least 10 MiB.
const std::string& MixedText() {
  static const std::string* text = new std::string(RepeatUnit(kTargetBytes));
  return *text;
}

const afd::gateway::Tokenizer* GetTokenizer(int index) {
  static std::unique_ptr<afd::gateway::Tokenizer> cache[4];
  if (!cache[index]) {
    const std::string dir = EnvOr("AFD_TOKENIZERS_DIR", AFD_BUILD_DIR "/tokenizers");
    auto t = afd::gateway::Tokenizer::LoadFromDirectory(dir + "/" + kNames[index]);
    if (!t.ok()) {
      std::fprintf(stderr, "%s\n", t.status().ToString().c_str());
      return nullptr;
    }
    cache[index] = std::move(*t);
  }
  return cache[index].get();
}

// The tokenizer of benchmark argument 0 (labelled with its name), or nullptr after marking the
// benchmark skipped when it or the golden text is missing.
const afd::gateway::Tokenizer* TokenizerForBenchmark(benchmark::State& state) {
  const afd::gateway::Tokenizer* tokenizer = GetTokenizer(static_cast<int>(state.range(0)));
  if (tokenizer == nullptr || MixedText().empty()) {
    state.SkipWithError("tokenizer or golden text missing");
    return nullptr;
  }
  state.SetLabel(kNames[state.range(0)]);
  return tokenizer;
}

void BM_Tokenizer_Encode(benchmark::State& state) {
  const afd::gateway::Tokenizer* tokenizer = TokenizerForBenchmark(state);
  if (tokenizer == nullptr) return;
  const std::string& text = MixedText();
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 2);
  for (auto _ : state) {
    ids.clear();
    if (!tokenizer->EncodeAppend(text, &ids).ok()) state.SkipWithError("encode failed");
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * text.size());
  state.counters["tokens"] = static_cast<double>(ids.size());
}
BENCHMARK(BM_Tokenizer_Encode)->DenseRange(0, 3)->Unit(benchmark::kMillisecond)->MinTime(2.0);

// One copy of the unit on a freshly loaded tokenizer: nothing is cached yet.
void BM_Tokenizer_EncodeCold(benchmark::State& state) {
  const std::string dir = EnvOr("AFD_TOKENIZERS_DIR", AFD_BUILD_DIR "/tokenizers");
  const std::string& text = UnitText();
  state.SetLabel(kNames[state.range(0)]);
  std::vector<int32_t> ids;
  double seconds = 0;
  for (auto _ : state) {
    auto t = afd::gateway::Tokenizer::LoadFromDirectory(dir + "/" + kNames[state.range(0)]);
    ids.clear();
    const auto start = std::chrono::steady_clock::now();
    if (!t.ok() || text.empty() || !(*t)->EncodeAppend(text, &ids).ok()) {
      state.SkipWithError("tokenizer or golden text missing");
      break;
    }
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(s);
    seconds += s;
  }
  // MB/s of the encode calls alone (the loads are excluded).
  if (seconds > 0) {
    state.counters["MB_per_s"] =
        static_cast<double>(state.iterations()) * text.size() / 1e6 / seconds;
  }
}
BENCHMARK(BM_Tokenizer_EncodeCold)
    ->DenseRange(0, 3)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3)
    ->UseManualTime();

// Many short requests (about 1 KB each), as the gateway sees them.
void BM_Tokenizer_EncodeShortRequests(benchmark::State& state) {
  const afd::gateway::Tokenizer* tokenizer = TokenizerForBenchmark(state);
  if (tokenizer == nullptr) return;
  const std::string& text = MixedText();
  // Split the first copy of the corpus at newlines into requests of about 1 KB.
  std::vector<std::string_view> requests;
  size_t begin = 0;
  while (begin < text.size() && requests.size() < 2000) {
    size_t end = text.find('\n', begin + 1024);
    if (end == std::string::npos) end = text.size();
    requests.push_back(std::string_view(text).substr(begin, end - begin));
    begin = end;
  }
  size_t bytes = 0;
  std::vector<int32_t> ids;
  for (auto _ : state) {
    for (std::string_view r : requests) {
      ids.clear();
      if (!tokenizer->EncodeAppend(r, &ids).ok()) state.SkipWithError("encode failed");
      bytes += r.size();
    }
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_Tokenizer_EncodeShortRequests)->DenseRange(0, 3)->Unit(benchmark::kMillisecond);

void BM_Tokenizer_Decode(benchmark::State& state) {
  const afd::gateway::Tokenizer* tokenizer = TokenizerForBenchmark(state);
  if (tokenizer == nullptr) return;
  const std::string& text = MixedText();
  auto ids = tokenizer->Encode(text);
  if (!ids.ok()) {
    state.SkipWithError("encode failed");
    return;
  }
  for (auto _ : state) {
    std::string out = tokenizer->Decode(*ids, /*skip_special_tokens=*/false);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * text.size());
}
BENCHMARK(BM_Tokenizer_Decode)->DenseRange(0, 3)->Unit(benchmark::kMillisecond);

void BM_Tokenizer_Load(benchmark::State& state) {
  const std::string dir = EnvOr("AFD_TOKENIZERS_DIR", AFD_BUILD_DIR "/tokenizers");
  state.SetLabel(kNames[state.range(0)]);
  for (auto _ : state) {
    auto t = afd::gateway::Tokenizer::LoadFromDirectory(dir + "/" + kNames[state.range(0)]);
    if (!t.ok()) {
      state.SkipWithError("load failed");
      break;
    }
  }
}
BENCHMARK(BM_Tokenizer_Load)->DenseRange(0, 3)->Unit(benchmark::kMillisecond);

// ---- --reference: afd next to tokenizers.js on the same text ----

struct ReferenceResult {
  double mb_per_s = 0;
  int64_t tokens = -1;
};

// Runs hf_tokenizers_bench.mjs; its lines read "NAME: X MB/s (B bytes, T tokens, best of R)".
std::map<std::string, ReferenceResult> RunTokenizersJs(const std::string& modules, double mib,
                                                       int repeat, std::string* error) {
  std::map<std::string, ReferenceResult> out;
  const std::string command = absl::StrCat(
      "node '", AFD_SOURCE_DIR, "/bench/tokenizer/hf_tokenizers_bench.mjs' --modules '", modules,
      "' --tokenizers '", EnvOr("AFD_TOKENIZERS_DIR", AFD_BUILD_DIR "/tokenizers"), "' --data '",
      EnvOr("AFD_TEST_DATA", AFD_SOURCE_DIR "/tests/data"), "' --mib ", mib, " --repeat ", repeat,
      " 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    *error = "cannot run node";
    return out;
  }
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) text.append(buf, n);
  if (pclose(pipe) != 0) {
    *error = absl::StrCat("node failed:\n", text);
    return out;
  }
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    const std::vector<absl::string_view> words = absl::StrSplit(line, ' ');
    if (words.size() < 7 || !absl::EndsWith(words[0], ":") || words[2] != "MB/s") continue;
    ReferenceResult r;
    if (!absl::SimpleAtod(words[1], &r.mb_per_s) || !absl::SimpleAtoi(words[5], &r.tokens)) {
      continue;
    }
    out[std::string(words[0].substr(0, words[0].size() - 1))] = r;
  }
  if (out.empty()) *error = absl::StrCat("no results from node:\n", text);
  return out;
}

int RunReference(double mib, int repeat) {
  const std::string text = RepeatUnit(static_cast<size_t>(mib * (1 << 20)));
  if (text.empty()) {
    std::fprintf(stderr, "tokenizer_bench: the golden texts are missing\n");
    return 1;
  }
  const std::string modules =
      EnvOr("AFD_HF_TOKENIZERS_JS", AFD_BUILD_DIR "/bench/tokenizer/js/node_modules");
  if (!std::ifstream(modules + "/@huggingface/tokenizers/package.json")) {
    std::fprintf(stderr,
                 "tokenizer_bench: no @huggingface/tokenizers in %s (run `ninja "
                 "hf_tokenizers_js` or set AFD_HF_TOKENIZERS_JS)\n",
                 modules.c_str());
    return 1;
  }
  std::printf(
      "encode, the same %.2f MB mixed text, best of %d: afd::gateway::Tokenizer vs "
      "@huggingface/tokenizers under node (reference)\n",
      text.size() / 1e6, repeat);
  std::fflush(stdout);
  std::string error;
  const std::map<std::string, ReferenceResult> reference =
      RunTokenizersJs(modules, mib, repeat, &error);
  if (!error.empty()) {
    std::fprintf(stderr, "tokenizer_bench: %s\n", error.c_str());
    return 1;
  }
  std::printf("%-22s %12s %18s %9s %12s %12s\n", "tokenizer", "afd MB/s", "tokenizers.js MB/s",
              "ratio", "afd tokens", "js tokens");
  bool counts_match = true;
  for (int i = 0; i < 4; ++i) {
    const afd::gateway::Tokenizer* tokenizer = GetTokenizer(i);
    auto ref = reference.find(kNames[i]);
    if (tokenizer == nullptr || ref == reference.end()) {
      std::fprintf(stderr, "tokenizer_bench: %s missing\n", kNames[i]);
      return 1;
    }
    std::vector<int32_t> ids;
    double best = 1e30;
    for (int r = 0; r < repeat; ++r) {
      ids.clear();
      const auto start = std::chrono::steady_clock::now();
      if (!tokenizer->EncodeAppend(text, &ids).ok()) return 1;
      best = std::min(
          best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    const double mb_per_s = text.size() / 1e6 / best;
    const int64_t tokens = static_cast<int64_t>(ids.size());
    counts_match = counts_match && tokens == ref->second.tokens;
    std::printf("%-22s %12.2f %18.2f %8.1fx %12lld %12lld\n", kNames[i], mb_per_s,
                ref->second.mb_per_s, mb_per_s / ref->second.mb_per_s,
                static_cast<long long>(tokens), static_cast<long long>(ref->second.tokens));
  }
  if (!counts_match) {
    std::fprintf(stderr, "tokenizer_bench: token counts differ from the reference\n");
    return 1;
  }
  return 0;
}

// Removes `--name` / `--name=value` from argv; returns whether it was there (value in *value).
bool TakeFlag(int* argc, char** argv, const char* name, std::string* value) {
  const std::string flag = absl::StrCat("--", name);
  for (int i = 1; i < *argc; ++i) {
    const std::string arg = argv[i];
    if (arg != flag && arg.rfind(flag + "=", 0) != 0) continue;
    if (value != nullptr && arg.size() > flag.size()) *value = arg.substr(flag.size() + 1);
    for (int k = i; k + 1 < *argc; ++k) argv[k] = argv[k + 1];
    --*argc;
    return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mib_text = "1", repeat_text = "2";
  const bool reference = TakeFlag(&argc, argv, "reference", nullptr);
  TakeFlag(&argc, argv, "reference_mib", &mib_text);
  TakeFlag(&argc, argv, "reference_repeat", &repeat_text);
  if (reference) {
    double mib = 0;
    int repeat = 0;
    if (!absl::SimpleAtod(mib_text, &mib) || mib <= 0 || !absl::SimpleAtoi(repeat_text, &repeat) ||
        repeat < 1) {
      std::fprintf(stderr,
                   "usage: tokenizer_bench --reference [--reference_mib=X] "
                   "[--reference_repeat=N]\n");
      return 2;
    }
    return RunReference(mib, repeat);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
