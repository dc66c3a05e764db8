// StepProfile: where an Engine step's time goes, per stage (wall-clock seconds summed over the
// steps it saw), plus the weight bytes the step's products read. Filled only when a caller
// hands one to Engine::set_profile / InProcessExpertBackend::set_profile; timing never changes
// a result. Not thread-safe: written by the thread that runs Step.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/types/span.h"

namespace afd::attention {

enum class ProfileStage : int {
  kEmbed,          // embedding lookups, positions, cache reservation
  kNorms,          // input / post / final RMSNorm and residual adds
  kAttnProj,       // q/k/v/o (lightning: qkv/gate/out) projections
  kAttnCore,       // QK-norm, RoPE, KV writes, attention over the cache (lightning: the scan)
  kRouter,         // router product and top-k
  kExpertGather,   // backend: routing validation, grouping the pairs per expert (remote: per
                   // node, plus encoding and sending the batches)
  kExpertFfn,      // backend: per expert: row gathers, W1/W3, SwiGLU, W2, weighting (remote:
                   // the slowest node's reported compute)
  kExpertCombine,  // backend: the per-token combine (remote: plus decoding the replies)
  kExpertOther,    // expert backend time not attributed above (a remote backend: the RPC)
  kLmHead,         // lm_head product over the requested rows
  kSampling,       // the caller's sampling (afd-generate, the scheduler)
  kScheduler,      // the scheduler's own work around a step: admission, batching, updates out
  kCount,
};

inline const char* ProfileStageName(ProfileStage s) {
  switch (s) {
    case ProfileStage::kEmbed:
      return "embed";
    case ProfileStage::kNorms:
      return "norms+residual";
    case ProfileStage::kAttnProj:
      return "attn projections";
    case ProfileStage::kAttnCore:
      return "attn core";
    case ProfileStage::kRouter:
      return "router";
    case ProfileStage::kExpertGather:
      return "experts: gather";
    case ProfileStage::kExpertFfn:
      return "experts: ffn";
    case ProfileStage::kExpertCombine:
      return "experts: combine";
    case ProfileStage::kExpertOther:
      return "experts: other";
    case ProfileStage::kLmHead:
      return "lm_head";
    case ProfileStage::kSampling:
      return "sampling";
    case ProfileStage::kScheduler:
      return "scheduler";
    case ProfileStage::kCount:
      break;
  }
  return "?";
}

struct StepProfile {
  static constexpr int kStages = static_cast<int>(ProfileStage::kCount);
  double seconds[kStages] = {};
  int64_t steps = 0;         // Engine steps seen
  int64_t tokens = 0;        // token rows those steps ran
  int64_t weight_bytes = 0;  // weight bytes read by the products (experts: distinct ones)
  double step_seconds = 0;   // wall time of the steps, end to end

  void Reset() { *this = StepProfile(); }
  void Add(ProfileStage s, double sec) { seconds[static_cast<int>(s)] += sec; }
  double Get(ProfileStage s) const { return seconds[static_cast<int>(s)]; }
  // Adds every field of `other` (profiles of several engines or of several windows).
  void Merge(const StepProfile& other) {
    for (int s = 0; s < kStages; ++s) seconds[s] += other.seconds[s];
    steps += other.steps;
    tokens += other.tokens;
    weight_bytes += other.weight_bytes;
    step_seconds += other.step_seconds;
  }
  // Takes away an earlier snapshot of the same profile: what happened since.
  void Subtract(const StepProfile& earlier) {
    for (int s = 0; s < kStages; ++s) seconds[s] -= earlier.seconds[s];
    steps -= earlier.steps;
    tokens -= earlier.tokens;
    weight_bytes -= earlier.weight_bytes;
    step_seconds -= earlier.step_seconds;
  }
  // step_seconds less the engine stages: what no Lap attributed.
  double Untimed() const;
  // step_seconds plus the work around the steps (sampling, scheduler).
  double Total() const;
};

// A table, one column per named profile: ms per step of each stage, the untimed rest, the
// total, tokens per step and weight MB per step.
std::string FormatStepProfiles(
    absl::Span<const std::pair<std::string, const StepProfile*>> profiles);

// Attributes the time since the previous Lap (or construction) to a stage. Every call is a
// no-op when the profile is null.
class ProfileClock {
 public:
  explicit ProfileClock(StepProfile* profile) : profile_(profile) {
    if (profile_ != nullptr) last_ = std::chrono::steady_clock::now();
  }
  void Lap(ProfileStage stage) {
    if (profile_ == nullptr) return;
    const auto now = std::chrono::steady_clock::now();
    profile_->Add(stage, std::chrono::duration<double>(now - last_).count());
    last_ = now;
  }
  // Restarts the interval without attributing it (time spent in a nested profiled call).
  void Skip() {
    if (profile_ != nullptr) last_ = std::chrono::steady_clock::now();
  }

 private:
  StepProfile* profile_;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace afd::attention
