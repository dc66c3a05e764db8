// GoldenCheck: runs the Engine (in-process experts) on one golden case, a model directory plus a
// golden.safetensors of transformers reference outputs (promptK.input_ids, prefill_logits,
// greedy_ids, decode_logits; see tests/data/golden/README.md), and measures how far it lands.
// Decode rows are teacher-forced with greedy_ids through the cache the engine's own prefill
// built. Optionally runs all prompts again as one batch and compares with the lone runs.
// Stateless functions; safe to call from any thread (each call builds its own engine).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "attention_node/kv_cache.h"

namespace afd::attention {

struct GoldenOptions {
  std::vector<int> prompts;  // indices to run; empty: every prompt in the file
  int num_threads = 2;       // ThreadPool size
  int block_size = 16;       // KV cache block size (tokens)
  bool batched = true;       // also run the chosen prompts together in one batch
  KvDtype kv_dtype = KvDtype::kFloat32;  // KV cache element type (bfloat16: the opt-in cache)
};

struct GoldenPromptResult {
  int index = 0;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  float prefill_max_abs = 0;       // max |engine - reference| over every prefill logit
  float decode_max_abs = 0;        // same over decode_logits (row 0 = last prompt position)
  double decode_mean_abs = 0;      // mean |engine - reference| over decode_logits
  int decode_top1_kept = 0;        // decode rows whose argmax is the reference row's
  int first_greedy_mismatch = -1;  // first step whose argmax differs from greedy_ids; -1: none
  float batched_max_abs = -1;      // max |batched - alone| over all rows; -1 when not run
};

// NOT_FOUND / INVALID_ARGUMENT for a missing or malformed model or golden file, or a prompt
// index the file does not hold.
absl::StatusOr<std::vector<GoldenPromptResult>> RunGoldenCase(const std::string& model_dir,
                                                              const std::string& golden_file,
                                                              const GoldenOptions& options);

}  // namespace afd::attention
