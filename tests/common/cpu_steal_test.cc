// Tests for common/cpu_steal.h: the /proc/stat parsing behind StealMeter, and the meter itself
// on this machine.
#include "common/cpu_steal.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace afd {
namespace {

TEST(ParseProcStatCpuTest, TakesStealAndSumsUserThroughSteal) {
  uint64_t steal = 0, total = 0;
  // user nice system idle iowait irq softirq steal guest guest_nice
  ASSERT_TRUE(ParseProcStatCpu("cpu  4705 150 1120 16250 520 0 30 612 7 0\n", &steal, &total));
  EXPECT_EQ(steal, 612u);
  EXPECT_EQ(total, 4705u + 150 + 1120 + 16250 + 520 + 0 + 30 + 612);  // guest is inside user
}

TEST(ParseProcStatCpuTest, RejectsOtherLinesAndShortOnes) {
  uint64_t steal = 7, total = 7;
  EXPECT_FALSE(ParseProcStatCpu("cpu0 1 2 3 4 5 6 7 8 9 10", &steal, &total));
  EXPECT_FALSE(ParseProcStatCpu("intr 1 2 3 4 5 6 7 8", &steal, &total));
  EXPECT_FALSE(ParseProcStatCpu("cpu  1 2 3 4 5 6 7", &steal, &total));  // kernels before 2.6.11
  EXPECT_EQ(steal, 7u);
}

TEST(StealMeterTest, FractionIsAShareOrUnknown) {
  StealMeter meter;
  volatile double sink = 0;
  for (int i = 0; i < 20000000; ++i) sink = sink + 1e-9 * i;  // let some jiffies pass
  const double f = meter.Fraction();
  EXPECT_TRUE(f == -1 || (f >= 0 && f <= 1)) << f;
  EXPECT_EQ(StealNote(-1), "");
  EXPECT_EQ(StealNote(0.123), " (CPU steal 12.3 %)");
}

}  // namespace
}  // namespace afd
