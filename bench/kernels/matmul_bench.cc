// Matrix-product kernel benchmark: how close the decode kernels get to the machine's memory
// bandwidth and the prefill kernels to OpenBLAS sgemm, at the m2-perf shapes.
//
// Run (Release build; quiet machine: other load skews every number):
//   ninja -C build matmul_bench && build/bin/matmul_bench [filter] [--seconds=S] [--hot]
// `filter` keeps only the rows whose name contains it (e.g. `decode`, `fp8`, `t2`). `--hot`
// reuses one copy of the decode weights (cache-resident: the kernels' compute ceiling).
// Prints four tables:
// 1. Baselines: read bandwidth (best of a one-stream and an eight-stream prefetching sum over a
//    512 MiB buffer, 1 and 2 threads) and OpenBLAS sgemm GFLOP/s (128 x 1536 x 1536, 1 and 2
//    threads).
// 2. Decode (n = 1, 8; bf16 and fp8; 1 and 2 threads): GB/s of weights read and % of the
//    bandwidth measured with the same thread count. Each call reads a different copy of the
//    weights (>= 1 GiB of copies in all, more than any L3), so the weights stream from DRAM.
// 3. Prefill (n = 128): per shape OpenBLAS sgemm (the yardstick), then MatMul with f32, bf16
//    and fp8 weights: GFLOP/s and % of that shape's sgemm with the same thread count.
// 4. ThreadPool::ParallelFor overhead (empty body), 2 threads.
// Times are per call: best and median over repeated calls for about `S` seconds (default 0.3)
// per row; rates use the best time. Inputs are fixed (seeded generator).
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "bench/kernels/matmul_bench.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/cache_control.h"
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
#include "common/kernels/matmul.h"
#include "common/kernels/thread_pool.h"

namespace afd::bench {
HWY_EXPORT(SumFloats);
HWY_EXPORT(SumFloats8);

namespace {

using kernels::ThreadPool;
using kernels::WeightType;
using kernels::WeightView;
using Clock = std::chrono::steady_clock;

constexpr size_t kColdBytes = size_t{1} << 30;  // weight copies per decode row (> L3)

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

struct Timing {
  double best_s = 0;
  double median_s = 0;
};

// Calls fn() (after one warm-up call) until `seconds` have passed and at least 5 times.
template <class Fn>
Timing Time(double seconds, const Fn& fn) {
  fn();
  std::vector<double> times;
  const auto start = Clock::now();
  while (times.size() < 5 || Seconds(Clock::now() - start) < seconds) {
    const auto t0 = Clock::now();
    fn();
    times.push_back(Seconds(Clock::now() - t0));
  }
  std::sort(times.begin(), times.end());
  return {times.front(), times[times.size() / 2]};
}

// Best of a one-stream and an eight-stream read of a 512 MiB buffer split across the threads.
double MeasureReadBandwidth(int threads, double seconds) {
  const size_t n = (size_t{512} << 20) / sizeof(float);
  std::vector<float> buf(n, 1.0f);
  ThreadPool pool(threads);
  volatile float sink = 0;
  double best_s = 1e30;
  for (bool multi : {false, true}) {
    const Timing t = Time(seconds, [&] {
      float part[2] = {0, 0};
      pool.ParallelFor(threads, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const float* p = buf.data() + n / threads * i;
          part[i] = multi ? HWY_DYNAMIC_DISPATCH(SumFloats8)(p, n / threads)
                          : HWY_DYNAMIC_DISPATCH(SumFloats)(p, n / threads);
        }
      });
      sink = sink + part[0] + part[1];
    });
    best_s = std::min(best_s, t.best_s);
  }
  return n * sizeof(float) / best_s / 1e9;
}

double MeasureSgemm(int threads, double seconds) {
  const int m = 128, nn = 1536, k = 1536;
  std::vector<float> a(m * k, 0.5f), b(nn * k, 0.25f), c(m * nn);
  openblas_set_num_threads(threads);
  const Timing t = Time(seconds, [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nn, k, 1.0f, a.data(), k, b.data(),
                k, 0.0f, c.data(), nn);
  });
  return 2.0 * m * nn * k / t.best_s / 1e9;
}

