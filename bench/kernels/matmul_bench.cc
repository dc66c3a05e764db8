// Matrix-product kernel benchmark: how close the decode kernels get to the machine's memory
// bandwidth and the prefill kernels to OpenBLAS sgemm, at the m2-perf shapes.
//
// Run (Release build; quiet machine: other load skews every number):
//   ninja -C build matmul_bench && build/bin/matmul_bench [filter] [--seconds=S] [--hot]
//   [--kernels]
// `filter` keeps only the rows whose name contains it (e.g. `decode`, `small`, `fp8`, `t2`).
// `--hot` reuses one copy of the weights (cache-resident: the kernels' compute ceiling).
// `--kernels` adds small-n rows with the decode and the prefill kernel forced.
// `--tokens=5,6,7` runs the small-n table at those token counts instead.
// Prints five tables:
// 1. Baselines (bench/common/machine_limits.h): read bandwidth (best of a one-stream and an
//    eight-stream prefetching sum over a 512 MiB buffer, 1 and 2 threads) and OpenBLAS sgemm
//    GFLOP/s (128 x 1536 x 1536, 1 and 2 threads), with the OpenBLAS core in use.
// 2. Decode (n = 1; bf16 and fp8; 1 and 2 threads): GB/s of weights read and % of the
//    bandwidth measured with the same thread count (and GFLOP/s, % of the sgemm rate). Each call
//    reads a different copy of the weights (>= 1 GiB of copies in all, more than any L3), so the
//    weights stream from DRAM. Rows ending in `bf16act` use MatMulOptions{Activations::kBF16}.
// 3. Small n (2, 4, 8, 16, 32 unless --tokens: batched decode, per-expert token groups of a
//    prefill): the same columns.
// 4. Prefill (n = 128): per shape OpenBLAS sgemm (the yardstick), then MatMul with f32, bf16
//    and fp8 weights: GFLOP/s and % of that shape's sgemm with the same thread count.
// 5. ThreadPool::ParallelFor overhead (empty body), 2 threads.
// Times are per call: best and median over repeated calls for about `S` seconds (default 0.3)
// per row; rates use the best time. Inputs are fixed (seeded generator).
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/common/machine_limits.h"
#include "common/kernels/matmul.h"
#include "common/kernels/matmul_internal.h"
#include "common/kernels/thread_pool.h"
#include "common/kernels/tile_matmul.h"

namespace afd::bench {
namespace {

using kernels::ThreadPool;
using kernels::WeightType;
using kernels::WeightView;

constexpr size_t kColdBytes = size_t{1} << 30;  // weight copies per decode row (> L3)

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
    case WeightType::kF32:
      return "f32";
    case WeightType::kBF16:
      return "bf16";
    case WeightType::kF16:
      return "f16";
    case WeightType::kFp8E4M3:
      return "fp8";
    case WeightType::kAwqInt4:
      return "awq";
    case WeightType::kMlxAffine:
      return "mlx";
  }
  return "?";
}

struct Shape {
  int64_t rows, cols;
};
constexpr Shape kShapes[] = {{1536, 1536}, {768, 1536}, {1536, 768}, {32000, 1536}};
constexpr Shape kSmallShapes[] = {{1536, 1536}, {768, 1536}, {1536, 768}};

// Which product the timed call runs: MatMul (its own kernel choice), or the decode or the prefill
// kernel forced (kernels::internal::MatMulRowsKernel, rows split over the pool as MatMul does).
// kBf16Act: MatMul with MatMulOptions{Activations::kBF16} (bf16 and fp8 weights).
// kTiles: MatMul with MatMulOptions{.kernel = Kernel::kTiles} (bf16/FP8 weights on AMX tiles, the
// engine's prompt path; where the CPU has no tiles it is the same as kAuto).
enum class Kernel { kAuto, kDecode, kPrefill, kBf16Act, kTiles };

const char* KernelName(Kernel k) {
  switch (k) {
    case Kernel::kAuto:
      return "";
    case Kernel::kDecode:
      return " decode-kernel";
    case Kernel::kPrefill:
      return " prefill-kernel";
    case Kernel::kBf16Act:
      return " bf16act";
    case Kernel::kTiles:
      return " tiles";
  }
  return "";
}

// Whether kTiles rows of `type` run on the tiles (else they would repeat the kAuto rows).
bool TilesRun(WeightType type) {
  return (type == WeightType::kBF16 || type == WeightType::kFp8E4M3) &&
         afd::kernels::TileProductsAvailable();
}

