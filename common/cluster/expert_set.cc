// ExpertSpec parsing/formatting and ExpertSet (see expert_set.h).
#include "common/cluster/expert_set.h"

#include <algorithm>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status.h"

namespace afd {
namespace {

constexpr int kMaxId = 1 << 20;  // far above any real layer or expert count

absl::StatusOr<int> ParseId(absl::string_view token, absl::string_view spec) {
  int value = 0;
  token = absl::StripAsciiWhitespace(token);
  if (token.empty() || !absl::SimpleAtoi(token, &value) || value < 0 || value > kMaxId ||
      !std::all_of(token.begin(), token.end(), [](char c) { return absl::ascii_isdigit(c); })) {
    return absl::InvalidArgumentError(
        absl::StrCat("expert spec \"", spec, "\": \"", token, "\" is not a non-negative integer"));
  }
  return value;
}

absl::StatusOr<IdRanges> ParseIds(absl::string_view text, absl::string_view spec) {
  IdRanges ids;
  text = absl::StripAsciiWhitespace(text);
  if (text == "all") {
    ids.all = true;
    return ids;
  }
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    std::vector<absl::string_view> ends = absl::StrSplit(part, '-');
    if (ends.size() > 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("expert spec \"", spec, "\": bad range \"", part, "\""));
    }
    ASSIGN_OR_RETURN(int first, ParseId(ends[0], spec));
    int last = first;
    if (ends.size() == 2) {
      ASSIGN_OR_RETURN(last, ParseId(ends[1], spec));
    }
    if (last < first) {
      return absl::InvalidArgumentError(absl::StrCat("expert spec \"", spec, "\": range \"",
                                                     absl::StripAsciiWhitespace(part),
                                                     "\" ends before it starts"));
    }
    ids.ranges.emplace_back(first, last);
  }
  return ids;
}

std::string FormatIds(const IdRanges& ids) {
  if (ids.all) return "all";
  return absl::StrJoin(ids.ranges, ",", [](std::string* out, const std::pair<int, int>& r) {
    if (r.first == r.second) {
      absl::StrAppend(out, r.first);
    } else {
      absl::StrAppend(out, r.first, "-", r.second);
    }
  });
}

// Ascending ids as compact ranges.
IdRanges ToRanges(const std::vector<int>& ids, int universe) {
  IdRanges out;
  if (!ids.empty() && static_cast<int>(ids.size()) == universe) {
    out.all = true;
    return out;
  }
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    out.ranges.emplace_back(ids[i], ids[j]);
    i = j + 1;
  }
  return out;
}

