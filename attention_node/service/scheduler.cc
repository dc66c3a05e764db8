// Scheduler (see scheduler.h).
#include "attention_node/service/scheduler.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace afd::attention {
namespace {

constexpr uint64_t kNeverAdmitted = ~uint64_t{0};

absl::Status CheckVocabulary(absl::Span<const int32_t> tokens, int vocab, const char* what) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " token ", i, ": id ", tokens[i], " is outside the vocabulary [0, ", vocab, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

struct Scheduler::Sequence {
  Sequence(GenerationRequest r, UpdateSink s, Sampler sm, int max_new)
      : request(std::move(r)), sink(std::move(s)), sampler(std::move(sm)), max_tokens(max_new) {
    tokens = request.prompt;
  }
  int64_t prompt_size() const { return static_cast<int64_t>(request.prompt.size()); }
  int64_t generated() const { return static_cast<int64_t>(tokens.size()) - prompt_size(); }
  int64_t pending() const { return static_cast<int64_t>(tokens.size()) - computed; }
  bool collecting_prompt_logits() const {
    return request.return_prompt_logits && !prompt_logits_sent;
  }

  GenerationRequest request;
  UpdateSink sink;
  Sampler sampler;
  int max_tokens;               // effective cap on new tokens
  std::vector<int32_t> tokens;  // prompt + generated: what the cache must hold
  int64_t computed = 0;         // tokens of `tokens` in the cache
  int seq = -1;                 // KvCache sequence while admitted
  uint64_t admission = kNeverAdmitted;
  bool prompt_logits_sent = false;
  std::vector<float> prompt_logits;  // [rows so far, vocab] while collecting
  bool ended = false;
};

struct Scheduler::Part {
  int lane = 0;
  std::vector<StepInput> inputs;
  std::vector<Sequence*> owners;
  std::vector<int64_t> chunks;  // tokens per entry
  StepOutput out;
  absl::Status status;
};

// A thread that runs one job at a time for a micro-batch lane.
class Scheduler::LaneWorker {
 public:
  LaneWorker() : thread_([this] { Run(); }) {}
  ~LaneWorker() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
  }
  void Start(std::function<void()> job) {
    absl::MutexLock lock(&mu_);
    job_ = std::move(job);
    busy_ = true;
  }
  void Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](bool* busy) { return !*busy; }, &busy_));
  }

 private:
  void Run() {
    while (true) {
      std::function<void()> job;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &LaneWorker::HasWorkOrStop));
        if (!busy_) return;
        job = std::move(job_);
      }
      job();
      absl::MutexLock lock(&mu_);
      busy_ = false;
    }
  }
  bool HasWorkOrStop() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return busy_ || stop_; }

  absl::Mutex mu_;
  std::function<void()> job_ ABSL_GUARDED_BY(mu_);
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(const ModelWeights* weights,
                                                             KvCache* cache,
                                                             std::vector<SchedulerLane> lanes,
                                                             const SchedulerOptions& options) {
  if (weights == nullptr || cache == nullptr || lanes.empty()) {
    return absl::InvalidArgumentError("scheduler: needs weights, a kv cache and a lane");
  }
  for (const SchedulerLane& lane : lanes) {
    if (lane.experts == nullptr) {
      return absl::InvalidArgumentError("scheduler: every lane needs an expert backend");
    }
  }
  if (options.max_batch_tokens < 1 || options.micro_batches < 1 || options.max_new_tokens < 1 ||
      options.min_micro_batch_tokens < 1 || options.max_prompt_tokens < 0 ||
      options.max_queue_depth < 0 || options.min_tile_prompt_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "scheduler: max_batch_tokens (", options.max_batch_tokens, "), micro_batches (",
        options.micro_batches, "), min_micro_batch_tokens (", options.min_micro_batch_tokens,
        ") and max_new_tokens (", options.max_new_tokens,
        ") must be >= 1, max_prompt_tokens, max_queue_depth and min_tile_prompt_tokens (",
        options.min_tile_prompt_tokens, ") >= 0"));
  }
  if (cache->live_sequences() != 0) {
    return absl::FailedPreconditionError("scheduler: the kv cache must start empty");
  }
  std::unique_ptr<Scheduler> scheduler(new Scheduler(weights, cache, std::move(lanes), options));
  scheduler->thread_ = std::thread([s = scheduler.get()] { s->Loop(); });
  return scheduler;
}

