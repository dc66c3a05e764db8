// ExpertNodeService (see expert_node_service.h).
#include "expert_node/expert_node_service.h"

#include <chrono>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/rpc/expert_codec.h"
#include "common/rpc/status_codec.h"

namespace afd::expert {
namespace {

grpc::Status Loading(const std::string& node_name) {
  return rpc::ToGrpcStatus(
      absl::UnavailableError(absl::StrCat(node_name, ": still loading its experts")));
}

uint64_t NanosSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                              start)
      .count();
}

}  // namespace

ExpertNodeService::ExpertNodeService(std::string node_name, ComputePool* compute)
    : node_name_(std::move(node_name)), compute_(compute) {}

grpc::Status ExpertNodeService::Forward(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::ExpertResult, v1::ExpertBatch>* stream) {
  const ExpertStore* store = store_.load();
  if (store == nullptr) return Loading(node_name_);
  ExpertExecutor executor(store, compute_, node_name_);
  v1::ExpertBatch request;
  v1::ExpertResult reply;
  std::vector<float> hidden_scratch, rows;
  while (stream->Read(&request)) {
    const auto start = std::chrono::steady_clock::now();
    ExpertBatchView batch;
    absl::Status status = rpc::DecodeExpertBatch(request, &hidden_scratch, &batch);
    if (status.ok()) status = executor.Run(batch, &rows);
    if (status.ok()) {
      rpc::EncodeExpertResult(request.id(), rows.data(), ExpertResultRows(batch),
                              batch.hidden_dim, NanosSince(start), &reply);
    } else {
      rpc::EncodeExpertResultError(request.id(), status, &reply);
    }
    if (!stream->Write(reply)) break;
  }
  return grpc::Status::OK;
}

grpc::Status ExpertNodeService::Describe(grpc::ServerContext* context,
                                         const v1::DescribeExpertNodeRequest* request,
                                         v1::ExpertNodeInfo* info) {
  info->set_node_name(node_name_);
  info->set_threads(static_cast<uint32_t>(compute_->threads()));
  const ExpertStore* store = store_.load();
  info->set_ready(store != nullptr);
  if (store == nullptr) return grpc::Status::OK;
  const ModelConfig& config = store->config();
  info->set_model_type(config.model_type);
  info->set_hidden_dim(config.hidden_size);
  info->set_intermediate_dim(config.intermediate_size);
  info->set_num_layers(config.num_hidden_layers);
  info->set_num_experts(config.num_local_experts);
  info->set_weight_dtype(store->weight_dtype());
  info->set_hosted_weight_bytes(store->hosted_bytes());
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    const std::vector<int> experts = store->hosted().ExpertsOf(l);
    if (experts.empty()) continue;
    v1::ExpertRange* range = info->add_hosted();
    range->add_layers(l);
    range->mutable_experts()->Assign(experts.begin(), experts.end());
  }
  return grpc::Status::OK;
}

}  // namespace afd::expert