absl::Status CheckRanges(const IdRanges& ids, int limit, const char* what, const ExpertSpec& spec) {
  for (const auto& r : ids.ranges) {
    if (r.second >= limit) {
      return absl::InvalidArgumentError(
          absl::StrCat("expert spec \"", FormatExpertSpec(spec), "\": ", what, " ", r.second,
                       " does not exist (the model has ", limit, " ", what, "s)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

ExpertSpec ExpertSpec::All() {
  ExpertSpec spec;
  ExpertSpecEntry entry;
  entry.layers.all = true;
  entry.experts.all = true;
  spec.entries.push_back(entry);
  return spec;
}

absl::StatusOr<ExpertSpec> ParseExpertSpec(absl::string_view text) {
  ExpertSpec spec;
  if (absl::StripAsciiWhitespace(text).empty()) {
    return absl::InvalidArgumentError("expert spec is empty");
  }
  for (absl::string_view entry_text : absl::StrSplit(text, ';')) {
    std::vector<absl::string_view> parts = absl::StrSplit(entry_text, ':');
    if (parts.size() > 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("expert spec \"", text, "\": \"", entry_text, "\" has more than one ':'"));
    }
    ExpertSpecEntry entry;
    if (parts.size() == 2) {
      ASSIGN_OR_RETURN(entry.layers, ParseIds(parts[0], text));
      ASSIGN_OR_RETURN(entry.experts, ParseIds(parts[1], text));
    } else {
      entry.layers.all = true;
      ASSIGN_OR_RETURN(entry.experts, ParseIds(parts[0], text));
    }
    spec.entries.push_back(std::move(entry));
  }
  return spec;
}

std::string FormatExpertSpec(const ExpertSpec& spec) {
  return absl::StrJoin(spec.entries, ";", [](std::string* out, const ExpertSpecEntry& e) {
    if (!e.layers.all) absl::StrAppend(out, FormatIds(e.layers), ":");
    absl::StrAppend(out, FormatIds(e.experts));
  });
}

ExpertSet::ExpertSet(int num_layers, int num_experts)
    : num_layers_(num_layers),
      num_experts_(num_experts),
      bits_(static_cast<size_t>(num_layers) * num_experts, 0) {}

absl::StatusOr<ExpertSet> ExpertSet::FromSpec(const ExpertSpec& spec, int num_layers,
                                              int num_experts) {
  ExpertSet set(num_layers, num_experts);
  for (const ExpertSpecEntry& entry : spec.entries) {
    RETURN_IF_ERROR(CheckRanges(entry.layers, num_layers, "layer", spec));
    RETURN_IF_ERROR(CheckRanges(entry.experts, num_experts, "expert", spec));
    std::vector<int> layers, experts;
    auto expand = [](const IdRanges& ids, int limit, std::vector<int>* out) {
      if (ids.all) {
        for (int i = 0; i < limit; ++i) out->push_back(i);
        return;
      }
      for (const auto& r : ids.ranges) {
        for (int i = r.first; i <= r.second; ++i) out->push_back(i);
      }
    };
    expand(entry.layers, num_layers, &layers);
    expand(entry.experts, num_experts, &experts);
    for (int l : layers) {
      for (int e : experts) set.Add(l, e);
    }
  }
  return set;
}

void ExpertSet::Add(int layer, int expert) {
  bits_[static_cast<size_t>(layer) * num_experts_ + expert] = 1;
}

int64_t ExpertSet::Count() const { return std::count(bits_.begin(), bits_.end(), 1); }

std::vector<int> ExpertSet::ExpertsOf(int layer) const {
  std::vector<int> out;
  for (int e = 0; e < num_experts_; ++e) {
    if (Contains(layer, e)) out.push_back(e);
  }
  return out;
}

ExpertSpec ExpertSet::ToSpec() const {
  // Group layers by their expert list, keeping first-appearance order.
  std::vector<std::pair<std::vector<int>, std::vector<int>>> groups;  // experts -> layers
  for (int l = 0; l < num_layers_; ++l) {
    std::vector<int> experts = ExpertsOf(l);
    if (experts.empty()) continue;
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const auto& g) { return g.first == experts; });
    if (it == groups.end()) {
      groups.push_back({std::move(experts), {l}});
    } else {
      it->second.push_back(l);
    }
  }
  ExpertSpec spec;
  for (const auto& g : groups) {
    ExpertSpecEntry entry;
    entry.layers = ToRanges(g.second, num_layers_);
    entry.experts = ToRanges(g.first, num_experts_);
    spec.entries.push_back(std::move(entry));
  }
  return spec;
}

std::string ExpertSet::ToString() const {
  ExpertSpec spec = ToSpec();
  if (spec.entries.empty()) return "none";
  return absl::StrJoin(spec.entries, "; ", [](std::string* out, const ExpertSpecEntry& e) {
    const bool one_layer = !e.layers.all && e.layers.ranges.size() == 1 &&
                           e.layers.ranges[0].first == e.layers.ranges[0].second;
    absl::StrAppend(out, e.layers.all ? "all layers" : (one_layer ? "layer " : "layers "),
                    e.layers.all ? "" : FormatIds(e.layers),
                    e.experts.all ? " all experts" : " experts ",
                    e.experts.all ? "" : FormatIds(e.experts));
  });
}

}  // namespace afd
