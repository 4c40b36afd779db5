#include "support/clickhouse_server.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>

#include "support/ports.h"

namespace fstest {

std::string ClickHouseServer::binary() {
  for (const char* p : {"/usr/bin/clickhouse-server", "/usr/sbin/clickhouse-server"})
    if (access(p, X_OK) == 0) return p;
  return {};
}

ClickHouseServer::ClickHouseServer(int shards, std::string password) : password_(std::move(password)) {
  if (binary().empty()) throw std::runtime_error("clickhouse-server is not installed (run scripts/setup.sh)");
  char tmpl[] = "/tmp/fs-clickhouse-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  root_ = tmpl;
  nodes_.resize(static_cast<size_t>(shards));
  for (auto& n : nodes_) {
    n.http = free_loopback_port();
    n.tcp = free_loopback_port();
  }
  std::string remote;
  for (const auto& n : nodes_)
    remote += fmt::format("<shard><replica><host>127.0.0.1</host><port>{}</port></replica></shard>", n.tcp);
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node& n = nodes_[i];
    n.dir = fmt::format("{}/node{}", root_, i);
    for (const char* sub : {"data", "tmp", "user_files", "log"}) std::filesystem::create_directories(n.dir + "/" + sub);
    std::ofstream(n.dir + "/config.xml") << fmt::format(
        R"(<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{0}/log/server.log</log><errorlog>{0}/log/error.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{1}</http_port>
  <tcp_port>{2}</tcp_port>
  <path>{0}/data/</path>
  <tmp_path>{0}/tmp/</tmp_path>
  <user_files_path>{0}/user_files/</user_files_path>
  <users_config>{0}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
  <remote_servers><flowscope>{3}</flowscope></remote_servers>
</yandex>
)",
        n.dir, n.http, n.tcp, remote);
    // The cluster's own connections use the default user: one password for all.
    std::ofstream(n.dir + "/users.xml") << fmt::format(
        R"(<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users><default><password>{}</password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
)",
        password_);
  }
  for (auto& n : nodes_) start(n);
}

void ClickHouseServer::start(Node& n) {
  n.proc = std::make_unique<Process>(std::vector<std::string>{binary(), "--config-file=" + n.dir + "/config.xml"});
  httplib::Client c("127.0.0.1", n.http);
  c.set_connection_timeout(std::chrono::milliseconds(200));
  c.set_read_timeout(std::chrono::seconds(2));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  // Polls /ping: the server answers once it is ready (about half a second).
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto r = c.Get("/ping"); r && r->status == 200) return;
    if (!n.proc->running())
      throw std::runtime_error("clickhouse-server exited: " + read_file(n.dir + "/log/error.log") + n.proc->err());
    // The poll interval (the server gives no other signal of readiness): a
    // refused connect returns at once, so this is the only pause.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  throw std::runtime_error("clickhouse-server did not answer /ping within 60 s: " + read_file(n.dir + "/log/error.log"));
}

ClickHouseServer::~ClickHouseServer() {
  for (auto& n : nodes_) {
    if (!n.proc) continue;
    n.proc->signal(SIGCONT);
    n.proc->signal(SIGTERM);
    if (n.proc->wait(std::chrono::seconds(10)) == -1) n.proc.reset();  // killed by the destructor
  }
  nodes_.clear();
  std::error_code ec;
  std::filesystem::remove_all(root_, ec);
}

std::string ClickHouseServer::query(const std::string& sql, int shard) const {
  httplib::Client c("127.0.0.1", nodes_[static_cast<size_t>(shard)].http);
  c.set_read_timeout(std::chrono::seconds(30));
  c.set_basic_auth("default", password_);
  auto r = c.Post("/", sql, "text/plain");
  if (!r) throw std::runtime_error("ClickHouse query failed: " + httplib::to_string(r.error()));
  if (r->status != 200) throw std::runtime_error("ClickHouse: " + r->body + " (in " + sql + ")");
  return r->body;
}

std::string ClickHouseServer::fresh_database() {
  const std::string name = fmt::format("t{}_{}", getpid(), ++databases_);
  for (size_t i = 0; i < nodes_.size(); ++i) query("CREATE DATABASE " + name, static_cast<int>(i));
  return name;
}

void ClickHouseServer::signal(int sig, int shard) { nodes_[static_cast<size_t>(shard)].proc->signal(sig); }

void ClickHouseServer::stop(int shard) {
  auto& n = nodes_[static_cast<size_t>(shard)];
  n.proc->signal(SIGCONT);
  n.proc->signal(SIGKILL);
  n.proc->wait(std::chrono::seconds(10));
  n.proc.reset();
}

void ClickHouseServer::restart(int shard) { start(nodes_[static_cast<size_t>(shard)]); }

}  // namespace fstest
