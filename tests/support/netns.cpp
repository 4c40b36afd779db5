#include "support/netns.h"

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <stdexcept>

#include <fmt/format.h>

namespace fstest {

int sh(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

std::string sh_out(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed: " + cmd);
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int rc = pclose(p);
  if (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0) throw std::runtime_error("command failed: " + cmd + "\n" + out);
  return out;
}

namespace {
std::atomic<int> g_seq{0};
}

NetNs::NetNs(const std::string& prefix) {
  name_ = fmt::format("fs-{}-{}-{}", prefix, getpid(), g_seq++);
  if (sh("ip netns add " + name_) != 0) throw std::runtime_error("ip netns add " + name_ + " failed");
  sh(exec() + "ip link set lo up");
}

NetNs::~NetNs() { sh("ip netns del " + name_ + " 2>/dev/null"); }

unsigned NetNs::inode() const {
  struct stat st {};
  if (stat(path().c_str(), &st) != 0) return 0;
  return static_cast<unsigned>(st.st_ino);
}

NsPair::NsPair(const std::string& prefix) : a(prefix + "a"), b(prefix + "b") {
  // A subnet per pair so parallel tests never share addresses.
  const int n = 100 + (getpid() + g_seq.load() * 7) % 150;
  a4 = fmt::format("10.{}.0.1", n);
  b4 = fmt::format("10.{}.0.2", n);
  a6 = fmt::format("fd00:{}::1", n);
  b6 = fmt::format("fd00:{}::2", n);
  const std::string va = "va" + std::to_string(g_seq++), vb = "vb" + std::to_string(g_seq++);
  std::string cmds[] = {
      fmt::format("ip link add {} netns {} type veth peer name {} netns {}", va, a.name(), vb, b.name()),
      a.exec() + "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0",
      b.exec() + "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0",
      fmt::format("{} ip link set {} name eth0", a.exec(), va),
      fmt::format("{} ip link set {} name eth0", b.exec(), vb),
      fmt::format("{} ip addr add {}/24 dev eth0", a.exec(), a4),
      fmt::format("{} ip addr add {}/24 dev eth0", b.exec(), b4),
      fmt::format("{} ip -6 addr add {}/64 dev eth0 nodad", a.exec(), a6),
      fmt::format("{} ip -6 addr add {}/64 dev eth0 nodad", b.exec(), b6),
      a.exec() + "ip link set eth0 up",
      b.exec() + "ip link set eth0 up",
  };
  for (const auto& c : cmds)
    if (sh(c) != 0) throw std::runtime_error("netns setup failed: " + c);
}

}  // namespace fstest
