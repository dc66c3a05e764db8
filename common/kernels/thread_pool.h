// ThreadPool: a fixed set of worker threads for data-parallel loops (ParallelFor). The
// calling thread takes part, so a pool of N threads uses N-1 workers. One ParallelFor at a
// time per pool (callers serialize); thread-safe otherwise.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

namespace afd::kernels {

class ThreadPool {
 public:
  // num_threads <= 0: hardware concurrency.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const;
  // Splits [0, n) into contiguous chunks (up to 4 per thread) and runs fn(begin, end) on each;
  // the threads claim chunks in turn, so any thread may run any chunk and a thread that is late
  // (descheduled) leaves its share to the others. Chunks hold whole multiples of `grain` indices
  // (the last may hold fewer). Returns when all are done. Runs inline when there is one chunk or
  // the pool has one thread.
  void ParallelFor(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn,
                   int64_t grain = 1);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace afd::kernels
