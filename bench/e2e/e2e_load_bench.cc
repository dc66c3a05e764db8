// e2e_load_bench: end-to-end load generator through the gateway. For each concurrency C it runs
// C clients issuing requests back to back (fixed prompts, ignore_eos, a fixed number of output
// tokens) until --requests requests finished, and prints requests/s, output tokens/s, time to
// first token and inter-token latency p50/p99 as a client sees them. With --attention ADDR it
// also prints, per concurrency level, where the attention node's steps spent that window
// (AttentionNode.Describe step_times before and after: ms per step of each stage, including the
// expert nodes' compute and the RPC wait around it).
//
// Two front ends:
//   --http HOST:PORT  streamed POST /v1/chat/completions (tokenizer, chat template, detokenizer
//                     and parsers included; needs a model with a tokenizer, e.g. the default)
//   --grpc ADDR       afd.v1.Gateway.Generate on token ids (any checkpoint, e.g. m2-perf)
//
// Run against a running cluster, e.g.:
//   afd up --experts 2 --no-prompt &                      # default model, HTTP on :8080
//   e2e_load_bench --http 127.0.0.1:8080 --concurrency 1,16 --max-tokens 64
//   afd-gen-checkpoint --preset m2-perf --out /tmp/m2-perf
//   afd up --model /tmp/m2-perf --experts 2 --no-prompt &  # gRPC gateway on :50050
//   e2e_load_bench --grpc 127.0.0.1:50050 --concurrency 1,16 --max-tokens 64
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "afd/v1/attention.grpc.pb.h"
#include "afd/v1/gateway.grpc.pb.h"
#include "attention_node/service/generate_codec.h"
#include "attention_node/step_profile.h"
#include "common/cli/sse_json_events.h"
#include "common/rpc/channel.h"
#include "grpcpp/client_context.h"
#include "nlohmann/json.hpp"

namespace {

using Clock = std::chrono::steady_clock;

void Usage(FILE* f) {
  std::fprintf(
      f,
      "usage: e2e_load_bench (--http HOST:PORT | --grpc ADDR) [--concurrency 1,16]\n"
      "                      [--requests N] [--prompt-tokens P] [--max-tokens T]\n"
      "                      [--model NAME] [--api-key KEY] [--vocab V]\n"
      "                      [--attention ADDR]\n\n"
      "Load through the gateway: per concurrency, requests/s, output tokens/s, TTFT and\n"
      "inter-token latency p50/p99.\n"
      "  --requests N       requests per concurrency level (default 4 x concurrency)\n"
      "  --prompt-tokens P  prompt length (HTTP: about P words; gRPC: P ids) (default 32)\n"
      "  --max-tokens T     output tokens per request, ignore_eos (default 64)\n"
      "  --model NAME       HTTP `model` (default: none, the served model)\n"
      "  --vocab V          gRPC prompt ids are drawn below V (default 1000)\n"
      "  --attention ADDR   the attention node (host:port or unix:/path): print its step\n"
      "                     time per stage for each concurrency level\n");
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))];
}

// What one request saw.
struct Sample {
  bool ok = false;
  std::string error;
  double ttft_s = 0;
  double e2e_s = 0;
  int64_t tokens = 0;
  std::vector<double> gaps_s;  // per output token after the first
};

struct Options {
  std::string http, grpc, model, api_key;
  int prompt_tokens = 32;
  int max_tokens = 64;
  int vocab = 1000;
};

Sample HttpRequest(const Options& o, int index) {
  Sample s;
  std::string host = o.http;
  int port = 80;
  const size_t colon = o.http.rfind(':');
  if (colon != std::string::npos) {
    host = o.http.substr(0, colon);
    absl::SimpleAtoi(o.http.substr(colon + 1), &port);
  }
  httplib::Client client(host, port);
  client.set_read_timeout(600, 0);
  std::string prompt = "Request " + std::to_string(index) + ":";
  for (int i = 0; i < o.prompt_tokens; ++i) prompt += " word";
  nlohmann::json body = {{"messages", {{{"role", "user"}, {"content", prompt}}}},
                         {"max_tokens", o.max_tokens},
                         {"ignore_eos", true},
                         {"temperature", 0},
                         {"stream", true},
                         {"stream_options", {{"include_usage", true}}}};
  if (!o.model.empty()) body["model"] = o.model;
  httplib::Request request;
  request.method = "POST";
  request.path = "/v1/chat/completions";
  request.headers.emplace("Content-Type", "application/json");
  if (!o.api_key.empty()) request.headers.emplace("Authorization", "Bearer " + o.api_key);
  request.body = body.dump();
  const auto start = Clock::now();
  auto last = start;
  bool first = true;
  int status = 0;
  std::string error_body;
  afd::SseJsonEvents events;
  request.response_handler = [&](const httplib::Response& r) {
    status = r.status;
    return true;
  };
  request.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    if (status != 200) {
      error_body.append(data, size);
      return true;
    }
    events.Feed(data, size, [&](const nlohmann::json& chunk) {
      if (chunk.contains("usage") && chunk["usage"].is_object()) {
        s.tokens = chunk["usage"].value("completion_tokens", 0);
      }
      if (!chunk.contains("choices") || chunk["choices"].empty()) return;
      const nlohmann::json& delta = chunk["choices"][0]["delta"];
      const bool has_text =
          (delta.contains("content") && delta["content"].is_string() &&
           !delta["content"].get_ref<const std::string&>().empty()) ||
          (delta.contains("reasoning_content") && delta["reasoning_content"].is_string());
      if (!has_text) return;
      const auto now = Clock::now();
      if (first) {
        s.ttft_s = Seconds(now - start);
        first = false;
      } else {
        s.gaps_s.push_back(Seconds(now - last));
      }
      last = now;
    });
    return true;
  };
  httplib::Result result = client.send(request);
  s.e2e_s = Seconds(Clock::now() - start);
  if (!result) {
    s.error = httplib::to_string(result.error());
  } else if (status != 200) {
    s.error = "HTTP " + std::to_string(status) + ": " + error_body;
  } else {
    s.ok = true;
  }
  return s;
}

