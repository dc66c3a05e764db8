// Generate codec (see generate_codec.h).
#include "attention_node/service/generate_codec.h"

#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/rpc/tensor_codec.h"
#include "common/status.h"

namespace afd::attention {
namespace {

v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kAbort:
      return v1::FINISH_REASON_ABORT;
    case FinishReason::kNone:
      break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

}  // namespace

absl::StatusOr<GenerationRequest> DecodeGenerateRequest(const v1::GenerateRequest& proto) {
  const v1::SamplingParams& s = proto.sampling();
  GenerationRequest request;
  request.id = proto.request_id();
  request.prompt.assign(proto.prompt_token_ids().begin(), proto.prompt_token_ids().end());
  SamplingParams& p = request.sampling;
  p.temperature = s.has_temperature() ? s.temperature() : 1.0f;
  p.top_p = s.has_top_p() ? s.top_p() : 1.0f;
  p.top_k = s.has_top_k() ? s.top_k() : 0;
  p.min_p = s.has_min_p() ? s.min_p() : 0.0f;
  p.repetition_penalty = s.has_repetition_penalty() ? s.repetition_penalty() : 1.0f;
  p.presence_penalty = s.presence_penalty();
  p.frequency_penalty = s.frequency_penalty();
  if (!(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f) ||
      !(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("sampling: presence_penalty (",
                                                   p.presence_penalty, ") and frequency_penalty (",
                                                   p.frequency_penalty, ") must be in [-2, 2]"));
  }
  if (s.top_logprobs() > 20) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling: top_logprobs must be in [0, 20], got ", s.top_logprobs()));
  }
  p.top_logprobs = static_cast<int>(s.top_logprobs());
  p.seed =
      s.has_seed() ? s.seed() : (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  request.stop_token_ids.assign(s.stop_token_ids().begin(), s.stop_token_ids().end());
  request.ignore_eos = s.ignore_eos();
  request.max_tokens = static_cast<int>(std::min<uint32_t>(s.max_tokens(), 1u << 30));
  request.logprobs = s.logprobs() || s.top_logprobs() > 0;
  request.return_prompt_logits = proto.return_prompt_logits();
  request.return_logits = proto.return_logits();
  request.forced_tokens.assign(proto.forced_token_ids().begin(), proto.forced_token_ids().end());
  return request;
}

void EncodeGenerationUpdate(const std::string& request_id, const GenerationUpdate& update,
                            int vocab, v1::GenerateResponse* proto) {
  proto->set_request_id(request_id);
  for (int32_t t : update.tokens) proto->add_token_ids(t);
  for (const SampleResult& r : update.logprobs) {
    v1::TokenLogprob* lp = proto->add_logprobs();
    lp->set_token_id(r.token);
    lp->set_logprob(r.logprob);
    for (const TokenLogprob& top : r.top) {
      v1::TopLogprob* t = lp->add_top();
      t->set_token_id(top.token);
      t->set_logprob(top.logprob);
    }
  }
  if (!update.prompt_logits.empty()) {
    const int64_t rows = static_cast<int64_t>(update.prompt_logits.size()) / vocab;
    rpc::EncodeTensor(update.prompt_logits, {rows, int64_t{vocab}}, v1::DTYPE_F32,
                      proto->mutable_prompt_logits());
  }
  if (!update.logits.empty()) {
    const int64_t rows = static_cast<int64_t>(update.logits.size()) / vocab;
    rpc::EncodeTensor(update.logits, {rows, int64_t{vocab}}, v1::DTYPE_F32,
                      proto->mutable_logits());
  }
  proto->set_finish_reason(ToProto(update.finish));
  if (update.finish != FinishReason::kNone) {
    proto->mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(update.prompt_tokens));
    proto->mutable_usage()->set_completion_tokens(static_cast<uint32_t>(update.completion_tokens));
  }
}

void EncodeLoad(const SchedulerLoad& load, v1::AttentionNodeInfo* proto) {
  proto->set_total_kv_blocks(static_cast<uint32_t>(load.total_kv_blocks));
  proto->set_free_kv_blocks(static_cast<uint32_t>(load.free_kv_blocks));
  proto->set_running_sequences(static_cast<uint32_t>(load.running));
  proto->set_waiting_sequences(static_cast<uint32_t>(load.waiting));
}

void EncodeStepTimes(const StepProfile& profile, v1::StepTimes* proto) {
  proto->Clear();
  proto->set_steps(static_cast<uint64_t>(profile.steps));
  proto->set_tokens(static_cast<uint64_t>(profile.tokens));
  proto->set_step_seconds(profile.step_seconds);
  proto->set_weight_bytes(static_cast<uint64_t>(profile.weight_bytes));
  for (int s = 0; s < StepProfile::kStages; ++s) {
    v1::StageTime* stage = proto->add_stages();
    stage->set_stage(ProfileStageName(static_cast<ProfileStage>(s)));
    stage->set_seconds(profile.seconds[s]);
  }
}

absl::StatusOr<StepProfile> DecodeStepTimes(const v1::StepTimes& proto) {
  auto check = [](double seconds, absl::string_view what) -> absl::Status {
    if (!std::isfinite(seconds) || seconds < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("step times: ", what, " is ", seconds, " seconds"));
    }
    return absl::OkStatus();
  };
  StepProfile profile;
  profile.steps = static_cast<int64_t>(proto.steps());
  profile.tokens = static_cast<int64_t>(proto.tokens());
  profile.weight_bytes = static_cast<int64_t>(proto.weight_bytes());
  RETURN_IF_ERROR(check(proto.step_seconds(), "step_seconds"));
  profile.step_seconds = proto.step_seconds();
  for (const v1::StageTime& stage : proto.stages()) {
    RETURN_IF_ERROR(check(stage.seconds(), stage.stage()));
    for (int s = 0; s < StepProfile::kStages; ++s) {
      if (stage.stage() == ProfileStageName(static_cast<ProfileStage>(s))) {
        profile.seconds[s] = stage.seconds();
      }
    }
  }
  return profile;
}

}  // namespace afd::attention
