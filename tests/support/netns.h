// Throwaway network namespaces and veth pairs for root tests. Everything is
// removed in destructors, also when a test fails.
#pragma once

#include <string>
#include <vector>

namespace fstest {

// Runs a shell command; returns its exit status. Output goes to the test log.
int sh(const std::string& cmd);
// Runs a shell command and returns its stdout (throws on non-zero exit).
std::string sh_out(const std::string& cmd);

class NetNs {
 public:
  // Creates a namespace with a unique name derived from `prefix`, lo up.
  explicit NetNs(const std::string& prefix);
  ~NetNs();
  NetNs(const NetNs&) = delete;
  NetNs& operator=(const NetNs&) = delete;
  const std::string& name() const { return name_; }
  std::string path() const { return "/var/run/netns/" + name_; }
  // "ip netns exec NAME " — prefix for commands run inside.
  std::string exec() const { return "ip netns exec " + name_ + " "; }
  unsigned inode() const;

 private:
  std::string name_;
};

// Two namespaces joined by a veth pair: a = 10.<n>.0.1/24 and fd<n>::1/64,
// b = 10.<n>.0.2/24 and fd<n>::2/64, with IPv6 DAD off so addresses are
// usable at once.
class NsPair {
 public:
  explicit NsPair(const std::string& prefix);
  NetNs a;
  NetNs b;
  std::string a4, b4, a6, b6;
};

}  // namespace fstest
