#include "gateway/tokenizer/ascii_regex.h"

#include <oniguruma.h>

#include <algorithm>
#include <optional>
#include <string>

#include "gateway/tokenizer/regex.h"
#include "gateway/tokenizer/utf8.h"

namespace afd::gateway {
namespace {

constexpr int kMaxProgramSize = 4096;
constexpr int kMaxRepeatCopies = 32;
constexpr int kStackSize = 512;      // backtrack entries per Run; more means kUnknown
constexpr int kStepBudget = 100000;  // backtracks per Search; more means kUnknown

// Which ASCII characters the one-character pattern `atom` (under `flags`, e.g. "(?i-m:") matches,
// according to Oniguruma. nullopt if it does not compile or could match anything but exactly
// one character.
std::optional<std::bitset<128>> EvalClass(const std::string& flags, std::string_view atom) {
  absl::StatusOr<OnigRegex> compiled = CompileOnigurumaPattern(flags + std::string(atom) + ")");
  if (!compiled.ok()) return std::nullopt;
  OnigRegex regex = *compiled;
  std::bitset<128> set;
  bool ok = true;
  const OnigUChar empty = 0;
  if (onig_match(regex, &empty, &empty, &empty, nullptr, ONIG_OPTION_NONE) >= 0) ok = false;
  for (int c = 0; c < 128 && ok; ++c) {
    const OnigUChar s[2] = {static_cast<OnigUChar>(c), static_cast<OnigUChar>(c)};
    // Matching one character must consume exactly it, even with more text after it.
    const int one = onig_match(regex, s, s + 1, s, nullptr, ONIG_OPTION_NONE);
    const int two = onig_match(regex, s, s + 2, s, nullptr, ONIG_OPTION_NONE);
    if (one == 1 && two == 1) {
      set.set(c);
    } else if (one >= 0 || two >= 0) {
      ok = false;
    }
  }
  onig_free(regex);
  if (!ok) return std::nullopt;
  return set;
}

bool IsAsciiAlnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

}  // namespace

// Recursive-descent parser for the supported subset, producing an AST that is then emitted as a
// backtracking program.
class AsciiRegex::Compiler {
 public:
  struct Node {
    enum class Kind { kClass, kSeq, kAlt, kRepeat, kLook };
    Kind kind = Kind::kSeq;
    int cls = 0;
    std::vector<Node> kids;
    int min = 0, max = 0;  // kRepeat; max < 0 is unbounded
    bool greedy = true;
    bool negative = false;  // kLook
  };

  Compiler(std::string_view pattern, AsciiRegex* out) : p_(pattern), out_(out) {}

  bool Build() {
    Node root;
    if (!ParseAlt(&root) || pos_ != p_.size()) return false;
    bool nullable = true;
    std::bitset<128> first;
    if (!Analyze(root, &nullable, &first)) return false;
    out_->nullable_ = nullable;
    out_->first_ = nullable ? std::bitset<128>().set() : first;
    if (!Emit(root)) return false;
    Push({Inst::Op::kMatch});
    return static_cast<int>(out_->program_.size()) <= kMaxProgramSize;
  }

 private:
  bool AtEnd() const { return pos_ >= p_.size(); }
  char Peek(size_t ahead = 0) const { return pos_ + ahead < p_.size() ? p_[pos_ + ahead] : 0; }

  std::string Flags() const {
    std::string on, off;
    (ignore_case_ ? on : off) += 'i';
    (multiline_ ? on : off) += 'm';
    if (off.empty()) return "(?" + on + ":";
    if (on.empty()) return "(?-" + off + ":";
    return "(?" + on + "-" + off + ":";
  }

  bool AddClass(std::string_view atom, Node* node) {
    auto set = EvalClass(Flags(), atom);
    if (!set) return false;
    node->kind = Node::Kind::kClass;
    node->cls = static_cast<int>(out_->classes_.size());
    out_->classes_.push_back(*set);
    return true;
  }

  bool ParseAlt(Node* node) {
    Node first;
    if (!ParseSeq(&first)) return false;
    if (Peek() != '|') {
      *node = std::move(first);
      return true;
    }
    node->kind = Node::Kind::kAlt;
    node->kids.push_back(std::move(first));
    while (Peek() == '|') {
      ++pos_;
      Node next;
      if (!ParseSeq(&next)) return false;
      node->kids.push_back(std::move(next));
    }
    return true;
  }

