// nfdump's tools as the reference for what the collector stores: parse what
// `nfdump -o csv` / `-o json` print for an nfcapd file, replay the file into a
// `flowscope collector` with `nfreplay -v 9`, and compare the stored flows
// (GET /api/flows) with nfdump's, flow by flow.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include "support/agent_runner.h"
#include "support/netns.h"
#include "support/process.h"

namespace fstest::nfdump {

using namespace std::chrono_literals;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/fs-nfreplay-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct NfFlow {
  std::string sa, da;
  uint16_t sp = 0, dp = 0;
  int proto = 0;
  uint64_t packets = 0, bytes = 0;
  uint64_t ts_s = 0, te_s = 0, td_ms = 0;  // csv: first/last to the second, duration in ms
  uint64_t first_ms = 0, last_ms = 0;      // json: first/last to the millisecond
};

inline uint64_t utc_seconds(const std::string& s, const char* fmt, const char** rest = nullptr) {
  std::tm tm{};
  const char* r = strptime(s.c_str(), fmt, &tm);
  if (rest) *rest = r;
  return r ? uint64_t(timegm(&tm)) : 0;
}

inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}

inline std::string key(const std::string& sa, uint64_t sp, const std::string& da, uint64_t dp, int proto) {
  return fmt::format("{} {} {} {} {}", sa, sp, da, dp, proto);
}

// `nfdump -r FILE -o csv` (the reference the comparison is about) and
// `-o json` (first/last to the millisecond: csv prints whole seconds).
inline std::vector<NfFlow> nfdump_flows(const std::string& file) {
  const std::string csv = sh_out("TZ=UTC nfdump -r " + file + " -o csv 2>&1");
  std::vector<NfFlow> flows;
  std::vector<std::string> head;
  std::istringstream in(csv);
  std::string line;
  while (std::getline(in, line)) {
    auto cols = split(line, ',');
    if (head.empty()) {
      if (line.starts_with("ts,")) head = cols;
      continue;
    }
    if (cols.size() < head.size() || line.starts_with("Summary")) break;
    auto col = [&](const std::string& name) {
      auto it = std::find(head.begin(), head.end(), name);
      return it == head.end() ? std::string() : cols[size_t(it - head.begin())];
    };
    NfFlow f;
    f.sa = col("sa");
    f.da = col("da");
    f.sp = uint16_t(std::stoul(col("sp")));
    f.dp = uint16_t(std::stoul(col("dp")));
    f.proto = col("pr") == "TCP" ? 6 : col("pr") == "UDP" ? 17 : std::stoi(col("pr"));
    f.packets = std::stoull(col("ipkt"));
    f.bytes = std::stoull(col("ibyt"));
    f.ts_s = utc_seconds(col("ts"), "%Y-%m-%d %H:%M:%S");
    f.te_s = utc_seconds(col("te"), "%Y-%m-%d %H:%M:%S");
    f.td_ms = uint64_t(std::llround(std::stod(col("td")) * 1000));
    flows.push_back(f);
  }
  // JSON: the same records in the same order.
  const Json js = Json::parse(sh_out("TZ=UTC nfdump -r " + file + " -o json 2>/dev/null"), nullptr, false);
  if (!js.is_array() || js.size() != flows.size()) {
    ADD_FAILURE() << "nfdump -o json gave " << js.dump() << "\ncsv:\n" << csv;
    return flows;
  }
  auto ms = [](const std::string& s) {
    const char* rest = nullptr;
    const uint64_t sec = utc_seconds(s, "%Y-%m-%dT%H:%M:%S", &rest);
    return sec * 1000 + (rest && *rest == '.' ? std::strtoull(rest + 1, nullptr, 10) : 0);
  };
  for (size_t i = 0; i < flows.size(); i++) {
    const Json& j = js[i];
    const std::string sa = j.contains("src4_addr") ? j.value("src4_addr", "") : j.value("src6_addr", "");
    EXPECT_EQ(sa, flows[i].sa) << j.dump();
    EXPECT_EQ(j.value("src_port", 0), flows[i].sp) << j.dump();
    flows[i].first_ms = ms(j.value("first", ""));
    flows[i].last_ms = ms(j.value("last", ""));
  }
  return flows;
}

inline std::pair<int, Json> http_get(int port, const std::string& path) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(5);
  auto r = c.Get(path);
  if (!r) return {0, Json()};
  return {r->status, Json::parse(r->body, nullptr, false)};
}

struct Collector {
  explicit Collector(const std::string& db) {
    proc = std::make_unique<Process>(std::vector<std::string>{FLOWSCOPE_BIN, "collector", "--db", db, "--udp-port",
                                                              "0", "--no-tcp", "--http-port", "0"});
    if (!proc->wait_for("collector running", 20s)) throw std::runtime_error("collector did not start: " + proc->err());
    std::smatch m;
    const std::string err = proc->err();
    if (!std::regex_search(err, m, std::regex(R"(udp/(\d+) tcp/\w+, HTTP API on http://\S+:(\d+))")))
      throw std::runtime_error("no ports in: " + err);
    udp_port = std::stoi(m[1]);
    http_port = std::stoi(m[2]);
  }
  int stop() {
    proc->signal(SIGINT);
    return proc->wait(30s);
  }
  std::unique_ptr<Process> proc;
  int udp_port = 0, http_port = 0;
};


