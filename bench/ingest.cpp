// fs_ingest: the collector's decode and store path in one thread, without
// sockets: the benchmark's IPFIX stream (ipfix_stream.h) is decoded with
// ipfix::Decoder, turned into rows as the collector does, and inserted into
// SQLite in the store writer's batch size. For profiling (callgrind) the cost
// per record of each stage; prints one JSON line.
//
//   fs_ingest --db /tmp/x.db [--records N] [--per-message K] [--batch B] [--no-store]
#include <time.h>

#include <filesystem>
#include <fstream>

#include <CLI/CLI.hpp>

#include "collector/collector.h"
#include "collector/store_writer.h"
#include "common.h"
#include "ipfix_stream.h"
#include "storage/sqlite_store.h"

namespace {

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

// This process's I/O so far (/proc/self/io): system calls and bytes.
std::string io_json() {
  std::ifstream f("/proc/self/io");
  std::string k, out;
  uint64_t v = 0;
  while (f >> k >> v) {
    k.pop_back();  // ':'
    if (k == "syscr" || k == "syscw" || k == "rchar" || k == "wchar") out += fmt::format(",\"{}\":{}", k, v);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace fsbench;
  CLI::App app{"fs_ingest: the collector's decode and store path, in-process"};
  std::string db;
  uint64_t records = 200000;
  int per_msg = 30;
  size_t batch = flowscope::StoreWriterOptions{}.batch_max;
  bool no_store = false;
  app.add_option("--db", db, "SQLite file (removed first)")->required();
  app.add_option("--records", records)->capture_default_str();
  app.add_option("--per-message", per_msg)->check(CLI::Range(1, 1000))->capture_default_str();
  app.add_option("--batch", batch, "rows per insert transaction")->capture_default_str();
  app.add_flag("--no-store", no_store, "decode only");
  CLI11_PARSE(app, argc, argv);

  // The stream as one TCP exporter sends it: the template in the first message.
  const uint64_t now_ms = uint64_t(time(nullptr)) * 1000;
  std::vector<std::vector<uint8_t>> msgs;
  IpfixWriter w;
  for (uint64_t sent = 0; sent < records;) {
    const uint64_t n = std::min<uint64_t>(uint64_t(per_msg), records - sent);
    ipfix_message(w, sent, n, now_ms, sent == 0);
    msgs.push_back(w.b);
    sent += n;
  }

  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
  auto store = flowscope::SqliteStore::open({.path = db});
  if (!store) {
    fmt::print(stderr, "fs_ingest: {}\n", store.error().message);
    return 1;
  }
  flowscope::ipfix::Decoder dec;
  const std::string key = "tcp:127.0.0.1:40000#0", addr = "127.0.0.1";
  std::vector<flowscope::FlowRow> rows;
  rows.reserve(batch);
  double decode_s = 0, store_s = 0;
  uint64_t decoded = 0, stored = 0;
  auto flush = [&] {
    const double c0 = cpu_seconds();
    if (!no_store) {
      if (auto r = (*store)->insert(rows); !r) {
        fmt::print(stderr, "fs_ingest: {}\n", r.error().message);
        std::exit(1);
      }
      stored += rows.size();
    }
    rows.clear();
    store_s += cpu_seconds() - c0;
  };
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& m : msgs) {
    const double c0 = cpu_seconds();
    auto res = dec.feed(key, flowscope::ipfix::Transport::Tcp, m);
    for (const auto& f : res.flows) rows.push_back(flowscope::flow_row_from_decoded(f, addr));
    decoded += res.flows.size();
    decode_s += cpu_seconds() - c0;
    if (rows.size() >= batch) flush();
  }
  flush();
  const double secs = seconds_since(t0);
  fmt::print("{{\"records\":{},\"decoded\":{},\"stored\":{},\"seconds\":{:.3f},\"decode_cpu_s\":{:.3f},"
             "\"store_cpu_s\":{:.3f},\"records_per_cpu_s\":{:.0f}{}}}\n",
             records, decoded, stored, secs, decode_s, store_s, double(decoded) / (decode_s + store_s), io_json());
  return decoded == records && (no_store || stored == records) ? 0 : 1;
}