  bool ParseSeq(Node* node) {
    node->kind = Node::Kind::kSeq;
    while (!AtEnd() && Peek() != '|' && Peek() != ')') {
      Node atom;
      if (!ParseQuantified(&atom)) return false;
      node->kids.push_back(std::move(atom));
    }
    return true;
  }

  bool ParseNumber(int* value) {
    if (!(Peek() >= '0' && Peek() <= '9')) return false;
    int v = 0;
    while (Peek() >= '0' && Peek() <= '9') {
      v = v * 10 + (Peek() - '0');
      if (v > 1000) return false;
      ++pos_;
    }
    *value = v;
    return true;
  }

  bool ParseQuantified(Node* node) {
    Node atom;
    if (!ParseAtom(&atom)) return false;
    int min, max;
    const char q = Peek();
    if (q == '?') {
      min = 0, max = 1, ++pos_;
    } else if (q == '*') {
      min = 0, max = -1, ++pos_;
    } else if (q == '+') {
      min = 1, max = -1, ++pos_;
    } else if (q == '{') {
      ++pos_;
      if (Peek() == ',') {
        ++pos_;
        min = 0;
        if (!ParseNumber(&max)) return false;
      } else {
        if (!ParseNumber(&min)) return false;
        max = min;
        if (Peek() == ',') {
          ++pos_;
          max = -1;
          if (Peek() != '}' && !ParseNumber(&max)) return false;
        }
      }
      if (Peek() != '}' || (max >= 0 && max < min)) return false;
      ++pos_;
    } else {
      *node = std::move(atom);
      return true;
    }
    bool greedy = true;
    if (Peek() == '?') {
      greedy = false;
      ++pos_;
    }
    // Possessive forms and stacked quantifiers mean different things across syntaxes.
    if (Peek() == '+' || Peek() == '*' || Peek() == '?' || Peek() == '{') return false;
    node->kind = Node::Kind::kRepeat;
    node->min = min;
    node->max = max;
    node->greedy = greedy;
    node->kids.push_back(std::move(atom));
    return true;
  }

  // Extent of a bracket class starting at '['; false if it cannot be delimited.
  bool SkipBracket() {
    int depth = 0;
    while (!AtEnd()) {
      const char c = Peek();
      if (c == '\\') {
        pos_ += 2;
        if (pos_ <= p_.size() &&
            (p_[pos_ - 1] == 'p' || p_[pos_ - 1] == 'P' || p_[pos_ - 1] == 'x' ||
             p_[pos_ - 1] == 'o') &&
            Peek() == '{') {
          while (!AtEnd() && Peek() != '}') ++pos_;
          ++pos_;
        }
        continue;
      }
      if (c == '[') {
        if (Peek(1) == ':') {
          const size_t close = p_.find(":]", pos_ + 2);
          if (close == std::string_view::npos) return false;
          pos_ = close + 2;
          continue;
        }
        ++depth;
        ++pos_;
        if (Peek() == '^') ++pos_;
        if (Peek() == ']') ++pos_;  // a leading ']' is literal
        continue;
      }
      if (c == ']') {
        ++pos_;
        if (--depth == 0) return true;
        continue;
      }
      ++pos_;
    }
    return false;
  }

  bool ParseAtom(Node* node) {
    const size_t start = pos_;
    const char c = Peek();
    switch (c) {
      case '(':
        return ParseGroup(node);
      case '[': {
        if (ignore_case_) return false;  // multi-character case folds
        if (!SkipBracket()) return false;
        return AddClass(p_.substr(start, pos_ - start), node);
      }
      case '.':
        ++pos_;
        return AddClass(".", node);
      case '\\':
        return ParseEscape(node);
      case '^':
      case '$':
      case ')':
      case '|':
      case '?':
      case '*':
      case '+':
      case '{':
        return false;
      default: {
        const size_t len = Utf8SequenceLength(static_cast<unsigned char>(c));
        if (pos_ + len > p_.size()) return false;
        if (ignore_case_ && static_cast<unsigned char>(c) >= 0x80) return false;
        pos_ += len;
        return AddClass(p_.substr(start, len), node);
      }
    }
  }