// Copies of one random weight matrix (fixed seed), enough to fill `min_total_bytes`.
class WeightCopies {
 public:
  WeightCopies(WeightType type, int64_t rows, int64_t cols, size_t min_total_bytes) {
    WeightView v;
    v.type = type;
    v.rows = rows;
    v.cols = cols;
    const size_t count = static_cast<size_t>(rows * cols);
    const size_t bytes = count * v.ElementBytes();
    const size_t copies = std::max<size_t>(1, (min_total_bytes + bytes - 1) / bytes);
    const int64_t nrb = (rows + 127) / 128, ncb = (cols + 127) / 128;
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
    for (size_t i = 0; i < copies; ++i) {
      data_.emplace_back(new uint8_t[bytes]);
      uint8_t* p = data_.back().get();
      if (i > 0) {
        memcpy(p, data_[0].get(), bytes);
      } else {
        for (size_t j = 0; j < count; ++j) {
          if (type == WeightType::kF32) {
            const float f = uni(rng);
            memcpy(p + 4 * j, &f, 4);
          } else if (type == WeightType::kBF16) {
            const uint16_t h = kernels::FloatToBf16(uni(rng));
            memcpy(p + 2 * j, &h, 2);
          } else {
            uint8_t q = static_cast<uint8_t>(rng());
            if ((q & 0x7F) == 0x7F) q = 0;
            p[j] = q;
          }
        }
      }
      scales_.emplace_back(nrb * ncb, 0.01f);
      v.data = p;
      v.scales = type == WeightType::kFp8E4M3 ? scales_.back().data() : nullptr;
      views_.push_back(v);
    }
  }
  size_t size() const { return views_.size(); }
  const WeightView& Get(size_t i) const { return views_[i % views_.size()]; }

 private:
  std::vector<std::unique_ptr<uint8_t[]>> data_;
  std::vector<std::vector<float>> scales_;
  std::vector<WeightView> views_;
};

const char* TypeName(WeightType t) {
  switch (t) {
    case WeightType::kF32: return "f32";
    case WeightType::kBF16: return "bf16";
    case WeightType::kF16: return "f16";
    case WeightType::kFp8E4M3: return "fp8";
  }
  return "?";
}

struct Shape {
  int64_t rows, cols;
};
constexpr Shape kShapes[] = {{1536, 1536}, {768, 1536}, {1536, 768}, {32000, 1536}};

// Times MatMul over the copies in turn.
Timing TimeMatMul(const WeightCopies& weights, int64_t n, int threads, double seconds) {
  const WeightView& w0 = weights.Get(0);
  std::vector<float> x(n * w0.cols), y(n * w0.rows);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.1f * static_cast<float>(i));
  std::unique_ptr<ThreadPool> pool;
  if (threads > 1) pool = std::make_unique<ThreadPool>(threads);
  size_t i = 0;
  return Time(seconds, [&] { kernels::MatMul(x.data(), n, weights.Get(i++), y.data(), pool.get()); });
}

}  // namespace
}  // namespace afd::bench

