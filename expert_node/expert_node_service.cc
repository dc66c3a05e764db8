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

// One Forward stream: an executor and buffers reused from batch to batch.
class ForwardSession {
 public:
  ForwardSession(const ExpertStore* store, ComputePool* compute, const std::string& node_name)
      : node_name_(node_name), executor_(store, compute, node_name) {}

  // decode -> run -> encode; an error goes into the reply instead of rows.
  void Handle(const v1::ExpertBatch& request, v1::ExpertResult* reply) {
    const auto start = std::chrono::steady_clock::now();
    ExpertBatchView batch;
    absl::Status status = rpc::DecodeExpertBatch(request, &hidden_scratch_, &batch);
    if (status.ok()) {
      status = executor_.Run(batch, &rows_);
    } else {
      status = absl::Status(status.code(), absl::StrCat(node_name_, ": ", status.message()));
    }
    if (status.ok()) {
      rpc::EncodeExpertResult(request.id(), rows_.data(), ExpertResultRows(batch), batch.hidden_dim,
                              NanosSince(start), reply);
    } else {
      rpc::EncodeExpertResultError(request.id(), status, reply);
    }
  }

 private:
  const std::string& node_name_;
  ExpertExecutor executor_;
  std::vector<float> hidden_scratch_;  // [T, D] when the batch is bf16 or unaligned
  std::vector<float> rows_;            // [R, D]
};

// store: null while loading.
void DescribeNode(const std::string& node_name, int threads, const ExpertStore* store,
                  v1::ExpertNodeInfo* info) {
  info->set_node_name(node_name);
  info->set_threads(static_cast<uint32_t>(threads));
  info->set_ready(store != nullptr);
  if (store == nullptr) return;
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
}

}  // namespace

ExpertNodeService::ExpertNodeService(std::string node_name, ComputePool* compute)
    : node_name_(std::move(node_name)), compute_(compute) {}

grpc::Status ExpertNodeService::Forward(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::ExpertResult, v1::ExpertBatch>* stream) {
  const ExpertStore* store = store_.load();
  if (store == nullptr) return Loading(node_name_);
  ForwardSession session(store, compute_, node_name_);
  v1::ExpertBatch request;
  v1::ExpertResult reply;
  while (stream->Read(&request)) {
    session.Handle(request, &reply);
    if (!stream->Write(reply)) break;
  }
  return grpc::Status::OK;
}

grpc::Status ExpertNodeService::Describe(grpc::ServerContext* context,
                                         const v1::DescribeExpertNodeRequest* request,
                                         v1::ExpertNodeInfo* info) {
  DescribeNode(node_name_, compute_->threads(), store_.load(), info);
  return grpc::Status::OK;
}

}  // namespace afd::expert
