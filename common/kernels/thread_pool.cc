// ThreadPool: workers spin briefly on a generation counter after each job (so back-to-back
// ParallelFor calls, one per layer per token, wake them in well under a microsecond), then sleep
// on a condition variable so an idle pool costs no CPU.
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

}  // namespace

struct ThreadPool::Impl {
  explicit Impl(int n) : num_threads(n) {}

  void WorkerLoop(int index) {
    uint64_t seen = 0;
    while (true) {
      // Wait for a new generation: spin first, then sleep.
      uint64_t gen = generation.load(std::memory_order_acquire);
      if (gen == seen) {
        SpinUntil([&] { return (gen = generation.load(std::memory_order_acquire)) != seen; },
                  kSpinTime);
        if (gen == seen) {
          std::unique_lock<std::mutex> lock(mu);
          sleepers.fetch_add(1, std::memory_order_seq_cst);
          while ((gen = generation.load(std::memory_order_seq_cst)) == seen) cv.wait(lock);
          sleepers.fetch_sub(1, std::memory_order_relaxed);
        }
      }
      seen = gen;
      if (stop.load(std::memory_order_acquire)) return;
      if (index < num_chunks) RunChunk(index);
      pending.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  void RunChunk(int chunk) {
    const int64_t begin = total * chunk / num_chunks;
    const int64_t end = total * (chunk + 1) / num_chunks;
    if (begin < end) (*fn)(begin, end);
    ClearUpperVectorState();  // the worker's spin and the caller's code are SSE-encoded
  }

  // Publishes the job fields (written before the generation bump) and wakes every worker.
  void Publish() {
    pending.store(num_threads - 1, std::memory_order_relaxed);
    generation.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard<std::mutex> lock(mu); }
      cv.notify_all();
    }
  }

  void WaitWorkers() {
    SpinUntil([&] { return pending.load(std::memory_order_acquire) == 0; },
              std::chrono::steady_clock::duration::max());
  }

  const int num_threads;
  std::vector<std::thread> workers;

  // Current job; written by the caller before the generation bump, read by workers after.
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t total = 0;
  int num_chunks = 0;

  std::atomic<uint64_t> generation{0};
  std::atomic<int> pending{0};
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
    impl_->workers.emplace_back([this, i] { impl_->WorkerLoop(i); });
  }
}

ThreadPool::~ThreadPool() {
  if (impl_->num_threads > 1) {
    impl_->stop.store(true, std::memory_order_release);
    impl_->num_chunks = 0;
    impl_->Publish();
    for (std::thread& t : impl_->workers) t.join();
  }
}

int ThreadPool::num_threads() const { return impl_->num_threads; }

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int chunks = static_cast<int>(std::min<int64_t>(impl_->num_threads, n));
  if (chunks <= 1) {
    fn(0, n);
    ClearUpperVectorState();
    return;
  }
  impl_->fn = &fn;
  impl_->total = n;
  impl_->num_chunks = chunks;
  impl_->Publish();
  impl_->RunChunk(0);
  impl_->WaitWorkers();
}

}  // namespace afd::kernels
