// afd-eval-parser: checks the reasoning/tool-call parsers against a golden file
// (tests/data/parsing/golden.json format): the non-streaming result of every case, and the
// streaming check (whole text, every single cut, one code point per chunk, seeded random
// cuttings). Prints each mismatch and exits non-zero on any.
//   afd-eval-parser --cases tests/data/parsing/golden.json [--random-cuttings N] [--seed S]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/statusor.h"
#include "gateway/parsing/parser_conformance.h"

namespace {

using Json = nlohmann::ordered_json;

int Usage(FILE* out, int code) {
  std::fprintf(out,
               "usage: afd-eval-parser --cases FILE [--random-cuttings N] [--seed S]\n\n"
               "Parses each case of a parser golden file (JSON with \"cases\", as\n"
               "tests/data/parsing/golden.json) non-streaming and streamed in every cutting the\n"
               "golden README defines (N random cuttings per case, default 5, from seed S).\n"
               "Prints every mismatch and exits 1 if there is one, 2 on bad arguments.\n");
  return code;
}

bool ParseInt(const char* s, long long* out) {
  char* end = nullptr;
  *out = std::strtoll(s, &end, 10);
  return end != s && *end == '\0';
}

}  // namespace

int main(int argc, char** argv) {
  std::string cases_path;
  afd::gateway::StreamCheckOptions options;
  for (int i = 1; i < argc; ++i) {
    long long v = 0;
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) return Usage(stdout, 0);
    if (!std::strcmp(argv[i], "--cases") && i + 1 < argc) {
      cases_path = argv[++i];
    } else if (!std::strcmp(argv[i], "--random-cuttings") && i + 1 < argc &&
               ParseInt(argv[i + 1], &v) && v >= 0) {
      options.random_cuttings = static_cast<int>(v);
      ++i;
    } else if (!std::strcmp(argv[i], "--seed") && i + 1 < argc && ParseInt(argv[i + 1], &v)) {
      options.seed = static_cast<uint64_t>(v);
      ++i;
    } else {
      std::fprintf(stderr, "afd-eval-parser: unknown or incomplete argument '%s'\n", argv[i]);
      return Usage(stderr, 2);
    }
  }
  if (cases_path.empty()) return Usage(stderr, 2);

  std::ifstream in(cases_path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "afd-eval-parser: cannot read %s\n", cases_path.c_str());
    return 2;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const Json doc = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    std::fprintf(stderr, "afd-eval-parser: %s: invalid JSON\n", cases_path.c_str());
    return 2;
  }
  absl::StatusOr<std::vector<afd::gateway::ParserCase>> cases = afd::gateway::LoadParserCases(doc);
  if (!cases.ok()) {
    std::fprintf(stderr, "afd-eval-parser: %s: %s\n", cases_path.c_str(),
                 std::string(cases.status().message()).c_str());
    return 2;
  }
  int failed = 0;
  for (const afd::gateway::ParserCase& c : *cases) {
    const std::vector<std::string> errors = afd::gateway::CheckParserCase(c, options);
    for (const std::string& e : errors) std::printf("MISMATCH %s\n", e.c_str());
    if (!errors.empty()) ++failed;
  }
  std::printf("%zu/%zu parser cases pass (non-streaming and streaming)\n", cases->size() - failed,
              cases->size());
  return failed == 0 ? 0 : 1;
}
