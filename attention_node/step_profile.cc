// StepProfile table formatting (see step_profile.h).
#include "attention_node/step_profile.h"

#include "absl/strings/str_format.h"

namespace afd::attention {
namespace {

bool OutsideStep(int stage) {
  return stage == static_cast<int>(ProfileStage::kSampling) ||
         stage == static_cast<int>(ProfileStage::kScheduler);
}

}  // namespace

double StepProfile::Untimed() const {
  double timed = 0;
  for (int s = 0; s < kStages; ++s) {
    if (!OutsideStep(s)) timed += seconds[s];
  }
  return step_seconds - timed;
}

double StepProfile::Total() const {
  return step_seconds + Get(ProfileStage::kSampling) + Get(ProfileStage::kScheduler);
}

std::string FormatStepProfiles(
    absl::Span<const std::pair<std::string, const StepProfile*>> profiles) {
  std::string out = absl::StrFormat("%-18s", "ms per step");
  for (const auto& [name, p] : profiles) absl::StrAppendFormat(&out, " %12s", name);
  out += "\n";
  auto row = [&](absl::string_view label, auto value) {
    absl::StrAppendFormat(&out, "%-18s", label);
    for (const auto& [name, p] : profiles) {
      absl::StrAppendFormat(&out, " %12.3f", p->steps > 0 ? 1e3 * value(*p) / p->steps : 0.0);
    }
    out += "\n";
  };
  for (int s = 0; s < StepProfile::kStages; ++s) {
    bool any = false;
    for (const auto& [name, p] : profiles) any = any || p->seconds[s] > 0;
    // The scheduler row only where a scheduler ran (not in afd-generate).
    if (!any && s == static_cast<int>(ProfileStage::kScheduler)) continue;
    row(ProfileStageName(static_cast<ProfileStage>(s)),
        [s](const StepProfile& p) { return p.seconds[s]; });
  }
  row("other (untimed)", [](const StepProfile& p) { return p.Untimed(); });
  row("total", [](const StepProfile& p) { return p.Total(); });
  absl::StrAppendFormat(&out, "%-18s", "tokens/step");
  for (const auto& [name, p] : profiles) {
    absl::StrAppendFormat(&out, " %12.1f",
                          p->steps > 0 ? static_cast<double>(p->tokens) / p->steps : 0.0);
  }
  out += "\n";
  absl::StrAppendFormat(&out, "%-18s", "weight MB/step");
  for (const auto& [name, p] : profiles) {
    absl::StrAppendFormat(&out, " %12.1f", p->steps > 0 ? 1e-6 * p->weight_bytes / p->steps : 0.0);
  }
  out += "\n";
  return out;
}

}  // namespace afd::attention
