// Node bootstrap helpers (see node_bootstrap.h).
#include "common/rpc/node_bootstrap.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace afd::rpc {

FlagReader::FlagReader(std::string program, int argc, char** argv, UsageFn usage)
    : program_(std::move(program)), argc_(argc), argv_(argv), usage_(usage) {}

bool FlagReader::Next() {
  if (++index_ >= argc_) return false;
  arg_ = argv_[index_];
  if (arg_ == "--help" || arg_ == "-h") {
    usage_(stdout);
    std::exit(0);
  }
  return true;
}

std::string FlagReader::Value() {
  if (index_ + 1 >= argc_) {
    std::fprintf(stderr, "%s: %s needs a value\n", program_.c_str(), arg_.c_str());
    std::exit(2);
  }
  return argv_[++index_];
}

void FlagReader::Int(int* out, int min) {
  const std::string v = Value();
  if (!absl::SimpleAtoi(v, out) || *out < min) {
    std::fprintf(stderr, "%s: bad value for %s: %s\n", program_.c_str(), arg_.c_str(), v.c_str());
    std::exit(2);
  }
}

bool NodeFlags::Parse(FlagReader& flags) {
  if (flags.Is("--config")) {
    config_path = flags.Value();
  } else if (flags.Is("--node")) {
    node_name = flags.Value();
  } else if (flags.Is("--model")) {
    model_dir = flags.Value();
  } else if (flags.Is("--port")) {
    flags.Int(&port, 0);
  } else if (flags.Is("--listen")) {
    listen = flags.Value();
  } else {
    return false;
  }
  return true;
}

void FlagReader::Unknown() const {
  std::fprintf(stderr, "%s: unknown argument %s\n\n", program_.c_str(), arg_.c_str());
  usage_(stderr);
  std::exit(2);
}

StopSignals::StopSignals() {
  sigemptyset(&set_);
  sigaddset(&set_, SIGINT);
  sigaddset(&set_, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int StopSignals::WaitFor(absl::Duration timeout) {
  const timespec wait = absl::ToTimespec(timeout);
  const int n = sigtimedwait(&set_, nullptr, &wait);
  return n > 0 ? n : 0;
}

int StopSignals::Wait() {
  int signal_number = 0;
  sigwait(&set_, &signal_number);
  return signal_number;
}

int AvailableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const int n = static_cast<int>(std::thread::hardware_concurrency());
  return n > 0 ? n : 1;
}

int64_t ResidentBytes(pid_t pid) {
  std::ifstream in(pid == 0 ? std::string("/proc/self/status")
                            : absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) != 0) continue;
    int64_t kib = 0;
    size_t i = 6;
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] >= '0' && line[j] <= '9') ++j;
    if (!absl::SimpleAtoi(line.substr(i, j - i), &kib)) return -1;
    return kib * 1024;
  }
  return -1;
}

std::string NodeNames(const std::vector<std::string>& names) {
  if (names.empty()) return "none";
  std::string out;
  for (const std::string& n : names) absl::StrAppend(&out, out.empty() ? "" : " ", n);
  return out;
}

absl::StatusOr<NodeListen> ResolveNodeListen(const NodeConfig* entry, const std::string& listen,
                                             int port, int threads) {
  NodeListen out;
  if (port >= 0) {
    out.listen = absl::StrCat("[::]:", port);
  } else if (!listen.empty()) {
    out.listen = listen;
  } else if (entry != nullptr) {
    out.listen = ListenAddress(*entry);
  }
  if (out.listen.empty()) {
    return absl::InvalidArgumentError(
        "no listen address: pass --port N, --listen ADDR or --config");
  }
  out.threads = threads >= 0 ? threads : (entry != nullptr ? entry->threads : 0);
  if (out.threads == 0) out.threads = AvailableCores();
  return out;
}

}  // namespace afd::rpc
