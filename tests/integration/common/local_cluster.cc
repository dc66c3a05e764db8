// LocalCluster and the integration helpers (see local_cluster.h).
#include "tests/integration/common/local_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "attention_node/engine.h"
#include "attention_node/in_process_expert_backend.h"
#include "attention_node/kv_cache.h"
#include "attention_node/model_weights.h"
#include "attention_node/sampler.h"
#include "common/model_config.h"
#include "common/rpc/channel.h"
#include "common/rpc/status_codec.h"
#include "common/rpc/tensor_codec.h"
#include "common/safetensors.h"
#include "common/weights.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"

namespace afd::integration {

std::string TestDataDir() {
  const char* env = std::getenv("AFD_TEST_DATA");
  return env != nullptr ? std::string(env) : std::string("tests/data");
}

std::string GoldenModelDir(const std::string& name) { return TestDataDir() + "/golden/" + name; }

std::string BinaryPath(const std::string& name) {
  const char* dir = std::getenv("AFD_BUILD_DIR");
  return std::string(dir != nullptr ? dir : ".") + "/bin/" + name;
}

std::vector<int> FreePorts(int count) {
  std::vector<int> ports, fds;
  for (int i = 0; i < count; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = 0;
    if (fd >= 0) {
      fds.push_back(fd);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = 0;
      socklen_t len = sizeof(addr);
      if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
          getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
        port = ntohs(addr.sin_port);
      }
    }
    ports.push_back(port);
  }
  for (int fd : fds) close(fd);
  return ports;
}

int FreePort() { return FreePorts(1)[0]; }

ChildProcess::ChildProcess(std::vector<std::string> argv, std::string log_path)
    : log_path_(std::move(log_path)) {
  pid_ = fork();
  if (pid_ == 0) {
    const int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !reaped_) Stop(SIGKILL);
}

int ChildProcess::Stop(int signal) {
  if (pid_ <= 0 || reaped_) return status_;
  kill(pid_, signal);
  waitpid(pid_, &status_, 0);
  reaped_ = true;
  return status_;
}

bool ChildProcess::Running() {
  if (pid_ <= 0 || reaped_) return false;
  if (waitpid(pid_, &status_, WNOHANG) == pid_) reaped_ = true;
  return !reaped_;
}

