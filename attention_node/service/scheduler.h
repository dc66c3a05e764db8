// Scheduler: the attention node's request loop. Continuous batching (sequences join and leave
// every step), chunked prefill under a per-step token budget, admission against KV capacity with
// a bounded wait queue (and recompute preemption when decode outgrows the cache), per-request
// sampling, stop conditions and logprobs, Abort, and expert-failure isolation. One scheduler
// thread drives the Engine; a step's batch is split into micro-batches that run on their own
// lanes (Engine + ExpertBackend + ThreadPool each) so one micro-batch's attention overlaps
// another's remote expert calls. Domain types only (no gRPC). Thread-safe: Submit, Abort and
// Load may be called from any thread; updates are delivered on the scheduler thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "attention_node/engine.h"
#include "attention_node/expert_backend.h"
#include "attention_node/kv_cache.h"
#include "attention_node/model_weights.h"
#include "attention_node/sampler.h"
#include "attention_node/service/isolating_expert_backend.h"
#include "attention_node/step_profile.h"
#include "common/kernels/thread_pool.h"

namespace afd::attention {

// Admission and batching limits (cluster.yaml `limits`). The KV capacity is the KvCache's.
struct SchedulerOptions {
  int max_prompt_tokens = 0;    // longest accepted prompt, tokens; 0 = the model's context
  int max_new_tokens = 4096;    // cap on a request's max_tokens and its default, tokens
  int max_batch_tokens = 2048;  // tokens per engine step (prefill is chunked to fit)
  int micro_batches = 2;        // parts of a step, each on its own lane (at most one per lane)
  // A step is split only into parts of at least this many tokens (fewer parts otherwise): a
  // part reads every weight it touches once, so splitting a memory-bound step (decode) costs
  // more weight traffic than its overlap of attention and expert calls gains. 1 = always split.
  int min_micro_batch_tokens = 1;
  int max_queue_depth = 256;    // requests waiting for admission before RESOURCE_EXHAUSTED
  int min_tile_prompt_tokens = 0;  // Engine::set_min_tile_prompt; 0 = the engine's default
};

// One micro-batch lane: what a part of a step runs on. Borrowed; must outlive the scheduler.
// Each lane's backend and pool are used by one thread at a time.
struct SchedulerLane {
  ExpertBackend* experts = nullptr;
  kernels::ThreadPool* pool = nullptr;  // nullable: one thread
};

enum class FinishReason {
  kNone,    // still running
  kStop,    // eos or a stop token
  kLength,  // max tokens, the last forced token, or the context / KV capacity limit
  kAbort,   // Abort or cancellation
};

struct GenerationRequest {
  std::string id;               // unique among the node's live requests
  std::vector<int32_t> prompt;  // token ids, non-empty
  SamplingParams sampling;
  std::vector<int32_t> stop_token_ids;  // generation ends after emitting one of these
  bool ignore_eos = false;              // do not stop at the model's eos token
  int max_tokens = 0;                   // new tokens at most; 0 = the node's max_new_tokens
  bool logprobs = false;  // report the chosen tokens' logprobs (+ sampling.top_logprobs)
  bool return_prompt_logits = false;   // [prompt_len, vocab] logits with the first update
  bool return_logits = false;          // [tokens, vocab] logits of every new token
  std::vector<int32_t> forced_tokens;  // teacher forcing: new token t is forced_tokens[t]
};

// What one step produced for one request. The last update has finish != kNone or a non-OK
// status (then no finish reason: the request failed).
struct GenerationUpdate {
  std::vector<int32_t> tokens;         // new tokens since the previous update
  std::vector<SampleResult> logprobs;  // one per token when requested
  std::vector<float> prompt_logits;    // [prompt_len, vocab], first update only, when requested
  std::vector<float> logits;           // [tokens, vocab] when requested
  FinishReason finish = FinishReason::kNone;
  absl::Status status;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;  // new tokens so far, including these
};

// Called on the scheduler thread, in order, for each update of one request; must not block.
using UpdateSink = std::function<void(GenerationUpdate update)>;

// The node's load as of the last step (what gateways route on).
struct SchedulerLoad {
  int64_t total_kv_blocks = 0;
  int64_t free_kv_blocks = 0;
  int running = 0;  // admitted sequences
  int waiting = 0;  // queued for admission
  uint64_t steps = 0;
  uint64_t preemptions = 0;  // sequences evicted from the cache to be recomputed later
};

class Scheduler {
 public:
  // weights and cache: borrowed, must outlive the scheduler; the cache must be empty and is
  // owned by the scheduler from now on. lanes: at least one. Starts the scheduler thread.
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(const ModelWeights* weights,
                                                           KvCache* cache,
                                                           std::vector<SchedulerLane> lanes,
                                                           const SchedulerOptions& options);
  // Shutdown().
  ~Scheduler();

