#include "gateway/tokenizer/pre_tokenizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace afd::gateway {
namespace {

using Json = nlohmann::json;

// The regex of Hugging Face's ByteLevel pre-tokenizer when use_regex is true (GPT-2).
constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Oniguruma pattern matching `literal` verbatim.
std::string EscapeLiteral(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    const unsigned char u = static_cast<unsigned char>(c);
    const bool plain = u >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                       (c >= 'A' && c <= 'Z') || c == '_';
    if (!plain) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

bool BoolField(const Json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

absl::StatusOr<SplitBehavior> ParseBehavior(const Json& j) {
  auto it = j.find("behavior");
  if (it == j.end() || !it->is_string()) {
    return absl::InvalidArgumentError("pre_tokenizer: Split without a behavior");
  }
  const std::string& b = it->get_ref<const std::string&>();
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat("pre_tokenizer: unknown Split behavior ", b));
}

}  // namespace

struct PreTokenizer::Step {
  enum class Kind { kSplit, kPrefixSpace };
  Kind kind = Kind::kSplit;
  std::unique_ptr<Regex> regex;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
};

PreTokenizer::PreTokenizer() = default;
PreTokenizer::~PreTokenizer() = default;

absl::Status PreTokenizer::AddSteps(const Json& config) {
  if (config.is_null()) return absl::OkStatus();
  if (!config.is_object() || !config.contains("type") || !config["type"].is_string()) {
    return absl::InvalidArgumentError("pre_tokenizer: expected an object with a type");
  }
  const std::string& type = config["type"].get_ref<const std::string&>();
  if (type == "Sequence") {
    auto list = config.find("pretokenizers");
    if (list == config.end() || !list->is_array()) {
      return absl::InvalidArgumentError("pre_tokenizer: Sequence without a pretokenizers array");
    }
    for (const Json& child : *list) RETURN_IF_ERROR(AddSteps(child));
    return absl::OkStatus();
  }
  Step step;
  if (type == "Split") {
    auto pattern = config.find("pattern");
    if (pattern == config.end() || !pattern->is_object()) {
      return absl::InvalidArgumentError("pre_tokenizer: Split without a pattern");
    }
    std::string source;
    if (pattern->contains("Regex") && (*pattern)["Regex"].is_string()) {
      source = (*pattern)["Regex"].get<std::string>();
    } else if (pattern->contains("String") && (*pattern)["String"].is_string()) {
      source = EscapeLiteral((*pattern)["String"].get_ref<const std::string&>());
    } else {
      return absl::InvalidArgumentError("pre_tokenizer: Split pattern needs Regex or String");
    }
    ASSIGN_OR_RETURN(step.regex, Regex::Compile(source));
    ASSIGN_OR_RETURN(step.behavior, ParseBehavior(config));
    step.invert = BoolField(config, "invert", false);
    steps_.push_back(std::move(step));
  } else if (type == "ByteLevel") {
    has_byte_level_ = true;
    if (BoolField(config, "add_prefix_space", true)) {
      step.kind = Step::Kind::kPrefixSpace;
      steps_.push_back(std::move(step));
    }
    if (BoolField(config, "use_regex", true)) {
      Step split;
      ASSIGN_OR_RETURN(split.regex, Regex::Compile(kGpt2Pattern));
      split.behavior = SplitBehavior::kIsolated;
      steps_.push_back(std::move(split));
    }
  } else if (type == "Digits") {
    const bool individual = BoolField(config, "individual_digits", false);
    ASSIGN_OR_RETURN(step.regex, Regex::Compile("\\p{N}"));
    step.behavior = individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous;
    steps_.push_back(std::move(step));
  } else {
    return absl::UnimplementedError(
        absl::StrCat("pre_tokenizer: type ", type, " is not supported"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::FromJson(const Json& config) {
  std::unique_ptr<PreTokenizer> pre(new PreTokenizer);
  RETURN_IF_ERROR(pre->AddSteps(config));
  return pre;
}

absl::Status PreTokenizer::Apply(size_t level, std::string_view piece, PreTokenizerScratch* scratch,
                                 absl::FunctionRef<void(std::string_view)> sink) const {
  if (level == steps_.size()) {
    sink(piece);
    return absl::OkStatus();
  }
  const Step& step = steps_[level];
  if (step.kind == Step::Kind::kPrefixSpace) {
    if (piece[0] == ' ') return Apply(level + 1, piece, scratch, sink);
    std::string& buffer = scratch->prefixed[level];
    buffer.assign(1, ' ');
    buffer.append(piece);
    return Apply(level + 1, buffer, scratch, sink);
  }

  const bool invert = step.invert;
  absl::Status status;
  const bool last = level + 1 == steps_.size();
  auto emit = [&](size_t begin, size_t end) {
    if (end <= begin) return;
    if (last) {
      sink(piece.substr(begin, end - begin));
    } else if (status.ok()) {
      status = Apply(level + 1, piece.substr(begin, end - begin), scratch, sink);
    }
  };
  // Removed and Isolated need no look-behind, so their pieces go on as soon as they are found.
  // (Deeper levels reuse the region only after ForEachMatch has read it.)
  if (step.behavior == SplitBehavior::kRemoved || step.behavior == SplitBehavior::kIsolated) {
    const bool keep_matches = step.behavior == SplitBehavior::kIsolated || invert;
    const bool keep_gaps = step.behavior == SplitBehavior::kIsolated || !invert;
    size_t prev = 0;
    RETURN_IF_ERROR(step.regex->ForEachMatch(piece, &scratch->region, [&](size_t s, size_t e) {
      if (keep_gaps) emit(prev, s);
      if (keep_matches) emit(s, e);
      prev = e;
    }));
    if (keep_gaps) emit(prev, piece.size());
    return status;
  }

  auto& m = scratch->matches[level];
  m.clear();
  size_t prev = 0;
  RETURN_IF_ERROR(step.regex->ForEachMatch(piece, &scratch->region, [&](size_t s, size_t e) {
    if (prev != s) m.push_back({prev, s, invert});
    m.push_back({s, e, !invert});
    prev = e;
  }));
  if (prev != piece.size()) m.push_back({prev, piece.size(), invert});

  // Same folds as Hugging Face's NormalizedString::split.
  size_t kept = 0;
  bool previous_match = false;
  if (step.behavior == SplitBehavior::kMergedWithPrevious) {
    for (size_t i = 0; i < m.size(); ++i) {
      const auto x = m[i];
      if (x.is_match && !previous_match && kept > 0) {
        m[kept - 1].end = x.end;
      } else {
        m[kept++] = x;
      }
      previous_match = x.is_match;
    }
    m.resize(kept);
  } else if (step.behavior == SplitBehavior::kMergedWithNext) {
    // Walk backwards, merging each match into the piece that follows it; kept pieces fill the
    // tail of m.
    for (size_t i = m.size(); i-- > 0;) {
      const auto x = m[i];
      if (x.is_match && !previous_match && kept > 0) {
        m[m.size() - kept].begin = x.begin;
      } else {
        ++kept;
        m[m.size() - kept] = x;
      }
      previous_match = x.is_match;
    }
    m.erase(m.begin(), m.end() - kept);
  } else {  // kContiguous
    for (size_t i = 0; i < m.size(); ++i) {
      const auto x = m[i];
      if (x.is_match == previous_match && kept > 0) {
        m[kept - 1].end = x.end;
      } else {
        m[kept++] = x;
      }
      previous_match = x.is_match;
    }
    m.resize(kept);
  }
  // Deeper levels use their own match vectors, so iterating m while recursing is safe.
  for (size_t i = 0; i < m.size(); ++i) emit(m[i].begin, m[i].end);
  return status;
}

absl::Status PreTokenizer::ForEachPreToken(std::string_view text, PreTokenizerScratch* scratch,
                                           absl::FunctionRef<void(std::string_view)> sink) const {
  if (text.empty()) return absl::OkStatus();
  if (scratch->matches.size() < steps_.size()) scratch->matches.resize(steps_.size());
  if (scratch->prefixed.size() < steps_.size()) scratch->prefixed.resize(steps_.size());
  return Apply(0, text, scratch, sink);
}

absl::StatusOr<std::vector<std::string>> PreTokenizer::Split(std::string_view text) const {
  PreTokenizerScratch scratch;
  std::vector<std::string> pieces;
  RETURN_IF_ERROR(
      ForEachPreToken(text, &scratch, [&](std::string_view p) { pieces.emplace_back(p); }));
  return pieces;
}

}  // namespace afd::gateway
