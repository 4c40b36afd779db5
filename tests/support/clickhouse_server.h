// Throwaway ClickHouse servers for tests: each with its own config, users,
// data directory (a temporary directory, removed at the end) and free
// loopback ports, started as child processes and waited for on /ping. Never
// the system service. With shards = 2 the servers form the cluster
// "flowscope" (remote_servers) of two shards.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "support/process.h"

namespace fstest {

class ClickHouseServer {
 public:
  // Empty when clickhouse-server is not installed (scripts/setup.sh installs it).
  static std::string binary();
  // Starts the servers; throws with the server's log on failure.
  explicit ClickHouseServer(int shards = 1, std::string password = "");
  ~ClickHouseServer();
  ClickHouseServer(const ClickHouseServer&) = delete;
  ClickHouseServer& operator=(const ClickHouseServer&) = delete;

  uint16_t http_port(int shard = 0) const { return nodes_[shard].http; }
  // Runs a statement on a shard (as the configured user); the answer body,
  // or throws.
  std::string query(const std::string& sql, int shard = 0) const;
  // A new, empty database on every shard: its name.
  std::string fresh_database();
  void signal(int sig, int shard = 0);  // SIGSTOP / SIGCONT
  void stop(int shard = 0);             // kill, keeping the data
  void restart(int shard = 0);          // start again on the same ports and data
  const std::string& password() const { return password_; }

 private:
  struct Node {
    std::string dir;
    uint16_t http = 0, tcp = 0;
    std::unique_ptr<Process> proc;
  };
  void start(Node& n);
  std::string root_;
  std::string password_;
  std::vector<Node> nodes_;
  int databases_ = 0;
};

}  // namespace fstest
