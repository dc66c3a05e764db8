// Tokenizer throughput: encode (and decode) MB/s of afd::gateway::Tokenizer on a ~10 MB mixed
// text built deterministically from the golden corpora: the texts of every case of the four
// tests/data/tokenizers/*/golden.json files, joined with "\n", repeated to at least 10 MiB.
// hf_tokenizers_bench.mjs builds the same text and times the reference tokenizers.js on it.
// Encode = the 10 MB text (word cache warm after the first copy), EncodeCold = one copy on a
// fresh tokenizer, EncodeShortRequests = ~1 KB requests, Decode, Load = reading tokenizer.json.
//
// Run (after the tokenizer fixtures exist, e.g. `ctest -R tokenizer_fetch`):
//   build/bin/tokenizer_bench [--benchmark_filter=Encode]
// Environment: AFD_TOKENIZERS_DIR (default <build>/tokenizers, one folder per tokenizer) and
// AFD_TEST_DATA (default <source>/tests/data).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

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

// Every golden case text of the four tokenizers joined with "\n" (~420 KB); empty if the
// golden files are missing.
const std::string& UnitText() {
  static const std::string* unit = [] {
    const std::string data = EnvOr("AFD_TEST_DATA", AFD_SOURCE_DIR "/tests/data");
    auto* out = new std::string;
    for (const char* name : kNames) {
      const auto golden = nlohmann::json::parse(
          ReadFile(data + "/tokenizers/" + name + "/golden.json"), nullptr, false);
      if (golden.is_discarded()) {
        out->clear();
        return out;
      }
      for (const auto& c : golden["cases"]) {
        if (!out->empty()) *out += '\n';
        *out += c["text"].get<std::string>();
      }
    }
    return out;
  }();
  return *unit;
}

// The benchmark text: the unit repeated to at least 10 MiB.
const std::string& MixedText() {
  static const std::string* text = [] {
    auto* out = new std::string;
    while (!UnitText().empty() && out->size() < kTargetBytes) {
      if (!out->empty()) *out += '\n';
      *out += UnitText();
    }
    return out;
  }();
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

void BM_Tokenizer_Encode(benchmark::State& state) {
  const afd::gateway::Tokenizer* tokenizer = GetTokenizer(state.range(0));
  const std::string& text = MixedText();
  if (tokenizer == nullptr || text.empty()) {
    state.SkipWithError("tokenizer or golden text missing");
    return;
  }
  state.SetLabel(kNames[state.range(0)]);
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
  const afd::gateway::Tokenizer* tokenizer = GetTokenizer(state.range(0));
  const std::string& text = MixedText();
  if (tokenizer == nullptr || text.empty()) {
    state.SkipWithError("tokenizer or golden text missing");
    return;
  }
  state.SetLabel(kNames[state.range(0)]);
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
  const afd::gateway::Tokenizer* tokenizer = GetTokenizer(state.range(0));
  const std::string& text = MixedText();
  if (tokenizer == nullptr || text.empty()) {
    state.SkipWithError("tokenizer or golden text missing");
    return;
  }
  state.SetLabel(kNames[state.range(0)]);
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

}  // namespace

BENCHMARK_MAIN();