Scheduler::Scheduler(const ModelWeights* weights, KvCache* cache, std::vector<SchedulerLane> lanes,
                     const SchedulerOptions& options)
    : weights_(weights),
      cache_(cache),
      options_(options),
      vocab_(weights->config().vocab_size),
      lanes_(std::move(lanes)) {
  const ModelConfig& c = weights->config();
  for (int l = 0; l < c.num_hidden_layers; ++l) paged_ |= !c.IsLinearLayer(l);
  max_context_ = std::numeric_limits<int32_t>::max();
  if (c.max_position_embeddings > 0) max_context_ = c.max_position_embeddings;
  if (paged_) max_context_ = std::min(max_context_, cache->num_blocks() * cache->block_size());
  lane_profiles_.resize(lanes_.size());  // never resized again: the engines keep pointers
  for (size_t i = 0; i < lanes_.size(); ++i) {
    isolators_.push_back(std::make_unique<IsolatingExpertBackend>(lanes_[i].experts));
    isolators_.back()->set_profile(&lane_profiles_[i]);
    engines_.push_back(
        std::make_unique<Engine>(weights_, cache_, isolators_.back().get(), lanes_[i].pool));
    engines_.back()->set_profile(&lane_profiles_[i]);
    if (options.min_tile_prompt_tokens > 0) {
      engines_.back()->set_min_tile_prompt(options.min_tile_prompt_tokens);
    }
    if (i > 0) workers_.push_back(std::make_unique<LaneWorker>());
  }
  free_blocks_.store(cache_->free_blocks());
}

Scheduler::~Scheduler() { Shutdown(); }

void Scheduler::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

int64_t Scheduler::BlocksFor(int64_t tokens) const {
  // A fresh sequence of `tokens` tokens; like KvCache::BlocksNeeded, 0 when nothing is paged.
  if (!paged_) return 0;
  return (tokens + cache_->block_size() - 1) / cache_->block_size();
}

absl::Status Scheduler::Submit(GenerationRequest request, UpdateSink sink) {
  if (request.id.empty()) return absl::InvalidArgumentError("request id is empty");
  if (request.prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  absl::Status vocab = CheckVocabulary(request.prompt, vocab_, "prompt");
  if (vocab.ok()) vocab = CheckVocabulary(request.forced_tokens, vocab_, "forced");
  if (!vocab.ok()) return vocab;
  const int64_t prompt = static_cast<int64_t>(request.prompt.size());
  if (options_.max_prompt_tokens > 0 && prompt > options_.max_prompt_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", prompt,
                                                   " tokens; this node accepts at most ",
                                                   options_.max_prompt_tokens));
  }
  const int64_t model_context = weights_->config().max_position_embeddings;
  if (model_context > 0 && prompt + 1 > model_context) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the prompt has ", prompt, " tokens; the model's context is ", model_context, " tokens"));
  }
  if (prompt + 1 > max_context_ || BlocksFor(prompt + 1) > cache_->num_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the prompt has ", prompt, " tokens; this node's kv cache holds at most ", max_context_,
        " tokens per sequence (", cache_->num_blocks(), " blocks of ", cache_->block_size(), ")"));
  }
  if (request.max_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be >= 0, got ", request.max_tokens));
  }
  SamplingParams params = request.sampling;
  params.logprobs = params.logprobs || request.logprobs;  // the log-softmax only when reported
  absl::StatusOr<Sampler> sampler = Sampler::Create(params, request.prompt);
  if (!sampler.ok()) return sampler.status();
  int max_new = options_.max_new_tokens;
  if (request.max_tokens > 0) max_new = std::min(max_new, request.max_tokens);
  const std::string id = request.id;
  auto seq =
      std::make_unique<Sequence>(std::move(request), std::move(sink), std::move(*sampler), max_new);
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the attention node is shutting down");
  if (live_ids_.contains(id)) {
    return absl::AlreadyExistsError(absl::StrCat("request id \"", id, "\" is already running"));
  }
  live_ids_.insert(id);
  ++queued_;
  incoming_.push_back(std::move(seq));
  return absl::OkStatus();
}