  bool ParseEscape(Node* node) {
    const size_t start = pos_;
    if (pos_ + 1 >= p_.size()) return false;
    const char e = p_[pos_ + 1];
    pos_ += 2;
    switch (e) {
      case 'p':
      case 'P':
      case 'x':
      case 'o':
        if (Peek() == '{') {
          const size_t close = p_.find('}', pos_);
          if (close == std::string_view::npos) return false;
          pos_ = close + 1;
        } else if (e == 'x') {
          for (int k = 0; k < 2 && isxdigit(static_cast<unsigned char>(Peek())); ++k) ++pos_;
        } else if (e == 'p' || e == 'P') {
          ++pos_;  // \pL
        } else {
          return false;
        }
        break;
      case 'u':
        for (int k = 0; k < 4; ++k) {
          if (!isxdigit(static_cast<unsigned char>(Peek()))) return false;
          ++pos_;
        }
        break;
      case 's':
      case 'S':
      case 'd':
      case 'D':
      case 'w':
      case 'W':
      case 'h':
      case 'H':
      case 'n':
      case 'r':
      case 't':
      case 'f':
      case 'v':
      case 'a':
      case 'e':
        break;
      default:
        // Escaped punctuation is a literal; letters and digits are anchors, backreferences and
        // other constructs this subset leaves to Oniguruma.
        if (IsAsciiAlnum(e) || static_cast<unsigned char>(e) >= 0x80) return false;
        break;
    }
    if (ignore_case_ && (e == 'p' || e == 'P' || e == 'x' || e == 'u' || e == 'o' || e == 'w' ||
                         e == 'W' || e == 's' || e == 'S' || e == 'h' || e == 'H')) {
      return false;  // classes with non-ASCII members may fold to several characters
    }
    return AddClass(p_.substr(start, pos_ - start), node);
  }

  bool ParseGroup(Node* node) {
    ++pos_;  // '('
    const bool saved_ignore_case = ignore_case_, saved_multiline = multiline_;
    Node inner;
    bool look = false, negative = false;
    if (Peek() == '?') {
      ++pos_;
      const char k = Peek();
      if (k == ':') {
        ++pos_;
      } else if (k == '=' || k == '!') {
        look = true;
        negative = k == '!';
        ++pos_;
      } else if (k == '<' && Peek(1) != '=' && Peek(1) != '!') {
        const size_t close = p_.find('>', pos_);  // named group
        if (close == std::string_view::npos) return false;
        pos_ = close + 1;
      } else {
        // Scoped flags: (?i:...), (?-i:...), (?im-x:...) with i and m only.
        bool on = true, any = false;
        while (Peek() == 'i' || Peek() == 'm' || Peek() == '-') {
          const char f = Peek();
          if (f == '-') {
            if (!on) return false;
            on = false;
          } else if (f == 'i') {
            ignore_case_ = on;
          } else {
            multiline_ = on;
          }
          any = true;
          ++pos_;
        }
        if (!any || Peek() != ':') return false;
        ++pos_;
      }
    }
    if (!ParseAlt(&inner) || Peek() != ')') return false;
    ++pos_;
    ignore_case_ = saved_ignore_case;
    multiline_ = saved_multiline;
    if (look) {
      node->kind = Node::Kind::kLook;
      node->negative = negative;
      node->kids.push_back(std::move(inner));
    } else {
      *node = std::move(inner);
    }
    return true;
  }

  // Computes whether `n` can match empty and which bytes can start it; rejects unbounded loops
  // over nullable bodies (Oniguruma's empty-loop checks are not modelled).
  bool Analyze(const Node& n, bool* nullable, std::bitset<128>* first) {
    first->reset();
    switch (n.kind) {
      case Node::Kind::kClass:
        *nullable = false;
        *first = out_->classes_[n.cls];
        return true;
      case Node::Kind::kLook: {
        bool sub_nullable;
        std::bitset<128> sub_first;
        if (!Analyze(n.kids[0], &sub_nullable, &sub_first)) return false;
        *nullable = true;  // consumes nothing; what follows decides the first byte
        return true;
      }
      case Node::Kind::kSeq: {
        *nullable = true;
        for (const Node& k : n.kids) {
          bool kn;
          std::bitset<128> kf;
          if (!Analyze(k, &kn, &kf)) return false;
          if (*nullable) *first |= kf;
          *nullable = *nullable && kn;
        }
        return true;
      }
      case Node::Kind::kAlt: {
        *nullable = false;
        for (const Node& k : n.kids) {
          bool kn;
          std::bitset<128> kf;
          if (!Analyze(k, &kn, &kf)) return false;
          *first |= kf;
          *nullable = *nullable || kn;
        }
        return true;
      }
      case Node::Kind::kRepeat: {
        bool kn;
        if (!Analyze(n.kids[0], &kn, first)) return false;
        if (kn && (n.max < 0 || n.max > 1)) return false;
        if (n.min > kMaxRepeatCopies || n.max > kMaxRepeatCopies) return false;
        *nullable = n.min == 0 || kn;
        return true;
      }
    }
    return false;
  }

