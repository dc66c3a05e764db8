// ThreadPool: workers spin briefly on a generation counter after each job (so back-to-back
// ParallelFor calls, one per layer per token, wake them in well under a microsecond), then sleep
// on a condition variable so an idle pool costs no CPU. A job's chunks are claimed one at a time
// from one atomic word (generation | chunk count | next chunk), the caller included, and the
// caller waits for the chunks, not for the workers: on a VM whose vCPU is descheduled (steal
// time), a static split made every product wait for that vCPU's half.
#include "common/kernels/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "common/kernels/vector_state.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace afd::kernels {
namespace {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// How long an idle worker keeps spinning before it sleeps. Long enough to bridge the gap
// between the products of one layer, short enough not to burn a core when the model is idle.
constexpr auto kSpinTime = std::chrono::microseconds(200);
// Pause-spins before a waiter starts yielding its core on every iteration: when there are more
// runnable threads than cores, the thread being waited for needs that core.
constexpr int kPureSpins = 256;
// Chunks per thread in a ParallelFor: a thread that starts late (a descheduled vCPU, a worker
// still asleep) leaves its share to the threads that are running instead of holding them up.
constexpr int64_t kChunksPerThread = 4;
constexpr int64_t kMaxChunks = 0xFFFF;

// Spins until done() (pause, then pause + yield); gives up and returns false after `limit`.
template <class Done>
bool SpinUntil(const Done& done, std::chrono::steady_clock::duration limit) {
  const auto start = std::chrono::steady_clock::now();
  for (int64_t spins = 0;; ++spins) {
    if (done()) return true;
    CpuRelax();
    if (spins >= kPureSpins) {
      std::this_thread::yield();
      if (spins % 16 == 0 && std::chrono::steady_clock::now() - start > limit) return false;
    }
  }
}

// The job word: generation (high 32 bits) | chunk count (16) | next unclaimed chunk (16).
constexpr uint64_t Generation(uint64_t state) { return state >> 32; }

}  // namespace

struct ThreadPool::Impl {
  explicit Impl(int n) : num_threads(n) {}

  void WorkerLoop() {
    uint64_t seen = 0;
    while (true) {
      // Wait for a new generation: spin first, then sleep.
      uint64_t gen = Generation(state.load(std::memory_order_acquire));
      if (gen == seen) {
        SpinUntil([&] { return (gen = Generation(state.load(std::memory_order_acquire))) != seen; },
                  kSpinTime);
        if (gen == seen) {
          std::unique_lock<std::mutex> lock(mu);
          sleepers.fetch_add(1, std::memory_order_seq_cst);
          while ((gen = Generation(state.load(std::memory_order_seq_cst))) == seen) cv.wait(lock);
          sleepers.fetch_sub(1, std::memory_order_relaxed);
        }
      }
      seen = gen;
      if (stop.load(std::memory_order_acquire)) return;
      RunChunks(gen);
    }
  }

  // Claims the next chunk of job `gen`: its index, or -1 when that job has none left (or is
  // over). A successful claim means the job is not finished, so its fields stay valid until the
  // chunk is counted done.
  int Claim(uint64_t gen) {
    uint64_t s = state.load(std::memory_order_acquire);
    while (true) {
      if (Generation(s) != gen) return -1;
      const uint64_t count = (s >> 16) & 0xFFFF, next = s & 0xFFFF;
      if (next >= count) return -1;
      if (state.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        return static_cast<int>(next);
      }
    }
  }

  // Runs chunks of job `gen` until none is left unclaimed.
  void RunChunks(uint64_t gen) {
    for (int chunk = Claim(gen); chunk >= 0; chunk = Claim(gen)) {
      const int64_t begin = std::min(total, units * chunk / num_chunks * grain);
      const int64_t end = std::min(total, units * (chunk + 1) / num_chunks * grain);
      if (begin < end) (*fn)(begin, end);
      ClearUpperVectorState();  // the worker's spin and the caller's code are SSE-encoded
      done.fetch_add(1, std::memory_order_acq_rel);
    }
  }

  // Publishes the job fields (written before) as a new generation of `chunks` chunks and wakes
  // every worker. Returns the generation.
  uint64_t Publish(int chunks) {
    done.store(0, std::memory_order_relaxed);
    const uint64_t gen = Generation(state.load(std::memory_order_relaxed)) + 1;
    state.store((gen << 32) | (static_cast<uint64_t>(chunks) << 16), std::memory_order_seq_cst);
    if (sleepers.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard<std::mutex> lock(mu); }
      cv.notify_all();
    }
    return gen;
  }

  const int num_threads;
  std::vector<std::thread> workers;
  // Current job; written by the caller before Publish, read by a thread only after it has
  // claimed one of the job's chunks.
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t total = 0;
  int64_t grain = 1;
  int64_t units = 0;  // ceil(total / grain)
  int num_chunks = 0;
  std::atomic<uint64_t> state{0};
  std::atomic<int> done{0};  // chunks of the current job finished
  std::atomic<int> sleepers{0};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::condition_variable cv;
};

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = static_cast<int>(std::thread::hardware_concurrency());
  if (num_threads <= 0) num_threads = 1;
  impl_ = std::make_unique<Impl>(num_threads);
  impl_->workers.reserve(num_threads - 1);
  for (int i = 1; i < num_threads; ++i) {
    impl_->workers.emplace_back([this] { impl_->WorkerLoop(); });
  }
}

ThreadPool::~ThreadPool() {
  if (impl_->num_threads > 1) {
    impl_->stop.store(true, std::memory_order_release);
    impl_->Publish(0);
    for (std::thread& t : impl_->workers) t.join();
  }
}

int ThreadPool::num_threads() const { return impl_->num_threads; }

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                             int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t units = (n + grain - 1) / grain;
  const int chunks = static_cast<int>(
      std::min<int64_t>({int64_t{impl_->num_threads} * kChunksPerThread, units, kMaxChunks}));
  if (impl_->num_threads <= 1 || chunks <= 1) {
    fn(0, n);
    ClearUpperVectorState();
    return;
  }
  impl_->fn = &fn;
  impl_->total = n;
  impl_->grain = grain;
  impl_->units = units;
  impl_->num_chunks = chunks;
  impl_->RunChunks(impl_->Publish(chunks));
  SpinUntil([&] { return impl_->done.load(std::memory_order_acquire) == chunks; },
            std::chrono::steady_clock::duration::max());
}

}  // namespace afd::kernels
