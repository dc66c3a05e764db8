// ExpertSpec and ExpertSet: which (layer, expert)s a node hosts. An ExpertSpec is the text form
// from cluster.yaml or --experts ("0-63", "0-2:0-7;3:all"), kept symbolic so it can be written
// before the model is known; an ExpertSet is a spec resolved against a model's layer and expert
// counts. Plain value types.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace afd {

// A set of non-negative integers: "all", or inclusive ranges.
struct IdRanges {
  bool all = false;
  std::vector<std::pair<int, int>> ranges;  // [first, last], first <= last

  bool operator==(const IdRanges& o) const { return all == o.all && ranges == o.ranges; }
};

// Experts `experts` of layers `layers`.
struct ExpertSpecEntry {
  IdRanges layers;
  IdRanges experts;

  bool operator==(const ExpertSpecEntry& o) const {
    return layers == o.layers && experts == o.experts;
  }
};

// The union of its entries. Text grammar:
//   SPEC  := ENTRY (';' ENTRY)*          ENTRY := [IDS ':'] IDS   (no layer part: all layers)
//   IDS   := 'all' | RANGE (',' RANGE)*  RANGE := N | N '-' M     (inclusive, N <= M)
// e.g. "all", "0-63", "0-31,48", "0-2:0-7;3:all". Whitespace around tokens is ignored.
struct ExpertSpec {
  std::vector<ExpertSpecEntry> entries;

  static ExpertSpec All();
  bool operator==(const ExpertSpec& o) const { return entries == o.entries; }
};

// INVALID_ARGUMENT naming the offending token for text outside the grammar.
absl::StatusOr<ExpertSpec> ParseExpertSpec(absl::string_view text);
// The text form ParseExpertSpec reads back to an equal spec.
std::string FormatExpertSpec(const ExpertSpec& spec);

// A resolved set of (layer, expert)s of one model: a bitmap [num_layers, num_experts].
class ExpertSet {
 public:
  ExpertSet() = default;
  ExpertSet(int num_layers, int num_experts);
  // INVALID_ARGUMENT when a range names a layer >= num_layers or an expert >= num_experts.
  static absl::StatusOr<ExpertSet> FromSpec(const ExpertSpec& spec, int num_layers,
                                            int num_experts);

  int num_layers() const { return num_layers_; }
  int num_experts() const { return num_experts_; }
  bool Contains(int layer, int expert) const {
    return layer >= 0 && layer < num_layers_ && expert >= 0 && expert < num_experts_ &&
           bits_[static_cast<size_t>(layer) * num_experts_ + expert] != 0;
  }
  void Add(int layer, int expert);
  int64_t Count() const;
  bool empty() const { return Count() == 0; }
  // The experts of one layer, ascending.
  std::vector<int> ExpertsOf(int layer) const;
  // A compact spec of exactly this set (layers with equal expert sets share an entry).
  ExpertSpec ToSpec() const;
  // Human-readable, for messages: "layer 0 experts 5-7; layers 1-2 experts 0,3".
  std::string ToString() const;

 private:
  int num_layers_ = 0;
  int num_experts_ = 0;
  std::vector<uint8_t> bits_;  // [num_layers, num_experts], 1 = in the set
};

}  // namespace afd
