// Placement table (see placement.h).
#include "common/cluster/placement.h"

#include "absl/strings/str_cat.h"

namespace afd {

absl::StatusOr<Placement> Placement::Build(const std::vector<ExpertSet>& node_sets, int num_layers,
                                           int num_experts, bool require_complete) {
  Placement p;
  p.num_layers_ = num_layers;
  p.num_experts_ = num_experts;
  p.num_nodes_ = static_cast<int>(node_sets.size());
  p.hosts_.resize(static_cast<size_t>(num_layers) * num_experts);
  for (int n = 0; n < p.num_nodes_; ++n) {
    const ExpertSet& set = node_sets[n];
    if (set.num_layers() != num_layers || set.num_experts() != num_experts) {
      return absl::InvalidArgumentError(absl::StrCat(
          "placement: node ", n, " has an expert set for ", set.num_layers(), " layers x ",
          set.num_experts(), " experts, the model has ", num_layers, " x ", num_experts));
    }
    for (int l = 0; l < num_layers; ++l) {
      for (int e = 0; e < num_experts; ++e) {
        if (set.Contains(l, e)) p.hosts_[static_cast<size_t>(l) * num_experts + e].push_back(n);
      }
    }
  }
  if (require_complete) {
    ExpertSet missing = p.Unhosted();
    if (!missing.empty()) {
      return absl::UnavailableError(absl::StrCat("no expert node hosts ", missing.ToString()));
    }
  }
  return p;
}

ExpertSet Placement::Unhosted() const {
  ExpertSet missing(num_layers_, num_experts_);
  for (int l = 0; l < num_layers_; ++l) {
    for (int e = 0; e < num_experts_; ++e) {
      if (Hosts(l, e).empty()) missing.Add(l, e);
    }
  }
  return missing;
}

}  // namespace afd
