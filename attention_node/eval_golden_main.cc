// afd-eval-golden: checks the engine against a golden case (transformers reference logits).
// Prints max |delta| per prompt for prefill and teacher-forced decode logits, the greedy check,
// and batched-vs-alone; exits non-zero when any prompt is outside tolerance.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "attention_node/golden_check.h"

namespace {

void Usage(FILE* f) {
  std::fprintf(f,
               "usage: afd-eval-golden --model DIR [--golden FILE] [--prompts i,j,...]\n"
               "                       [--threads T] [--tolerance X] [--batch-tolerance X]\n"
               "                       [--no-batched]\n\n"
               "Runs the in-process engine on a golden case and compares it with the\n"
               "transformers reference in FILE (default DIR/golden.safetensors):\n"
               "  prefill   logits at every prompt position\n"
               "  decode    logits teacher-forced with greedy_ids through the engine's own\n"
               "            cache (row 0 = last prompt position)\n"
               "  greedy    the engine's argmax at every decode step vs greedy_ids\n"
               "  batched   all chosen prompts in one batch vs each run alone\n"
               "Exits 1 if any max|delta| exceeds --tolerance (default 1e-4), a greedy token\n"
               "differs, or batched differs from alone by more than --batch-tolerance\n"
               "(default 1e-5); 2 on bad arguments or unreadable files.\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string model;
  std::string golden;
  afd::attention::GoldenOptions options;
  double tolerance = 1e-4;
  double batch_tolerance = 1e-5;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "afd-eval-golden: %s needs a value\n", name);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      Usage(stdout);
      return 0;
    } else if (arg == "--model") {
      model = value("--model");
    } else if (arg == "--golden") {
      golden = value("--golden");
    } else if (arg == "--prompts") {
      for (absl::string_view s : absl::StrSplit(value("--prompts"), ',', absl::SkipEmpty())) {
        int k;
        if (!absl::SimpleAtoi(s, &k) || k < 0) {
          std::fprintf(stderr, "afd-eval-golden: bad prompt index '%.*s'\n",
                       static_cast<int>(s.size()), s.data());
          return 2;
        }
        options.prompts.push_back(k);
      }
    } else if (arg == "--threads") {
      if (!absl::SimpleAtoi(value("--threads"), &options.num_threads) || options.num_threads <= 0) {
        std::fprintf(stderr, "afd-eval-golden: --threads needs a positive integer\n");
        return 2;
      }
    } else if (arg == "--tolerance") {
      if (!absl::SimpleAtod(value("--tolerance"), &tolerance) || tolerance < 0) {
        std::fprintf(stderr, "afd-eval-golden: bad --tolerance\n");
        return 2;
      }
    } else if (arg == "--batch-tolerance") {
      if (!absl::SimpleAtod(value("--batch-tolerance"), &batch_tolerance) || batch_tolerance < 0) {
        std::fprintf(stderr, "afd-eval-golden: bad --batch-tolerance\n");
        return 2;
      }
    } else if (arg == "--no-batched") {
      options.batched = false;
    } else {
      std::fprintf(stderr, "afd-eval-golden: unknown argument '%s'\n\n", arg.c_str());
      Usage(stderr);
      return 2;
    }
  }
  if (model.empty()) {
    std::fprintf(stderr, "afd-eval-golden: --model is required\n\n");
    Usage(stderr);
    return 2;
  }
  if (golden.empty()) golden = model + "/golden.safetensors";

  auto results = afd::attention::RunGoldenCase(model, golden, options);
  if (!results.ok()) {
    std::fprintf(stderr, "afd-eval-golden: %s\n", results.status().ToString().c_str());
    return 2;
  }
  bool ok = true;
  std::printf("%-7s %6s %5s %12s %12s %8s %12s  %s\n", "prompt", "len", "gen", "prefill", "decode",
              "greedy", "batched", "result");
  for (const auto& r : *results) {
    const bool greedy_ok = r.first_greedy_mismatch < 0;
    const bool pass = r.prefill_max_abs <= tolerance && r.decode_max_abs <= tolerance &&
                      greedy_ok && r.batched_max_abs <= batch_tolerance;
    ok = ok && pass;
    char greedy[32];
    if (greedy_ok) {
      std::snprintf(greedy, sizeof(greedy), "same");
    } else {
      std::snprintf(greedy, sizeof(greedy), "step %d", r.first_greedy_mismatch);
    }
    char batched[32];
    if (r.batched_max_abs < 0) {
      std::snprintf(batched, sizeof(batched), "-");
    } else {
      std::snprintf(batched, sizeof(batched), "%.3e", r.batched_max_abs);
    }
    std::printf("%-7d %6lld %5lld %12.3e %12.3e %8s %12s  %s\n", r.index,
                static_cast<long long>(r.prompt_tokens), static_cast<long long>(r.generated_tokens),
                r.prefill_max_abs, r.decode_max_abs, greedy, batched, pass ? "ok" : "FAIL");
  }
  std::printf("%s (tolerance %.1e, batched %.1e)\n", ok ? "PASS" : "FAIL", tolerance,
              batch_tolerance);
  return ok ? 0 : 1;
}