Sample GrpcRequest(const Options& o, afd::v1::Gateway::Stub& stub, int index) {
  Sample s;
  afd::v1::GenerateRequest request;
  for (int i = 0; i < o.prompt_tokens; ++i) {
    request.add_prompt_token_ids((index * 7919 + i * 104729) % std::max(2, o.vocab - 1) + 1);
  }
  request.mutable_sampling()->set_temperature(0);
  request.mutable_sampling()->set_max_tokens(o.max_tokens);
  request.mutable_sampling()->set_ignore_eos(true);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
  const auto start = Clock::now();
  auto last = start;
  auto reader = stub.Generate(&context, request);
  afd::v1::GenerateResponse response;
  while (reader->Read(&response)) {
    const int n = response.token_ids_size();
    if (n == 0) continue;
    const auto now = Clock::now();
    if (s.tokens == 0) {
      s.ttft_s = Seconds(now - start);
      for (int i = 1; i < n; ++i) s.gaps_s.push_back(0);
    } else {
      for (int i = 0; i < n; ++i) s.gaps_s.push_back(Seconds(now - last) / n);
    }
    last = now;
    s.tokens += n;
  }
  const grpc::Status status = reader->Finish();
  s.e2e_s = Seconds(Clock::now() - start);
  s.ok = status.ok();
  if (!s.ok) s.error = status.error_message();
  return s;
}

}  // namespace

// The attention node's cumulative step times and per-expert-node traffic.
struct AttentionCounters {
  afd::attention::StepProfile times;
  std::vector<afd::v1::ExpertNodeTraffic> traffic;  // expert node, pairs sent, compute reported
};
absl::StatusOr<AttentionCounters> ReadAttentionCounters(afd::v1::AttentionNode::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  afd::v1::AttentionNodeInfo info;
  const grpc::Status status = stub.Describe(&context, {}, &info);
  if (!status.ok()) {
    return absl::UnavailableError("attention node Describe: " + status.error_message());
  }
  absl::StatusOr<afd::attention::StepProfile> times =
      afd::attention::DecodeStepTimes(info.step_times());
  if (!times.ok()) return times.status();
  AttentionCounters counters;
  counters.times = *times;
  counters.traffic.assign(info.expert_traffic().begin(), info.expert_traffic().end());
  return counters;
}

// The window's step times (now less `before`) as a table, one column named after `c`, and the
// pairs each expert node served in the window.
void PrintAttentionWindow(afd::v1::AttentionNode::Stub& stub,
                          const absl::StatusOr<AttentionCounters>& before, int c) {
  absl::StatusOr<AttentionCounters> after = ReadAttentionCounters(stub);
  if (!before.ok() || !after.ok()) {
    std::printf("# attention node step times: %s\n",
                std::string((before.ok() ? after : before).status().message()).c_str());
    return;
  }
  after->times.Subtract(before->times);
  const std::string name = "c=" + std::to_string(c);
  const std::pair<std::string, const afd::attention::StepProfile*> column[] = {
      {name, &after->times}};
  std::printf("# attention node, this window:\n%s",
              afd::attention::FormatStepProfiles(column).c_str());
  if (after->traffic.empty()) return;
  // The window's part of each node's counters: pairs, and compute in ms per attention step.
  std::string pairs, compute;
  for (const afd::v1::ExpertNodeTraffic& t : after->traffic) {
    afd::v1::ExpertNodeTraffic earlier;
    for (const afd::v1::ExpertNodeTraffic& b : before->traffic) {
      if (b.node() == t.node()) earlier = b;
    }
    absl::StrAppend(&pairs, " ", t.node(), " ", t.pairs() - earlier.pairs());
    const int64_t steps = std::max<int64_t>(after->times.steps, 1);
    absl::StrAppend(
        &compute, " ", t.node(), " ",
        absl::StrFormat("%.1f", (t.compute_ns() - earlier.compute_ns()) * 1e-6 / steps));
  }
  std::printf("# expert node pairs, this window:%s\n", pairs.c_str());
  std::printf("# expert node compute, ms per step, this window:%s\n", compute.c_str());
}

