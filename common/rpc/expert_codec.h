// Codec between afd.v1.ExpertBatch / ExpertResult and the domain ExpertBatchView plus fp32 row
// buffers. Decoding validates everything a peer could get wrong (dtype, byte lengths, CSR shape)
// so a decoded view is always safe to read. Stateless functions; the caller owns the protos and
// scratch buffers (reused across calls, so steady-state encoding and decoding do not allocate).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "afd/v1/expert.pb.h"
#include "common/cluster/expert_batch.h"

namespace afd::rpc {

// Writes `batch` into `proto` (overwriting every field, reusing its capacity). Hidden rows are
// gathered through batch.token_index when set and sent as `dtype` (F32, or BF16 rounded to
// nearest even).
void EncodeExpertBatch(const ExpertBatchView& batch, v1::DType dtype, v1::ExpertBatch* proto);

// Points `batch` into `proto` (valid while `proto` and `scratch` live and are not modified).
// BF16 hidden states, or F32 bytes that are not float-aligned, are widened/copied into *scratch.
// INVALID_ARGUMENT naming the field for: unknown dtype, hidden bytes != T * D * element size,
// offsets not T + 1 long, expert_ids/weights not offsets[T] long, fold neither empty nor T long,
// and anything ValidateExpertBatch rejects.
absl::Status DecodeExpertBatch(const v1::ExpertBatch& proto, std::vector<float>* scratch,
                               ExpertBatchView* batch);

// A successful result: rows [num_rows, hidden_dim] fp32.
void EncodeExpertResult(uint64_t id, const float* rows, int64_t num_rows, int hidden_dim,
                        uint64_t compute_ns, v1::ExpertResult* proto);
// A failed batch: the status travels in the message, no rows.
void EncodeExpertResultError(uint64_t id, const absl::Status& status, v1::ExpertResult* proto);

// The rows of a result for the batch `expected_id` that should have `expected_rows` rows of
// `hidden_dim`: the node's own error status if it sent one; INTERNAL for a mismatched id, row
// count or byte length. The pointer is into `proto`, or into *scratch when not float-aligned.
absl::StatusOr<const float*> DecodeExpertResult(const v1::ExpertResult& proto, uint64_t expected_id,
                                                int64_t expected_rows, int hidden_dim,
                                                std::vector<float>* scratch);

}  // namespace afd::rpc
