// attention_node_bench: load generator for one attention node. Drives afd.v1.AttentionNode.
// Generate from C concurrent clients (one blocking stream each; a client sends its next request
// when the previous one ends) with fixed synthetic prompts (token ids from a seeded generator),
// greedy decoding and ignore_eos so every request makes exactly --max-tokens tokens, for each
// concurrency in the list, and prints requests/s, output tokens/s, time to first token and
// inter-token latency (p50/p99, as the client sees them).
//
// Run against a running node (e.g. one attention node + expert nodes from a cluster.yaml):
//   afd-expert-node --config cluster.yaml --node expert0 &
//   afd-attention-node --config cluster.yaml --node attn0 &
//   attention_node_bench --target 127.0.0.1:50051 --concurrency 1,4,16 --max-tokens 64
// The node's Describe tells the bench the vocabulary size; prompts avoid ids 0-2.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "afd/v1/attention.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"

namespace {

using Clock = std::chrono::steady_clock;

void Usage(FILE* f) {
  std::fprintf(f,
               "usage: attention_node_bench --target ADDR [--concurrency 1,4,16] [--requests N]\n"
               "                            [--prompt-tokens N] [--max-tokens N] [--seed S]\n\n"
               "Load generator for one attention node (afd.v1.AttentionNode.Generate).\n"
               "  --target ADDR       the node, e.g. 127.0.0.1:50051 or unix:/tmp/a0.sock\n"
               "  --concurrency LIST  concurrent clients per run (default 1,4,16)\n"
               "  --requests N        requests per run (default: 4 x concurrency, at least 8)\n"
               "  --prompt-tokens N   prompt length (default 32)\n"
               "  --max-tokens N      new tokens per request (default 64)\n"
               "  --seed S            prompt generator seed (default 1)\n");
}

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))];
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct RequestStats {
  bool ok = false;
  std::string error;
  int tokens = 0;
  double ttft_ms = 0;
  std::vector<double> itl_ms;  // one per token after the first
};

RequestStats RunOne(afd::v1::AttentionNode::Stub& stub, const std::vector<int32_t>& prompt,
                    int max_tokens) {
  afd::v1::GenerateRequest request;
  for (int32_t t : prompt) request.add_prompt_token_ids(t);
  afd::v1::SamplingParams* s = request.mutable_sampling();
  s->set_temperature(0.0f);
  s->set_ignore_eos(true);
  s->set_max_tokens(static_cast<uint32_t>(max_tokens));
  RequestStats stats;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
  const Clock::time_point start = Clock::now();
  Clock::time_point last = start;
  auto reader = stub.Generate(&context, request);
  afd::v1::GenerateResponse response;
  while (reader->Read(&response)) {
    const int n = response.token_ids_size();
    if (n == 0) continue;
    const Clock::time_point now = Clock::now();
    if (stats.tokens == 0) {
      stats.ttft_ms = Ms(now - start);
    } else {
      for (int i = 0; i < n; ++i) stats.itl_ms.push_back(Ms(now - last) / n);
    }
    stats.tokens += n;
    last = now;
  }
  const grpc::Status status = reader->Finish();
  stats.ok = status.ok();
  if (!stats.ok) stats.error = status.error_message();
  return stats;
}

}  // namespace

