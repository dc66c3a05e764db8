// afd-eval-tokenizer: checks a tokenizer against a golden.json of reference encodings
// ({"cases": [{"text", "ids", "decoded", "decoded_skip_special"}]}), prints each mismatch and a
// summary, and exits non-zero if any case differs.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "gateway/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace {

constexpr char kUsage[] =
    "usage: afd-eval-tokenizer --tokenizer DIR --cases FILE [--quiet]\n"
    "  DIR holds tokenizer.json (and tokenizer_config.json); FILE is a golden.json with\n"
    "  {\"cases\": [{\"text\", \"ids\", \"decoded\", \"decoded_skip_special\"}, ...]}.\n"
    "  Prints every mismatch and a summary; exits 1 on any mismatch, 2 on bad input.\n";

std::string Shorten(const std::string& s) {
  nlohmann::json j = s;
  std::string out = j.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  if (out.size() > 160) out = out.substr(0, 157) + "...";
  return out;
}

std::string IdsToString(const std::vector<int32_t>& ids) {
  std::string s = "[" + absl::StrJoin(ids, ",") + "]";
  if (s.size() > 200) s = s.substr(0, 197) + "...";
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::string tokenizer_dir, cases_path;
  bool quiet = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--tokenizer" && i + 1 < argc) {
      tokenizer_dir = argv[++i];
    } else if (arg == "--cases" && i + 1 < argc) {
      cases_path = argv[++i];
    } else if (arg == "--quiet") {
      quiet = true;
    } else {
      std::fprintf(stderr, "afd-eval-tokenizer: unknown argument %s\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  if (tokenizer_dir.empty() || cases_path.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  auto tokenizer = afd::gateway::Tokenizer::LoadFromDirectory(tokenizer_dir);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "afd-eval-tokenizer: %s\n", tokenizer.status().ToString().c_str());
    return 2;
  }
  std::ifstream in(cases_path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "afd-eval-tokenizer: cannot open %s\n", cases_path.c_str());
    return 2;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const nlohmann::json golden = nlohmann::json::parse(ss.str(), nullptr, false);
  if (golden.is_discarded() || !golden.is_object() || !golden.contains("cases") ||
      !golden["cases"].is_array()) {
    std::fprintf(stderr, "afd-eval-tokenizer: %s is not a golden cases file\n", cases_path.c_str());
    return 2;
  }

  int total = 0, failed = 0;
  for (const nlohmann::json& c : golden["cases"]) {
    if (!c.contains("text") || !c["text"].is_string() || !c.contains("ids") ||
        !c["ids"].is_array()) {
      std::fprintf(stderr, "afd-eval-tokenizer: case %d is malformed\n", total);
      return 2;
    }
    const std::string text = c["text"].get<std::string>();
    std::vector<int32_t> want_ids;
    for (const auto& id : c["ids"]) {
      if (!id.is_number_integer()) {
        std::fprintf(stderr, "afd-eval-tokenizer: case %d has a non-integer id\n", total);
        return 2;
      }
      want_ids.push_back(id.get<int32_t>());
    }
    std::vector<std::string> problems;
    auto ids = (*tokenizer)->Encode(text);
    if (!ids.ok()) {
      problems.push_back("encode failed: " + ids.status().ToString());
    } else if (*ids != want_ids) {
      problems.push_back("ids " + IdsToString(*ids) + " != expected " + IdsToString(want_ids));
    }
    for (bool skip : {false, true}) {
      const char* key = skip ? "decoded_skip_special" : "decoded";
      if (!c.contains(key) || !c[key].is_string()) continue;
      const std::string got = (*tokenizer)->Decode(want_ids, skip);
      if (got != c[key].get<std::string>()) {
        problems.push_back(std::string(key) + " " + Shorten(got) + " != expected " +
                           Shorten(c[key].get<std::string>()));
      }
    }
    if (!problems.empty()) {
      ++failed;
      if (!quiet) {
        std::printf("case %d %s\n", total, Shorten(text).c_str());
        for (const std::string& p : problems) std::printf("  %s\n", p.c_str());
      }
    }
    ++total;
  }
  std::printf("%s: %d/%d cases match (%d mismatches)\n", cases_path.c_str(), total - failed, total,
              failed);
  return failed == 0 ? 0 : 1;
}