absl::Status Scheduler::Abort(const std::string& id) {
  absl::MutexLock lock(&mu_);
  if (!live_ids_.contains(id)) {
    return absl::NotFoundError(absl::StrCat("no running or waiting request \"", id, "\""));
  }
  aborts_.push_back(id);
  return absl::OkStatus();
}

SchedulerLoad Scheduler::Load() const {
  SchedulerLoad load;
  load.total_kv_blocks = cache_->num_blocks();
  load.free_kv_blocks = free_blocks_.load();
  load.running = running_count_.load();
  load.steps = steps_.load();
  load.preemptions = preemptions_.load();
  absl::MutexLock lock(&mu_);
  load.waiting = queued_;
  return load;
}

StepProfile Scheduler::Profile() const {
  absl::MutexLock lock(&profile_mu_);
  return published_profile_;
}

std::vector<ExpertNodeTraffic> Scheduler::Traffic() const {
  absl::MutexLock lock(&profile_mu_);
  return published_traffic_;
}

void Scheduler::PublishLoad() {
  free_blocks_.store(cache_->free_blocks());
  running_count_.store(static_cast<int>(running_.size()));
}

void Scheduler::Loop() {
  while (Drain()) {
    const auto start = std::chrono::steady_clock::now();
    Admit();
    RefuseOverflow();
    std::vector<StepInput> inputs;
    std::vector<Sequence*> owners;
    BuildStep(&inputs, &owners);
    PublishLoad();
    if (!inputs.empty()) {
      const double sampling = own_profile_.Get(ProfileStage::kSampling);
      const double engines = RunStep(inputs, owners);
      PublishLoad();
      // The iteration less the engine steps and the sampling: the scheduler's own work.
      const double iteration =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      own_profile_.Add(
          ProfileStage::kScheduler,
          iteration - engines - (own_profile_.Get(ProfileStage::kSampling) - sampling));
      StepProfile merged = own_profile_;
      for (const StepProfile& lane : lane_profiles_) merged.Merge(lane);
      // The lanes are idle between steps: their backends' counters can be read.
      std::vector<ExpertNodeTraffic> traffic;
      for (const auto& lane : isolators_) {
        for (const ExpertNodeTraffic& t : lane->Traffic()) {
          auto same = std::find_if(traffic.begin(), traffic.end(),
                                   [&](const ExpertNodeTraffic& x) { return x.node == t.node; });
          if (same == traffic.end()) {
            traffic.push_back(t);
          } else {
            same->pairs += t.pairs;
            same->compute_ns += t.compute_ns;
          }
        }
      }
      absl::MutexLock lock(&profile_mu_);
      published_profile_ = merged;
      published_traffic_ = std::move(traffic);
      continue;
    }
    if (!running_.empty() || !waiting_.empty()) continue;
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &Scheduler::HasNews));
  }
  // Shutting down: everything still known ends with UNAVAILABLE.
  std::vector<std::unique_ptr<Sequence>> incoming;
  {
    absl::MutexLock lock(&mu_);
    incoming.swap(incoming_);
  }
  for (auto& s : incoming) waiting_.push_back(std::move(s));
  const absl::Status down = absl::UnavailableError("the attention node is shutting down");
  for (auto& s : running_) End(*s, FinishReason::kNone, down);
  for (auto& s : waiting_) End(*s, FinishReason::kNone, down);
  running_.clear();
  waiting_.clear();
  PublishLoad();
}

bool Scheduler::HasNews() const { return stopping_ || !incoming_.empty() || !aborts_.empty(); }

