#include "gateway/server/metrics.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"

namespace afd::gateway {
namespace {

// Prometheus float text: integers without a fraction, +Inf spelled as Prometheus wants.
std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  // Shortest form that round-trips is nicer to read; try fewer digits first.
  for (int digits = 6; digits < 17; ++digits) {
    char shorter[64];
    std::snprintf(shorter, sizeof(shorter), "%.*g", digits, v);
    if (std::strtod(shorter, nullptr) == v) return shorter;
  }
  return buf;
}

// Label values escape backslash, double quote and newline.
std::string LabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void Header(std::string* out, const std::string& name, const std::string& type,
            const std::string& help) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

std::vector<double> LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1,  0.15, 0.2,  0.3,
          0.4,   0.5,    0.75,  1.0,  2.5,   5.0,  7.5,   10.0, 20.0, 40.0, 80.0};
}

std::vector<double> E2eBuckets() {
  return {0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0, 300.0, 600.0};
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  size_t bucket = 0;
  while (bucket < bounds_.size() && value > bounds_[bucket]) ++bucket;
  absl::MutexLock lock(&mu_);
  ++counts_[bucket];
  sum_ += value;
  ++count_;
}

uint64_t Histogram::count() const {
  absl::MutexLock lock(&mu_);
  return count_;
}

void Histogram::Render(const std::string& name, std::string* out) const {
  absl::MutexLock lock(&mu_);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    absl::StrAppend(out, name, "_bucket{le=\"", Number(bounds_[i]), "\"} ", cumulative, "\n");
  }
  absl::StrAppend(out, name, "_bucket{le=\"+Inf\"} ", count_, "\n");
  absl::StrAppend(out, name, "_sum ", Number(sum_), "\n");
  absl::StrAppend(out, name, "_count ", count_, "\n");
}

GatewayMetrics::GatewayMetrics()
    : ttft_(LatencyBuckets()), itl_(LatencyBuckets()), e2e_(E2eBuckets()) {}

void GatewayMetrics::RequestStarted() { ++waiting_; }

void GatewayMetrics::RequestFirstToken(double ttft_s) {
  --waiting_;
  ++running_;
  ttft_.Observe(ttft_s);
}

void GatewayMetrics::RequestFinished(const std::string& outcome, bool had_first_token,
                                     double e2e_s) {
  if (had_first_token) {
    --running_;
  } else {
    --waiting_;
  }
  e2e_.Observe(e2e_s);
  absl::MutexLock lock(&mu_);
  ++finished_[outcome];
}

void GatewayMetrics::InterTokenLatency(double seconds) { itl_.Observe(seconds); }
void GatewayMetrics::PromptTokens(uint64_t n) { prompt_tokens_ += n; }
void GatewayMetrics::GenerationTokens(uint64_t n) { generation_tokens_ += n; }

void GatewayMetrics::HttpResponse(int status) {
  absl::MutexLock lock(&mu_);
  ++http_[status];
}

std::string GatewayMetrics::Render(const std::vector<NodeLoad>& nodes) const {
  std::string out;
  Header(&out, "afd_requests_running", "gauge",
         "Requests whose first output token has arrived and that are still generating.");
  absl::StrAppend(&out, "afd_requests_running ", running_.load(), "\n");
  Header(&out, "afd_requests_waiting", "gauge",
         "Requests admitted by the gateway that have no output token yet (queued or in prefill).");
  absl::StrAppend(&out, "afd_requests_waiting ", waiting_.load(), "\n");
  Header(&out, "afd_prompt_tokens_total", "counter",
         "Prompt tokens of all requests sent to nodes.");
  absl::StrAppend(&out, "afd_prompt_tokens_total ", prompt_tokens_.load(), "\n");
  Header(&out, "afd_generation_tokens_total", "counter", "Output tokens received from nodes.");
  absl::StrAppend(&out, "afd_generation_tokens_total ", generation_tokens_.load(), "\n");
  {
    absl::MutexLock lock(&mu_);
    Header(&out, "afd_requests_finished_total", "counter",
           "Finished generation requests by outcome (stop, length, abort, error, ...).");
    for (const auto& [outcome, count] : finished_) {
      absl::StrAppend(&out, "afd_requests_finished_total{outcome=\"", LabelValue(outcome), "\"} ",
                      count, "\n");
    }
    Header(&out, "afd_http_responses_total", "counter", "HTTP responses by status code.");
    for (const auto& [status, count] : http_) {
      absl::StrAppend(&out, "afd_http_responses_total{code=\"", status, "\"} ", count, "\n");
    }
  }
  Header(&out, "afd_time_to_first_token_seconds", "histogram",
         "Time from a request's arrival to its first output token.");
  ttft_.Render("afd_time_to_first_token_seconds", &out);
  Header(&out, "afd_inter_token_latency_seconds", "histogram",
         "Time between consecutive output tokens of a request.");
  itl_.Render("afd_inter_token_latency_seconds", &out);
  Header(&out, "afd_e2e_request_latency_seconds", "histogram",
         "Time from a request's arrival to its end.");
  e2e_.Render("afd_e2e_request_latency_seconds", &out);

  Header(&out, "afd_attention_node_ready", "gauge", "1 when the attention node is ready.");
  for (const NodeLoad& n : nodes) {
    absl::StrAppend(&out, "afd_attention_node_ready{node=\"", LabelValue(n.name), "\"} ",
                    n.ready ? 1 : 0, "\n");
  }
  Header(&out, "afd_kv_cache_usage_ratio", "gauge",
         "Fraction of the attention node's KV-cache blocks in use (as last polled).");
  for (const NodeLoad& n : nodes) {
    const double usage = n.total_kv_blocks == 0 ? 0.0
                                                : 1.0 - static_cast<double>(n.free_kv_blocks) /
                                                            static_cast<double>(n.total_kv_blocks);
    absl::StrAppend(&out, "afd_kv_cache_usage_ratio{node=\"", LabelValue(n.name), "\"} ",
                    Number(usage), "\n");
  }
  Header(&out, "afd_attention_node_running_sequences", "gauge",
         "Sequences being decoded on the attention node (as last polled).");
  for (const NodeLoad& n : nodes) {
    absl::StrAppend(&out, "afd_attention_node_running_sequences{node=\"", LabelValue(n.name),
                    "\"} ", n.running_sequences, "\n");
  }
  Header(&out, "afd_attention_node_waiting_sequences", "gauge",
         "Sequences queued on the attention node (as last polled).");
  for (const NodeLoad& n : nodes) {
    absl::StrAppend(&out, "afd_attention_node_waiting_sequences{node=\"", LabelValue(n.name),
                    "\"} ", n.waiting_sequences, "\n");
  }
  return out;
}

}  // namespace afd::gateway
