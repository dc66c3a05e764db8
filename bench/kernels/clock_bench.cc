// Busy-core benchmark: how a core's speed changes with the number of cores busy at once (turbo
// and power limits; on a virtual machine, also the host's other work on the same physical
// cores), which caps how far work spread over more cores can scale on one host.
//
// Run (Release build, quiet machine):
//   ninja -C build clock_bench && build/bin/clock_bench [--cores=1,2,4,8,16] [--seconds=S]
// For each count k in --cores (default 1, 2, 4, ... up to the cores present), k threads pinned to
// cores 0..k-1 start together and run, for about S seconds (default 1), one of two loads:
//  - scalar: a chain of dependent integer multiplies (3 cycles each): GHz ~ 3 x multiplies/s;
//  - expert: the expert products' kernel at decode shapes (MatMulRows, 8 tokens, a 384 x 1536
//    bf16 matrix per thread, cache-resident): GFLOP/s per core with no memory traffic.
// Prints per count the mean and slowest core's rate and the mean as a fraction of one busy
// core's (--per-core: every core's expert rate too), then what that predicts for splitting a fixed
// amount of such work over more cores: speedup(k -> m) = (m / k) * rate(m) / rate(k), e.g. 1 expert
// node of 2 cores against 4 of 2.
// --pairs instead runs every pair of cores (S seconds each; 0.2 is enough) to find vCPUs that
// slow each other down (hyperthreads of one physical core on the host, say).
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/kernels/matmul.h"
#include "common/kernels/weight_view.h"

namespace afd::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int64_t kTokens = 8;
constexpr int64_t kRows = 384;
constexpr int64_t kCols = 1536;

// Pins the calling thread to `core`; false where the core is not available.
bool PinTo(int core) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

// Dependent integer multiplies until `stop`; returns how many. A multiply's latency is 3 cycles
// on current x86 cores, so 3 * multiplies/s estimates the clock (dependent adds of constants do
// not: some cores fold them at rename). The empty asm keeps every multiply.
int64_t ScalarChain(const std::atomic<bool>& stop) {
  uint64_t x = 1;
  int64_t muls = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    for (int i = 0; i < 4096; ++i) {
      x *= 0x9E3779B97F4A7C15ull;
      asm volatile("" : "+r"(x));
      x *= 0x9E3779B97F4A7C15ull;
      asm volatile("" : "+r"(x));
    }
    muls += 2 * 4096;
  }
  asm volatile("" : : "r"(x));
  return muls;
}

// Per-thread expert product state: its own weights, x and y.
struct ExpertLoad {
  std::vector<uint16_t> weights;
  std::vector<float> x;
  std::vector<float> y;
  kernels::WeightView view;

  explicit ExpertLoad(int seed) : weights(kRows * kCols), x(kTokens * kCols), y(kTokens * kRows) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (uint16_t& w : weights) {
      const float v = dist(rng) * 0.05f;
      uint32_t bits;
      std::memcpy(&bits, &v, sizeof(bits));
      w = static_cast<uint16_t>(bits >> 16);
    }
    for (float& v : x) v = dist(rng);
    view.type = kernels::WeightType::kBF16;
    view.data = weights.data();
    view.rows = kRows;
    view.cols = kCols;
  }
  // Products until `stop`; returns how many.
  int64_t Run(const std::atomic<bool>& stop) {
    int64_t calls = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      kernels::MatMulRows(x.data(), kTokens, view, 0, kRows, y.data());
      ++calls;
    }
    return calls;
  }
  static double FlopsPerCall() { return 2.0 * kTokens * kRows * kCols; }
};

struct Rates {
  std::vector<double> per_core;  // in the order of the cores asked for
  double mean = 0;
  double slowest = 0;
  bool pinned = true;
};

// Runs `load` ("scalar" or "expert") on `cores` at once for `seconds`; per-core rates in GHz
// (scalar) or GFLOP/s (expert).
Rates RunBusy(const std::vector<int>& cores, const std::string& load, double seconds) {
  const int k = static_cast<int>(cores.size());
  std::vector<std::unique_ptr<ExpertLoad>> states;
  if (load == "expert") {
    for (int i = 0; i < k; ++i) states.push_back(std::make_unique<ExpertLoad>(100 + i));
  }
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  std::atomic<bool> all_pinned{true};
  std::vector<double> rate(k, 0.0);
  std::vector<std::thread> threads;
  for (int i = 0; i < k; ++i) {
    threads.emplace_back([&, i] {
      if (!PinTo(cores[i])) all_pinned = false;
      if (load == "expert") {  // warm: fault in, fill the caches
        for (int w = 0; w < 20; ++w) {
          kernels::MatMulRows(states[i]->x.data(), kTokens, states[i]->view, 0, kRows,
                              states[i]->y.data());
        }
      }
      ready.fetch_add(1);
      while (!go.load()) {
      }
      const auto start = Clock::now();
      const int64_t done = load == "scalar" ? ScalarChain(stop) : states[i]->Run(stop);
      const double s = std::chrono::duration<double>(Clock::now() - start).count();
      rate[i] = (load == "scalar" ? 3.0 * done : done * ExpertLoad::FlopsPerCall()) / s / 1e9;
    });
  }
  while (ready.load() < k) std::this_thread::yield();
  go = true;
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (std::thread& t : threads) t.join();
  Rates r;
  r.per_core = rate;
  r.pinned = all_pinned;
  r.slowest = *std::min_element(rate.begin(), rate.end());
  for (double v : rate) r.mean += v / k;
  return r;
}

