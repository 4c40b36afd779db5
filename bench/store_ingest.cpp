// Store ingest cost: synthetic agent records (long flows with interim
// records, short flows) inserted in the store writer's batches, into SQLite
// or ClickHouse, through FlowStore as the collector does. Prints records/s
// and records per CPU-second of this process and, with --server-pid, of the
// ClickHouse server too (from /proc, user + system time).
//
//   fs_store_ingest --store sqlite:/tmp/b.db --rows 1000000
//   fs_store_ingest --store clickhouse://127.0.0.1:8123/flowscope --server-pid PID
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "net/cidr.h"
#include "storage/clickhouse_store.h"
#include "storage/sqlite_store.h"

using namespace flowscope;

namespace {

double self_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double proc_cpu_s(int pid) {
  if (pid <= 0) return 0;
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string s((std::istreambuf_iterator<char>(in)), {});
  auto p = s.rfind(')');
  if (p == std::string::npos) return 0;
  std::istringstream rest(s.substr(p + 2));
  std::string f;
  unsigned long long ut = 0, st = 0;
  for (int i = 3; i <= 15 && rest >> f; ++i) {
    if (i == 14) ut = std::stoull(f);
    if (i == 15) st = std::stoull(f);
  }
  return double(ut + st) / double(sysconf(_SC_CLK_TCK));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("FlowStore ingest cost");
  std::string store = "sqlite:/tmp/fs-store-ingest.db";
  uint64_t rows = 500'000;
  size_t batch = 5'000;
  int server_pid = 0;
  app.add_option("--store", store, "sqlite:PATH or clickhouse://HOST:PORT/DATABASE");
  app.add_option("--rows", rows, "records to insert");
  app.add_option("--batch", batch, "rows per insert() (the store writer's batch)");
  app.add_option("--server-pid", server_pid, "ClickHouse server pid, to count its CPU time too");
  CLI11_PARSE(app, argc, argv);

  std::unique_ptr<FlowStore> s;
  if (store.starts_with("clickhouse://")) {
    ClickHouseOptions o;
    if (auto r = parse_clickhouse_url(store, o); !r) return fmt::print(stderr, "{}\n", r.error().message), 1;
    auto c = ClickHouseStore::open(o);
    if (!c) return fmt::print(stderr, "{}\n", c.error().message), 1;
    s = std::move(*c);
  } else {
    auto l = SqliteStore::open({.path = store.substr(7)});
    if (!l) return fmt::print(stderr, "{}\n", l.error().message), 1;
    s = std::move(*l);
  }
  const uint64_t t0 = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count()) -
                      3600'000'000'000ull;
  const auto src = *parse_ip("10.0.0.1");
  const double cpu0 = self_cpu_s(), srv0 = proc_cpu_s(server_pid);
  const auto w0 = std::chrono::steady_clock::now();
  std::vector<FlowRow> b;
  for (uint64_t i = 0; i < rows;) {
    b.clear();
    for (size_t k = 0; k < batch && i < rows; ++k, ++i) {
      // Flow i/4 reported four times: three interim records and the final one.
      const uint64_t flow = i / 4, rep = i % 4;
      FlowRow r;
      r.exporter = "local";
      r.start_ns = t0 + flow * 1000;
      r.end_ns = r.start_ns + (rep + 1) * 1'000'000'000ull;
      r.src_ip = src;
      r.dst_ip = src;
      r.dst_ip[15] = uint8_t(flow);
      r.src_port = uint16_t(32768 + flow % 28000);
      r.dst_port = 443;
      r.direction = Direction::Outbound;
      r.bytes = 1000 * (rep + 1);
      r.packets = rep + 2;
      r.rev_bytes = 100 * (rep + 1);
      r.rev_packets = rep + 1;
      r.bidirectional = r.cumulative = true;
      r.interim = rep < 3;
      r.retrans = 0;
      r.srtt_us = 100;
      r.rttvar_us = 20;
      r.close = rep < 3 ? CloseReason::Active : CloseReason::Fin;
      r.pid = 1000 + uint32_t(flow % 50);
      r.comm = "client";
      b.push_back(std::move(r));
    }
    if (auto r = s->insert(b); !r) return fmt::print(stderr, "insert: {}\n", r.error().message), 1;
  }
  if (auto r = s->sync(std::chrono::minutes(5)); !r) return fmt::print(stderr, "{}\n", r.error().message), 1;
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
  const double cpu = self_cpu_s() - cpu0, srv = proc_cpu_s(server_pid) - srv0;
  fmt::print("{}: {} records in {:.2f} s: {:.0f} records/s; {:.0f} records per CPU-second of flowscope", store, rows,
             wall, double(rows) / wall, double(rows) / cpu);
  if (server_pid)
    fmt::print(", {:.0f} per CPU-second with the server's ({:.2f} s server CPU)", double(rows) / (cpu + srv), srv);
  fmt::print("\n");
  return 0;
}