std::string ChildProcess::Log() const {
  std::ifstream in(log_path_);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Create(const ClusterSpec& spec) {
  std::unique_ptr<LocalCluster> cluster(new LocalCluster());
  cluster->spec_ = spec;
  ClusterConfig& c = cluster->config_;
  c.model_dir = spec.model_dir;
  c.limits = spec.limits;
  c.deadlines = spec.deadlines;
  static int counter = 0;
  cluster->dir_ = absl::StrCat(::testing::TempDir(), "/afd_cluster_", getpid(), "_", counter++);
  mkdir(cluster->dir_.c_str(), 0755);
  std::vector<std::string> specs = spec.expert_specs;
  if (specs.empty()) {
    absl::StatusOr<ModelConfig> model = LoadModelConfig(spec.model_dir);
    if (!model.ok()) return model.status();
    absl::StatusOr<std::vector<ExpertSpec>> placement =
        GenerateExpertPlacement(model->num_local_experts, spec.num_expert_nodes, spec.replicas);
    if (!placement.ok()) return placement.status();
    for (const ExpertSpec& s : *placement) specs.push_back(FormatExpertSpec(s));
  }
  const std::vector<int> ports = FreePorts(1 + static_cast<int>(specs.size()));
  AttentionNodeConfig attention;
  attention.node.name = "attn0";
  attention.node.address = absl::StrCat("127.0.0.1:", ports[0]);
  attention.node.listen = attention.node.address;
  attention.node.threads = spec.attention_threads;
  c.attention_nodes.push_back(attention);
  for (size_t i = 0; i < specs.size(); ++i) {
    ExpertNodeConfig node;
    node.node.name = absl::StrCat("expert", i);
    node.node.address = absl::StrCat("127.0.0.1:", ports[1 + i]);
    node.node.listen = node.node.address;
    node.node.threads = spec.expert_threads;
    absl::StatusOr<ExpertSpec> parsed = ParseExpertSpec(specs[i]);
    if (!parsed.ok()) return parsed.status();
    node.experts = *parsed;
    c.expert_nodes.push_back(node);
  }
  cluster->config_path_ = cluster->dir_ + "/cluster.yaml";
  std::ofstream(cluster->config_path_) << ClusterConfigToYaml(c);
  cluster->experts_.resize(specs.size());
  return cluster;
}

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(const ClusterSpec& spec,
                                                                  absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<LocalCluster>> cluster = Create(spec);
  if (!cluster.ok()) return cluster.status();
  for (int i = 0; i < (*cluster)->num_expert_nodes(); ++i) {
    absl::Status s = (*cluster)->StartExpertNode(i, /*wait=*/false, timeout);
    if (!s.ok()) return s;
  }
  absl::Status s = (*cluster)->StartAttentionNode(/*wait=*/true, timeout);
  if (!s.ok()) return s;
  return cluster;
}

LocalCluster::~LocalCluster() {
  attention_channel_.reset();
  if (attention_ != nullptr) attention_->Stop(SIGKILL);
  for (auto& e : experts_) {
    if (e != nullptr) e->Stop(SIGKILL);
  }
  // Keep the logs of a failed test (or with AFD_KEEP_LOGS set) for a look; drop them otherwise.
  if (!::testing::Test::HasFailure() && std::getenv("AFD_KEEP_LOGS") == nullptr) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

absl::Status LocalCluster::WaitReady(const std::string& address, const std::string& service,
                                     ChildProcess* process, absl::Duration timeout) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      rpc::MakeChannel(address, TlsConfig(), rpc::ChannelOptions{10, 100});
  if (!channel.ok()) return channel.status();
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last;
  while (absl::Now() < deadline) {
    if (!process->Running()) {
      return absl::InternalError(
          absl::StrCat(address, ": the process exited; its log:\n", process->Log()));
    }
    last = rpc::CheckServing(**channel, service, absl::Milliseconds(200));
    if (last.ok()) return last;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(
      absl::StrCat(address, " not ready: ", last.message(), "; log:\n", process->Log()));
}

absl::Status LocalCluster::StartExpertNode(int index, bool wait, absl::Duration timeout) {
  const std::string name = config_.expert_nodes[index].node.name;
  experts_[index] = std::make_unique<ChildProcess>(
      std::vector<std::string>{BinaryPath("afd-expert-node"), "--config", config_path_, "--node",
                               name},
      absl::StrCat(dir_, "/", name, ".log"));
  if (!wait) return absl::OkStatus();
  return WaitReady(expert_address(index), "afd.v1.ExpertNode", experts_[index].get(), timeout);
}

absl::Status LocalCluster::StartAttentionNode(bool wait, absl::Duration timeout) {
  attention_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{BinaryPath("afd-attention-node"), "--config", config_path_, "--node",
                               "attn0"},
      absl::StrCat(dir_, "/attn0.log"));
  if (!wait) return absl::OkStatus();
  return WaitReady(attention_address(), "afd.v1.AttentionNode", attention_.get(), timeout);
}

int LocalCluster::StopExpertNode(int index, int signal) { return experts_[index]->Stop(signal); }

int LocalCluster::StopAttentionNode(int signal) { return attention_->Stop(signal); }

std::shared_ptr<grpc::Channel> LocalCluster::AttentionChannel() {
  if (attention_channel_ == nullptr) {
    attention_channel_ =
        grpc::CreateChannel(attention_address(), grpc::InsecureChannelCredentials());
  }
  return attention_channel_;
}

std::unique_ptr<v1::AttentionNode::Stub> LocalCluster::AttentionStub() {
  return v1::AttentionNode::NewStub(AttentionChannel());
}

GenerateResult RunGenerate(
    v1::AttentionNode::Stub& stub, const v1::GenerateRequest& request, absl::Duration timeout,
    const std::function<void(const v1::GenerateResponse&, grpc::ClientContext&)>& on_response) {
  GenerateResult result;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      stub.Generate(&context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    ++result.responses;
    result.request_id = response.request_id();
    result.tokens.insert(result.tokens.end(), response.token_ids().begin(),
                         response.token_ids().end());
    for (const v1::TokenLogprob& lp : response.logprobs()) {
      result.logprobs.push_back(lp.logprob());
      std::vector<int32_t> top;
      for (const v1::TopLogprob& t : lp.top()) top.push_back(t.token_id());
      result.top_ids.push_back(top);
    }
    std::vector<float> values;
    std::vector<int64_t> shape;
    if (response.has_prompt_logits() &&
        rpc::DecodeTensor(response.prompt_logits(), &values, &shape).ok()) {
      result.prompt_logits = values;
    }
    if (response.has_logits() && rpc::DecodeTensor(response.logits(), &values, &shape).ok()) {
      result.logits.insert(result.logits.end(), values.begin(), values.end());
    }
    if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      result.finish = response.finish_reason();
      result.usage = response.usage();
    }
    if (on_response) on_response(response, context);
  }
  result.status = rpc::FromGrpcStatus(reader->Finish());
  return result;
}

