#include "gateway/tokenizer/regex.h"

#include <oniguruma.h>

#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gateway/tokenizer/o200k_scanner.h"
#include "gateway/tokenizer/utf8.h"

namespace afd::gateway {
void InitializeOniguruma() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
}

absl::StatusOr<re_pattern_buffer*> CompileOnigurumaPattern(std::string_view pattern) {
  InitializeOniguruma();
  static std::mutex* compile_mu = new std::mutex;
  OnigRegex regex = nullptr;
  OnigErrorInfo info;
  int rc;
  {
    std::lock_guard<std::mutex> lock(*compile_mu);
    const auto* p = reinterpret_cast<const OnigUChar*>(pattern.data());
    // The onig crate compiles with Syntax::default(), which is ONIG_SYNTAX_ONIGURUMA.
    rc = onig_new(&regex, p, p + pattern.size(), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8,
                  ONIG_SYNTAX_ONIGURUMA, &info);
  }
  if (rc != ONIG_NORMAL) {
    OnigUChar message[ONIG_MAX_ERROR_MESSAGE_LEN];
    onig_error_code_to_str(message, rc, &info);
    return absl::InvalidArgumentError(
        absl::StrCat("regex /", std::string(pattern), "/: ", reinterpret_cast<char*>(message)));
  }
  return regex;
}

MatchRegion::MatchRegion() : region_(onig_region_new()) {}
MatchRegion::~MatchRegion() { onig_region_free(region_, 1); }

absl::StatusOr<std::unique_ptr<Regex>> Regex::Compile(std::string_view pattern, bool fast_path) {
  if (!IsValidUtf8(pattern)) return absl::InvalidArgumentError("regex: pattern is not UTF-8");
  ASSIGN_OR_RETURN(OnigRegex regex, CompileOnigurumaPattern(pattern));
  std::unique_ptr<Regex> compiled(new Regex(regex));
  if (fast_path) {
    compiled->o200k_ = pattern == kO200kPattern;
    if (!compiled->o200k_) compiled->fast_ = AsciiRegex::Compile(pattern);
  }
  return compiled;
}

Regex::~Regex() { onig_free(regex_); }

int Regex::Search(std::string_view text, size_t from, MatchRegion* region, size_t* match_start,
                  size_t* match_end) const {
  if (fast_ != nullptr || o200k_) {
    size_t s, e;
    const AsciiRegex::Result result =
        o200k_ ? SearchO200k(text, from, &s, &e) : fast_->Search(text, from, &s, &e);
    switch (result) {
      case AsciiRegex::Result::kMatch:
        *match_start = s;
        *match_end = e;
        return 1;
      case AsciiRegex::Result::kNoMatch:
        return 0;
      case AsciiRegex::Result::kUnknown:
        from = s;  // no match starts before s
        break;
    }
  }
  return OnigSearch(text, from, region, match_start, match_end);
}

int Regex::OnigSearch(std::string_view text, size_t from, MatchRegion* region, size_t* match_start,
                      size_t* match_end) const {
  const auto* str = reinterpret_cast<const OnigUChar*>(text.data());
  const OnigUChar* end = str + text.size();
  const int rc = onig_search(regex_, str, end, str + from, end, region->get(), ONIG_OPTION_NONE);
  if (rc == ONIG_MISMATCH) return 0;
  if (rc < 0) return -1;
  *match_start = static_cast<size_t>(region->get()->beg[0]);
  *match_end = static_cast<size_t>(region->get()->end[0]);
  return 1;
}

absl::Status Regex::SearchFailed() {
  return absl::ResourceExhaustedError("regex: Oniguruma match limit reached on this text");
}

bool Regex::MatchesAtStart(std::string_view text, MatchRegion* region) const {
  const auto* str = reinterpret_cast<const OnigUChar*>(text.data());
  return onig_match(regex_, str, str + text.size(), str, region->get(), ONIG_OPTION_NONE) >= 0;
}

size_t Regex::CodePointLengthAt(std::string_view text, size_t pos) {
  return Utf8SequenceLength(static_cast<unsigned char>(text[pos]));
}

}  // namespace afd::gateway
