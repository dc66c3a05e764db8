// GatewayMetrics: the gateway's counters, gauges and latency histograms, rendered in the
// Prometheus text exposition format (version 0.0.4) for GET /metrics. Written by hand (no
// prometheus-cpp on Debian). Thread-safe: every method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace afd::gateway {

// A cumulative histogram with fixed upper bounds (seconds), as Prometheus defines it.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double value);
  // Appends `name_bucket{le=...}`, `name_sum` and `name_count` lines.
  void Render(const std::string& name, std::string* out) const;
  uint64_t count() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_ ABSL_GUARDED_BY(mu_);  // per bucket, not cumulative; + overflow
  double sum_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t count_ ABSL_GUARDED_BY(mu_) = 0;
};

// Load of one attention node as last polled (Describe).
struct NodeLoad {
  std::string name;
  bool ready = false;
  uint32_t total_kv_blocks = 0;
  uint32_t free_kv_blocks = 0;
  uint32_t running_sequences = 0;
  uint32_t waiting_sequences = 0;
};

class GatewayMetrics {
 public:
  GatewayMetrics();

  // Request lifecycle: Started when admitted by the gateway (waiting), FirstToken when its first
  // output token arrives (running), Finished at the end with its outcome label.
  void RequestStarted();
  void RequestFirstToken(double ttft_s);
  // `had_first_token`: whether RequestFirstToken was called for it.
  void RequestFinished(const std::string& outcome, bool had_first_token, double e2e_s);
  void InterTokenLatency(double seconds);
  void PromptTokens(uint64_t n);
  void GenerationTokens(uint64_t n);
  // HTTP responses by status code (counted once per request).
  void HttpResponse(int status);

  // The whole exposition; `nodes`: per attention node gauges.
  std::string Render(const std::vector<NodeLoad>& nodes) const;

  int64_t requests_in_flight() const { return waiting_ + running_; }

 private:
  std::atomic<int64_t> waiting_{0};
  std::atomic<int64_t> running_{0};
  std::atomic<uint64_t> prompt_tokens_{0};
  std::atomic<uint64_t> generation_tokens_{0};
  Histogram ttft_;
  Histogram itl_;
  Histogram e2e_;
  mutable absl::Mutex mu_;
  std::map<std::string, uint64_t> finished_ ABSL_GUARDED_BY(mu_);  // outcome -> count
  std::map<int, uint64_t> http_ ABSL_GUARDED_BY(mu_);              // status -> count
};

}  // namespace afd::gateway