v1::GenerateRequest GreedyRequest(const std::string& id, const std::vector<int32_t>& prompt,
                                  int max_tokens, bool with_logits) {
  v1::GenerateRequest request;
  request.set_request_id(id);
  for (int32_t t : prompt) request.add_prompt_token_ids(t);
  v1::SamplingParams* s = request.mutable_sampling();
  s->set_temperature(0.0f);
  s->set_ignore_eos(true);
  s->set_max_tokens(max_tokens);
  s->set_logprobs(true);
  request.set_return_prompt_logits(with_logits);
  request.set_return_logits(with_logits);
  return request;
}

namespace {

absl::StatusOr<std::vector<float>> ReadF32(const SafetensorsFile& file, const std::string& name) {
  const TensorView* t = file.Find(name);
  if (t == nullptr || t->dtype != DType::kF32) {
    return absl::NotFoundError(absl::StrCat(file.path(), ": no F32 tensor ", name));
  }
  std::vector<float> out(t->numel());
  std::memcpy(out.data(), t->data, t->bytes);
  return out;
}

absl::StatusOr<std::vector<int32_t>> ReadIds(const SafetensorsFile& file, const std::string& name) {
  const TensorView* t = file.Find(name);
  if (t == nullptr || t->dtype != DType::kI64) {
    return absl::NotFoundError(absl::StrCat(file.path(), ": no I64 tensor ", name));
  }
  std::vector<int32_t> out(t->numel());
  for (int64_t i = 0; i < t->numel(); ++i) {
    int64_t v;
    std::memcpy(&v, t->data + i * 8, 8);
    out[i] = static_cast<int32_t>(v);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<GoldenPrompt>> LoadGoldenPrompts(const std::string& model_dir) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(model_dir + "/golden.safetensors");
  if (!file.ok()) return file.status();
  std::vector<GoldenPrompt> prompts;
  for (int k = 0;; ++k) {
    const std::string p = absl::StrCat("prompt", k, ".");
    if ((*file)->Find(p + "input_ids") == nullptr) break;
    GoldenPrompt g;
    absl::StatusOr<std::vector<int32_t>> ids = ReadIds(**file, p + "input_ids");
    absl::StatusOr<std::vector<int32_t>> greedy = ReadIds(**file, p + "greedy_ids");
    absl::StatusOr<std::vector<float>> prefill = ReadF32(**file, p + "prefill_logits");
    absl::StatusOr<std::vector<float>> decode = ReadF32(**file, p + "decode_logits");
    if (!ids.ok()) return ids.status();
    if (!greedy.ok()) return greedy.status();
    if (!prefill.ok()) return prefill.status();
    if (!decode.ok()) return decode.status();
    g.input_ids = *ids;
    g.greedy_ids = *greedy;
    g.prefill_logits = *prefill;
    g.decode_logits = *decode;
    prompts.push_back(std::move(g));
  }
  return prompts;
}

namespace {

// Forwards to the real in-process backend and notes which (layer, expert)s were asked for.
class RecordingBackend : public attention::ExpertBackend {
 public:
  RecordingBackend(attention::ExpertBackend* inner, int num_experts)
      : inner_(inner), num_experts_(num_experts) {}
  absl::Status Run(const attention::ExpertRequest& r, float* out) override {
    for (int64_t i = 0; i < r.num_tokens * r.top_k; ++i) {
      used.insert(r.layer * num_experts_ + r.expert_ids[i]);
    }
    return inner_->Run(r, out);
  }
  std::set<int> used;

 private:
  attention::ExpertBackend* inner_;
  int num_experts_;
};

}  // namespace

struct ReferenceEngine::Impl {
  ModelConfig config;
  std::unique_ptr<Checkpoint> checkpoint;
  std::unique_ptr<attention::ModelWeights> weights;
  std::unique_ptr<attention::InProcessExpertBackend> experts;
  attention::KvDtype kv_dtype = attention::KvDtype::kFloat32;
};

ReferenceEngine::ReferenceEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ReferenceEngine::~ReferenceEngine() = default;

absl::StatusOr<std::unique_ptr<ReferenceEngine>> ReferenceEngine::Create(
    const std::string& model_dir, bool kv_bf16) {
  auto impl = std::make_unique<Impl>();
  if (kv_bf16) impl->kv_dtype = attention::KvDtype::kBFloat16;
  absl::StatusOr<ModelConfig> config = LoadModelConfig(model_dir);
  if (!config.ok()) return config.status();
  impl->config = *config;
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(model_dir);
  if (!checkpoint.ok()) return checkpoint.status();
  impl->checkpoint = std::move(*checkpoint);
  absl::StatusOr<std::unique_ptr<attention::ModelWeights>> weights =
      attention::ModelWeights::Load(impl->config, *impl->checkpoint);
  if (!weights.ok()) return weights.status();
  impl->weights = std::move(*weights);
  absl::StatusOr<std::unique_ptr<attention::InProcessExpertBackend>> experts =
      attention::InProcessExpertBackend::Create(impl->config, *impl->checkpoint, nullptr);
  if (!experts.ok()) return experts.status();
  impl->experts = std::move(*experts);
  return std::unique_ptr<ReferenceEngine>(new ReferenceEngine(std::move(impl)));
}

int ReferenceEngine::vocab_size() const { return impl_->config.vocab_size; }
int ReferenceEngine::num_experts() const { return impl_->config.num_local_experts; }

absl::StatusOr<ReferenceRun> ReferenceEngine::Greedy(const std::vector<int32_t>& prompt,
                                                     int max_tokens) {
  const int vocab = impl_->config.vocab_size;
  attention::KvCacheOptions options;
  options.block_size = 16;
  options.max_sequences = 1;
  options.num_blocks = (static_cast<int64_t>(prompt.size()) + max_tokens) / 16 + 1;
  options.dtype = impl_->kv_dtype;
  absl::StatusOr<std::unique_ptr<attention::KvCache>> cache =
      attention::KvCache::Create(impl_->config, options);
  if (!cache.ok()) return cache.status();
  RecordingBackend recorder(impl_->experts.get(), impl_->config.num_local_experts);
  attention::Engine engine(impl_->weights.get(), cache->get(), &recorder, nullptr);
  absl::StatusOr<int> seq = (*cache)->AddSequence();
  if (!seq.ok()) return seq.status();
  attention::SamplingParams params;
  params.logprobs = true;
  absl::StatusOr<attention::Sampler> sampler = attention::Sampler::Create(params, prompt);
  if (!sampler.ok()) return sampler.status();
  ReferenceRun run;
  attention::StepOutput out;
  absl::Status s = engine.Step(
      {{*seq, prompt, attention::LogitsMode::kAll, static_cast<int64_t>(prompt.size())}}, &out);
  if (!s.ok()) return s;
  run.prompt_logits = out.logits;
  const float* row = out.Row(static_cast<int64_t>(prompt.size()) - 1, vocab);
  for (int t = 0; t < max_tokens; ++t) {
    attention::SampleResult r = sampler->Sample({row, static_cast<size_t>(vocab)});
    run.tokens.push_back(r.token);
    run.logprobs.push_back(r.logprob);
    run.logits.insert(run.logits.end(), row, row + vocab);
    if (t + 1 == max_tokens) break;
    s = engine.Step({{*seq, {&run.tokens.back(), 1}, attention::LogitsMode::kLast}}, &out);
    if (!s.ok()) return s;
    row = out.Row(0, vocab);
  }
  run.experts_used.assign(recorder.used.begin(), recorder.used.end());
  return run;
}

::testing::AssertionResult BitwiseEqual(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) {
    return ::testing::AssertionFailure() << "sizes differ: " << a.size() << " vs " << b.size();
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      return ::testing::AssertionFailure()
             << "first difference at " << i << ": " << a[i] << " vs " << b[i];
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace afd::integration
