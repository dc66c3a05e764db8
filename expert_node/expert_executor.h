// ExpertExecutor: runs one ExpertBatchView on an ExpertStore: checks it against the model
// (layer, hidden size, expert ids, hosted experts), computes every (token, expert) term with
// the shared ExpertFfn (tokens grouped per expert, one product per expert) and lays the result
// rows out as the wire contract says (FoldExpertTerms). Holds scratch buffers, so steady-state
// calls do not allocate. One per stream: not thread-safe; executors of different streams may
// share one ComputePool.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/cluster/expert_batch.h"
#include "common/expert_ffn.h"
#include "common/kernels/thread_pool.h"
#include "expert_node/expert_store.h"

namespace afd::expert {

// Worker threads shared by all streams of a node; one batch uses them at a time.
class ComputePool {
 public:
  explicit ComputePool(int threads);  // threads <= 1: every batch runs on its stream's thread
  kernels::ThreadPool* pool() { return pool_.get(); }
  absl::Mutex* mutex() { return &mu_; }
  int threads() const { return threads_; }

 private:
  int threads_;
  std::unique_ptr<kernels::ThreadPool> pool_;  // null when threads <= 1
  absl::Mutex mu_;
};

class ExpertExecutor {
 public:
  // store, compute: borrowed, must outlive the executor. node_name prefixes error messages.
  ExpertExecutor(const ExpertStore* store, ComputePool* compute, std::string node_name);

  // rows: resized to [ExpertResultRows(batch), hidden] and filled. Errors (the caller sends
  // them back in the result; nothing is left half-done): INVALID_ARGUMENT for a layer or expert
  // id outside the model or a hidden size other than the model's; NOT_FOUND naming the
  // (layer, expert)s this node does not host.
  absl::Status Run(const ExpertBatchView& batch, std::vector<float>* rows);

 private:
  absl::Status Check(const ExpertBatchView& batch) const;

  const ExpertStore* store_;
  ComputePool* compute_;
  std::string node_name_;
  ExpertFfn ffn_;
  std::vector<ExpertPair> pairs_;  // [P] in CSR order
  std::vector<float> terms_;       // [P, D]
  std::vector<float> gathered_;    // [T, D] when the batch gathers rows through token_index
};

}  // namespace afd::expert