// The nfcapd files of `want` (5-tuple -> nfdump's flows) replayed into a new
// collector (database `db`) by `nfreplay -v 9`: every stored flow must be one
// of nfdump's, with its bytes, packets, start and end. Returns the collector's
// /api/exporters answer.
inline Json replay_and_compare(const std::vector<std::string>& files, std::multimap<std::string, NfFlow> want,
                               const std::string& db) {
  Json ex;
  const size_t n_want = want.size();
  Collector col(db);
  for (const auto& f : files) {
    Process replay({"nfreplay", "-v", "9", "-H", "127.0.0.1", "-p", std::to_string(col.udp_port), "-r", f});
    EXPECT_EQ(replay.wait(60s), 0) << replay.out() << replay.err();
  }
  // Wait until the store has written as many rows as nfdump has flows (this
  // exporter is the only source), or the deadline.
  for (auto deadline = std::chrono::steady_clock::now() + 20s; std::chrono::steady_clock::now() < deadline;
       std::this_thread::sleep_for(50ms)) {
    ex = http_get(col.http_port, "/api/exporters").second;
    if (ex.contains("store") && ex["store"]["written"].get<uint64_t>() >= n_want) break;
  }
  if (ex["exporters"].size() != 1u) {
    ADD_FAILURE() << ex.dump();
    return ex;
  }
  const Json& e = ex["exporters"][0];
  EXPECT_EQ(e["flows"], n_want) << ex.dump();
  EXPECT_EQ(e["malformed"], 0) << ex.dump();
  EXPECT_EQ(e["sets_no_template"], 0) << ex.dump();
  EXPECT_EQ(e["records_time_fallback"], 0) << ex.dump();  // nfreplay sends both times
  EXPECT_EQ(e["sessions"][0]["version"], 9) << ex.dump();

  // A user's query: the last day.
  auto [st, got] = http_get(col.http_port, "/api/flows?from=-1d&limit=1000");
  EXPECT_EQ(st, 200) << got.dump();
  EXPECT_EQ(got["flows"].size(), n_want) << got.dump();
  for (const auto& s : got["flows"]) {
    const std::string k = key(s["src_addr"], s["src_port"], s["dst_addr"], s["dst_port"], s["protocol"]);
    SCOPED_TRACE(k);
    const uint64_t start_ms = s["start_ns"].get<uint64_t>() / 1'000'000;
    const uint64_t end_ms = s["end_ns"].get<uint64_t>() / 1'000'000;
    auto [lo, hi] = want.equal_range(k);
    auto it = std::find_if(lo, hi, [&](const auto& kv) { return kv.second.first_ms == start_ms; });
    if (it == hi) {
      ADD_FAILURE() << "stored but not in nfdump's output: " << s.dump();
      continue;
    }
    const NfFlow& n = it->second;
    EXPECT_EQ(s["bytes"].get<uint64_t>(), n.bytes);
    EXPECT_EQ(s["packets"].get<uint64_t>(), n.packets);
    EXPECT_EQ(s["start_ns"].get<uint64_t>() % 1'000'000, 0u);  // v9 carries milliseconds
    // csv: first and last to the second, duration to the millisecond.
    EXPECT_EQ(start_ms / 1000, n.ts_s);
    EXPECT_EQ(end_ms / 1000, n.te_s);
    EXPECT_EQ(end_ms - start_ms, n.td_ms);
    // json: to the millisecond (the start matched above).
    EXPECT_EQ(end_ms, n.last_ms);
    EXPECT_EQ(s["exporter"], "127.0.0.1");
    want.erase(it);
  }
  EXPECT_TRUE(want.empty()) << want.size() << " nfdump flows not stored";
  EXPECT_EQ(col.stop(), 0) << col.proc->err();
  return ex;
}

// nfcapd.YYYYMMDDhhmm files in `dir`, sorted.
inline std::vector<std::string> nfcapd_files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().filename().string().starts_with("nfcapd.2")) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

// 5-tuple -> nfdump's flows, over all files.
inline std::multimap<std::string, NfFlow> nfdump_flows(const std::vector<std::string>& files) {
  std::multimap<std::string, NfFlow> want;
  for (const auto& f : files)
    for (const auto& n : nfdump_flows(f)) want.emplace(key(n.sa, n.sp, n.da, n.dp, n.proto), n);
  return want;
}

inline bool have_nfdump_tools(std::string& missing) {
  for (const char* tool : {"nfcapd", "nfpcapd", "nfreplay", "nfdump"})
    if (sh(fmt::format("command -v {} >/dev/null", tool)) != 0) {
      missing = tool;
      return false;
    }
  return true;
}

}  // namespace fstest::nfdump
