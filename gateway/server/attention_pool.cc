#include "gateway/server/attention_pool.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/rpc/channel.h"
#include "common/rpc/status_codec.h"
#include "common/status.h"

namespace afd::gateway {

absl::StatusOr<std::unique_ptr<AttentionPool>> AttentionPool::Create(
    const std::vector<AttentionEndpoint>& endpoints, const AttentionPoolOptions& options) {
  if (endpoints.empty()) {
    return absl::InvalidArgumentError("the gateway needs at least one attention node");
  }
  auto pool = std::unique_ptr<AttentionPool>(new AttentionPool());
  pool->options_ = options;
  rpc::ChannelOptions channel_options;
  channel_options.initial_backoff_ms = options.reconnect_initial_backoff_ms;
  channel_options.max_backoff_ms = options.reconnect_max_backoff_ms;
  for (const AttentionEndpoint& endpoint : endpoints) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
        rpc::MakeChannel(endpoint.address, options.tls, channel_options);
    if (!channel.ok()) {
      return absl::Status(channel.status().code(), absl::StrCat("attention node ", endpoint.name,
                                                                ": ", channel.status().message()));
    }
    auto node = std::make_unique<Node>();
    node->endpoint = endpoint;
    node->channel = *channel;
    node->stub = v1::AttentionNode::NewStub(*channel);
    node->last_error = "not polled yet";
    pool->nodes_.push_back(std::move(node));
  }
  pool->poller_ = std::thread([p = pool.get()] { p->PollLoop(); });
  return pool;
}

AttentionPool::~AttentionPool() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    changed_.SignalAll();
  }
  if (poller_.joinable()) poller_.join();
}

void AttentionPool::PollLoop() {
  while (true) {
    PollOnce();
    absl::MutexLock lock(&mu_);
    const absl::Time until = absl::Now() + absl::Milliseconds(options_.poll_interval_ms);
    while (!stop_ && absl::Now() < until) changed_.WaitWithDeadline(&mu_, until);
    if (stop_) return;
  }
}

void AttentionPool::PollOnce() {
  for (const std::unique_ptr<Node>& node : nodes_) {
    grpc::ClientContext context;
    context.set_deadline(
        absl::ToChronoTime(absl::Now() + absl::Milliseconds(options_.describe_timeout_ms)));
    v1::DescribeAttentionNodeRequest request;
    v1::AttentionNodeInfo info;
    const grpc::Status status = node->stub->Describe(&context, request, &info);
    absl::MutexLock lock(&mu_);
    node->polled = true;
    node->charged_blocks = 0;
    if (status.ok()) {
      node->info = std::move(info);
      node->ready = node->info.ready();
      node->last_error = node->ready ? "" : "loading";
    } else {
      node->ready = false;
      node->last_error = absl::StrCat(absl::StatusCodeToString(rpc::FromGrpcStatus(status).code()),
                                      ": ", status.error_message());
    }
  }
  absl::MutexLock lock(&mu_);
  changed_.SignalAll();
}

absl::Status AttentionPool::WaitUntilReady(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::MutexLock lock(&mu_);
  while (true) {
    bool all_polled = true;
    for (const std::unique_ptr<Node>& node : nodes_) {
      if (node->ready) return absl::OkStatus();
      all_polled = all_polled && node->polled;
    }
    if (absl::Now() >= deadline || stop_) {
      std::string states;
      for (const std::unique_ptr<Node>& node : nodes_) {
        absl::StrAppend(&states, states.empty() ? "" : "; ", node->endpoint.name, " (",
                        node->endpoint.address, "): ", node->last_error);
      }
      return absl::DeadlineExceededError(absl::StrCat("no attention node became ready: ", states));
    }
    changed_.WaitWithDeadline(&mu_, deadline);
  }
}

bool AttentionPool::AnyReady() const {
  absl::MutexLock lock(&mu_);
  for (const std::unique_ptr<Node>& node : nodes_) {
    if (node->ready) return true;
  }
  return false;
}

absl::StatusOr<AttentionPool::Choice> AttentionPool::Pick(int64_t kv_blocks,
                                                          const std::set<int>& exclude) {
  absl::MutexLock lock(&mu_);
  int best = -1;
  int64_t best_free = 0, best_load = 0;
  for (int i = 0; i < size(); ++i) {
    const Node& node = *nodes_[i];
    if (!node.ready || exclude.count(i) > 0) continue;
    const int64_t free = static_cast<int64_t>(node.info.free_kv_blocks()) - node.charged_blocks;
    const int64_t load = static_cast<int64_t>(node.info.running_sequences()) +
                         node.info.waiting_sequences() + node.in_flight;
    if (best < 0 || free > best_free || (free == best_free && load < best_load)) {
      best = i;
      best_free = free;
      best_load = load;
    }
  }
  if (best < 0) {
    std::string states;
    for (const std::unique_ptr<Node>& node : nodes_) {
      absl::StrAppend(&states, states.empty() ? "" : "; ", node->endpoint.name, ": ",
                      node->ready ? "ready (already tried)" : node->last_error);
    }
    return absl::UnavailableError(absl::StrCat("no attention node is available (", states, ")"));
  }
  nodes_[best]->charged_blocks += kv_blocks;
  return Choice{best, nodes_[best]->endpoint.name};
}

