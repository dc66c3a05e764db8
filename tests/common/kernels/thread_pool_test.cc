// Tests for common/kernels/thread_pool.h: ParallelFor covers every index exactly once in
// contiguous chunks (up to 4 per thread), uses the pool's threads, leaves a late worker's chunks
// to the caller, survives many back-to-back calls and calls after the workers have gone to sleep,
// and shuts down cleanly.
#include "common/kernels/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace afd::kernels {
namespace {

TEST(ThreadPoolTest, CoversEveryIndexOnceInContiguousChunks) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {0, 1, 2, 3, 7, 100, 1001}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::mutex mu;
      std::vector<std::pair<int64_t, int64_t>> chunks;
      pool.ParallelFor(n, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
        std::lock_guard<std::mutex> lock(mu);
        chunks.emplace_back(begin, end);
      });
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << threads << " " << n;
      const int64_t expected =
          threads == 1 ? std::min<int64_t>(n, 1) : std::min<int64_t>(4 * threads, n);
      EXPECT_EQ(chunks.size(), static_cast<size_t>(expected)) << threads << " " << n;
      std::sort(chunks.begin(), chunks.end());
      int64_t next = 0;
      for (const auto& c : chunks) {
        EXPECT_EQ(c.first, next);
        EXPECT_LT(c.first, c.second);
        next = c.second;
      }
      EXPECT_EQ(next, n);
    }
  }
}

TEST(ThreadPoolTest, ChunksHoldWholeGrains) {
  ThreadPool pool(2);
  for (int64_t grain : {1, 3, 8, 384}) {
    for (int64_t n : {1, 7, 100, 1001}) {
      std::mutex mu;
      std::vector<std::pair<int64_t, int64_t>> chunks;
      pool.ParallelFor(
          n,
          [&](int64_t begin, int64_t end) {
            std::lock_guard<std::mutex> lock(mu);
            chunks.emplace_back(begin, end);
          },
          grain);
      std::sort(chunks.begin(), chunks.end());
      const int64_t units = (n + grain - 1) / grain;
      EXPECT_EQ(chunks.size(), static_cast<size_t>(std::min<int64_t>(8, units)))
          << grain << " " << n;
      int64_t next = 0;
      for (const auto& c : chunks) {
        EXPECT_EQ(c.first, next);
        EXPECT_EQ(c.first % grain, 0) << grain << " " << n;
        if (c.second != n) EXPECT_EQ(c.second % grain, 0) << grain << " " << n;
        next = c.second;
      }
      EXPECT_EQ(next, n);
    }
  }
}

TEST(ThreadPoolTest, RunsChunksOnSeveralThreadsIncludingTheCaller) {
  ThreadPool pool(4);
  std::mutex mu;
  std::set<std::thread::id> ids;
  pool.ParallelFor(16, [&](int64_t, int64_t) {
    // Long enough per chunk that the workers claim some of them.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::lock_guard<std::mutex> lock(mu);
    ids.insert(std::this_thread::get_id());
  });
  EXPECT_GE(ids.size(), 2u);
  EXPECT_EQ(ids.count(std::this_thread::get_id()), 1u);
}

TEST(ThreadPoolTest, ALateWorkerLeavesItsChunksToTheCaller) {
  // A worker stuck in its first chunk (as if its vCPU were descheduled) holds up only that
  // chunk: the caller claims and runs every other one meanwhile.
  ThreadPool pool(2);
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<int> by_caller{0}, by_worker{0};
  pool.ParallelFor(8, [&](int64_t, int64_t) {
    if (std::this_thread::get_id() == caller) {
      by_caller.fetch_add(1);
    } else {
      by_worker.fetch_add(1);
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
  });
  EXPECT_EQ(by_caller.load() + by_worker.load(), 8);
  EXPECT_LE(by_worker.load(), 1);
  EXPECT_GE(by_caller.load(), 7);
}

TEST(ThreadPoolTest, SmallOrSingleThreadRunsInline) {
  ThreadPool one(1);
  std::thread::id seen;
  one.ParallelFor(100, [&](int64_t b, int64_t e) {
    EXPECT_EQ(b, 0);
    EXPECT_EQ(e, 100);
    seen = std::this_thread::get_id();
  });
  EXPECT_EQ(seen, std::this_thread::get_id());
  ThreadPool four(4);
  four.ParallelFor(1, [&](int64_t b, int64_t e) { seen = std::this_thread::get_id(); });
  EXPECT_EQ(seen, std::this_thread::get_id());
}

TEST(ThreadPoolTest, ManyBackToBackCallsLoseNothing) {
  // Also with more threads than this machine may have cores (waiters must yield).
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    std::atomic<int64_t> total{0};
    const int calls = threads == 2 ? 20000 : 2000;
    for (int call = 0; call < calls; ++call) {
      pool.ParallelFor(threads, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
    }
    EXPECT_EQ(total.load(), int64_t{threads} * calls) << threads;
  }
}

TEST(ThreadPoolTest, WakesWorkersThatWentToSleep) {
  ThreadPool pool(2);
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // past the spin window
    std::vector<int> hits(64, 0);
    pool.ParallelFor(64, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ++hits[i];
    });
    for (int h : hits) EXPECT_EQ(h, 1);
  }
}

TEST(ThreadPoolTest, DefaultSizeIsHardwareConcurrencyAndShutdownIsClean) {
  {
    ThreadPool pool(0);
    EXPECT_GE(pool.num_threads(), 1);
  }
  {
    ThreadPool idle(4);  // destroyed without ever running a job
  }
  ThreadPool pool(2);
  pool.ParallelFor(2, [](int64_t, int64_t) {});
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

}  // namespace
}  // namespace afd::kernels