// Times the product over the copies in turn.
Timing TimeMatMul(const WeightCopies& weights, int64_t n, int threads, double seconds,
                  Kernel kernel = Kernel::kAuto) {
  const WeightView& w0 = weights.Get(0);
  std::vector<float> x(n * w0.cols), y(n * w0.rows);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.1f * static_cast<float>(i));
  std::unique_ptr<ThreadPool> pool;
  if (threads > 1) pool = std::make_unique<ThreadPool>(threads);
  size_t i = 0;
  if (kernel == Kernel::kAuto || kernel == Kernel::kBf16Act || kernel == Kernel::kTiles) {
    kernels::MatMulOptions options;
    if (kernel == Kernel::kBf16Act) options.activations = kernels::Activations::kBF16;
    if (kernel == Kernel::kTiles) options.kernel = afd::kernels::Kernel::kTiles;
    return TimeCalls(seconds, [&] {
      kernels::MatMul(x.data(), n, weights.Get(i++), y.data(), pool.get(), options);
    });
  }
  const bool prefill = kernel == Kernel::kPrefill;
  constexpr int64_t kUnit = 48;  // rows per pool unit, as MatMul
  return TimeCalls(seconds, [&] {
    const WeightView& w = weights.Get(i++);
    auto rows = [&](int64_t b, int64_t e) {
      kernels::internal::MatMulRowsKernel(x.data(), n, w, b * kUnit, std::min(e * kUnit, w.rows),
                                          y.data(), prefill);
    };
    if (pool) {
      pool->ParallelFor((w.rows + kUnit - 1) / kUnit, rows);
    } else {
      rows(0, (w.rows + kUnit - 1) / kUnit);
    }
  });
}

}  // namespace
}  // namespace afd::bench