bool Scheduler::Drain() {
  std::vector<std::unique_ptr<Sequence>> incoming;
  std::vector<std::string> aborts;
  bool stopping = false;
  {
    absl::MutexLock lock(&mu_);
    incoming.swap(incoming_);
    aborts.swap(aborts_);
    stopping = stopping_;
  }
  for (auto& s : incoming) waiting_.push_back(std::move(s));
  for (const std::string& id : aborts) {
    for (auto& s : running_) {
      if (!s->ended && s->request.id == id) End(*s, FinishReason::kAbort, absl::OkStatus());
    }
    for (auto& s : waiting_) {
      if (!s->ended && s->request.id == id) End(*s, FinishReason::kAbort, absl::OkStatus());
    }
  }
  auto ended = [](const std::unique_ptr<Sequence>& s) { return s->ended; };
  running_.erase(std::remove_if(running_.begin(), running_.end(), ended), running_.end());
  waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(), ended), waiting_.end());
  return !stopping;
}

void Scheduler::Admit() {
  while (!waiting_.empty()) {
    Sequence& s = *waiting_.front();
    // Blocks the running sequences still need for the tokens they have not computed yet.
    int64_t outstanding = 0;
    for (const auto& r : running_) {
      outstanding += cache_->BlocksNeeded(r->seq, static_cast<int64_t>(r->tokens.size()));
    }
    const int64_t need = BlocksFor(static_cast<int64_t>(s.tokens.size()) + 1);
    if (need > cache_->free_blocks() - outstanding) {
      if (!running_.empty()) return;  // wait for running sequences to finish
      End(s, FinishReason::kNone,
          absl::ResourceExhaustedError("the request does not fit in this node's kv cache"));
      waiting_.pop_front();
      continue;
    }
    absl::StatusOr<int> id = cache_->AddSequence();
    if (!id.ok()) {
      if (!running_.empty()) return;  // all slots busy: wait for one to finish
      End(s, FinishReason::kNone, id.status());
      waiting_.pop_front();
      continue;
    }
    s.seq = *id;
    s.computed = 0;
    s.admission = next_admission_++;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    absl::MutexLock lock(&mu_);
    --queued_;
  }
}

void Scheduler::RefuseOverflow() {
  // The newest requests beyond the queue bound; preempted sequences keep their place.
  int64_t fresh = 0;
  for (const auto& s : waiting_) fresh += s->admission == kNeverAdmitted ? 1 : 0;
  for (auto it = waiting_.rbegin(); it != waiting_.rend() && fresh > options_.max_queue_depth;
       ++it) {
    Sequence& s = **it;
    if (s.admission != kNeverAdmitted) continue;
    End(s, FinishReason::kNone,
        absl::ResourceExhaustedError(absl::StrCat("the attention node is full: ", fresh - 1,
                                                  " requests already wait for kv cache "
                                                  "space or a sequence slot (max_queue_depth ",
                                                  options_.max_queue_depth, ")")));
    --fresh;
  }
  waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(),
                                [](const std::unique_ptr<Sequence>& s) { return s->ended; }),
                 waiting_.end());
}