  // Queues `request`; its updates go to `sink`. Refused (sink never called) with
  // INVALID_ARGUMENT (empty prompt or id, token id outside the vocabulary, bad sampling values,
  // prompt beyond max_prompt_tokens or the model's context), ALREADY_EXISTS (id in use),
  // RESOURCE_EXHAUSTED (prompt larger than the whole KV cache), UNAVAILABLE (shutting down).
  // A request that cannot be admitted at once waits; when more than max_queue_depth wait, the
  // newest ones end (through their sink) with RESOURCE_EXHAUSTED.
  absl::Status Submit(GenerationRequest request, UpdateSink sink);
  // Ends a waiting or running request: its KV blocks are freed and its last update
  // (finish kAbort) sent before the next step starts. NOT_FOUND for an unknown id.
  absl::Status Abort(const std::string& id);
  SchedulerLoad Load() const;
  // Where the steps' time went since the scheduler started (always collected; the clock reads
  // cost microseconds per step): each lane's Engine stages and expert backend split (see
  // StepProfile; a remote backend reports the slowest node's compute as "experts: ffn"), plus
  // the scheduler thread's sampling and its own work around the steps. Lanes add up: with
  // micro-batch lanes a step counts once per lane. Updated after every step.
  StepProfile Profile() const;
  // Per expert node, the (token, expert) pairs the lanes sent it since the scheduler started
  // (which replica served what; empty with in-process experts). Updated after every step.
  std::vector<ExpertNodeTraffic> Traffic() const;
  // Fails every request (UNAVAILABLE) and stops the thread. Idempotent.
  void Shutdown();

 private:
  struct Sequence;
  struct Part;
  class LaneWorker;

  Scheduler(const ModelWeights* weights, KvCache* cache, std::vector<SchedulerLane> lanes,
            const SchedulerOptions& options);
  void Loop();
  // Moves new requests into the queue and applies aborts. False once shutting down.
  bool Drain();
  bool HasNews() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Admit();
  // Refuses (RESOURCE_EXHAUSTED) the newest never-admitted requests beyond max_queue_depth.
  void RefuseOverflow();
  // Chooses this step's chunks and reserves their KV blocks (preempting if short).
  void BuildStep(std::vector<StepInput>* inputs, std::vector<Sequence*>* owners);
  // Returns the wall time of the engine steps (all lanes, in parallel).
  double RunStep(const std::vector<StepInput>& inputs, const std::vector<Sequence*>& owners);
  // Applies one micro-batch's outcome: advance, sample, emit, finish.
  void FinishPart(Part& part);
  void Advance(Sequence& seq, int64_t chunk, const StepOutput& out, size_t entry);
  void Preempt(Sequence& seq);
  // Sends the last update (finish or error), frees the cache, forgets the request.
  void End(Sequence& seq, FinishReason reason, absl::Status status);
  void Emit(Sequence& seq, GenerationUpdate update);
  void PublishLoad();
  int64_t BlocksFor(int64_t tokens) const;

  const ModelWeights* weights_;
  KvCache* cache_;
  const SchedulerOptions options_;
  const int vocab_;
  bool paged_ = false;       // the model has full-attention layers (KV blocks)
  int64_t max_context_ = 0;  // longest sequence (tokens): model context and KV capacity

  std::vector<SchedulerLane> lanes_;
  std::vector<std::unique_ptr<IsolatingExpertBackend>> isolators_;  // per lane
  std::vector<std::unique_ptr<Engine>> engines_;                    // per lane
  std::vector<std::unique_ptr<LaneWorker>> workers_;                // lanes 1..n-1
  std::vector<StepProfile> lane_profiles_;  // per lane, written by its Engine and backend
  StepProfile own_profile_;                 // the scheduler thread's sampling and own work

  // Scheduler-thread state.
  std::deque<std::unique_ptr<Sequence>> waiting_;   // FIFO; preempted ones go to the front
  std::vector<std::unique_ptr<Sequence>> running_;  // in admission order
  uint64_t next_admission_ = 0;

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Sequence>> incoming_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> live_ids_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> aborts_ ABSL_GUARDED_BY(mu_);
  int queued_ ABSL_GUARDED_BY(mu_) = 0;  // incoming + waiting
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  mutable absl::Mutex profile_mu_;
  StepProfile published_profile_ ABSL_GUARDED_BY(profile_mu_);
  std::vector<ExpertNodeTraffic> published_traffic_ ABSL_GUARDED_BY(profile_mu_);

  std::atomic<int64_t> free_blocks_{0};
  std::atomic<int> running_count_{0};
  std::atomic<uint64_t> steps_{0};
  std::atomic<uint64_t> preemptions_{0};
  std::thread thread_;
};

}  // namespace afd::attention
