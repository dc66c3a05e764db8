// GoldenCheck (see golden_check.h).
#include "attention_node/golden_check.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "attention_node/engine.h"
#include "attention_node/in_process_expert_backend.h"
#include "attention_node/kv_cache.h"
#include "attention_node/model_weights.h"
#include "attention_node/sampler.h"
#include "common/kernels/thread_pool.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "common/status.h"
#include "common/weights.h"

namespace afd::attention {
namespace {

struct GoldenPrompt {
  std::vector<int32_t> input_ids;         // [L]
  std::vector<int32_t> greedy_ids;        // [T]
  const float* prefill_logits = nullptr;  // [L, V] (mapped)
  const float* decode_logits = nullptr;   // [T, V] (mapped)
};

absl::StatusOr<const TensorView*> Find(const SafetensorsFile& file, const std::string& name,
                                       DType dtype, int rank) {
  const TensorView* t = file.Find(name);
  if (t == nullptr) {
    return absl::NotFoundError(absl::StrCat(file.path(), ": no tensor ", name));
  }
  if (t->dtype != dtype || static_cast<int>(t->shape.size()) != rank) {
    return absl::InvalidArgumentError(
        absl::StrCat(file.path(), ": ", name, " is ", DTypeName(t->dtype), " ",
                     ShapeString(t->shape), ", expected ", DTypeName(dtype), " of rank ", rank));
  }
  if (dtype == DType::kF32 && reinterpret_cast<uintptr_t>(t->data) % alignof(float) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(file.path(), ": ", name, " is misaligned"));
  }
  return t;
}

absl::StatusOr<std::vector<int32_t>> TokenIds(const SafetensorsFile& file,
                                              const std::string& name) {
  ASSIGN_OR_RETURN(const TensorView* t, Find(file, name, DType::kI64, 1));
  std::vector<int32_t> ids(t->shape[0]);
  for (size_t i = 0; i < ids.size(); ++i) {
    int64_t v;
    std::memcpy(&v, t->data + 8 * i, 8);
    ids[i] = static_cast<int32_t>(v);
  }
  return ids;
}

absl::StatusOr<GoldenPrompt> ReadPrompt(const SafetensorsFile& file, int k, int vocab) {
  const std::string p = absl::StrCat("prompt", k, ".");
  GoldenPrompt g;
  ASSIGN_OR_RETURN(g.input_ids, TokenIds(file, p + "input_ids"));
  ASSIGN_OR_RETURN(g.greedy_ids, TokenIds(file, p + "greedy_ids"));
  ASSIGN_OR_RETURN(const TensorView* prefill, Find(file, p + "prefill_logits", DType::kF32, 2));
  ASSIGN_OR_RETURN(const TensorView* decode, Find(file, p + "decode_logits", DType::kF32, 2));
  if (g.input_ids.empty() || g.greedy_ids.empty() ||
      prefill->shape != std::vector<int64_t>{static_cast<int64_t>(g.input_ids.size()), vocab} ||
      decode->shape != std::vector<int64_t>{static_cast<int64_t>(g.greedy_ids.size()), vocab}) {
    return absl::InvalidArgumentError(absl::StrCat(
        file.path(), ": prompt ", k, " has inconsistent shapes (input_ids ", g.input_ids.size(),
        ", greedy_ids ", g.greedy_ids.size(), ", prefill_logits ", ShapeString(prefill->shape),
        ", decode_logits ", ShapeString(decode->shape), ", vocab ", vocab, ")"));
  }
  g.prefill_logits = reinterpret_cast<const float*>(prefill->data);
  g.decode_logits = reinterpret_cast<const float*>(decode->data);
  return g;
}

float MaxAbsDiff(const float* a, const float* b, int64_t n) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float d = std::fabs(a[i] - b[i]);
    if (!(d <= m)) m = std::isnan(d) ? INFINITY : d;
  }
  return m;
}

