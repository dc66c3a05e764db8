// Machine limits measured at run time, the yardsticks every benchmark reports its ratios against:
// DRAM read bandwidth per thread count, OpenBLAS sgemm GFLOP/s per thread count and the OpenBLAS
// core (kernel set) in use. Plus the timing helper the benches share. Not thread-safe: measure from
// one thread while nothing else runs (the measurements start their own threads).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "common/cpu_steal.h"

namespace afd::bench {

// Best and median wall time of one call, in seconds.
struct Timing {
  double best_s = 0;
  double median_s = 0;
};

// Calls fn() once to warm up, then repeatedly until `seconds` have passed and at least
// `min_calls` times; returns the best and median call time.
template <class Fn>
Timing TimeCalls(double seconds, const Fn& fn, int min_calls = 5) {
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  fn();
  std::vector<double> times;
  const auto start = Clock::now();
  while (static_cast<int>(times.size()) < min_calls || since(start) < seconds) {
    const auto t0 = Clock::now();
    fn();
    times.push_back(since(t0));
  }
  std::sort(times.begin(), times.end());
  return {times.front(), times[times.size() / 2]};
}

// DRAM read bandwidth in GB/s (1e9 bytes/s) with `threads` threads: the best of a one-stream and an
// eight-stream prefetching sum (Highway, dynamic dispatch) over a 512 MiB buffer split across the
// threads, each timed for about `seconds`.
double MeasureReadBandwidth(int threads, double seconds);

// OpenBLAS sgemm GFLOP/s for C[m, n] = A[m, k] * B[n, k]^T (row-major, B transposed: the layout
// of y = x * W^T) with `threads` OpenBLAS threads, best call over about `seconds`. Leaves
// OpenBLAS set to `threads` threads.
double MeasureSgemm(int threads, double seconds, int m = 128, int n = 1536, int k = 1536);

// The OpenBLAS core (kernel set) chosen at startup, e.g. "SkylakeX" or "Haswell", and the
// OPENBLAS_CORETYPE / OPENBLAS_NUM_THREADS environment it was chosen under.
std::string OpenBlasCore();
std::string OpenBlasEnvironment();

// All limits for 1..max_threads threads (vectors indexed by thread count; index 0 unused).
struct MachineLimits {
  std::vector<double> read_gbps;     // [max_threads + 1]
  std::vector<double> sgemm_gflops;  // [max_threads + 1], shape 128 x 1536 x 1536
  std::string openblas_core;
  std::string openblas_env;
  double steal_fraction = -1;  // StealMeter (common/cpu_steal.h) over the measurements
  int max_threads() const { return static_cast<int>(read_gbps.size()) - 1; }
  // The measured value for `threads`, clamped into [1, max_threads].
  double ReadGbps(int threads) const;
  double SgemmGflops(int threads) const;
};

// Measures read bandwidth and sgemm for 1..max_threads threads, about `seconds` per measurement.
MachineLimits MeasureMachineLimits(int max_threads = 2, double seconds = 0.3);

// Prints the limits as a small table (one column per thread count) to `out`.
void PrintMachineLimits(const MachineLimits& limits, std::FILE* out = stdout);

// Prints the steal `meter` saw since it started ("CPU steal over this run: ..."), if known.
void PrintRunSteal(const afd::StealMeter& meter, std::FILE* out = stdout);

}  // namespace afd::bench
