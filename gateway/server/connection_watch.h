// ConnectionWatch: notices when the client of an HTTP request closes its connection while the
// gateway is still generating (between two writes, or before the first), so that the attention
// node request can be cancelled at once. One background thread polls the watched sockets for
// POLLRDHUP/POLLHUP. cpp-httplib 0.11 does not expose a request's socket, so FindSocket locates
// it among the process's descriptors by its local and peer addresses. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace afd::gateway {

class ConnectionWatch {
 public:
  // `poll_interval_ms`: how often the sockets are checked.
  explicit ConnectionWatch(int poll_interval_ms = 50);
  ~ConnectionWatch();

  // The connected TCP socket whose local port is `local_port` and whose peer is
  // `remote_addr`:`remote_port` (numeric host, as cpp-httplib reports it); -1 when none.
  static int FindSocket(int local_port, const std::string& remote_addr, int remote_port);

  // Calls `on_gone` (from the watch thread, at most once) when the peer of `fd` closes or
  // resets the connection. Returns an id for Remove.
  uint64_t Add(int fd, std::function<void()> on_gone);
  // Stops watching; after it returns, the callback of `id` is not running and will not run.
  void Remove(uint64_t id);

 private:
  void Loop();

  const int poll_interval_ms_;
  absl::Mutex mu_;
  absl::CondVar idle_;
  struct Entry {
    int fd;
    std::function<void()> on_gone;
  };
  std::map<uint64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t running_callback_ ABSL_GUARDED_BY(mu_) = 0;  // id whose callback runs now
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// RAII registration: removes the watch when destroyed.
class ScopedWatch {
 public:
  ScopedWatch() = default;
  ScopedWatch(ConnectionWatch* watch, uint64_t id) : watch_(watch), id_(id) {}
  ~ScopedWatch() { Reset(); }
  ScopedWatch(const ScopedWatch&) = delete;
  ScopedWatch& operator=(const ScopedWatch&) = delete;
  ScopedWatch& operator=(ScopedWatch&& other) {
    if (this != &other) {
      Reset();
      watch_ = other.watch_;
      id_ = other.id_;
      other.watch_ = nullptr;
      other.id_ = 0;
    }
    return *this;
  }
  void Reset() {
    if (watch_ != nullptr && id_ != 0) watch_->Remove(id_);
    watch_ = nullptr;
    id_ = 0;
  }

 private:
  ConnectionWatch* watch_ = nullptr;
  uint64_t id_ = 0;
};

}  // namespace afd::gateway