int main(int argc, char** argv) {
  using namespace afd::bench;  // NOLINT
  std::string filter;
  double seconds = 0.3;
  bool hot = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("usage: matmul_bench [filter] [--seconds=S] [--hot]\n");
      return 0;
    }
    if (arg == "--hot") {
      hot = true;
    } else if (arg.rfind("--seconds=", 0) == 0) {
      seconds = std::atof(arg.c_str() + 10);
    } else if (!arg.empty() && arg[0] != '-') {
      filter = arg;
    } else {
      std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
      return 1;
    }
  }
  auto keep = [&](const std::string& name) {
    return filter.empty() || name.find(filter) != std::string::npos;
  };

  double bw[3] = {0, 0, 0}, sgemm[3] = {0, 0, 0};
  for (int t = 1; t <= 2; ++t) {
    bw[t] = MeasureReadBandwidth(t, seconds);
    sgemm[t] = MeasureSgemm(t, seconds);
  }
  std::printf("%-34s %10s %10s\n", "baseline", "1 thread", "2 threads");
  std::printf("%-34s %10.1f %10.1f\n", "read bandwidth GB/s", bw[1], bw[2]);
  std::printf("%-34s %10.1f %10.1f  (OpenBLAS core %s)\n\n", "sgemm GFLOP/s (128x1536x1536)",
              sgemm[1], sgemm[2], openblas_get_corename());

  std::printf("%-34s %10s %10s %8s %6s\n",
              hot ? "decode (weights hot in cache)" : "decode (weights from DRAM)", "best us",
              "median us", "GB/s", "%BW");
  for (WeightType type : {WeightType::kBF16, WeightType::kFp8E4M3}) {
    for (const Shape& s : kShapes) {
      std::unique_ptr<WeightCopies> weights;
      for (int64_t n : {1, 8}) {
        for (int threads : {1, 2}) {
          char name[128];
          std::snprintf(name, sizeof(name), "decode %s %lldx%lld n%lld t%d", TypeName(type),
                        static_cast<long long>(s.rows), static_cast<long long>(s.cols),
                        static_cast<long long>(n), threads);
          if (!keep(name)) continue;
          if (!weights) weights = std::make_unique<WeightCopies>(type, s.rows, s.cols, hot ? 0 : kColdBytes);
          const Timing t = TimeMatMul(*weights, n, threads, seconds);
          const double gbps = weights->Get(0).Bytes() / t.best_s / 1e9;
          std::printf("%-34s %10.1f %10.1f %8.2f %5.0f%%\n", name, t.best_s * 1e6,
                      t.median_s * 1e6, gbps, 100.0 * gbps / bw[threads]);
          std::fflush(stdout);
        }
      }
    }
  }

  std::printf("\n%-34s %10s %10s %8s %6s\n", "prefill n=128", "best us", "median us",
              "GFLOP/s", "%sgemm");
  // Per shape: OpenBLAS sgemm itself (the yardstick), then MatMul on f32, bf16, fp8 weights.
  for (const Shape& s : kShapes) {
    bool any = false;
    for (const char* type : {"sgemm", "f32", "bf16", "fp8"}) {
      for (int threads : {1, 2}) {
        char name[128];
        std::snprintf(name, sizeof(name), "prefill %s %lldx%lld n128 t%d", type,
                      static_cast<long long>(s.rows), static_cast<long long>(s.cols), threads);
        any = any || keep(name);
      }
    }
    if (!any) continue;
    double shape_sgemm[3] = {0, 0, 0};
    for (int threads : {1, 2}) {
      char name[128];
      std::snprintf(name, sizeof(name), "prefill sgemm %lldx%lld n128 t%d",
                    static_cast<long long>(s.rows), static_cast<long long>(s.cols), threads);
      const int m = 128, nn = static_cast<int>(s.rows), k = static_cast<int>(s.cols);
      std::vector<float> a(static_cast<size_t>(m) * k), b(static_cast<size_t>(nn) * k),
          c(static_cast<size_t>(m) * nn);
      for (size_t i = 0; i < a.size(); ++i) a[i] = std::sin(0.1f * static_cast<float>(i));
      for (size_t i = 0; i < b.size(); ++i) b[i] = std::cos(0.1f * static_cast<float>(i));
      openblas_set_num_threads(threads);
      const Timing t = Time(seconds, [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nn, k, 1.0f, a.data(), k,
                    b.data(), k, 0.0f, c.data(), nn);
      });
      shape_sgemm[threads] = 2.0 * m * nn * k / t.best_s / 1e9;
      if (keep(name)) {
        std::printf("%-34s %10.1f %10.1f %8.1f %5.0f%%\n", name, t.best_s * 1e6,
                    t.median_s * 1e6, shape_sgemm[threads], 100.0);
      }
    }
    for (WeightType type : {WeightType::kF32, WeightType::kBF16, WeightType::kFp8E4M3}) {
      std::unique_ptr<WeightCopies> weights;
      for (int threads : {1, 2}) {
        char name[128];
        std::snprintf(name, sizeof(name), "prefill %s %lldx%lld n128 t%d", TypeName(type),
                      static_cast<long long>(s.rows), static_cast<long long>(s.cols), threads);
        if (!keep(name)) continue;
        if (!weights) weights = std::make_unique<WeightCopies>(type, s.rows, s.cols, 0);
        const Timing t = TimeMatMul(*weights, 128, threads, seconds);
        const double gflops = 2.0 * 128 * s.rows * s.cols / t.best_s / 1e9;
        std::printf("%-34s %10.1f %10.1f %8.1f %5.0f%%\n", name, t.best_s * 1e6,
                    t.median_s * 1e6, gflops, 100.0 * gflops / shape_sgemm[threads]);
        std::fflush(stdout);
      }
    }
  }

  if (keep("threadpool")) {
    ThreadPool pool(2);
    int64_t hits[2] = {0, 0};
    const int kCalls = 10000;
    const Timing t = Time(seconds, [&] {
      for (int i = 0; i < kCalls; ++i) {
        pool.ParallelFor(2, [&](int64_t b, int64_t e) {
          for (int64_t j = b; j < e; ++j) ++hits[j];
        });
      }
    });
    std::printf("\n%-34s %10.2f %10.2f us per call\n", "threadpool ParallelFor t2 (empty)",
                t.best_s * 1e6 / kCalls, t.median_s * 1e6 / kCalls);
  }
  return 0;
}
#endif  // HWY_ONCE