void AttentionPool::MarkUnreachable(int node) {
  const grpc_connectivity_state state = nodes_[node]->channel->GetState(false);
  if (state == GRPC_CHANNEL_READY || state == GRPC_CHANNEL_IDLE) return;
  absl::MutexLock lock(&mu_);
  nodes_[node]->ready = false;
  nodes_[node]->last_error = "unreachable";
}

std::vector<NodeLoad> AttentionPool::Loads() const {
  absl::MutexLock lock(&mu_);
  std::vector<NodeLoad> loads;
  for (const std::unique_ptr<Node>& node : nodes_) {
    NodeLoad load;
    load.name = node->endpoint.name;
    load.ready = node->ready;
    load.total_kv_blocks = node->info.total_kv_blocks();
    load.free_kv_blocks = node->info.free_kv_blocks();
    load.running_sequences = node->info.running_sequences();
    load.waiting_sequences = node->info.waiting_sequences();
    loads.push_back(load);
  }
  return loads;
}

std::vector<v1::AttentionNodeInfo> AttentionPool::Infos() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::AttentionNodeInfo> infos;
  for (const std::unique_ptr<Node>& node : nodes_) {
    v1::AttentionNodeInfo info = node->info;
    if (info.node_name().empty()) info.set_node_name(node->endpoint.name);
    info.set_ready(node->ready);
    infos.push_back(std::move(info));
  }
  return infos;
}

std::optional<v1::AttentionNodeInfo> AttentionPool::ReadyInfo() const {
  absl::MutexLock lock(&mu_);
  for (const std::unique_ptr<Node>& node : nodes_) {
    if (node->ready) return node->info;
  }
  return std::nullopt;
}

void AttentionPool::Register(const std::string& request_id, int node) {
  absl::MutexLock lock(&mu_);
  running_[request_id] = node;
  ++nodes_[node]->in_flight;
}

void AttentionPool::Unregister(const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  auto it = running_.find(request_id);
  if (it == running_.end()) return;
  --nodes_[it->second]->in_flight;
  running_.erase(it);
}

std::optional<int> AttentionPool::Find(const std::string& request_id) const {
  absl::MutexLock lock(&mu_);
  auto it = running_.find(request_id);
  if (it == running_.end()) return std::nullopt;
  return it->second;
}

// ---- GenerateCall ----

GenerateCall::GenerateCall(AttentionPool* pool, v1::GenerateRequest request,
                           const CallOptions& options)
    : pool_(pool), request_(std::move(request)), options_(options) {}

absl::StatusOr<std::unique_ptr<GenerateCall>> GenerateCall::Start(AttentionPool* pool,
                                                                  v1::GenerateRequest request,
                                                                  const CallOptions& options) {
  auto call = std::unique_ptr<GenerateCall>(new GenerateCall(pool, std::move(request), options));
  ASSIGN_OR_RETURN(AttentionPool::Choice choice, pool->Pick(options.kv_blocks, call->tried_));
  RETURN_IF_ERROR(call->StartOn(choice.node));
  call->node_name_ = choice.name;
  return call;
}

GenerateCall::~GenerateCall() {
  if (reader_ != nullptr && !finished_) {
    Cancel();
    v1::GenerateResponse ignored;
    while (reader_->Read(&ignored)) {
    }
    reader_->Finish();
  }
  if (node_ >= 0) pool_->Unregister(request_.request_id());
}

absl::Status GenerateCall::StartOn(int node) {
  absl::MutexLock lock(&mu_);
  if (cancelled_) return absl::CancelledError("the request was cancelled");
  if (node_ >= 0) pool_->Unregister(request_.request_id());
  tried_.insert(node);
  node_ = node;
  pool_->Register(request_.request_id(), node);
  reader_.reset();
  context_ = options_.parent != nullptr ? grpc::ClientContext::FromServerContext(*options_.parent)
                                        : std::make_unique<grpc::ClientContext>();
  if (options_.deadline.has_value()) context_->set_deadline(absl::ToChronoTime(*options_.deadline));
  reader_ = pool_->stub(node)->Generate(context_.get(), request_);
  return absl::OkStatus();
}

bool GenerateCall::Read(v1::GenerateResponse* response) {
  while (!finished_) {
    if (reader_->Read(response)) {
      got_response_ = true;
      return true;
    }
    const absl::Status status = rpc::FromGrpcStatus(reader_->Finish());
    const bool retry = !got_response_ && absl::IsUnavailable(status) && !cancelled() &&
                       static_cast<int>(tried_.size()) < pool_->options().max_attempts &&
                       static_cast<int>(tried_.size()) < pool_->size();
    if (retry) {
      pool_->MarkUnreachable(node_);
      absl::StatusOr<AttentionPool::Choice> next = pool_->Pick(options_.kv_blocks, tried_);
      if (next.ok() && StartOn(next->node).ok()) {
        node_name_ = next->name;
        continue;
      }
    }
    finished_ = true;
    final_status_ = status.ok()
                        ? status
                        : absl::Status(status.code(), absl::StrCat("attention node ", node_name_,
                                                                   ": ", status.message()));
  }
  return false;
}

absl::Status GenerateCall::Finish() { return final_status_; }

void GenerateCall::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

bool GenerateCall::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

}  // namespace afd::gateway
