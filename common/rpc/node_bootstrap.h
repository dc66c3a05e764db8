// Node bootstrap: what every afd server binary (afd-expert-node, afd-attention-node,
// afd-gateway) and the launcher (afd-up) do the same way before and after serving: command-line
// flag reading with uniform errors, the stop signals (SIGINT/SIGTERM, blocked before any thread
// starts and awaited at the end), finding this node in cluster.yaml, the cores this process may
// use, and its resident memory. Free functions and small single-threaded helpers; StopSignals
// must be created on the main thread before any other thread exists.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/cluster/cluster_config.h"

namespace afd::rpc {

// Reads argv one flag at a time: `--help`/`-h` print the usage to stdout and exit 0; a missing
// or malformed value prints "<program>: ..." and exits 2; Unknown() prints the usage to stderr
// and exits 2. Usage:
//   FlagReader flags("afd-x", argc, argv, Usage);
//   while (flags.Next()) {
//     if (flags.Is("--model")) model = flags.Value();
//     else if (flags.Is("--port")) flags.Int(&port, 0);
//     else flags.Unknown();
//   }
class FlagReader {
 public:
  using UsageFn = void (*)(FILE*);
  FlagReader(std::string program, int argc, char** argv, UsageFn usage);

  // Advances to the next argument; false when none is left. Handles --help itself.
  bool Next();
  bool Is(const char* name) const { return arg_ == name; }
  const std::string& arg() const { return arg_; }
  // The flag's value (the next argument).
  std::string Value();
  // The value as an int >= min.
  void Int(int* out, int min);
  [[noreturn]] void Unknown() const;

 private:
  std::string program_;
  int argc_;
  char** argv_;
  UsageFn usage_;
  int index_ = 0;
  std::string arg_;
};

// The flags every server takes: --config FILE, --node NAME, --model DIR, --port N, --listen ADDR.
struct NodeFlags {
  std::string config_path, node_name, model_dir, listen;
  int port = -1;
  // Takes the current argument of `flags` (and its value) when it is one of these; else false.
  bool Parse(FlagReader& flags);
};

// SIGINT and SIGTERM, blocked from construction on (in this thread and every thread it starts
// afterwards), so that Wait() alone receives them. SIGPIPE is ignored (a peer that goes away
// is an error on its socket, not the end of the process).
class StopSignals {
 public:
  StopSignals();
  // Blocks until SIGINT or SIGTERM arrives; returns its number.
  int Wait();
  // Waits at most `timeout` (zero: just polls); the signal's number, or 0 when none came.
  int WaitFor(absl::Duration timeout);
  const sigset_t& set() const { return set_; }

 private:
  sigset_t set_;
};

// Cores this process may run on (its CPU affinity, e.g. under taskset), at least 1. Thread
// defaults use this rather than the machine's core count, so pinned nodes do not oversubscribe.
int AvailableCores();

// Resident set size (VmRSS) of `pid` (0 = this process) in bytes; -1 when unreadable.
int64_t ResidentBytes(pid_t pid = 0);

// "gw0 gw1" (or "none") for error messages listing the nodes of one kind.
std::string NodeNames(const std::vector<std::string>& names);
// The node settings a server takes from its cluster.yaml entry (null: none) and flags: the
// listen address (port >= 0: [::]:port; else `listen` when set; else the entry's) and compute
// threads (threads >= 0: that; else the entry's; 0 means AvailableCores()). INVALID_ARGUMENT
// when no address results.
struct NodeListen {
  std::string listen;
  int threads = 0;
};
absl::StatusOr<NodeListen> ResolveNodeListen(const NodeConfig* entry, const std::string& listen,
                                             int port, int threads);

// Loads flags->config_path into *cluster and returns this node's entry, found with `find`
// (&ClusterConfig::FindExpertNode, FindAttentionNode or FindGateway) among `nodes` (the list
// it searches); takes the model directory from the config when the flags name none.
// INVALID_ARGUMENT without --node, and naming the nodes of that `kind` ("expert node") when
// none has the name; the load's error otherwise.
template <class T>
absl::StatusOr<const T*> LoadNodeEntry(NodeFlags* flags,
                                       const T* (ClusterConfig::*find)(absl::string_view) const,
                                       std::vector<T> ClusterConfig::*nodes,
                                       const std::string& kind, ClusterConfig* cluster) {
  if (flags->node_name.empty()) return absl::InvalidArgumentError("--config needs --node NAME");
  absl::StatusOr<ClusterConfig> loaded = LoadClusterConfig(flags->config_path);
  if (!loaded.ok()) return loaded.status();
  *cluster = *std::move(loaded);
  if (const T* node = (cluster->*find)(flags->node_name)) {
    if (flags->model_dir.empty()) flags->model_dir = cluster->model_dir;
    return node;
  }
  std::vector<std::string> names;
  for (const T& n : cluster->*nodes) names.push_back(n.node.name);
  return absl::InvalidArgumentError(flags->config_path + ": no " + kind + " named \"" +
                                    flags->node_name + "\" (" + kind + "s: " + NodeNames(names) +
                                    ")");
}

}  // namespace afd::rpc
