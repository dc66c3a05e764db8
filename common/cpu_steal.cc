// CPU steal time from /proc/stat (see cpu_steal.h).
#include "common/cpu_steal.h"

#include <cstdio>
#include <cstdlib>

namespace afd {
namespace {

bool ReadProcStat(uint64_t* steal, uint64_t* total) {
  std::FILE* f = std::fopen("/proc/stat", "r");
  if (f == nullptr) return false;
  char buf[512];
  const bool read = std::fgets(buf, sizeof(buf), f) != nullptr;
  std::fclose(f);
  return read && ParseProcStatCpu(buf, steal, total);
}

}  // namespace

bool ParseProcStatCpu(const std::string& line, uint64_t* steal, uint64_t* total) {
  if (line.rfind("cpu ", 0) != 0) return false;
  const char* p = line.c_str() + 4;
  uint64_t v[8];
  for (uint64_t& x : v) {
    char* end = nullptr;
    x = std::strtoull(p, &end, 10);
    if (end == p) return false;
    p = end;
  }
  *steal = v[7];
  *total = 0;
  for (uint64_t x : v) *total += x;
  return true;
}

void StealMeter::Restart() { ok_ = ReadProcStat(&steal_, &total_); }

double StealMeter::Fraction() const {
  uint64_t steal = 0, total = 0;
  if (!ok_ || !ReadProcStat(&steal, &total) || total <= total_) return -1;
  return static_cast<double>(steal - steal_) / static_cast<double>(total - total_);
}

std::string StealNote(double fraction) {
  if (fraction < 0) return "";
  char buf[48];
  std::snprintf(buf, sizeof(buf), " (CPU steal %.1f %%)", 100.0 * fraction);
  return buf;
}

}  // namespace afd
