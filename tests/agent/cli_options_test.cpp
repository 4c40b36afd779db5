// Command-line mistakes an operator makes, answered with a clear message
// (no root needed: each case fails or runs before anything is loaded).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include <gtest/gtest.h>

#include "support/process.h"

namespace fstest {
namespace {

using namespace std::chrono_literals;

// The global -v is accepted after the subcommand too, as the README shows it.
TEST(CliOptions, VerboseAfterTheSubcommandIsAccepted) {
  Process p({FLOWSCOPE_BIN, "agent", "-v", "--max-flows", "16"});
  EXPECT_NE(p.wait(10s), 0);
  EXPECT_EQ(p.err().find("-v"), std::string::npos) << p.err();
  EXPECT_NE(p.err().find("--max-flows"), std::string::npos) << p.err();
  Process s({FLOWSCOPE_BIN, "schema", "--verbose"});
  EXPECT_EQ(s.wait(10s), 0) << s.err();
}

// --version answers with the program's name and version, and nothing else.
TEST(CliOptions, VersionIsOneLine) {
  Process p({FLOWSCOPE_BIN, "--version"});
  EXPECT_EQ(p.wait(10s), 0) << p.err();
  EXPECT_EQ(p.out(), "flowscope " FLOWSCOPE_VERSION "\n");
}

// Too small a flow map: the message names the minimum and says why.
TEST(CliOptions, MaxFlowsBelowTheMinimumSaysWhatAndWhy) {
  for (const char* cmd : {"agent", "run"}) {
    Process p({FLOWSCOPE_BIN, cmd, "--max-flows", "16"});
    EXPECT_NE(p.wait(10s), 0);
    const std::string err = p.err();
    EXPECT_NE(err.find("16 is below the minimum of 1024"), std::string::npos) << err;
    EXPECT_NE(err.find("flow_map_full"), std::string::npos) << err;
    EXPECT_NE(err.find("not preallocated"), std::string::npos) << err;
  }
  Process big({FLOWSCOPE_BIN, "agent", "--max-flows", "99999999"});
  EXPECT_NE(big.wait(10s), 0);
  EXPECT_NE(big.err().find("above the maximum of 16777216"), std::string::npos) << big.err();
}

// A collector without UDP has no UDP receive buffer to warn about.
TEST(CliOptions, CollectorWithoutUdpDoesNotWarnAboutTheUdpBuffer) {
  const std::string db = std::filesystem::temp_directory_path() / ("fs-noudp-" + std::to_string(getpid()) + ".db");
  Process p({FLOWSCOPE_BIN, "collector", "--no-udp", "--tcp-port", "0", "--http-port", "0", "--db", db});
  ASSERT_TRUE(p.wait_for("collector running", 20s)) << p.err();
  p.signal(SIGINT);
  EXPECT_EQ(p.wait(20s), 0) << p.err();
  EXPECT_EQ(p.err().find("UDP receive buffer"), std::string::npos) << p.err();
  EXPECT_EQ(p.err().find("warn"), std::string::npos) << p.err();
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
}

}  // namespace
}  // namespace fstest
