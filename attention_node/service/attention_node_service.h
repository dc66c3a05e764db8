// AttentionNodeService: the afd.v1.AttentionNode gRPC service (callback API). Thin handlers:
// decode the request, hand it to the Scheduler, encode what comes back. Generate streams one
// response per step of the sequence; a client that cancels (or whose deadline passes) aborts
// its sequence. Until SetReady, Generate and Abort get UNAVAILABLE and Describe says
// ready = false. Thread-safe.
#pragma once

#include <atomic>
#include <string>

#include "absl/synchronization/mutex.h"
#include "afd/v1/attention.grpc.pb.h"
#include "attention_node/service/scheduler.h"

namespace afd::attention {

class AttentionNodeService final : public v1::AttentionNode::CallbackService {
 public:
  explicit AttentionNodeService(std::string node_name);

  // Starts serving through `scheduler` (borrowed, must outlive the service's calls). `info`
  // holds the static fields of Describe (model shape, limits, expert nodes).
  void SetReady(Scheduler* scheduler, const v1::AttentionNodeInfo& info);

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context,
                                  const v1::AbortRequest* request,
                                  v1::AbortResponse* response) override;
  grpc::ServerUnaryReactor* Describe(grpc::CallbackServerContext* context,
                                     const v1::DescribeAttentionNodeRequest* request,
                                     v1::AttentionNodeInfo* info) override;

 private:
  const std::string node_name_;
  std::atomic<Scheduler*> scheduler_{nullptr};
  std::atomic<int> vocab_{0};
  std::atomic<uint64_t> next_id_{0};  // for requests that come without an id
  absl::Mutex mu_;
  v1::AttentionNodeInfo info_ ABSL_GUARDED_BY(mu_);
};

}  // namespace afd::attention
