// Machine limits: read bandwidth (Highway streaming sums, dynamic dispatch) and OpenBLAS sgemm.
#include "bench/common/machine_limits.h"

#include <cblas.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "bench/common/machine_limits.cc"
#include "hwy/cache_control.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace afd::bench {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Sum of p[0, n): one stream, four independent accumulators.
float SumFloats(const float* p, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
  size_t i = 0;
  for (; i + 4 * lanes <= n; i += 4 * lanes) {
    a0 = hn::Add(a0, hn::LoadU(d, p + i));
    a1 = hn::Add(a1, hn::LoadU(d, p + i + lanes));
    a2 = hn::Add(a2, hn::LoadU(d, p + i + 2 * lanes));
    a3 = hn::Add(a3, hn::LoadU(d, p + i + 3 * lanes));
  }
  float s = hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
  for (; i < n; ++i) s += p[i];
  return s;
}

// Sum of p[0, n) read as eight interleaved streams with software prefetch (more misses in
// flight: what a multi-row kernel sees).
float SumFloats8(const float* p, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  const size_t part = n / 8 / lanes * lanes;
  hn::Vec<decltype(d)> a[8];
  for (auto& v : a) v = hn::Zero(d);
  for (size_t i = 0; i < part; i += lanes) {
    for (int k = 0; k < 8; ++k) {
      const float* q = p + k * part + i;
      if (i % 16 == 0) hwy::Prefetch(q + 256);
      a[k] = hn::Add(a[k], hn::LoadU(d, q));
    }
  }
  for (int k = 1; k < 8; ++k) a[0] = hn::Add(a[0], a[k]);
  float s = hn::GetLane(hn::SumOfLanes(d, a[0]));
  for (size_t i = 8 * part; i < n; ++i) s += p[i];
  return s;
}

}  // namespace HWY_NAMESPACE
}  // namespace afd::bench
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "common/kernels/thread_pool.h"

namespace afd::bench {
HWY_EXPORT(SumFloats);
HWY_EXPORT(SumFloats8);

double MeasureReadBandwidth(int threads, double seconds) {
  threads = std::max(threads, 1);
  const size_t n = (size_t{512} << 20) / sizeof(float);
  std::vector<float> buf(n, 1.0f);
  kernels::ThreadPool pool(threads);
  std::vector<float> part(threads, 0.0f);
  volatile float sink = 0;
  double best_s = 1e30;
  for (bool multi : {false, true}) {
    const Timing t = TimeCalls(seconds, [&] {
      pool.ParallelFor(threads, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const float* p = buf.data() + n / threads * i;
          part[i] = multi ? HWY_DYNAMIC_DISPATCH(SumFloats8)(p, n / threads)
                          : HWY_DYNAMIC_DISPATCH(SumFloats)(p, n / threads);
        }
      });
      float s = 0;
      for (float v : part) s += v;
      sink = sink + s;
    });
    best_s = std::min(best_s, t.best_s);
  }
  return static_cast<double>(n / threads * threads) * sizeof(float) / best_s / 1e9;
}

double MeasureSgemm(int threads, double seconds, int m, int n, int k) {
  std::vector<float> a(static_cast<size_t>(m) * k), b(static_cast<size_t>(n) * k),
      c(static_cast<size_t>(m) * n);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.5f + 0.001f * static_cast<float>(i % 97);
  for (size_t i = 0; i < b.size(); ++i) b[i] = 0.25f - 0.001f * static_cast<float>(i % 89);
  openblas_set_num_threads(std::max(threads, 1));
  const Timing t = TimeCalls(seconds, [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a.data(), k, b.data(), k,
                0.0f, c.data(), n);
  });
  return 2.0 * m * n * k / t.best_s / 1e9;
}

std::string OpenBlasCore() {
  const char* name = openblas_get_corename();
  return name != nullptr ? name : "unknown";
}

std::string OpenBlasEnvironment() {
  std::string env;
  for (const char* var : {"OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS"}) {
    const char* value = std::getenv(var);
    if (!env.empty()) env += " ";
    env += std::string(var) + "=" + (value != nullptr ? value : "(unset)");
  }
  return env;
}

double MachineLimits::ReadGbps(int threads) const {
  if (max_threads() < 1) return 0;
  return read_gbps[std::clamp(threads, 1, max_threads())];
}

double MachineLimits::SgemmGflops(int threads) const {
  if (max_threads() < 1) return 0;
  return sgemm_gflops[std::clamp(threads, 1, max_threads())];
}

MachineLimits MeasureMachineLimits(int max_threads, double seconds) {
  max_threads = std::max(max_threads, 1);
  MachineLimits limits;
  const afd::StealMeter steal;
  limits.read_gbps.assign(max_threads + 1, 0.0);
  limits.sgemm_gflops.assign(max_threads + 1, 0.0);
  for (int t = 1; t <= max_threads; ++t) {
    limits.read_gbps[t] = MeasureReadBandwidth(t, seconds);
    limits.sgemm_gflops[t] = MeasureSgemm(t, seconds);
  }
  limits.openblas_core = OpenBlasCore();
  limits.openblas_env = OpenBlasEnvironment();
  limits.steal_fraction = steal.Fraction();
  return limits;
}

void PrintMachineLimits(const MachineLimits& limits, std::FILE* out) {
  std::fprintf(out, "%-34s", "baseline");
  for (int t = 1; t <= limits.max_threads(); ++t) {
    std::fprintf(out, " %8d th", t);
  }
  std::fprintf(out, "\n%-34s", "read bandwidth GB/s");
  for (int t = 1; t <= limits.max_threads(); ++t) std::fprintf(out, " %11.1f", limits.read_gbps[t]);
  std::fprintf(out, "\n%-34s", "sgemm GFLOP/s (128x1536x1536)");
  for (int t = 1; t <= limits.max_threads(); ++t) {
    std::fprintf(out, " %11.1f", limits.sgemm_gflops[t]);
  }
  std::fprintf(out, "\nOpenBLAS core %s (%s)\n", limits.openblas_core.c_str(),
               limits.openblas_env.c_str());
  if (limits.steal_fraction >= 0) {
    std::fprintf(out, "CPU steal while measuring these: %.1f %% (time the hypervisor ran others)\n",
                 100.0 * limits.steal_fraction);
  }
  std::fprintf(out, "\n");
}

void PrintRunSteal(const afd::StealMeter& meter, std::FILE* out) {
  if (const double steal = meter.Fraction(); steal >= 0) {
    std::fprintf(out, "\nCPU steal over this run: %.1f %% (time the hypervisor ran other guests)\n",
                 100.0 * steal);
  }
}

}  // namespace afd::bench
#endif  // HWY_ONCE