void Scheduler::BuildStep(std::vector<StepInput>* inputs, std::vector<Sequence*>* owners) {
  while (true) {
    inputs->clear();
    owners->clear();
    int64_t budget = options_.max_batch_tokens;
    // Decodes first (one token each), then prefill chunks in admission order.
    for (int pass = 0; pass < 2; ++pass) {
      for (auto& s : running_) {
        const bool decode = s->computed >= s->prompt_size() && s->pending() == 1;
        if (decode != (pass == 0) || budget == 0) continue;
        const int64_t chunk = std::min(s->pending(), budget);
        budget -= chunk;
        const bool completes = s->computed + chunk == static_cast<int64_t>(s->tokens.size());
        LogitsMode mode = completes ? LogitsMode::kLast : LogitsMode::kNone;
        if (s->collecting_prompt_logits() && s->computed < s->prompt_size()) {
          mode = LogitsMode::kAll;
        }
        const int64_t prompt_left = std::max<int64_t>(0, s->prompt_size() - s->computed);
        inputs->push_back({s->seq, absl::MakeConstSpan(s->tokens.data() + s->computed, chunk),
                           mode, std::min(chunk, prompt_left), s->prompt_size()});
        owners->push_back(s.get());
      }
    }
    int64_t need = 0;
    for (const StepInput& in : *inputs) {
      need += cache_->BlocksNeeded(in.seq,
                                   cache_->Length(in.seq) + static_cast<int64_t>(in.tokens.size()));
    }
    if (need <= cache_->free_blocks()) break;
    // Short of blocks: evict the most recently admitted sequence; it is recomputed later.
    Sequence& victim = *running_.back();
    if (running_.size() == 1) {
      End(victim, FinishReason::kNone,
          absl::ResourceExhaustedError("the sequence outgrew this node's kv cache"));
    } else {
      Preempt(victim);
    }
    running_.pop_back();
  }
  for (const StepInput& in : *inputs) {
    // Cannot fail: the loop above made sure the blocks are free.
    cache_->Reserve(in.seq, cache_->Length(in.seq) + static_cast<int64_t>(in.tokens.size()))
        .IgnoreError();
  }
}

void Scheduler::Preempt(Sequence& seq) {
  cache_->FreeSequence(seq.seq).IgnoreError();
  seq.seq = -1;
  seq.computed = 0;
  if (seq.collecting_prompt_logits()) seq.prompt_logits.clear();
  preemptions_.fetch_add(1);
  waiting_.push_front(std::move(running_.back()));
  absl::MutexLock lock(&mu_);
  ++queued_;
}

double Scheduler::RunStep(const std::vector<StepInput>& inputs,
                          const std::vector<Sequence*>& owners) {
  // Contiguous micro-batches of about equal token counts, one per lane.
  const int n = static_cast<int>(inputs.size());
  int64_t total = 0;
  for (const StepInput& in : inputs) total += static_cast<int64_t>(in.tokens.size());
  const int64_t by_size = std::max<int64_t>(1, total / options_.min_micro_batch_tokens);
  const int num_parts = static_cast<int>(
      std::min<int64_t>({options_.micro_batches, static_cast<int64_t>(lanes_.size()), n, by_size}));
  std::vector<Part> parts(num_parts);
  int p = 0;
  int64_t acc = 0;
  for (int e = 0; e < n; ++e) {
    if (p < num_parts - 1 && !parts[p].inputs.empty() &&
        (acc >= total * (p + 1) / num_parts || n - e <= num_parts - 1 - p)) {
      ++p;
    }
    parts[p].lane = p;
    parts[p].inputs.push_back(inputs[e]);
    parts[p].owners.push_back(owners[e]);
    parts[p].chunks.push_back(static_cast<int64_t>(inputs[e].tokens.size()));
    acc += static_cast<int64_t>(inputs[e].tokens.size());
  }
  auto run = [this](Part& part) {
    isolators_[part.lane]->BeginStep(part.chunks);
    part.status = engines_[part.lane]->Step(part.inputs, &part.out);
  };
  const auto start = std::chrono::steady_clock::now();
  for (int i = 1; i < num_parts; ++i) workers_[i - 1]->Start([&run, &parts, i] { run(parts[i]); });
  run(parts[0]);
  for (int i = 1; i < num_parts; ++i) workers_[i - 1]->Wait();
  const double engines =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  steps_.fetch_add(1);
  for (Part& part : parts) FinishPart(part);
  auto ended = [](const std::unique_ptr<Sequence>& s) { return s->ended; };
  running_.erase(std::remove_if(running_.begin(), running_.end(), ended), running_.end());
  return engines;
}

void Scheduler::FinishPart(Part& part) {
  const std::vector<absl::Status>& entry_status = isolators_[part.lane]->entry_status();
  for (size_t e = 0; e < part.owners.size(); ++e) {
    Sequence& s = *part.owners[e];
    if (e < entry_status.size() && !entry_status[e].ok()) {
      End(s, FinishReason::kNone, entry_status[e]);
    } else if (!part.status.ok()) {
      End(s, FinishReason::kNone, part.status);
    } else {
      Advance(s, part.chunks[e], part.out, e);
    }
  }
}