int main(int argc, char** argv) {
  Options o;
  std::vector<int> concurrency = {1, 16};
  int requests = 0;
  std::string attention_address;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "e2e_load_bench: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto number = [&](int* out) {
      const std::string v = value();
      if (!absl::SimpleAtoi(v, out) || *out <= 0) {
        std::fprintf(stderr, "e2e_load_bench: bad value for %s: %s\n", arg.c_str(), v.c_str());
        std::exit(2);
      }
    };
    if (arg == "--help" || arg == "-h") {
      Usage(stdout);
      return 0;
    } else if (arg == "--http") {
      o.http = value();
    } else if (arg == "--grpc") {
      o.grpc = value();
    } else if (arg == "--concurrency") {
      concurrency.clear();
      for (absl::string_view part : absl::StrSplit(value(), ',')) {
        int c = 0;
        if (!absl::SimpleAtoi(part, &c) || c <= 0) {
          std::fprintf(stderr, "e2e_load_bench: bad --concurrency\n");
          return 2;
        }
        concurrency.push_back(c);
      }
    } else if (arg == "--requests") {
      number(&requests);
    } else if (arg == "--prompt-tokens") {
      number(&o.prompt_tokens);
    } else if (arg == "--max-tokens") {
      number(&o.max_tokens);
    } else if (arg == "--model") {
      o.model = value();
    } else if (arg == "--api-key") {
      o.api_key = value();
    } else if (arg == "--vocab") {
      number(&o.vocab);
    } else if (arg == "--attention") {
      attention_address = value();
    } else {
      std::fprintf(stderr, "e2e_load_bench: unknown argument %s\n\n", arg.c_str());
      Usage(stderr);
      return 2;
    }
  }
  if (o.http.empty() == o.grpc.empty()) {
    std::fprintf(stderr, "e2e_load_bench: pass exactly one of --http and --grpc\n\n");
    Usage(stderr);
    return 2;
  }
  std::unique_ptr<afd::v1::Gateway::Stub> stub;
  if (!o.grpc.empty()) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = afd::rpc::MakeChannel(o.grpc, {}, {});
    if (!channel.ok()) {
      std::fprintf(stderr, "e2e_load_bench: %s\n", std::string(channel.status().message()).c_str());
      return 1;
    }
    stub = afd::v1::Gateway::NewStub(*channel);
  }
  std::unique_ptr<afd::v1::AttentionNode::Stub> attention;
  if (!attention_address.empty()) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
        afd::rpc::MakeChannel(attention_address, {}, {});
    if (!channel.ok()) {
      std::fprintf(stderr, "e2e_load_bench: %s\n", std::string(channel.status().message()).c_str());
      return 1;
    }
    attention = afd::v1::AttentionNode::NewStub(*channel);
  }

  std::printf("# %s, prompt %d tokens, %d output tokens per request\n",
              o.http.empty() ? ("gRPC Gateway.Generate at " + o.grpc).c_str()
                             : ("HTTP /v1/chat/completions (stream) at " + o.http).c_str(),
              o.prompt_tokens, o.max_tokens);
  std::printf("%11s %8s %8s %11s %9s %9s %8s %8s %8s\n", "concurrency", "requests", "req/s",
              "out tok/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "failed");
  for (const int c : concurrency) {
    const int total = requests > 0 ? requests : 4 * c;
    absl::StatusOr<AttentionCounters> before = AttentionCounters();
    if (attention) before = ReadAttentionCounters(*attention);
    std::atomic<int> next{0};
    std::mutex mu;
    std::vector<Sample> samples;
    const auto start = Clock::now();
    std::vector<std::thread> workers;
    for (int w = 0; w < c; ++w) {
      workers.emplace_back([&] {
        while (true) {
          const int index = next.fetch_add(1);
          if (index >= total) return;
          Sample s = o.http.empty() ? GrpcRequest(o, *stub, index) : HttpRequest(o, index);
          std::lock_guard<std::mutex> lock(mu);
          samples.push_back(std::move(s));
        }
      });
    }
    for (std::thread& t : workers) t.join();
    const double wall = Seconds(Clock::now() - start);
    std::vector<double> ttft, gaps;
    int64_t tokens = 0;
    int failed = 0;
    std::string first_error;
    for (const Sample& s : samples) {
      if (!s.ok) {
        if (failed++ == 0) first_error = s.error;
        continue;
      }
      ttft.push_back(s.ttft_s);
      gaps.insert(gaps.end(), s.gaps_s.begin(), s.gaps_s.end());
      tokens += s.tokens;
    }
    std::printf("%11d %8d %8.2f %11.1f %7.1fms %7.1fms %6.1fms %6.1fms %8d\n", c, total,
                (total - failed) / wall, tokens / wall, 1e3 * Percentile(ttft, 0.5),
                1e3 * Percentile(ttft, 0.99), 1e3 * Percentile(gaps, 0.5),
                1e3 * Percentile(gaps, 0.99), failed);
    if (failed > 0) std::printf("# first error: %s\n", first_error.c_str());
    if (attention) PrintAttentionWindow(*attention, before, c);
    std::fflush(stdout);
  }
  return 0;
}
