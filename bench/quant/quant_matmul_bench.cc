// Packed-weight product benchmark: how close the AWQ int4 / MLX affine decode kernels get to the
// machine's memory bandwidth at the m2-perf shapes, next to bf16 through the same dispatch, and
// the prefill kernels' GFLOP/s.
//
// Run (Release build; quiet machine: other load skews every number):
//   ninja -C build quant_matmul_bench && build/bin/quant_matmul_bench [filter] [--seconds=S]
// Prints the machine limits (bench/common: read bandwidth, sgemm, 1 and 2 threads), then per
// format, shape, token count and thread count: best and median microseconds per product, GB/s of
// packed bytes read (codes + scales + zeros/biases) and % of the bandwidth at that thread count.
// Each call reads a different copy of the weights (>= 512 MiB of copies), so they stream from DRAM.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/common/machine_limits.h"
#include "common/kernels/matmul.h"
#include "common/kernels/quant_matmul.h"
#include "common/kernels/quant_tile.h"
#include "common/kernels/thread_pool.h"

namespace afd::bench {
namespace {

using kernels::QuantFormat;
using kernels::QuantMatrix;
using kernels::ThreadPool;
constexpr size_t kColdBytes = size_t{512} << 20;

// Copies of one random packed matrix; valid codes are any bit pattern.
class QuantCopies {
 public:
  // `cold_bytes`: at least this many bytes of copies (0: a single copy, cache resident when
  // small enough).
  QuantCopies(QuantFormat format, int bits, int group, int64_t rows, int64_t cols,
              size_t cold_bytes) {
    QuantMatrix m;
    m.format = format;
    m.rows = rows;
    m.cols = cols;
    m.bits = bits;
    m.group_size = group;
    m.scale_type =
        format == QuantFormat::kAwqInt4 ? kernels::WeightType::kF16 : kernels::WeightType::kBF16;
    const size_t packed = m.PackedBytes();
    const size_t groups = static_cast<size_t>(rows * (cols / group));
    const size_t zero_bytes = format == QuantFormat::kAwqInt4 ? groups / 2 : groups * 2;
    const size_t bytes = packed + groups * 2 + zero_bytes;
    const size_t copies = std::max<size_t>(1, (cold_bytes + bytes - 1) / bytes);
    std::mt19937 rng(42);
    std::vector<uint8_t> first(bytes);
    for (size_t i = 0; i < packed + zero_bytes * (format == QuantFormat::kAwqInt4); ++i) {
      first[i] = static_cast<uint8_t>(rng());
    }
    const uint16_t scale = format == QuantFormat::kAwqInt4 ? 0x2000 : kernels::FloatToBf16(0.01f);
    for (size_t i = packed; i < bytes; i += 2) memcpy(&first[i], &scale, 2);
    for (size_t c = 0; c < copies; ++c) {
      data_.emplace_back(new uint8_t[bytes]);
      memcpy(data_.back().get(), first.data(), bytes);
      uint8_t* p = data_.back().get();
      m.data = p;
      if (format == QuantFormat::kAwqInt4) {
        m.zeros = p + packed;
        m.scales = p + packed + zero_bytes;
      } else {
        m.scales = p + packed;
        m.biases = p + packed + groups * 2;
      }
      views_.push_back(m);
    }
  }
  const QuantMatrix& Get(size_t i) const { return views_[i % views_.size()]; }

 private:
  std::vector<std::unique_ptr<uint8_t[]>> data_;
  std::vector<QuantMatrix> views_;
};

// `kernel` null: kernels::MatMul on the pool, the engine's choice of kernel and split (AWQ
// decode splits along the input axis). Forced kernel: rows split across the pool in units of 16.
Timing TimeProduct(const QuantCopies& weights, int64_t n, int threads, double seconds,
                   const kernels::internal::QuantKernel* kernel) {
  const QuantMatrix& w0 = weights.Get(0);
  std::vector<float> x(n * w0.cols), y(n * w0.rows);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.1f * static_cast<float>(i));
  ThreadPool pool(threads);
  size_t i = 0;
  return TimeCalls(seconds, [&] {
    const QuantMatrix& w = weights.Get(i++);
    if (kernel == nullptr) {
      kernels::MatMul(x.data(), n, kernels::AsWeightView(w), y.data(), &pool);
      return;
    }
    const int64_t units = (w.rows + 15) / 16;
    pool.ParallelFor(units, [&](int64_t b, int64_t e) {
      const int64_t end = std::min(e * 16, w.rows);
      if (kernel != nullptr) {
        kernels::internal::QuantMatMulRowsKernel(x.data(), n, w, b * 16, end, y.data(), *kernel);
      } else {
        kernels::QuantMatMulRows(x.data(), n, w, b * 16, end, y.data());
      }
    });
  });
}

struct Format {
  const char* name;
  QuantFormat format;
  int bits;
  int group;
};
constexpr Format kFormats[] = {
    {"awq4 g128", QuantFormat::kAwqInt4, 4, 128}, {"mlx4 g64", QuantFormat::kMlxAffine, 4, 64},
    {"mlx3 g64", QuantFormat::kMlxAffine, 3, 64}, {"mlx5 g64", QuantFormat::kMlxAffine, 5, 64},
    {"mlx6 g64", QuantFormat::kMlxAffine, 6, 64}, {"mlx8 g64", QuantFormat::kMlxAffine, 8, 64},
};
struct Shape {
  int64_t rows, cols;
};
constexpr Shape kShapes[] = {{1536, 1536}, {768, 1536}, {1536, 768}, {32000, 1536}};

}  // namespace
}  // namespace afd::bench