void Scheduler::Advance(Sequence& s, int64_t chunk, const StepOutput& out, size_t entry) {
  const int64_t first = s.computed;
  s.computed += chunk;
  const int64_t rows = out.num_rows[entry];
  const float* row0 = out.Row(out.first_row[entry], vocab_);
  if (s.collecting_prompt_logits() && rows == chunk) {
    const int64_t keep = std::max<int64_t>(0, std::min(first + chunk, s.prompt_size()) - first);
    s.prompt_logits.insert(s.prompt_logits.end(), row0, row0 + keep * vocab_);
  }
  if (s.pending() > 0) return;  // more of the prompt to go

  const float* row = row0 + (rows - 1) * static_cast<int64_t>(vocab_);
  const absl::Span<const float> logits(row, vocab_);
  GenerationUpdate update;
  if (s.collecting_prompt_logits()) {
    update.prompt_logits = std::move(s.prompt_logits);
    s.prompt_logits_sent = true;
  }
  const std::vector<int32_t>& forced = s.request.forced_tokens;
  const auto sample_start = std::chrono::steady_clock::now();
  const SampleResult result =
      forced.empty() ? s.sampler.Sample(logits)
                     : TokenLogprobs(logits, forced[s.generated()], s.request.sampling.top_logprobs);
  own_profile_.Add(
      ProfileStage::kSampling,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - sample_start).count());
  s.tokens.push_back(result.token);
  update.tokens.push_back(result.token);
  if (s.request.logprobs || s.request.sampling.top_logprobs > 0) update.logprobs.push_back(result);
  if (s.request.return_logits) update.logits.assign(row, row + vocab_);

  FinishReason finish = FinishReason::kNone;
  const int64_t generated = s.generated();
  if (!forced.empty()) {
    if (generated >= std::min<int64_t>(s.max_tokens, forced.size())) finish = FinishReason::kLength;
  } else if ((!s.request.ignore_eos && result.token == weights_->config().eos_token_id) ||
             std::find(s.request.stop_token_ids.begin(), s.request.stop_token_ids.end(),
                       result.token) != s.request.stop_token_ids.end()) {
    finish = FinishReason::kStop;
  } else if (generated >= s.max_tokens) {
    finish = FinishReason::kLength;
  }
  if (finish == FinishReason::kNone && static_cast<int64_t>(s.tokens.size()) >= max_context_) {
    finish = FinishReason::kLength;
  }
  update.prompt_tokens = s.prompt_size();
  update.completion_tokens = generated;
  if (finish == FinishReason::kNone) {
    Emit(s, std::move(update));
    return;
  }
  update.finish = finish;
  End(s, FinishReason::kNone, absl::OkStatus());  // frees the cache and the id first
  Emit(s, std::move(update));
}

void Scheduler::Emit(Sequence& seq, GenerationUpdate update) { seq.sink(std::move(update)); }

void Scheduler::End(Sequence& seq, FinishReason reason, absl::Status status) {
  if (seq.ended) return;
  seq.ended = true;
  const bool was_waiting = seq.seq < 0;
  if (seq.seq >= 0) {
    cache_->FreeSequence(seq.seq).IgnoreError();
    seq.seq = -1;
    // Load() counts the blocks free before the last update goes out.
    free_blocks_.store(cache_->free_blocks());
    running_count_.fetch_sub(1);
  }
  {
    // Forgotten before the last update goes out, so the id is free again once it arrives.
    absl::MutexLock lock(&mu_);
    live_ids_.erase(seq.request.id);
    if (was_waiting) --queued_;
  }
  // reason kNone with OK status: Advance already sent the last update.
  if (reason != FinishReason::kNone || !status.ok()) {
    GenerationUpdate update;
    update.finish = reason;
    update.status = std::move(status);
    update.prompt_tokens = seq.prompt_size();
    update.completion_tokens = seq.generated();
    Emit(seq, std::move(update));
  }
}

}  // namespace afd::attention
