// AttentionNodeService (see attention_node_service.h).
#include "attention_node/service/attention_node_service.h"

#include <deque>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "attention_node/service/generate_codec.h"
#include "common/rpc/status_codec.h"

namespace afd::attention {
namespace {

// One Generate call: submits the sequence, then writes its updates in order, one write in
// flight at a time, and finishes with the sequence's final status. Cancellation aborts the
// sequence; the reactor lives until the scheduler's last update has been handled (OnDone).
class GenerateReactor : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateReactor(Scheduler* scheduler, int vocab) : scheduler_(scheduler), vocab_(vocab) {}

  void Start(absl::StatusOr<GenerationRequest> request) {
    absl::Status status = request.status();
    if (status.ok()) {
      id_ = request->id;
      status = scheduler_->Submit(std::move(*request),
                                  [this](GenerationUpdate update) { OnUpdate(std::move(update)); });
    }
    if (!status.ok()) Finish(rpc::ToGrpcStatus(status));
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      queue_.pop_front();
      if (!ok) broken_ = true;  // the client is gone; OnCancel aborts the sequence
    }
    Pump();
  }
  void OnCancel() override {
    if (scheduler_ != nullptr && !id_.empty()) scheduler_->Abort(id_).IgnoreError();
  }
  void OnDone() override { delete this; }

 private:
  // Scheduler thread: queue the response (or the final status) and write if idle.
  void OnUpdate(GenerationUpdate update) {
    auto response = std::make_unique<v1::GenerateResponse>();
    if (update.status.ok()) EncodeGenerationUpdate(id_, update, vocab_, response.get());
    {
      absl::MutexLock lock(&mu_);
      if (!update.status.ok()) {
        final_status_ = update.status;
        done_ = true;
      } else {
        if (!broken_) queue_.push_back(std::move(response));
        done_ = update.finish != FinishReason::kNone;
      }
    }
    Pump();
  }

  // Starts the next write, or finishes once everything is written. Calls into gRPC outside
  // the lock (reactions may run inline).
  void Pump() {
    const v1::GenerateResponse* next = nullptr;
    bool finish = false;
    absl::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_) return;
      if (broken_) queue_.clear();
      if (!queue_.empty()) {
        writing_ = true;
        next = queue_.front().get();
      } else if (done_) {
        finished_ = finish = true;
        status = final_status_;
      }
    }
    if (next != nullptr) StartWrite(next);
    if (finish) Finish(rpc::ToGrpcStatus(status));
  }

  Scheduler* const scheduler_;
  const int vocab_;
  std::string id_;
  absl::Mutex mu_;
  std::deque<std::unique_ptr<v1::GenerateResponse>> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
};

absl::Status Loading() {
  return absl::UnavailableError("the attention node is still loading; retry when it is ready");
}

}  // namespace

AttentionNodeService::AttentionNodeService(std::string node_name)
    : node_name_(std::move(node_name)) {
  info_.set_node_name(node_name_);
}

void AttentionNodeService::SetReady(Scheduler* scheduler, const v1::AttentionNodeInfo& info) {
  {
    absl::MutexLock lock(&mu_);
    info_ = info;
    info_.set_node_name(node_name_);
    info_.set_ready(true);
  }
  vocab_.store(static_cast<int>(info.vocab_size()));
  scheduler_.store(scheduler);
}

grpc::ServerWriteReactor<v1::GenerateResponse>* AttentionNodeService::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  Scheduler* scheduler = scheduler_.load();
  if (scheduler == nullptr) {
    auto* reactor = new GenerateReactor(nullptr, 0);
    reactor->Start(Loading());
    return reactor;
  }
  absl::StatusOr<GenerationRequest> decoded = DecodeGenerateRequest(*request);
  if (decoded.ok() && decoded->id.empty()) decoded->id = absl::StrCat(node_name_, "-", next_id_++);
  auto* reactor = new GenerateReactor(scheduler, vocab_.load());
  reactor->Start(std::move(decoded));
  return reactor;
}

grpc::ServerUnaryReactor* AttentionNodeService::Abort(grpc::CallbackServerContext* context,
                                                      const v1::AbortRequest* request,
                                                      v1::AbortResponse* response) {
  Scheduler* scheduler = scheduler_.load();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(rpc::ToGrpcStatus(
      scheduler == nullptr ? Loading() : scheduler->Abort(request->request_id())));
  return reactor;
}

grpc::ServerUnaryReactor* AttentionNodeService::Describe(
    grpc::CallbackServerContext* context, const v1::DescribeAttentionNodeRequest* request,
    v1::AttentionNodeInfo* info) {
  {
    absl::MutexLock lock(&mu_);
    *info = info_;
  }
  if (Scheduler* scheduler = scheduler_.load()) {
    EncodeLoad(scheduler->Load(), info);
    EncodeStepTimes(scheduler->Profile(), info->mutable_step_times());
    for (const ExpertNodeTraffic& t : scheduler->Traffic()) {
      v1::ExpertNodeTraffic* out = info->add_expert_traffic();
      out->set_node(t.node);
      out->set_pairs(t.pairs);
      out->set_compute_ns(t.compute_ns);
    }
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace afd::attention
