// CPU steal time: on a VM, the CPU time the hypervisor gave to other guests while this VM's
// vCPUs were ready to run (the 8th value of /proc/stat's cpu line). It says how much of a timing
// was the host's doing; 20 % steal stretches a 2-thread product far more than 20 % when each
// half waits for the slower vCPU. Benchmarks print it next to their numbers.
#pragma once

#include <cstdint>
#include <string>

namespace afd {

class StealMeter {
 public:
  StealMeter() { Restart(); }
  void Restart();
  // Steal over all CPU time since the last Restart(), in [0, 1]; -1 when /proc/stat cannot be
  // read or has no steal column.
  double Fraction() const;

 private:
  bool ok_ = false;
  uint64_t steal_ = 0;
  uint64_t total_ = 0;
};

// Steal and total (user through steal) jiffies from a /proc/stat "cpu " line; false when the
// line is not that line or has fewer than 8 values.
bool ParseProcStatCpu(const std::string& line, uint64_t* steal, uint64_t* total);

// " (CPU steal 12.3 %)", or "" when the fraction is unknown (< 0).
std::string StealNote(double fraction);

}  // namespace afd