  int Push(Inst inst) {
    out_->program_.push_back(inst);
    return static_cast<int>(out_->program_.size()) - 1;
  }
  int Here() const { return static_cast<int>(out_->program_.size()); }

  bool Emit(const Node& n) {
    if (Here() > kMaxProgramSize) return false;
    auto& prog = out_->program_;
    switch (n.kind) {
      case Node::Kind::kClass:
        Push({Inst::Op::kChar, false, n.cls, 0});
        return true;
      case Node::Kind::kSeq:
        for (const Node& k : n.kids) {
          if (!Emit(k)) return false;
        }
        return true;
      case Node::Kind::kAlt: {
        // split L1, next; L1: a; jmp end; next: split L2, next2; ...
        std::vector<int> jumps;
        for (size_t i = 0; i < n.kids.size(); ++i) {
          if (i + 1 < n.kids.size()) {
            const int split = Push({Inst::Op::kSplit, false, 0, 0});
            // A branch that must consume a byte is skipped unless the next byte can start it.
            bool nullable = true;
            std::bitset<128> first;
            Analyze(n.kids[i], &nullable, &first);
            if (!nullable) {
              prog[split].op = Inst::Op::kGuardedSplit;
              prog[split].guard = static_cast<int>(out_->classes_.size());
              out_->classes_.push_back(first);
            }
            prog[split].x = Here();
            if (!Emit(n.kids[i])) return false;
            jumps.push_back(Push({Inst::Op::kJmp, false, 0, 0}));
            prog[split].y = Here();
          } else if (!Emit(n.kids[i])) {
            return false;
          }
        }
        for (int j : jumps) prog[j].x = Here();
        return true;
      }
      case Node::Kind::kLook: {
        const int look = Push({Inst::Op::kLook, n.negative, 0, 0});
        prog[look].x = Here();
        if (!Emit(n.kids[0])) return false;
        Push({Inst::Op::kMatch});
        prog[look].y = Here();
        return true;
      }
      case Node::Kind::kRepeat: {
        const Node& body = n.kids[0];
        if (body.kind == Node::Kind::kClass && n.greedy) {
          Inst run{Inst::Op::kRun, false, body.cls, 0};
          run.min = n.min;
          run.max = n.max;
          Push(run);
          return true;
        }
        for (int i = 0; i < n.min; ++i) {
          if (!Emit(body)) return false;
        }
        if (n.max < 0) {
          // L: split body, end (greedy) ; body ; jmp L ; end:
          const int split = PushLoopSplit(body, n.greedy);
          const int body_start = Here();
          if (!Emit(body)) return false;
          Push({Inst::Op::kJmp, false, split, 0});
          SetSplit(split, body_start, Here(), n.greedy);
          return true;
        }
        // Optional copies, nested: split a, end; a: body; split b, end; b: body; ... end:
        std::vector<int> splits;
        for (int i = n.min; i < n.max; ++i) {
          splits.push_back(PushLoopSplit(body, n.greedy));
          const int body_start = Here();
          if (!Emit(body)) return false;
          prog[splits.back()].x = body_start;
        }
        for (int s : splits) SetSplit(s, prog[s].x, Here(), n.greedy);
        return true;
      }
    }
    return false;
  }

  // The split before an optional or repeated body. When greedy and the body must consume a byte,
  // it is guarded: if the next byte cannot start the body, the exit is taken without a
  // backtrack entry (entering the body would fail at once).
  int PushLoopSplit(const Node& body, bool greedy) {
    const int split = Push({Inst::Op::kSplit, false, 0, 0});
    bool nullable = true;
    std::bitset<128> first;
    Analyze(body, &nullable, &first);
    if (greedy && !nullable) {
      out_->program_[split].op = Inst::Op::kGuardedSplit;
      out_->program_[split].guard = static_cast<int>(out_->classes_.size());
      out_->classes_.push_back(first);
    }
    return split;
  }

  void SetSplit(int split, int body, int exit, bool greedy) {
    auto& inst = out_->program_[split];
    inst.x = greedy ? body : exit;
    inst.y = greedy ? exit : body;
  }