int32_t ArgMax(const float* row, int vocab) {
  return attention::ArgMax(absl::MakeConstSpan(row, static_cast<size_t>(vocab)));
}

// Everything one engine run needs, sized for `sequences` sequences of `max_tokens` tokens each.
struct Runner {
  std::unique_ptr<KvCache> cache;
  std::unique_ptr<Engine> engine;
};

absl::StatusOr<Runner> MakeRunner(const ModelWeights& weights, ExpertBackend* backend,
                                  kernels::ThreadPool* pool, int sequences, int64_t max_tokens,
                                  int block_size, KvDtype kv_dtype) {
  KvCacheOptions options;
  options.block_size = block_size;
  options.dtype = kv_dtype;
  options.max_sequences = sequences;
  options.num_blocks = sequences * ((max_tokens + block_size - 1) / block_size);
  Runner r;
  ASSIGN_OR_RETURN(r.cache, KvCache::Create(weights.config(), options));
  r.engine = std::make_unique<Engine>(&weights, r.cache.get(), backend, pool);
  return r;
}

// Logit rows of one sequence: prefill [L, V] and teacher-forced decode [T, V].
struct SequenceLogits {
  std::vector<float> prefill;
  std::vector<float> decode;
};

}  // namespace

absl::StatusOr<std::vector<GoldenPromptResult>> RunGoldenCase(const std::string& model_dir,
                                                              const std::string& golden_file,
                                                              const GoldenOptions& options) {
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir));
  ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint, Checkpoint::Open(model_dir));
  RETURN_IF_ERROR(ValidateCheckpoint(config, *checkpoint));
  ASSIGN_OR_RETURN(std::unique_ptr<ModelWeights> weights, ModelWeights::Load(config, *checkpoint));
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> golden, SafetensorsFile::Open(golden_file));
  kernels::ThreadPool pool(options.num_threads);
  ASSIGN_OR_RETURN(std::unique_ptr<InProcessExpertBackend> backend,
                   InProcessExpertBackend::Create(config, *checkpoint, &pool));
  const int vocab = config.vocab_size;

  std::vector<int> indices = options.prompts;
  if (indices.empty()) {
    for (int k = 0; golden->Find(absl::StrCat("prompt", k, ".input_ids")) != nullptr; ++k) {
      indices.push_back(k);
    }
    if (indices.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(golden_file, ": no prompt0.input_ids"));
    }
  }
  std::vector<GoldenPrompt> prompts;
  for (int k : indices) {
    ASSIGN_OR_RETURN(GoldenPrompt p, ReadPrompt(*golden, k, vocab));
    prompts.push_back(std::move(p));
  }

  std::vector<GoldenPromptResult> results;
  std::vector<SequenceLogits> alone(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    const GoldenPrompt& g = prompts[i];
    const int64_t len = static_cast<int64_t>(g.input_ids.size());
    const int64_t gen = static_cast<int64_t>(g.greedy_ids.size());
    ASSIGN_OR_RETURN(Runner r, MakeRunner(*weights, backend.get(), &pool, 1, len + gen,
                                          options.block_size, options.kv_dtype));
    ASSIGN_OR_RETURN(int seq, r.cache->AddSequence());
    GoldenPromptResult res;
    res.index = indices[i];
    res.prompt_tokens = len;
    res.generated_tokens = gen;

    StepOutput out;
    StepInput in{seq, g.input_ids, LogitsMode::kAll, static_cast<int64_t>(g.input_ids.size())};
    RETURN_IF_ERROR(r.engine->Step({&in, 1}, &out));
    alone[i].prefill = out.logits;
    res.prefill_max_abs = MaxAbsDiff(out.logits.data(), g.prefill_logits, len * vocab);

    // Row 0 is the last prompt position; row t follows greedy_ids[t-1] through the cache.
    alone[i].decode.resize(gen * vocab);
    std::copy(out.logits.end() - vocab, out.logits.end(), alone[i].decode.begin());
    for (int64_t t = 1; t < gen; ++t) {
      StepInput step{seq, absl::MakeConstSpan(&g.greedy_ids[t - 1], 1), LogitsMode::kLast};
      RETURN_IF_ERROR(r.engine->Step({&step, 1}, &out));
      std::copy(out.logits.begin(), out.logits.end(), alone[i].decode.begin() + t * vocab);
    }
    res.decode_max_abs = MaxAbsDiff(alone[i].decode.data(), g.decode_logits, gen * vocab);
    double sum = 0;
    for (int64_t j = 0; j < gen * vocab; ++j) {
      sum += std::fabs(static_cast<double>(alone[i].decode[j]) - g.decode_logits[j]);
    }
    res.decode_mean_abs = sum / static_cast<double>(gen * vocab);
    for (int64_t t = 0; t < gen; ++t) {
      const int32_t top1 = ArgMax(alone[i].decode.data() + t * vocab, vocab);
      res.decode_top1_kept += top1 == ArgMax(g.decode_logits + t * vocab, vocab);
      if (top1 != g.greedy_ids[t] && res.first_greedy_mismatch < 0) {
        res.first_greedy_mismatch = static_cast<int>(t);
      }
    }
    results.push_back(res);
  }

  if (options.batched && !prompts.empty()) {
    int64_t max_tokens = 0;
    for (const GoldenPrompt& g : prompts) {
      max_tokens = std::max<int64_t>(max_tokens, g.input_ids.size() + g.greedy_ids.size());
    }
    ASSIGN_OR_RETURN(Runner r,
                     MakeRunner(*weights, backend.get(), &pool, static_cast<int>(prompts.size()),
                                max_tokens, options.block_size, options.kv_dtype));
    std::vector<int> seqs;
    std::vector<SequenceLogits> batched(prompts.size());
    std::vector<StepInput> inputs;
    for (size_t i = 0; i < prompts.size(); ++i) {
      ASSIGN_OR_RETURN(int seq, r.cache->AddSequence());
      seqs.push_back(seq);
      inputs.push_back({seq, prompts[i].input_ids, LogitsMode::kAll,
                        static_cast<int64_t>(prompts[i].input_ids.size())});
    }
    StepOutput out;
    RETURN_IF_ERROR(r.engine->Step(inputs, &out));
    for (size_t i = 0; i < prompts.size(); ++i) {
      const float* first = out.Row(out.first_row[i], vocab);
      batched[i].prefill.assign(first, first + out.num_rows[i] * vocab);
      batched[i].decode.assign(first + (out.num_rows[i] - 1) * vocab,
                               first + out.num_rows[i] * vocab);
    }
    for (int64_t t = 1;; ++t) {
      inputs.clear();
      std::vector<size_t> which;
      for (size_t i = 0; i < prompts.size(); ++i) {
        if (t < static_cast<int64_t>(prompts[i].greedy_ids.size())) {
          inputs.push_back(
              {seqs[i], absl::MakeConstSpan(&prompts[i].greedy_ids[t - 1], 1), LogitsMode::kLast});
          which.push_back(i);
        }
      }
      if (inputs.empty()) break;
      RETURN_IF_ERROR(r.engine->Step(inputs, &out));
      for (size_t j = 0; j < which.size(); ++j) {
        const float* row = out.Row(out.first_row[j], vocab);
        batched[which[j]].decode.insert(batched[which[j]].decode.end(), row, row + vocab);
      }
    }
    for (size_t i = 0; i < prompts.size(); ++i) {
      results[i].batched_max_abs =
          std::max(MaxAbsDiff(batched[i].prefill.data(), alone[i].prefill.data(),
                              static_cast<int64_t>(alone[i].prefill.size())),
                   MaxAbsDiff(batched[i].decode.data(), alone[i].decode.data(),
                              static_cast<int64_t>(alone[i].decode.size())));
    }
  }
  return results;
}

}  // namespace afd::attention