int main(int argc, char** argv) {
  using namespace afd::bench;
  std::string filter;
  double seconds = 0.3;
  bool hot = false;
  bool all_kernels = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf(
          "usage: quant_matmul_bench [filter] [--seconds=S] [--hot] [--kernels]\n"
          "--hot: one copy of each matrix (cache resident when small): the kernels' compute\n"
          "rate, the ceiling of their bandwidth fraction.\n"
          "--kernels: small batches (n = 2..12) on every kernel too (vnni / fp32 decode,\n"
          "prefill, int8 tiles), beside the one the engine picks for that n.\n");
      return 0;
    }
    if (arg == "--hot") {
      hot = true;
    } else if (arg == "--kernels") {
      all_kernels = true;
    } else if (arg.rfind("--seconds=", 0) == 0) {
      seconds = std::atof(arg.c_str() + 10);
    } else {
      filter = arg;
    }
  }
  const afd::StealMeter run_steal;
  const MachineLimits limits = MeasureMachineLimits(2, seconds);
  PrintMachineLimits(limits);
  const double bw[3] = {0, limits.ReadGbps(1), limits.ReadGbps(2)};
  std::printf("\n%-40s %10s %10s %8s %6s\n", "product", "best us", "median us", "GB/s", "%BW");
  using afd::kernels::internal::QuantKernel;
  struct Variant {
    const char* name;  // "" = the engine's choice for n
    const QuantKernel* kernel;
  };
  static constexpr QuantKernel kForced[] = {QuantKernel::kDecode, QuantKernel::kDecodeFp32,
                                            QuantKernel::kPrefill, QuantKernel::kTiles};
  const std::vector<Variant> variants = {{"", nullptr},
                                         {" vnni", &kForced[0]},
                                         {" fp32", &kForced[1]},
                                         {" prefill", &kForced[2]},
                                         {" tiles", &kForced[3]}};
  const std::vector<int64_t> counts =
      all_kernels ? std::vector<int64_t>{1, 2, 4, 8, 12, 64} : std::vector<int64_t>{1, 8, 64};
  for (const Format& f : kFormats) {
    for (const Shape& s : kShapes) {
      for (int64_t n : counts) {
        for (const Variant& v : variants) {
          if (v.kernel != nullptr && (!all_kernels || n == 1 || n >= 16)) continue;
          if (v.kernel == &kForced[3] &&
              !afd::kernels::QuantTilesTake(
                  QuantCopies(f.format, f.bits, f.group, 16, s.cols, 0).Get(0))) {
            continue;
          }
          for (int threads : {1, 2}) {
            char name[96];
            std::snprintf(name, sizeof(name), "%s %s %lldx%lld n%lld t%d%s",
                          n >= 16 ? "prefill" : "decode", f.name, static_cast<long long>(s.rows),
                          static_cast<long long>(s.cols), static_cast<long long>(n), threads,
                          v.name);
            if (!filter.empty() && std::string(name).find(filter) == std::string::npos) continue;
            if (n >= 16 && s.rows > 4096) continue;
            const QuantCopies copies(f.format, f.bits, f.group, s.rows, s.cols,
                                     hot ? 0 : kColdBytes);
            const Timing t = TimeProduct(copies, n, threads, seconds, v.kernel);
            const double gbs = copies.Get(0).Bytes() / t.best_s / 1e9;
            const double gflops = 2.0 * n * s.rows * s.cols / t.best_s / 1e9;
            if (n >= 16) {
              std::printf("%-40s %10.1f %10.1f %8.1f GFLOP/s\n", name, t.best_s * 1e6,
                          t.median_s * 1e6, gflops);
            } else {
              std::printf("%-40s %10.1f %10.1f %8.2f %5.0f%% %8.1f GFLOP/s\n", name, t.best_s * 1e6,
                          t.median_s * 1e6, gbs, 100 * gbs / bw[threads], gflops);
            }
          }
        }
      }
    }
  }
  PrintRunSteal(run_steal);
  return 0;
}
