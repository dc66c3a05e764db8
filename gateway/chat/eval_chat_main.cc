// afd-eval-chat: renders every case of a chat-template golden file (tests/data/chat/golden.json
// format) with the native MiniMax-M2 renderer, prints each mismatch, and exits non-zero on any.
//   afd-eval-chat --cases tests/data/chat/golden.json [--model-identity TEXT]
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/statusor.h"
#include "gateway/chat/chat_template.h"
#include "gateway/chat/py_json.h"

namespace {

using Json = nlohmann::ordered_json;
using afd::gateway::ChatTemplateOptions;

int Usage(FILE* out, int code) {
  std::fprintf(out,
               "usage: afd-eval-chat --cases FILE [--model-identity TEXT]\n\n"
               "Renders each case of a chat-template golden file (JSON with \"cases\" and\n"
               "\"error_cases\", as tests/data/chat/golden.json) with afd's MiniMax-M2 renderer.\n"
               "Prints every mismatch and exits 1 if there is one, 2 on bad arguments.\n");
  return code;
}

// Escapes control characters so a mismatch is readable on one line.
std::string Visible(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += c;
    }
  }
  return out;
}

void PrintDiff(const std::string& name, const std::string& want, const std::string& got) {
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  const size_t from = i > 40 ? i - 40 : 0;
  std::printf("MISMATCH %s at byte %zu\n  want: ...%s\n  got:  ...%s\n", name.c_str(), i,
              Visible(want.substr(from, 100)).c_str(), Visible(got.substr(from, 100)).c_str());
}

bool ReadCaseFields(const Json& c, std::string* name, const Json** messages, const Json** tools,
                    bool* add_generation_prompt) {
  if (!c.is_object() || !c.contains("name") || !c["name"].is_string() || !c.contains("messages")) {
    return false;
  }
  static const Json kNull;
  *name = c["name"].get<std::string>();
  *messages = &c["messages"];
  *tools = c.contains("tools") ? &c["tools"] : &kNull;
  *add_generation_prompt = c.contains("add_generation_prompt") &&
                           c["add_generation_prompt"].is_boolean() &&
                           c["add_generation_prompt"].get<bool>();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string cases_path;
  ChatTemplateOptions options;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) return Usage(stdout, 0);
    if (!std::strcmp(argv[i], "--cases") && i + 1 < argc) {
      cases_path = argv[++i];
    } else if (!std::strcmp(argv[i], "--model-identity") && i + 1 < argc) {
      options.model_identity = argv[++i];
    } else {
      std::fprintf(stderr, "afd-eval-chat: unknown or incomplete argument '%s'\n", argv[i]);
      return Usage(stderr, 2);
    }
  }
  if (cases_path.empty()) return Usage(stderr, 2);

  std::ifstream in(cases_path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "afd-eval-chat: cannot read %s\n", cases_path.c_str());
    return 2;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  absl::StatusOr<Json> doc = afd::gateway::ParseJsonExact(ss.str());
  if (!doc.ok() || !doc->is_object()) {
    std::fprintf(stderr, "afd-eval-chat: %s: %s\n", cases_path.c_str(),
                 doc.ok() ? "not a JSON object" : std::string(doc.status().message()).c_str());
    return 2;
  }

  int total = 0;
  int failed = 0;
  const Json empty = Json::array();
  const Json& cases = doc->contains("cases") ? (*doc)["cases"] : empty;
  for (const Json& c : cases) {
    std::string name;
    const Json* messages;
    const Json* tools;
    bool agp;
    ++total;
    if (!ReadCaseFields(c, &name, &messages, &tools, &agp) || !c.contains("prompt") ||
        !c["prompt"].is_string()) {
      std::printf("BAD CASE #%d: needs name, messages and prompt\n", total);
      ++failed;
      continue;
    }
    absl::StatusOr<std::string> got =
        afd::gateway::RenderChatPrompt(*messages, *tools, agp, options);
    if (!got.ok()) {
      std::printf("ERROR %s: %s\n", name.c_str(), std::string(got.status().message()).c_str());
      ++failed;
    } else if (*got != c["prompt"].get<std::string>()) {
      PrintDiff(name, c["prompt"].get<std::string>(), *got);
      ++failed;
    }
  }
  const Json& error_cases = doc->contains("error_cases") ? (*doc)["error_cases"] : empty;
  for (const Json& c : error_cases) {
    std::string name;
    const Json* messages;
    const Json* tools;
    bool agp;
    ++total;
    if (!ReadCaseFields(c, &name, &messages, &tools, &agp)) {
      std::printf("BAD ERROR CASE #%d: needs name and messages\n", total);
      ++failed;
      continue;
    }
    absl::StatusOr<std::string> got =
        afd::gateway::RenderChatPrompt(*messages, *tools, agp, options);
    if (got.ok()) {
      std::printf("NOT REJECTED %s\n", name.c_str());
      ++failed;
    }
  }
  std::printf("%d/%d chat-template cases pass\n", total - failed, total);
  return failed == 0 ? 0 : 1;
}
