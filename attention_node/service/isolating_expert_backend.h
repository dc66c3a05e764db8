// IsolatingExpertBackend: wraps one micro-batch lane's ExpertBackend so that an expert failure
// fails only the sequences that need the missing experts. When a layer's call fails with
// UNAVAILABLE or DEADLINE_EXCEEDED, each batch entry's rows are retried alone; entries whose own
// call fails are recorded with that status (prefixed "layer L experts: ") and get zero rows from
// then on, and the call succeeds for the others. Not thread-safe: one Step at a time.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "attention_node/expert_backend.h"

namespace afd::attention {

class IsolatingExpertBackend : public ExpertBackend {
 public:
  // inner: borrowed, must outlive the wrapper.
  explicit IsolatingExpertBackend(ExpertBackend* inner) : inner_(inner) {}

  // Declares the rows of the coming step: entry e owns entry_tokens[e] consecutive token rows,
  // in batch order (the Engine's row layout). Clears the recorded failures.
  void BeginStep(absl::Span<const int64_t> entry_tokens);
  // Per entry of the current step: OK, or why its experts failed.
  const std::vector<absl::Status>& entry_status() const { return entry_status_; }

  // See ExpertBackend::Run. Errors other than UNAVAILABLE / DEADLINE_EXCEEDED, and any error
  // when the step has a single entry, are returned as they are (the whole step fails).
  absl::Status Run(const ExpertRequest& request, float* out) override;
  void set_profile(StepProfile* profile) override { inner_->set_profile(profile); }
  std::vector<ExpertNodeTraffic> Traffic() const override { return inner_->Traffic(); }

 private:
  ExpertBackend* inner_;
  std::vector<int64_t> entry_begin_;  // [entries + 1] first token row of each entry
  std::vector<absl::Status> entry_status_;
  int failed_ = 0;
};

}  // namespace afd::attention
