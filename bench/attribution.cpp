// fs_attribution: what naming both ends costs the collector, per record.
//
// Ingest: the collector's own per-record path (IPFIX decode, the row, the
// SQLite insert in the store writer's batches) is the baseline; the
// conversation join (collector/conversations.h) runs on the same records with
// its state full (--open conversations held, the default bound), once for
// each record (a new end) and once for a mirrored copy from another reporter
// (the second end: a join). Its CPU is reported per record and as a share of
// the baseline, with the memory the held conversations take.
//
// Query: a store holding one address claim for each of --addresses owned
// addresses and --rows flows to them with no record of their other end; the
// API's page of 1000 rows is read (query and JSON) and then attributed by
// ownership (collector/attribution.h). Both are reported per row.
//
//   fs_attribution --dir /tmp/x [--records N] [--open N] [--addresses N] [--rows N]
// Prints one JSON line.
#include <time.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <CLI/CLI.hpp>

#include "collector/attribution.h"
#include "collector/collector.h"
#include "collector/conversations.h"
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

uint64_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * uint64_t(sysconf(_SC_PAGESIZE));
}

flowscope::Ip16 v4(uint32_t a) {
  const uint8_t b[4] = {uint8_t(a >> 24), uint8_t(a >> 16), uint8_t(a >> 8), uint8_t(a)};
  return flowscope::ip16_from_v4(b);
}

[[noreturn]] void die(const std::string& what) {
  fmt::print(stderr, "fs_attribution: {}\n", what);
  std::exit(1);
}

