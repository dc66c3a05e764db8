// ExpertNodeService: the afd.v1.ExpertNode gRPC service. Thin handlers: decode the batch,
// run it on an ExpertExecutor, encode the rows (or the error, in the result message, so the
// stream and the node stay up), write. One executor per stream; a sync handler thread per
// stream keeps a call's path free of thread hand-offs. Until SetStore, calls get UNAVAILABLE.
// Thread-safe.
#pragma once

#include <atomic>
#include <string>

#include "afd/v1/expert.grpc.pb.h"
#include "expert_node/expert_executor.h"
#include "expert_node/expert_store.h"

namespace afd::expert {

class ExpertNodeService final : public v1::ExpertNode::Service {
 public:
  // compute: borrowed, must outlive the service.
  ExpertNodeService(std::string node_name, ComputePool* compute);

  // Starts serving `store` (borrowed, must outlive the service).
  void SetStore(const ExpertStore* store) { store_.store(store); }

  grpc::Status Forward(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::ExpertResult, v1::ExpertBatch>* stream) override;
  grpc::Status Describe(grpc::ServerContext* context, const v1::DescribeExpertNodeRequest* request,
                        v1::ExpertNodeInfo* info) override;

 private:
  const std::string node_name_;
  ComputePool* const compute_;
  std::atomic<const ExpertStore*> store_{nullptr};
};

}  // namespace afd::expert
