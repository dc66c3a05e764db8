#include "gateway/server/connection_watch.h"

#include <dirent.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdlib>
#include <vector>

namespace afd::gateway {
namespace {

int Port(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in&>(addr).sin_port);
  }
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6&>(addr).sin6_port);
  }
  return -1;
}

std::string Host(const sockaddr_storage& addr, socklen_t len) {
  char host[NI_MAXHOST];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, host, sizeof(host), nullptr, 0,
                  NI_NUMERICHOST) != 0) {
    return "";
  }
  return host;
}

}  // namespace

ConnectionWatch::ConnectionWatch(int poll_interval_ms)
    : poll_interval_ms_(poll_interval_ms), thread_([this] { Loop(); }) {}

ConnectionWatch::~ConnectionWatch() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    idle_.SignalAll();
  }
  thread_.join();
}

int ConnectionWatch::FindSocket(int local_port, const std::string& remote_addr, int remote_port) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  const int self = dirfd(dir);
  int found = -1;
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == self) continue;
    struct stat st;
    if (fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage local{}, peer{};
    socklen_t local_len = sizeof(local), peer_len = sizeof(peer);
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &local_len) != 0 ||
        Port(local) != local_port) {
      continue;
    }
    if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0 ||
        Port(peer) != remote_port || Host(peer, peer_len) != remote_addr) {
      continue;
    }
    found = static_cast<int>(fd);
    break;
  }
  closedir(dir);
  return found;
}

uint64_t ConnectionWatch::Add(int fd, std::function<void()> on_gone) {
  absl::MutexLock lock(&mu_);
  const uint64_t id = next_id_++;
  entries_[id] = Entry{fd, std::move(on_gone)};
  idle_.SignalAll();
  return id;
}

void ConnectionWatch::Remove(uint64_t id) {
  absl::MutexLock lock(&mu_);
  entries_.erase(id);
  // Wait out a callback of this id that is running right now.
  while (running_callback_ == id) idle_.Wait(&mu_);
}

void ConnectionWatch::Loop() {
  std::vector<pollfd> fds;
  std::vector<uint64_t> ids;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      while (!stop_ && entries_.empty()) idle_.Wait(&mu_);
      if (stop_) return;
      fds.clear();
      ids.clear();
      for (const auto& [id, entry] : entries_) {
        fds.push_back(pollfd{entry.fd, POLLRDHUP, 0});
        ids.push_back(id);
      }
    }
    if (poll(fds.data(), fds.size(), poll_interval_ms_) <= 0) continue;
    for (size_t i = 0; i < fds.size(); ++i) {
      if ((fds[i].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) == 0) continue;
      std::function<void()> callback;
      {
        absl::MutexLock lock(&mu_);
        auto it = entries_.find(ids[i]);
        if (it == entries_.end()) continue;
        callback = std::move(it->second.on_gone);
        entries_.erase(it);
        running_callback_ = ids[i];
      }
      if (callback) callback();
      absl::MutexLock lock(&mu_);
      running_callback_ = 0;
      idle_.SignalAll();
    }
  }
}

}  // namespace afd::gateway