int main(int argc, char** argv) {
  using namespace afd::bench;  // NOLINT
  std::string filter;
  double seconds = 0.3;
  bool hot = false;
  bool compare_kernels = false;
  std::vector<int64_t> small_tokens = {2, 4, 8, 16, 32};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf(
          "usage: matmul_bench [filter] [--seconds=S] [--hot] [--kernels] [--tokens=N,N,...]\n");
      return 0;
    }
    if (arg == "--hot") {
      hot = true;
    } else if (arg == "--kernels") {
      compare_kernels = true;
    } else if (arg.rfind("--seconds=", 0) == 0) {
      seconds = std::atof(arg.c_str() + 10);
    } else if (arg.rfind("--tokens=", 0) == 0) {
      small_tokens.clear();
      for (const char* p = arg.c_str() + 9; *p != '\0';) {
        char* end = nullptr;
        const long n = std::strtol(p, &end, 10);
        if (end == p || n < 1 || n > 4096 || (*end != ',' && *end != '\0')) {
          std::fprintf(stderr, "--tokens: expected counts in [1, 4096] separated by commas\n");
          return 1;
        }
        small_tokens.push_back(n);
        p = *end == ',' ? end + 1 : end;
      }
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

  const afd::StealMeter run_steal;
  const MachineLimits limits = MeasureMachineLimits(2, seconds);
  PrintMachineLimits(limits);
  const double bw[3] = {0, limits.ReadGbps(1), limits.ReadGbps(2)};

  // Decode (n = 1) and small token counts (batched decode, the per-expert token groups of a
  // prefill): weights from DRAM (or hot with --hot); GB/s against the bandwidth, GFLOP/s
  // against the machine's sgemm rate, same thread count.
  struct Table {
    const char* prefix;
    std::vector<Shape> shapes;
    std::vector<int64_t> token_counts;
  };
  const Table tables[] = {
      {"decode", {std::begin(kShapes), std::end(kShapes)}, {1}},
      {"small", {std::begin(kSmallShapes), std::end(kSmallShapes)}, small_tokens}};
  for (const Table& table : tables) {
    std::printf(
        "\n%-40s %9s %9s %7s %5s %8s %7s\n",
        (std::string(table.prefix) + (hot ? " (weights hot in cache)" : " (weights from DRAM)"))
            .c_str(),
        "best us", "median us", "GB/s", "%BW", "GFLOP/s", "%sgemm");
    for (WeightType type : {WeightType::kBF16, WeightType::kFp8E4M3}) {
      for (const Shape& s : table.shapes) {
        std::unique_ptr<WeightCopies> weights;
        for (int64_t n : table.token_counts) {
          for (int threads : {1, 2}) {
            for (Kernel kernel :
                 {Kernel::kAuto, Kernel::kBf16Act, Kernel::kTiles, Kernel::kDecode,
                  Kernel::kPrefill}) {
              if ((kernel == Kernel::kDecode || kernel == Kernel::kPrefill) && !compare_kernels) {
                continue;
              }
              if (kernel == Kernel::kTiles && !TilesRun(type)) continue;
              char name[128];
              std::snprintf(name, sizeof(name), "%s %s %lldx%lld n%lld t%d%s", table.prefix,
                            TypeName(type), static_cast<long long>(s.rows),
                            static_cast<long long>(s.cols), static_cast<long long>(n), threads,
                            KernelName(kernel));
              if (!keep(name)) continue;
              if (!weights) {
                weights =
                    std::make_unique<WeightCopies>(type, s.rows, s.cols, hot ? 0 : kColdBytes);
              }
              const Timing t = TimeMatMul(*weights, n, threads, seconds, kernel);
              const double gbps = weights->Get(0).Bytes() / t.best_s / 1e9;
              const double gflops = 2.0 * n * s.rows * s.cols / t.best_s / 1e9;
              std::printf("%-40s %9.1f %9.1f %7.2f %4.0f%% %8.1f %6.0f%%\n", name, t.best_s * 1e6,
                          t.median_s * 1e6, gbps, 100.0 * gbps / bw[threads], gflops,
                          100.0 * gflops / limits.SgemmGflops(threads));
              std::fflush(stdout);
            }
          }
        }
      }
    }
  }

  std::printf("\n%-34s %10s %10s %8s %6s\n", "prefill n=128", "best us", "median us", "GFLOP/s",
              "%sgemm");
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
      const Timing t = TimeCalls(seconds, [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nn, k, 1.0f, a.data(), k, b.data(),
                    k, 0.0f, c.data(), nn);
      });
      shape_sgemm[threads] = 2.0 * m * nn * k / t.best_s / 1e9;
      if (keep(name)) {
        std::printf("%-34s %10.1f %10.1f %8.1f %5.0f%%\n", name, t.best_s * 1e6, t.median_s * 1e6,
                    shape_sgemm[threads], 100.0);
      }
    }
    for (WeightType type : {WeightType::kF32, WeightType::kBF16, WeightType::kFp8E4M3}) {
      std::unique_ptr<WeightCopies> weights;
      for (int threads : {1, 2}) {
        for (Kernel kernel : {Kernel::kAuto, Kernel::kBf16Act, Kernel::kTiles}) {
          if (kernel == Kernel::kBf16Act && type == WeightType::kF32) continue;
          if (kernel == Kernel::kTiles && !TilesRun(type)) continue;
          char name[128];
          std::snprintf(name, sizeof(name), "prefill %s %lldx%lld n128 t%d%s", TypeName(type),
                        static_cast<long long>(s.rows), static_cast<long long>(s.cols), threads,
                        KernelName(kernel));
          if (!keep(name)) continue;
          if (!weights) weights = std::make_unique<WeightCopies>(type, s.rows, s.cols, 0);
          const Timing t = TimeMatMul(*weights, 128, threads, seconds, kernel);
          const double gflops = 2.0 * 128 * s.rows * s.cols / t.best_s / 1e9;
          std::printf("%-34s %10.1f %10.1f %8.1f %5.0f%%\n", name, t.best_s * 1e6, t.median_s * 1e6,
                      gflops, 100.0 * gflops / shape_sgemm[threads]);
          std::fflush(stdout);
        }
      }
    }
  }

  if (keep("threadpool")) {
    ThreadPool pool(2);
    int64_t hits[2] = {0, 0};
    const int kCalls = 10000;
    const Timing t = TimeCalls(seconds, [&] {
      for (int i = 0; i < kCalls; ++i) {
        pool.ParallelFor(2, [&](int64_t b, int64_t e) {
          for (int64_t j = b; j < e; ++j) ++hits[j];
        });
      }
    });
    std::printf("\n%-34s %10.2f %10.2f us per call\n", "threadpool ParallelFor t2 (empty)",
                t.best_s * 1e6 / kCalls, t.median_s * 1e6 / kCalls);
  }
  PrintRunSteal(run_steal);
  return 0;
}
