// The node bootstrap helpers every server main uses: flag reading (values, numbers, --help,
// errors), stop signals, listen address and thread resolution, cores and resident memory.
#include "common/rpc/node_bootstrap.h"

#include <signal.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace afd::rpc {
namespace {

void TestUsage(FILE* f) { std::fprintf(f, "usage: test-node [--x N]\n"); }

// argv from strings (kept alive by the caller's vector).
std::vector<char*> Argv(std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return argv;
}

TEST(FlagReaderTest, ReadsValuesAndNumbersInOrder) {
  std::vector<std::string> args = {"prog", "--name", "e0", "--port", "7", "--flag"};
  std::vector<char*> argv = Argv(args);
  FlagReader flags("test-node", static_cast<int>(args.size()), argv.data(), TestUsage);
  std::string name;
  int port = -1;
  bool flag = false;
  while (flags.Next()) {
    if (flags.Is("--name")) {
      name = flags.Value();
    } else if (flags.Is("--port")) {
      flags.Int(&port, 0);
    } else if (flags.Is("--flag")) {
      flag = true;
    } else {
      flags.Unknown();
    }
  }
  EXPECT_EQ(name, "e0");
  EXPECT_EQ(port, 7);
  EXPECT_TRUE(flag);
}

TEST(FlagReaderTest, HelpExitsZeroAndErrorsExitTwo) {
  auto run = [](std::vector<std::string> args) {
    std::vector<char*> argv = Argv(args);
    FlagReader flags("test-node", static_cast<int>(args.size()), argv.data(), TestUsage);
    while (flags.Next()) {
      int n = 0;
      if (flags.Is("--x")) {
        flags.Int(&n, 1);
      } else {
        flags.Unknown();
      }
    }
    std::exit(3);
  };
  EXPECT_EXIT(run({"prog", "--help"}), ::testing::ExitedWithCode(0), "");
  EXPECT_EXIT(run({"prog", "--x"}), ::testing::ExitedWithCode(2), "test-node: --x needs a value");
  EXPECT_EXIT(run({"prog", "--x", "0"}), ::testing::ExitedWithCode(2),
              "test-node: bad value for --x: 0");
  EXPECT_EXIT(run({"prog", "--x", "abc"}), ::testing::ExitedWithCode(2), "bad value");
  EXPECT_EXIT(run({"prog", "--bogus"}), ::testing::ExitedWithCode(2),
              "test-node: unknown argument --bogus");
  EXPECT_EXIT(run({"prog", "--x", "4"}), ::testing::ExitedWithCode(3), "");
}

TEST(StopSignalsTest, WaitForReturnsAPendingSignalOrZero) {
  StopSignals signals;
  EXPECT_EQ(signals.WaitFor(absl::ZeroDuration()), 0);
  EXPECT_EQ(signals.WaitFor(absl::Milliseconds(10)), 0);
  // Blocked, so raising it leaves it pending for WaitFor instead of ending the test.
  raise(SIGTERM);
  EXPECT_EQ(signals.WaitFor(absl::Seconds(1)), SIGTERM);
  raise(SIGINT);
  EXPECT_EQ(signals.Wait(), SIGINT);
}

TEST(NodeBootstrapTest, ResolvesListenAddressAndThreads) {
  NodeConfig entry;
  entry.name = "e0";
  entry.address = "127.0.0.1:50061";
  entry.threads = 3;
  absl::StatusOr<NodeListen> r = ResolveNodeListen(&entry, "", -1, -1);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->listen, "[::]:50061");
  EXPECT_EQ(r->threads, 3);
  // --port beats --listen beats the entry; --threads beats the entry; 0 threads = all cores.
  r = ResolveNodeListen(&entry, "unix:/tmp/x.sock", 9000, 0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->listen, "[::]:9000");
  EXPECT_EQ(r->threads, AvailableCores());
  r = ResolveNodeListen(&entry, "unix:/tmp/x.sock", -1, 5);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->listen, "unix:/tmp/x.sock");
  EXPECT_EQ(r->threads, 5);
  r = ResolveNodeListen(nullptr, "", -1, -1);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("--port"), std::string::npos);
}

TEST(NodeBootstrapTest, NamesCoresAndMemory) {
  EXPECT_EQ(NodeNames({}), "none");
  EXPECT_EQ(NodeNames({"e0", "e1"}), "e0 e1");
  EXPECT_GE(AvailableCores(), 1);
  const int64_t rss = ResidentBytes();
  EXPECT_GT(rss, 0);
  // A touched 64 MiB buffer shows up in VmRSS.
  std::vector<char> buffer(64 << 20, 1);
  EXPECT_GE(ResidentBytes(), rss + (48 << 20)) << static_cast<int>(buffer[12345]);
  EXPECT_EQ(ResidentBytes(-5), -1);
}

}  // namespace
}  // namespace afd::rpc
