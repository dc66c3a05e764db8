// Conversions between the afd.v1.AttentionNode messages and the Scheduler's domain types
// (GenerationRequest, GenerationUpdate, SchedulerLoad), with the proto defaults applied.
// Tensors go through common/rpc's codec. Stateless functions; safe from any thread.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "afd/v1/attention.pb.h"
#include "attention_node/service/scheduler.h"

namespace afd::attention {

// Applies the proto defaults (temperature 1, top_p 1, ...; an unset seed draws a random one).
// INVALID_ARGUMENT for values outside the documented ranges (presence/frequency penalties
// outside [-2, 2], top_logprobs > 20, negative top_k). Token ids are checked by the scheduler.
absl::StatusOr<GenerationRequest> DecodeGenerateRequest(const v1::GenerateRequest& proto);

// One response per update (logprobs when the update has them); `vocab` shapes the logits
// tensors. Errors are not encoded here
// (they end the call with a status).
void EncodeGenerationUpdate(const std::string& request_id, const GenerationUpdate& update,
                            int vocab, v1::GenerateResponse* proto);

// The load fields of AttentionNodeInfo.
void EncodeLoad(const SchedulerLoad& load, v1::AttentionNodeInfo* proto);

// StepTimes <-> StepProfile, stages by name. Decoding ignores stage names it does not know
// (a newer node) and fails with INVALID_ARGUMENT on negative or non-finite times.
void EncodeStepTimes(const StepProfile& profile, v1::StepTimes* proto);
absl::StatusOr<StepProfile> DecodeStepTimes(const v1::StepTimes& proto);

}  // namespace afd::attention
