// afd-make-minimax-tokenizer: writes the minimax-m2-synthetic tokenizer (tokenizer.json and
// tokenizer_config.json) into --out, built from the gpt-4o tokenizer.json in --from.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "gateway/tokenizer/minimax_tokenizer.h"

namespace {

constexpr char kUsage[] =
    "usage: afd-make-minimax-tokenizer --from DIR --out DIR [--added-tokens FILE]\n"
    "  Reads DIR/tokenizer.json (gpt-4o, o200k) and writes the minimax-m2-synthetic\n"
    "  tokenizer.json and tokenizer_config.json into the --out DIR (which must exist).\n"
    "  --added-tokens replaces the compiled-in minimax_m2_added_tokens.json.\n";

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return !in.bad();
}

bool WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  out.close();
  return out.good();
}

}  // namespace

int main(int argc, char** argv) {
  std::string from, out_dir, added_tokens_path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--from" && i + 1 < argc) {
      from = argv[++i];
    } else if (arg == "--out" && i + 1 < argc) {
      out_dir = argv[++i];
    } else if (arg == "--added-tokens" && i + 1 < argc) {
      added_tokens_path = argv[++i];
    } else {
      std::fprintf(stderr, "afd-make-minimax-tokenizer: bad argument %s\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  if (from.empty() || out_dir.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::string gpt4o;
  if (!ReadFile(from + "/tokenizer.json", &gpt4o)) {
    std::fprintf(stderr, "afd-make-minimax-tokenizer: cannot read %s/tokenizer.json\n",
                 from.c_str());
    return 1;
  }
  std::string data(afd::gateway::MinimaxAddedTokensData());
  if (!added_tokens_path.empty() && !ReadFile(added_tokens_path, &data)) {
    std::fprintf(stderr, "afd-make-minimax-tokenizer: cannot read %s\n", added_tokens_path.c_str());
    return 1;
  }
  auto files = afd::gateway::MakeMinimaxTokenizer(gpt4o, data);
  if (!files.ok()) {
    std::fprintf(stderr, "afd-make-minimax-tokenizer: %s\n", files.status().ToString().c_str());
    return 1;
  }
  if (!WriteFile(out_dir + "/tokenizer.json", files->tokenizer_json) ||
      !WriteFile(out_dir + "/tokenizer_config.json", files->tokenizer_config_json)) {
    std::fprintf(stderr, "afd-make-minimax-tokenizer: cannot write into %s\n", out_dir.c_str());
    return 1;
  }
  return 0;
}
