// IsolatingExpertBackend (see isolating_expert_backend.h).
#include "attention_node/service/isolating_expert_backend.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace afd::attention {
namespace {

bool Isolatable(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded;
}

}  // namespace

void IsolatingExpertBackend::BeginStep(absl::Span<const int64_t> entry_tokens) {
  entry_begin_.assign(entry_tokens.size() + 1, 0);
  for (size_t e = 0; e < entry_tokens.size(); ++e) {
    entry_begin_[e + 1] = entry_begin_[e] + entry_tokens[e];
  }
  entry_status_.assign(entry_tokens.size(), absl::OkStatus());
  failed_ = 0;
}

absl::Status IsolatingExpertBackend::Run(const ExpertRequest& request, float* out) {
  const size_t entries = entry_status_.size();
  if (failed_ == 0) {
    absl::Status s = inner_->Run(request, out);
    if (s.ok() || !Isolatable(s) || entries <= 1 || entry_begin_.back() != request.num_tokens) {
      return s;
    }
  }
  // Isolation: each live entry's rows alone; failed entries get zero rows.
  const int64_t d = request.hidden_dim;
  const int k = request.top_k;
  for (size_t e = 0; e < entries; ++e) {
    const int64_t begin = entry_begin_[e];
    const int64_t rows = entry_begin_[e + 1] - begin;
    float* entry_out = out + begin * d;
    if (entry_status_[e].ok()) {
      ExpertRequest sub = request;
      sub.num_tokens = rows;
      sub.hidden = request.hidden + begin * d;
      sub.expert_ids = request.expert_ids + begin * k;
      sub.weights = request.weights + begin * k;
      absl::Status s = inner_->Run(sub, entry_out);
      if (s.ok()) continue;
      if (!Isolatable(s)) return s;
      entry_status_[e] =
          absl::Status(s.code(), absl::StrCat("layer ", request.layer, " experts: ", s.message()));
      ++failed_;
    }
    std::memset(entry_out, 0, sizeof(float) * rows * d);
  }
  // Nothing left to compute: stop the step (the scheduler reports entry_status()).
  if (failed_ == static_cast<int>(entries)) {
    return absl::Status(entry_status_[0].code(), "every sequence of the micro-batch failed");
  }
  return absl::OkStatus();
}

}  // namespace afd::attention