  std::string_view p_;
  size_t pos_ = 0;
  bool ignore_case_ = false;
  bool multiline_ = false;
  AsciiRegex* out_;
};

std::unique_ptr<AsciiRegex> AsciiRegex::Compile(std::string_view pattern) {
  if (!IsValidUtf8(pattern)) return nullptr;
  std::unique_ptr<AsciiRegex> regex(new AsciiRegex);
  Compiler compiler(pattern, regex.get());
  if (!compiler.Build()) return nullptr;
  return regex;
}

AsciiRegex::Result AsciiRegex::Run(int32_t pc, std::string_view text, size_t pos, size_t* end,
                                   int* budget) const {
  Thread stack[kStackSize];
  int depth = 0;
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  const Inst* prog = program_.data();
  // Each instruction dispatches through its own indirect jump (computed goto), which the
  // branch predictor handles far better than one shared switch.
  static const void* const kDispatch[] = {&&op_char, &&op_run,   &&op_split, &&op_guarded,
                                          &&op_jmp,  &&op_match, &&op_look};
#define AFD_DISPATCH() goto* kDispatch[static_cast<int>(prog[pc].op)]
  AFD_DISPATCH();

op_char : {
  const Inst& inst = prog[pc];
  if (pos >= n) goto fail;
  if (s[pos] >= 0x80) return Result::kUnknown;
  if (!classes_[inst.x][s[pos]]) goto fail;
  ++pos;
  ++pc;
  AFD_DISPATCH();
}
op_run : {
  // Take as many as allowed, then give them back one by one on backtracking.
  const Inst& inst = prog[pc];
  const std::bitset<128>& cls = classes_[inst.x];
  const size_t limit = inst.max < 0 ? n : std::min(n, pos + inst.max);
  size_t j = pos;
  while (j < limit && s[j] < 0x80 && cls[s[j]]) ++j;
  if (j < limit && s[j] >= 0x80) return Result::kUnknown;
  if (j - pos < static_cast<size_t>(inst.min)) goto fail;
  const size_t low = pos + inst.min;
  if (j > low) {
    if (depth == kStackSize) return Result::kUnknown;
    stack[depth++] = {pc + 1, static_cast<uint32_t>(j - 1), static_cast<uint32_t>(low)};
  }
  pos = j;
  ++pc;
  AFD_DISPATCH();
}
op_guarded : {
  const Inst& inst = prog[pc];
  if (pos >= n || (s[pos] < 0x80 && !classes_[inst.guard][s[pos]])) {
    pc = inst.y;
    AFD_DISPATCH();
  }
  goto op_split;
}
op_split : {
  const Inst& inst = prog[pc];
  if (depth == kStackSize) return Result::kUnknown;
  stack[depth++] = {inst.y, static_cast<uint32_t>(pos), kNoRun};
  pc = inst.x;
  AFD_DISPATCH();
}
op_jmp:
  pc = prog[pc].x;
  AFD_DISPATCH();
op_match:
  *end = pos;
  return Result::kMatch;
op_look : {
  const Inst& inst = prog[pc];
  size_t look_end;
  const Result r = Run(inst.x, text, pos, &look_end, budget);
  if (r == Result::kUnknown) return r;
  if ((r == Result::kMatch) == inst.negative) goto fail;
  pc = inst.y;
  AFD_DISPATCH();
}
fail : {
  // Backtracking is what can explode, so it is what the budget counts.
  if (depth == 0) return Result::kNoMatch;
  if (--*budget < 0) return Result::kUnknown;
  Thread& top = stack[depth - 1];
  pc = top.pc;
  pos = top.pos;
  if (top.low != kNoRun && top.pos > top.low) {
    --top.pos;  // the next retry of this run gives back one more byte
  } else {
    --depth;
  }
  AFD_DISPATCH();
}
#undef AFD_DISPATCH
}

AsciiRegex::Result AsciiRegex::Search(std::string_view text, size_t from, size_t* match_start,
                                      size_t* match_end) const {
  int budget = kStepBudget;
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  if (text.size() > UINT32_MAX) {
    *match_start = from;
    return Result::kUnknown;
  }
  for (size_t q = from; q <= text.size(); ++q) {
    if (q < text.size()) {
      if (s[q] >= 0x80) {
        *match_start = q;
        return Result::kUnknown;
      }
      if (!first_[s[q]]) continue;
    } else if (!nullable_) {
      break;
    }
    size_t end;
    const Result r = Run(0, text, q, &end, &budget);
    if (r == Result::kMatch) {
      *match_start = q;
      *match_end = end;
      return r;
    }
    if (r == Result::kUnknown) {
      *match_start = q;
      return r;
    }
  }
  return Result::kNoMatch;
}

}  // namespace afd::gateway
