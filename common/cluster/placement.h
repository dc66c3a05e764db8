// Placement: for every (layer, expert) of a model, the expert nodes that host it (replicas),
// built from the nodes' resolved ExpertSets. The attention node's remote expert backend routes
// with it. Immutable after Build; safe to read from any thread.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "common/cluster/expert_set.h"

namespace afd {

class Placement {
 public:
  // node_sets[n]: what node n hosts; all must have the given shape. With require_complete,
  // UNAVAILABLE naming the experts no node hosts ("layer 0 experts 5-7; ...").
  static absl::StatusOr<Placement> Build(const std::vector<ExpertSet>& node_sets, int num_layers,
                                         int num_experts, bool require_complete);

  int num_layers() const { return num_layers_; }
  int num_experts() const { return num_experts_; }
  int num_nodes() const { return num_nodes_; }
  // Indices of the nodes hosting (layer, expert), ascending; empty when none does.
  const std::vector<int>& Hosts(int layer, int expert) const {
    return hosts_[static_cast<size_t>(layer) * num_experts_ + expert];
  }
  // Every (layer, expert) hosted by no node.
  ExpertSet Unhosted() const;

 private:
  int num_layers_ = 0;
  int num_experts_ = 0;
  int num_nodes_ = 0;
  std::vector<std::vector<int>> hosts_;  // [num_layers * num_experts] -> node indices
};

}  // namespace afd