int main(int argc, char** argv) {
  std::string target;
  std::vector<int> concurrency = {1, 4, 16};
  int requests = 0, prompt_tokens = 32, max_tokens = 64;
  uint32_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "attention_node_bench: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto positive = [&](int* out) {
      if (!absl::SimpleAtoi(value(), out) || *out <= 0) {
        std::fprintf(stderr, "attention_node_bench: bad value for %s\n", arg.c_str());
        std::exit(2);
      }
    };
    if (arg == "--help" || arg == "-h") {
      Usage(stdout);
      return 0;
    } else if (arg == "--target") {
      target = value();
    } else if (arg == "--concurrency") {
      concurrency.clear();
      for (absl::string_view part : absl::StrSplit(value(), ',')) {
        int c = 0;
        if (!absl::SimpleAtoi(part, &c) || c <= 0) {
          std::fprintf(stderr, "attention_node_bench: bad --concurrency list\n");
          return 2;
        }
        concurrency.push_back(c);
      }
    } else if (arg == "--requests") {
      positive(&requests);
    } else if (arg == "--prompt-tokens") {
      positive(&prompt_tokens);
    } else if (arg == "--max-tokens") {
      positive(&max_tokens);
    } else if (arg == "--seed") {
      int s = 0;
      if (!absl::SimpleAtoi(value(), &s)) return 2;
      seed = static_cast<uint32_t>(s);
    } else {
      std::fprintf(stderr, "attention_node_bench: unknown argument %s\n\n", arg.c_str());
      Usage(stderr);
      return 2;
    }
  }
  if (target.empty()) {
    Usage(stderr);
    return 2;
  }

  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  auto stub = afd::v1::AttentionNode::NewStub(channel);
  // Wait (up to a minute) for the node to report ready: it may still be loading or waiting
  // for its expert nodes.
  afd::v1::AttentionNodeInfo info;
  grpc::Status status;
  const Clock::time_point give_up = Clock::now() + std::chrono::minutes(1);
  do {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    context.set_wait_for_ready(true);
    status = stub->Describe(&context, afd::v1::DescribeAttentionNodeRequest(), &info);
    if (status.ok() && info.ready()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  } while (Clock::now() < give_up);
  if (!status.ok() || !info.ready()) {
    std::fprintf(stderr, "attention_node_bench: %s is not ready: %s\n", target.c_str(),
                 status.ok() ? "ready = false" : status.error_message().c_str());
    return 1;
  }
  std::printf("attention node %s (%s, vocab %u, %u kv blocks, %d expert nodes)\n",
              info.node_name().c_str(), info.model_type().c_str(), info.vocab_size(),
              info.total_kv_blocks(), info.expert_nodes_size());
  std::printf("prompt %d tokens, %d new tokens per request, greedy\n\n", prompt_tokens, max_tokens);
  std::printf("%6s %8s %10s %12s %10s %10s %10s %10s %7s\n", "conc", "requests", "req/s",
              "out tok/s", "ttft p50", "ttft p99", "itl p50", "itl p99", "errors");

  for (int c : concurrency) {
    const int total = requests > 0 ? requests : std::max(8, 4 * c);
    std::vector<std::vector<int32_t>> prompts(total);
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> id(3, static_cast<int32_t>(info.vocab_size()) - 1);
    for (auto& p : prompts) {
      p.resize(prompt_tokens);
      for (int32_t& t : p) t = id(rng);
    }
    std::vector<RequestStats> stats(total);
    std::atomic<int> next{0};
    const Clock::time_point start = Clock::now();
    std::vector<std::thread> clients;
    for (int t = 0; t < c; ++t) {
      clients.emplace_back([&] {
        for (int r = next++; r < total; r = next++)
          stats[r] = RunOne(*stub, prompts[r], max_tokens);
      });
    }
    for (std::thread& t : clients) t.join();
    const double wall_s = std::chrono::duration<double>(Clock::now() - start).count();
    std::vector<double> ttft, itl;
    int64_t tokens = 0;
    int errors = 0;
    std::string first_error;
    for (const RequestStats& s : stats) {
      if (!s.ok) {
        if (errors++ == 0) first_error = s.error;
        continue;
      }
      tokens += s.tokens;
      ttft.push_back(s.ttft_ms);
      itl.insert(itl.end(), s.itl_ms.begin(), s.itl_ms.end());
    }
    std::printf("%6d %8d %10.2f %12.1f %8.2fms %8.2fms %8.2fms %8.2fms %7d\n", c, total,
                total / wall_s, tokens / wall_s, Percentile(ttft, 0.5), Percentile(ttft, 0.99),
                Percentile(itl, 0.5), Percentile(itl, 0.99), errors);
    if (errors > 0) std::printf("       first error: %s\n", first_error.c_str());
    std::fflush(stdout);
  }
  return 0;
}
