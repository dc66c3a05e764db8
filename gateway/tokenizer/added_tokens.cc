#include "gateway/tokenizer/added_tokens.h"

#include <memory>
#include <utility>

#include "common/status.h"
#include "gateway/tokenizer/utf8.h"

namespace afd::gateway {
namespace {

// Start of the code point that ends text[0, pos).
size_t PreviousCodePoint(std::string_view text, size_t pos) {
  size_t p = pos - 1;
  while (p > 0 && (static_cast<unsigned char>(text[p]) & 0xC0) == 0x80) --p;
  return p;
}

bool CharAtMatches(const Regex& regex, std::string_view text, size_t pos, MatchRegion* region) {
  const size_t len = Utf8SequenceLength(static_cast<unsigned char>(text[pos]));
  return regex.MatchesAtStart(text.substr(pos, len), region);
}

}  // namespace

absl::StatusOr<AddedTokenMatcher> AddedTokenMatcher::Create(std::vector<std::string> patterns,
                                                            std::vector<AddedToken> tokens) {
  AddedTokenMatcher m;
  m.terminal_.push_back(-1);
  for (size_t i = 0; i < patterns.size(); ++i) {
    const std::string& p = patterns[i];
    if (p.empty()) continue;  // Hugging Face ignores empty added tokens
    int node = 0;
    for (unsigned char c : p) {
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | c;
      auto it = m.edges_.find(key);
      if (it == m.edges_.end()) {
        const int child = static_cast<int>(m.terminal_.size());
        m.terminal_.push_back(-1);
        m.edges_.emplace(key, child);
        node = child;
      } else {
        node = it->second;
      }
    }
    // The first token listed with a given text wins.
    if (m.terminal_[node] < 0) m.terminal_[node] = static_cast<int>(m.patterns_.size());
    m.first_byte_[static_cast<unsigned char>(p[0])] = true;
    m.patterns_.push_back(p);
    m.tokens_.push_back(tokens[i]);
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Regex> word, Regex::Compile("\\w"));
  ASSIGN_OR_RETURN(std::unique_ptr<Regex> space, Regex::Compile("\\s"));
  m.word_char_ = std::move(word);
  m.space_char_ = std::move(space);
  return m;
}

int AddedTokenMatcher::FindNext(std::string_view text, size_t from, size_t* start,
                                size_t* end) const {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = from; i < n; ++i) {
    if (!first_byte_[s[i]]) continue;
    int node = 0, best = -1;
    size_t best_end = 0;
    for (size_t j = i; j < n; ++j) {
      node = Child(node, s[j]);
      if (node < 0) break;
      if (terminal_[node] >= 0) {
        best = terminal_[node];
        best_end = j + 1;
      }
    }
    if (best >= 0) {
      *start = i;
      *end = best_end;
      return best;
    }
  }
  return -1;
}

void AddedTokenMatcher::Split(std::string_view text, MatchRegion* region,
                              std::vector<AddedTokenSplit>* out, bool skip_special) const {
  out->clear();
  size_t done = 0;  // end of the last emitted split
  size_t from = 0;  // where the next search starts
  while (!patterns_.empty()) {
    size_t start, stop;
    const int index = FindNext(text, from, &start, &stop);
    if (index < 0) break;
    from = stop;
    const AddedToken& token = tokens_[index];
    if (skip_special && token.special) continue;
    if (token.single_word) {
      const bool space_before =
          start == 0 || !CharAtMatches(*word_char_, text, PreviousCodePoint(text, start), region);
      const bool space_after =
          stop == text.size() || !CharAtMatches(*word_char_, text, stop, region);
      if (!space_before || !space_after) continue;
    }
    if (token.lstrip) {
      size_t new_start = start;
      while (new_start > done) {
        const size_t prev = PreviousCodePoint(text, new_start);
        if (!CharAtMatches(*space_char_, text, prev, region)) break;
        new_start = prev;
      }
      start = new_start;
    }
    if (token.rstrip) {
      while (stop < text.size() && CharAtMatches(*space_char_, text, stop, region)) {
        stop += Utf8SequenceLength(static_cast<unsigned char>(text[stop]));
      }
      from = stop;
    }
    if (done < start) out->push_back({done, start, -1});
    out->push_back({start, stop, token.id});
    done = stop;
  }
  if (done < text.size()) out->push_back({done, text.size(), -1});
}

}  // namespace afd::gateway