std::vector<int> FirstCores(int k) {
  std::vector<int> cores(k);
  for (int i = 0; i < k; ++i) cores[i] = i;
  return cores;
}

// --pairs: each core's expert-kernel rate alone, then with each other core busy too. Two vCPUs
// that are hyperthreads of one physical core on the host (invisible in the guest's topology)
// slow each other down; prints, per core, its solo rate and the partners that cost it most.
void RunPairs(int ncpu, double seconds) {
  std::vector<double> solo(ncpu);
  for (int i = 0; i < ncpu; ++i) solo[i] = RunBusy({i}, "expert", seconds).mean;
  // share[i][j]: i's rate with j busy, as a fraction of i's solo rate.
  std::vector<std::vector<double>> share(ncpu, std::vector<double>(ncpu, 1.0));
  for (int i = 0; i < ncpu; ++i) {
    for (int j = i + 1; j < ncpu; ++j) {
      const Rates r = RunBusy({i, j}, "expert", seconds);
      share[i][j] = r.per_core[0] / solo[i];
      share[j][i] = r.per_core[1] / solo[j];
    }
  }
  std::printf(
      "# pairs: expert-kernel GFLOP/s of each core alone, and the busy partners that "
      "slow it most (its rate then, as a fraction of alone)\n");
  for (int i = 0; i < ncpu; ++i) {
    std::vector<int> order;
    for (int j = 0; j < ncpu; ++j) {
      if (j != i) order.push_back(j);
    }
    std::sort(order.begin(), order.end(), [&](int a, int b) { return share[i][a] < share[i][b]; });
    std::printf("core %2d alone %6.1f;", i, solo[i]);
    for (int n = 0; n < std::min<int>(3, order.size()); ++n) {
      std::printf(" with %2d %.2f", order[n], share[i][order[n]]);
    }
    std::printf("\n");
  }
}

int Main(int argc, char** argv) {
  const int ncpu = static_cast<int>(std::thread::hardware_concurrency());
  std::vector<int> counts;
  double seconds = 1.0;
  bool per_core = false;
  bool pairs = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--per-core") {
      per_core = true;
    } else if (arg == "--pairs") {
      pairs = true;
    } else if (arg.rfind("--cores=", 0) == 0) {
      for (absl::string_view part : absl::StrSplit(arg.substr(8), ',')) {
        int k = 0;
        if (!absl::SimpleAtoi(part, &k) || k < 1 || k > ncpu) {
          std::fprintf(stderr, "--cores: '%s' is not a count in [1, %d]\n",
                       std::string(part).c_str(), ncpu);
          return 2;
        }
        counts.push_back(k);
      }
    } else if (arg.rfind("--seconds=", 0) == 0) {
      if (!absl::SimpleAtod(arg.substr(10), &seconds) || seconds <= 0) {
        std::fprintf(stderr, "--seconds: '%s' is not a positive number\n", arg.c_str() + 10);
        return 2;
      }
    } else {
      std::fprintf(stderr,
                   "usage: clock_bench [--cores=1,2,4,...] [--seconds=S] [--per-core] [--pairs]\n");
      return 2;
    }
  }
  if (pairs) {
    RunPairs(ncpu, seconds);
    return 0;
  }
  if (counts.empty()) {
    for (int k = 1; k < ncpu; k *= 2) counts.push_back(k);
    counts.push_back(ncpu);
  }
  std::printf("# busy cores: per-core rate with k cores busy at once (cores 0..k-1), %.1f s each\n",
              seconds);
  std::printf(
      "# scalar: 3 x dependent multiplies/s per core (~ GHz); expert: MatMulRows %lldx%lld "
      "bf16, %lld tokens, cache-resident, GFLOP/s per core\n",
      static_cast<long long>(kRows), static_cast<long long>(kCols),
      static_cast<long long>(kTokens));
  std::printf("%-6s %12s %12s %8s %14s %14s %8s\n", "busy", "scalar mean", "slowest", "vs 1",
              "expert mean", "slowest", "vs 1");
  std::vector<Rates> scalar, expert;
  for (int k : counts) {
    scalar.push_back(RunBusy(FirstCores(k), "scalar", seconds));
    expert.push_back(RunBusy(FirstCores(k), "expert", seconds));
    std::printf("%-6d %12.3f %12.3f %8.2f %14.1f %14.1f %8.2f%s\n", k, scalar.back().mean,
                scalar.back().slowest, scalar.back().mean / scalar.front().mean, expert.back().mean,
                expert.back().slowest, expert.back().mean / expert.front().mean,
                scalar.back().pinned && expert.back().pinned ? "" : "  (not pinned)");
    if (per_core) {
      std::printf("       expert per core:");
      for (double v : expert.back().per_core) std::printf(" %.0f", v);
      std::printf("\n");
    }
  }
  // Splitting fixed work from k busy cores onto m: (m / k) * rate(m) / rate(k), by the slowest
  // core (a split step waits for its slowest part).
  std::printf(
      "# speedup of fixed expert work spread from k to m busy cores, by the slowest "
      "core's rate (perfect: m/k)\n");
  for (size_t a = 0; a < counts.size(); ++a) {
    for (size_t b = a + 1; b < counts.size(); ++b) {
      const double perfect = static_cast<double>(counts[b]) / counts[a];
      if (perfect != 4.0) continue;
      std::printf("%d -> %d cores: %.2fx (perfect %.0fx)\n", counts[a], counts[b],
                  perfect * expert[b].slowest / expert[a].slowest, perfect);
    }
  }
  return 0;
}

}  // namespace
}  // namespace afd::bench

int main(int argc, char** argv) { return afd::bench::Main(argc, argv); }