std::unique_ptr<flowscope::SqliteStore> open_store(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  auto s = flowscope::SqliteStore::open({.path = path});
  if (!s) die(s.error().message);
  return std::move(*s);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace fsbench;
  using namespace flowscope;
  CLI::App app{"fs_attribution: the collector's join and attribution cost per record"};
  std::string dir;
  uint64_t records = 1'000'000, open = 1'000'000, addresses = 100'000, query_rows = 100'000;
  app.add_option("--dir", dir, "scratch directory for the SQLite files")->required();
  app.add_option("--records", records, "records through the ingest path")->capture_default_str();
  app.add_option("--open", open, "conversations held before they arrive")->capture_default_str();
  app.add_option("--addresses", addresses, "owned addresses (one claim each)")->capture_default_str();
  app.add_option("--rows", query_rows, "flows attributed by ownership")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::filesystem::create_directories(dir);
  const uint64_t now_ms = uint64_t(time(nullptr)) * 1000;
  const uint64_t now_ns = now_ms * 1'000'000;

  // The join's state, full: `open` first ends from another reporter, on
  // tuples the stream never uses (10.200/16 -> 10.201/16).
  // The bound raised so none is forgotten: what the join costs, not the bound.
  ConversationOptions copts;
  copts.max_conversations = std::max<size_t>(copts.max_conversations, open + records);
  ConversationJoiner joiner(copts);
  const uint64_t rss0 = rss_bytes();
  double c0 = cpu_seconds();
  for (uint64_t k = 0; k < open; ++k) {
    FlowRow r;
    r.exporter = "10.0.0.9";
    r.host = "filler";
    r.bidirectional = true;
    r.src_ip = v4(0x0ac80000u | uint32_t(k % 65536));
    r.dst_ip = v4(0x0ac90000u | uint32_t((k / 65536) % 65536));
    r.src_port = uint16_t(1024 + k / (65536 * 16) % 60000);
    r.dst_port = uint16_t(80 + (k / 65536) % 16);
    r.start_ns = now_ns - 10'000'000'000ull;
    r.end_ns = now_ns - 5'000'000'000ull;
    joiner.assign(r);
  }
  const double fill_cpu = cpu_seconds() - c0;
  const uint64_t rss_open = rss_bytes() - rss0;

  // The collector's path for `records` records, and the join beside it.
  std::vector<std::vector<uint8_t>> msgs;
  IpfixWriter w;
  for (uint64_t sent = 0; sent < records;) {
    const uint64_t n = std::min<uint64_t>(30, records - sent);
    ipfix_message(w, sent, n, now_ms, sent == 0);
    msgs.push_back(w.b);
    sent += n;
  }
  auto store = open_store(dir + "/ingest.db");
  ipfix::Decoder dec;
  const size_t batch = StoreWriterOptions{}.batch_max;
  std::vector<FlowRow> rows;
  rows.reserve(batch);
  double base_cpu = 0, join_new_cpu = 0, join_second_cpu = 0;
  uint64_t decoded = 0;
  for (const auto& m : msgs) {
    c0 = cpu_seconds();
    auto res = dec.feed("tcp:127.0.0.1:40000#0", ipfix::Transport::Tcp, m);
    for (const auto& f : res.flows) rows.push_back(flow_row_from_decoded(f, "127.0.0.1"));
    decoded += res.flows.size();
    base_cpu += cpu_seconds() - c0;
    // An agent's records measure both directions (the generator's do not):
    // only those are joined.
    for (auto& r : rows) r.bidirectional = true;
    if (rows.size() >= batch || &m == &msgs.back()) {
      c0 = cpu_seconds();
      for (auto& r : rows) joiner.assign(r);
      join_new_cpu += cpu_seconds() - c0;
      // The other end of each: the mirrored tuple, from another reporter.
      std::vector<FlowRow> mirrored;
      mirrored.reserve(rows.size());
      for (const auto& r : rows) {
        FlowRow o;
        o.exporter = "10.0.0.8";
        o.host = "peer";
        o.bidirectional = true;
        o.src_ip = r.dst_ip, o.dst_ip = r.src_ip, o.src_port = r.dst_port, o.dst_port = r.src_port;
        o.start_ns = r.start_ns, o.end_ns = r.end_ns;
        mirrored.push_back(std::move(o));
      }
      c0 = cpu_seconds();
      for (auto& r : mirrored) joiner.assign(r);
      join_second_cpu += cpu_seconds() - c0;
      c0 = cpu_seconds();
      if (auto r = store->insert(rows); !r) die(r.error().message);
      base_cpu += cpu_seconds() - c0;
      rows.clear();
    }
  }
  const ConversationStats js = joiner.stats();
  const double base_ns = base_cpu * 1e9 / double(decoded);
  const double join_new_ns = join_new_cpu * 1e9 / double(decoded);
  const double join_second_ns = join_second_cpu * 1e9 / double(decoded);

  // Query time: `addresses` owned addresses (10.64/10), one claim each from
  // one of 100 agents, and `query_rows` flows from an unclaimed client to
  // them (no record of their other end).
  auto qstore = open_store(dir + "/query.db");
  const uint64_t from = now_ns - 3'600'000'000'000ull, to = now_ns + 60'000'000'000ull;
  std::vector<OwnershipClaim> claims;
  claims.reserve(addresses);
  for (uint64_t a = 0; a < addresses; ++a) {
    OwnershipClaim c;
    c.exporter = "10.0.0.7";
    c.host = fmt::format("h{}", a % 100);
    c.host_id = fmt::format("id-h{}", a % 100);
    c.addr = v4(0x0a400000u | uint32_t(a));
    c.from_ns = from;
    c.to_ns = to;
    claims.push_back(std::move(c));
  }
  if (auto r = qstore->insert_claims(claims); !r) die(r.error().message);
  std::mt19937_64 rng(1);
  for (uint64_t done = 0; done < query_rows;) {
    rows.clear();
    for (; rows.size() < batch && done < query_rows; ++done) {
      FlowRow r;
      r.exporter = "10.0.0.6";
      r.host = "client";
      r.src_ip = v4(0x0afe0001u);
      r.dst_ip = v4(0x0a400000u | uint32_t(rng() % addresses));
      r.src_port = uint16_t(1024 + done % 60000);
      r.dst_port = 443;
      r.start_ns = now_ns - 1'800'000'000'000ull + done * 1000;
      r.end_ns = r.start_ns + 1'000'000;
      r.bytes = 1000;
      rows.push_back(std::move(r));
    }
    if (auto r = qstore->insert(rows); !r) die(r.error().message);
  }
  double read_cpu = 0, attr_cpu = 0;
  uint64_t read = 0;
  AttributionCounts total;
  FlowQuery fq;
  fq.limit = 1000;
  for (fq.offset = 0;; fq.offset += fq.limit) {
    c0 = cpu_seconds();
    auto page = qstore->query(fq);
    if (!page) die(page.error().message);
    std::vector<std::string> json;
    json.reserve(page->flows.size());
    for (const auto& r : page->flows) json.push_back(flow_row_json(r));
    read_cpu += cpu_seconds() - c0;
    c0 = cpu_seconds();
    AttributionCounts n;
    auto members = attribution_members(*qstore, page->flows, &n);
    if (!members) die(members.error().message);
    attr_cpu += cpu_seconds() - c0;
    read += page->flows.size();
    total.owner += n.owner, total.none += n.none, total.joined += n.joined;
    if (!page->more) break;
  }
  const double read_ns = read_cpu * 1e9 / double(read);
  const double attr_ns = attr_cpu * 1e9 / double(read);

  fmt::print(
      "{{\"records\":{},\"open\":{},\"ingest_ns_per_record\":{:.0f},\"join_new_ns\":{:.0f},\"join_second_ns\":{:.0f},"
      "\"join_share\":{:.3f},\"joined\":{},\"forgotten\":{},\"held\":{},\"fill_ns_per_conversation\":{:.0f},"
      "\"bytes_per_conversation\":{:.0f},\"addresses\":{},\"rows\":{},\"read_ns_per_row\":{:.0f},"
      "\"attribution_ns_per_row\":{:.0f},\"attribution_share\":{:.3f},\"owner\":{},\"none\":{}}}\n",
      decoded, open, base_ns, join_new_ns, join_second_ns, (join_new_ns + join_second_ns) / 2 / base_ns, js.joined,
      js.forgotten, js.open, fill_cpu * 1e9 / double(std::max<uint64_t>(open, 1)),
      double(rss_open) / double(std::max<uint64_t>(open, 1)), addresses, read, read_ns, attr_ns, attr_ns / read_ns,
      total.owner, total.none);
  return decoded == records && read == query_rows && total.owner == query_rows ? 0 : 1;
}
