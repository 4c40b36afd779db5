#include "storage/clickhouse_store.h"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <bit>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <fmt/ranges.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "flow/fields.h"
#include "storage/delta_tracker.h"
#include "storage/query_deadline.h"

namespace flowscope {

static_assert(std::endian::native == std::endian::little, "RowBinary is little-endian; so is this encoder");

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// ---------------------------------------------------------------------------
// Column types and RowBinary, generated from the field table (flow/fields.h).
// RowBinary: integers little-endian at their width; String = LEB128 length +
// bytes; FixedString(16) = 16 bytes; Nullable(T) = 1 byte (1: NULL) then T
// when not NULL; DateTime = UInt32 seconds.

template <class T>
std::string ch_type() {
  if constexpr (schema::is_optional_v<T>) {
    return "Nullable(" + ch_type<typename T::value_type>() + ")";
  } else if constexpr (std::is_same_v<T, std::string> || std::is_enum_v<T>) {
    return "String";
  } else if constexpr (std::is_same_v<T, Ip16>) {
    return "FixedString(16)";
  } else if constexpr (std::is_same_v<T, std::vector<DropCount>>) {
    return "Nullable(String)";  // a JSON object, NULL for none (as in SQLite)
  } else if constexpr (std::is_same_v<T, bool>) {
    return "UInt8";
  } else {
    static_assert(std::is_unsigned_v<T>, "a field type without a ClickHouse column type");
    return fmt::format("UInt{}", sizeof(T) * 8);
  }
}

void put_varint(std::string& b, uint64_t v) {
  while (v >= 0x80) {
    b.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  b.push_back(static_cast<char>(v));
}

template <class T>
void put_int(std::string& b, T v) {
  b.append(reinterpret_cast<const char*>(&v), sizeof v);
}

void put_string(std::string& b, std::string_view s) {
  put_varint(b, s.size());
  b.append(s);
}

std::string drops_json(const std::vector<DropCount>& drops) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& d : drops) j[d.reason] = d.count;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

template <class T>
void put(std::string& b, const T& v) {
  if constexpr (schema::is_optional_v<T>) {
    b.push_back(v ? 0 : 1);
    if (v) put(b, *v);
  } else if constexpr (std::is_same_v<T, std::string>) {
    put_string(b, v);
  } else if constexpr (std::is_enum_v<T>) {
    put_string(b, to_string(v));
  } else if constexpr (std::is_same_v<T, Ip16>) {
    b.append(reinterpret_cast<const char*>(v.data()), 16);
  } else if constexpr (std::is_same_v<T, std::vector<DropCount>>) {
    b.push_back(v.empty() ? 1 : 0);
    if (!v.empty()) put_string(b, drops_json(v));
  } else if constexpr (std::is_same_v<T, bool>) {
    b.push_back(v ? 1 : 0);
  } else {
    put_int(b, v);
  }
}

// Reads RowBinary; `ok` turns false at the first short or bad value.
struct Reader {
  const char* p;
  const char* end;
  bool ok = true;

  bool more() const { return ok && p < end; }
  bool take(void* out, size_t n) {
    if (!ok || static_cast<size_t>(end - p) < n) return ok = false;
    std::memcpy(out, p, n);
    p += n;
    return true;
  }
  template <class T>
  T num() {
    T v{};
    take(&v, sizeof v);
    return v;
  }
  std::string str() {
    uint64_t n = 0;
    for (int shift = 0;; shift += 7) {
      uint8_t c = num<uint8_t>();
      if (!ok || shift > 63) return ok = false, std::string();
      n |= uint64_t(c & 0x7f) << shift;
      if (!(c & 0x80)) break;
    }
    if (static_cast<uint64_t>(end - p) < n) return ok = false, std::string();
    std::string s(p, n);
    p += n;
    return s;
  }
};

template <class T>
void get(Reader& r, T& out) {
  if constexpr (schema::is_optional_v<T>) {
    if (r.num<uint8_t>()) {
      out.reset();
    } else {
      typename T::value_type v{};
      get(r, v);
      out = std::move(v);
    }
  } else if constexpr (std::is_same_v<T, std::string>) {
    out = r.str();
  } else if constexpr (std::is_same_v<T, Direction>) {
    out = direction_from_string(r.str()).value_or(Direction::Unknown);
  } else if constexpr (std::is_same_v<T, CloseReason>) {
    out = close_reason_from_string(r.str()).value_or(CloseReason::Fin);
  } else if constexpr (std::is_same_v<T, Ip16>) {
    r.take(out.data(), 16);
  } else if constexpr (std::is_same_v<T, std::vector<DropCount>>) {
    out.clear();
    if (r.num<uint8_t>()) return;
    auto j = nlohmann::json::parse(r.str(), nullptr, false);
    if (j.is_object())
      for (auto& [k, v] : j.items())
        if (v.is_number_unsigned()) out.push_back({k, v.template get<uint64_t>()});
  } else if constexpr (std::is_same_v<T, bool>) {
    out = r.num<uint8_t>() != 0;
  } else {
    out = r.num<T>();
  }
}

// The raw table's columns: id and the time bucket column, the flow fields in
// table order, then the store's own (as in SQLite).
struct StoreColumn {
  const char* name;
  const char* type;
};
constexpr StoreColumn kHead[] = {{"id", "UInt64"}, {"end_time", "DateTime"}};
constexpr StoreColumn kTail[] = {{"drops_total", "UInt64"},
                                 {"d_bytes", "UInt64"},
                                 {"d_packets", "UInt64"},
                                 {"d_retrans", "UInt64"},
                                 {"first", "UInt8"},
                                 {"d_bytes_out", "UInt64"},
                                 {"d_bytes_in", "UInt64"}};

std::string column_list() {
  std::string c;
  for (const auto& h : kHead) c += fmt::format("{}{}", c.empty() ? "" : ", ", h.name);
  schema::for_each_field([&](const auto& f) { c += fmt::format(", {}", f.column); });
  for (const auto& t : kTail) c += fmt::format(", {}", t.name);
  return c;
}

// Columns read back into a FlowRow: id, fields, d_*, first, the bytes each way.
std::string read_columns() {
  std::string c = "id";
  schema::for_each_field([&](const auto& f) { c += fmt::format(", {}", f.column); });
  return c + ", d_bytes, d_packets, d_retrans, first, d_bytes_out, d_bytes_in";
}

void encode_row(std::string& b, const FlowRow& r) {
  put_int(b, static_cast<uint64_t>(r.id));
  put_int(b, static_cast<uint32_t>(r.end_ns / 1'000'000'000ull));
  schema::for_each_field([&](const auto& f) { put(b, r.*f.member); });
  put_int(b, r.drops_total());
  put_int(b, r.delta_bytes);
  put_int(b, r.delta_packets);
  put_int(b, r.delta_retrans);
  b.push_back(r.first ? 1 : 0);
  put_int(b, r.delta_bytes_out);
  put_int(b, r.delta_bytes_in);
}

FlowRow decode_row(Reader& rd) {
  FlowRow r;
  r.id = static_cast<int64_t>(rd.num<uint64_t>());
  schema::for_each_field([&](const auto& f) { get(rd, r.*f.member); });
  r.delta_bytes = rd.num<uint64_t>();
  r.delta_packets = rd.num<uint64_t>();
  r.delta_retrans = rd.num<uint64_t>();
  r.first = rd.num<uint8_t>() != 0;
  r.delta_bytes_out = rd.num<uint64_t>();
  r.delta_bytes_in = rd.num<uint64_t>();
  return r;
}

// ---------------------------------------------------------------------------
// Schema. Each migration is a list of statements, each safe to run again, so
// a start interrupted half-way finishes the job next time.

struct Rollup {
  const char* table;  // flows_1m ...
  uint32_t seconds;
};
constexpr Rollup kRollups[] = {{"flows_1h", 3600}, {"flows_5m", 300}, {"flows_1m", 60}};  // coarsest first

std::string raw_table_sql(const std::string& name) {
  std::string cols;
  for (const auto& h : kHead) cols += fmt::format("  {} {},\n", h.name, h.type);
  schema::for_each_field([&](const auto& f) {
    cols += fmt::format("  {} {},\n", f.column, ch_type<typename std::remove_cvref_t<decltype(f)>::Type>());
  });
  for (const auto& t : kTail) cols += fmt::format("  {} {},\n", t.name, t.type);
  cols.resize(cols.size() - 2);
  // Day partitions: retention drops whole days. The sort key starts with a
  // coarse time bucket, then who reported it and the addresses.
  return fmt::format(
      "CREATE TABLE IF NOT EXISTS {} (\n{}\n) ENGINE = MergeTree() PARTITION BY toYYYYMMDD(end_time) "
      "ORDER BY (toStartOfHour(end_time), exporter, src_ip, dst_ip)",
      name, cols);
}

// Per record: 1 for a failed connection (refused, timed out, reset), and the
// packets dropped, counted from a flow's last record only (interim
// cumulative records carry the totals so far).
constexpr const char* kFailureExpr =
    "toUInt64(ifNull(close_reason, '') IN ('refused', 'timeout', 'rst_sent', 'rst_received'))";
constexpr const char* kDropsExpr = "if(interim AND cumulative, toUInt64(0), drops_total)";

// A rollup keeps what top() and series() group and filter by, without
// per-connection columns: the service port (the local one of an inbound
// flow, else the remote one) with ephemeral ports (>= 32768) folded into 0.
constexpr const char* kRollupDims = "exporter, comm, container_id, port, protocol, direction, close_reason";

std::string rollup_table_sql(const std::string& name) {
  return fmt::format(
      "CREATE TABLE IF NOT EXISTS {} (time DateTime, exporter String, comm String, container_id String, "
      "port UInt16, protocol UInt8, direction String, close_reason String, bytes UInt64, packets UInt64, "
      "flows UInt64, retrans UInt64, failures UInt64, drops UInt64, bytes_out UInt64, bytes_in UInt64) ENGINE = SummingMergeTree() PARTITION BY toYYYYMMDD(time) "
      "ORDER BY (time, {})",
      name, kRollupDims);
}

std::string rollup_select(uint32_t seconds, const std::string& raw) {
  return fmt::format(
      "SELECT toDateTime(intDiv(toUInt32(end_time), {0}) * {0}) AS time, exporter, ifNull(comm, '') AS comm, "
      "ifNull(container_id, '') AS container_id, "
      "if(if(direction = 'inbound', src_port, dst_port) >= 32768, toUInt16(0), "
      "if(direction = 'inbound', src_port, dst_port)) AS port, protocol, direction, "
      "ifNull(close_reason, '') AS close_reason, d_bytes AS bytes, d_packets AS packets, "
      "toUInt64(first) AS flows, d_retrans AS retrans, {2} AS failures, {3} AS drops, d_bytes_out AS bytes_out, "
      "d_bytes_in AS bytes_in FROM {1}",
      seconds, raw, kFailureExpr, kDropsExpr);
}

// ---------------------------------------------------------------------------
// HTTP.

std::string url_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
      out.push_back(static_cast<char>(c));
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
}

std::string hex(std::string_view s) {
  static constexpr char d[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out.push_back(d[c >> 4]);
    out.push_back(d[c & 15]);
  }
  return out;
}

// A string literal that cannot break out of its quotes: user input reaches
// SQL only as hex digits.
std::string lit(std::string_view s) { return fmt::format("unhex('{}')", hex(s)); }
std::string lit(const Ip16& a) { return lit(std::string_view(reinterpret_cast<const char*>(a.data()), 16)); }

// "Code: 81, e.displayText() = DB::Exception: Database x doesn't exist, e.what() = ..." -> the middle.
std::string server_message(const std::string& body) {
  std::string m = body.substr(0, body.find('\n'));
  if (auto p = m.find("DB::Exception: "); p != std::string::npos) {
    std::string rest = m.substr(p + 15);
    if (auto e = rest.find(", e.what()"); e != std::string::npos) rest.resize(e);
    return rest;
  }
  return m.empty() ? "empty answer" : m;
}

int server_code(const std::string& body) {
  if (body.rfind("Code: ", 0) != 0) return 0;
  return std::atoi(body.c_str() + 6);
}

std::string transport_error(httplib::Error e, milliseconds io) {
  switch (e) {
    case httplib::Error::Connection: return "cannot connect (refused or unreachable)";
    case httplib::Error::ConnectionTimeout: return "connect timed out";
    case httplib::Error::Read: return fmt::format("no answer within {} ms", io.count());
    case httplib::Error::Write: return fmt::format("could not send the request within {} ms", io.count());
    default: return httplib::to_string(e);
  }
}

struct HttpError {
  std::string message;
  bool transport = false;  // no answer: the request may or may not have run
  int code = 0;            // ClickHouse's error code
};

struct Conn {
  const ClickHouseOptions* o;

  // Runs `sql` (in the URL when `body` is data, else as the body).
  std::expected<std::string, HttpError> run(const std::string& sql, const std::string* data = nullptr,
                                            const std::string& query_id = {}, bool use_db = true,
                                            milliseconds io = milliseconds(0)) const {
    httplib::Client c(o->host, o->port);
    c.set_connection_timeout(o->connect_timeout);
    const milliseconds t = io.count() ? io : o->io_timeout;
    c.set_read_timeout(t);
    c.set_write_timeout(t);
    c.set_keep_alive(false);
    if (!o->user.empty()) c.set_basic_auth(o->user, o->password);
    std::string path = "/?";
    if (use_db) path += "database=" + url_encode(o->database) + "&";
    if (!query_id.empty()) path += "query_id=" + url_encode(query_id) + "&";
    // Queries stop on the server when the client has given up.
    path += fmt::format("max_execution_time={}", std::max<int64_t>(1, (t.count() + 999) / 1000));
    // A Distributed insert returns once every shard has its rows, so the
    // sender's arrival check after a failure sees them.
    if (!o->cluster.empty() && data) path += "&insert_distributed_sync=1";
    if (data) path += "&query=" + url_encode(sql);
    httplib::Result res = data ? c.Post(path, *data, "application/octet-stream") : c.Post(path, sql, "text/plain");
    if (!res)
      return std::unexpected(HttpError{
          fmt::format("ClickHouse at http://{}:{}: {}", o->host, o->port, transport_error(res.error(), t)), true});
    if (res->status != 200)
      return std::unexpected(HttpError{server_message(res->body), false, server_code(res->body)});
    return std::move(res->body);
  }
};

// Reads back a number from a TabSeparated answer.
uint64_t first_number(const std::string& body) { return std::strtoull(body.c_str(), nullptr, 10); }

}  // namespace

Result<void> parse_clickhouse_url(std::string_view url, ClickHouseOptions& o) {
  constexpr std::string_view scheme = "clickhouse://";
  if (url.substr(0, scheme.size()) != scheme)
    return fail("store '{}': expected clickhouse://HOST:PORT/DATABASE", url);
  std::string_view rest = url.substr(scheme.size());
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos || slash + 1 >= rest.size())
    return fail("store '{}': the database is missing (clickhouse://HOST:PORT/DATABASE)", url);
  std::string_view hostport = rest.substr(0, slash);
  std::string_view db = rest.substr(slash + 1);
  if (db.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != std::string_view::npos)
    return fail("store '{}': database names are letters, digits and '_'", url);
  std::string_view host = hostport, port_text;
  if (hostport.starts_with('[')) {  // [v6]:port
    const auto close = hostport.find(']');
    if (close == std::string_view::npos) return fail("store '{}': unbalanced '['", url);
    host = hostport.substr(0, close + 1);
    if (close + 1 < hostport.size()) {
      if (hostport[close + 1] != ':') return fail("store '{}': expected ':' after ']'", url);
      port_text = hostport.substr(close + 2);
    }
  } else if (const auto colon = hostport.rfind(':'); colon != std::string_view::npos) {
    host = hostport.substr(0, colon);
    port_text = hostport.substr(colon + 1);
  }
  if (!port_text.empty() || hostport.ends_with(':')) {
    unsigned port = 0;
    auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || p != port_text.data() + port_text.size() || port == 0 || port > 65535)
      return fail("store '{}': bad port '{}'", url, port_text);
    o.port = static_cast<uint16_t>(port);
  }
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) return fail("store '{}': the host is missing", url);
  o.host = host;
  o.database = db;
  return {};
}

bool clickhouse_version_supported(std::string_view version) {
  int major = 0, minor = 0;
  if (std::sscanf(std::string(version).c_str(), "%d.%d", &major, &minor) != 2) return false;
  return major > kClickHouseMinMajor || (major == kClickHouseMinMajor && minor >= kClickHouseMinMinor);
}

Result<void> read_clickhouse_credentials(const std::string& path, ClickHouseOptions& o) {
  struct stat sb{};
  if (stat(path.c_str(), &sb) != 0) return fail_errno(errno, "--store-credentials {}: {}", path, std::strerror(errno));
  // A password file others can read is a leaked password.
  if (sb.st_mode & 077)
    return fail("--store-credentials {}: readable by others (mode {:o}); chmod 600 it", path, sb.st_mode & 0777);
  std::ifstream in(path);
  if (!in) return fail_errno(errno, "--store-credentials {}: {}", path, std::strerror(errno));
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    const auto eq = line.find('=');
    const std::string key = line.substr(0, eq);
    if (eq == std::string::npos || (key != "user" && key != "password"))
      return fail("--store-credentials {} line {}: expected user=NAME or password=SECRET", path, n);
    (key == "user" ? o.user : o.password) = line.substr(eq + 1);
  }
  return {};
}

namespace {

// One request's worth of encoded rows, with what identifies it on the server.
struct Chunk {
  std::string data;
  size_t rows = 0;
  uint64_t first_id = 0, last_id = 0;
  uint32_t min_end = UINT32_MAX, max_end = 0;  // end_time range, for partition pruning
  Clock::time_point queued;
};

thread_local std::string t_last_table;

}  // namespace

struct ClickHouseStore::Impl {
  ClickHouseOptions o;
  Conn conn{&o};
  std::string raw;       // table names the queries read
  std::string insert_sql;
  std::vector<ClickHouseOptions> nodes;  // every shard's connection (one without a cluster)

  std::mutex write_mu;  // tracker and ids (insert() is called by one writer thread)
  DeltaTracker tracker{1 << 20};
  uint64_t next_id = 1;

  std::mutex mu;  // the queue and stats
  std::condition_variable cv;       // sender: work, flush or stop
  std::condition_variable done_cv;  // sync(): the queue emptied
  std::condition_variable room_cv;  // insert(): room in the queue, or the server went away
  std::deque<Chunk> queue;
  size_t queue_rows = 0;
  bool sending = false;  // a chunk is out of the queue, on its way
  // Encoded-row buffers for reuse (under mu), and the sender's request
  // buffer: a fresh multi-megabyte buffer per batch cost more in page faults
  // (the kernel zeroing new pages) than the encoding itself.
  static constexpr size_t kSpareBuffers = 4, kSpareMaxBytes = 16 << 20;
  std::vector<std::string> spare;
  std::string send_buf;
  bool flush_now = false;
  bool stop = false;
  // The last request reached the server. While it does, a full queue means
  // the server is slower than the input: insert() waits for room (the
  // collector's queue, and a TCP exporter, feel it). While it does not,
  // insert() drops past the bound at once: capture never waits on an outage.
  bool healthy = true;
  size_t row_bytes = 256;  // encoded bytes per row, as last seen: the buffer's size
  StoreStats st;
  std::thread sender;

  ~Impl() = default;

  // Sends one chunk until it is stored, or until stopping; false when given up.
  static constexpr milliseconds kSettle{1000};

  bool deliver(const Chunk& c) {
    const std::string qid = fmt::format("flowscope-{}-{}-{}", o.database, c.first_id, c.last_id);
    milliseconds backoff(100);
    bool maybe_sent = false;
    Clock::time_point answering_since = Clock::time_point::max();  // the server answers again since
    auto set_healthy = [&](bool h) {
      std::lock_guard lk(mu);
      if (healthy != h) room_cv.notify_all();
      healthy = h;
    };
    for (int attempt = 0;; ++attempt) {
      if (maybe_sent) {
        // The earlier attempt may have run (the server kept going after we
        // gave up): send again only if none of its rows arrived. A request
        // the server had not read yet when it froze runs right after it
        // resumes: none of them is trusted absent until the server has
        // answered for kSettle.
        auto landed = arrived(c, qid);
        const auto now = Clock::now();
        if (!landed)
          answering_since = Clock::time_point::max();
        else if (answering_since == Clock::time_point::max())
          answering_since = now;
        if (landed && *landed == c.rows) return set_healthy(true), true;
        if (landed && *landed == 0 && now >= answering_since && now - answering_since >= kSettle) maybe_sent = false;
        if (landed && *landed != 0 && *landed != c.rows) {
          spdlog::error("ClickHouse: {} of {} rows of a batch arrived; the rest are lost", *landed, c.rows);
          std::lock_guard lk(mu);
          st.insert_errors += c.rows - *landed;
          return true;
        }
      }
      if (!maybe_sent) {
        auto r = conn.run(insert_sql, &c.data, qid);
        if (r) return set_healthy(true), true;
        set_healthy(false);
        if (!r.error().transport && r.error().code != 216 /* same query id running */ && attempt >= 4) {
          spdlog::error("ClickHouse refused a batch of {} rows: {}", c.rows, r.error().message);
          std::lock_guard lk(mu);
          st.insert_errors += c.rows;
          return false;
        }
        maybe_sent = r.error().transport || r.error().code == 216;
        if (attempt == 0) spdlog::warn("ClickHouse insert failed, retrying with back-off: {}", r.error().message);
      }
      std::unique_lock lk(mu);
      st.retries++;
      if (cv.wait_for(lk, backoff, [&] { return stop; })) return false;
      backoff = std::min(backoff * 2, o.max_backoff);
    }
  }

  // How many of the chunk's rows are stored; nullopt while unknown (the
  // server away, or the first attempt still running).
  std::optional<uint64_t> arrived(const Chunk& c, const std::string& qid) {
    auto running = conn.run(fmt::format("SELECT count() FROM system.processes WHERE query_id = {}", lit(qid)));
    if (!running || first_number(*running) != 0) return std::nullopt;
    auto n = conn.run(fmt::format(
        "SELECT count() FROM {} WHERE end_time BETWEEN toDateTime({}) AND toDateTime({}) AND id BETWEEN {} AND {}", raw,
        c.min_end, c.max_end, c.first_id, c.last_id));
    if (!n) return std::nullopt;
    return first_number(*n);
  }

  void loop() {
    auto next_size = Clock::now();
    for (;;) {
      Chunk c;
      {
        std::unique_lock lk(mu);
        for (;;) {
          if (queue.empty()) {
            if (stop) return;
            flush_now = false;
            done_cv.notify_all();
            cv.wait_for(lk, o.flush_every);
            if (queue.empty() && Clock::now() >= next_size) break;
            continue;
          }
          const bool due = queue_rows >= o.batch_rows || flush_now || stop ||
                           Clock::now() - queue.front().queued >= o.flush_every;
          if (due) break;
          cv.wait_until(lk, queue.front().queued + o.flush_every);
        }
        // Chunks merged up to batch_rows (one insert() call is never split),
        // into one buffer sized once.
        size_t bytes = 0, rows = 0;
        for (const auto& f : queue) {
          if (rows != 0 && rows + f.rows > o.batch_rows) break;
          rows += f.rows;
          bytes += f.data.size();
        }
        c.data = std::move(send_buf);
        c.data.clear();
        c.data.reserve(bytes);
        while (!queue.empty() && (c.rows == 0 || c.rows + queue.front().rows <= o.batch_rows)) {
          Chunk& f = queue.front();
          if (c.rows == 0) {
            c.first_id = f.first_id;
            c.queued = f.queued;
          }
          c.data += f.data;
          c.rows += f.rows;
          c.last_id = f.last_id;
          c.min_end = std::min(c.min_end, f.min_end);
          c.max_end = std::max(c.max_end, f.max_end);
          queue_rows -= f.rows;
          if (spare.size() < kSpareBuffers && f.data.capacity() <= kSpareMaxBytes) spare.push_back(std::move(f.data));
          queue.pop_front();
        }
        sending = c.rows > 0;
        room_cv.notify_all();
      }
      if (c.rows > 0) {
        const bool ok = deliver(c);
        send_buf = std::move(c.data);
        std::lock_guard lk(mu);
        sending = false;
        if (ok) {
          st.rows_inserted += c.rows;
          st.rows += c.rows;
          st.batches++;
        } else if (stop) {
          st.insert_errors += c.rows + queue_rows;
          if (c.rows + queue_rows)
            spdlog::error("ClickHouse unreachable at shutdown: {} flow records not stored", c.rows + queue_rows);
          queue.clear();
          queue_rows = 0;
          room_cv.notify_all();
        }
        done_cv.notify_all();
      } else {
        // Idle: refresh the size on disk now and then.
        auto b = conn.run(fmt::format(
            "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = {} AND active", lit(o.database)));
        std::lock_guard lk(mu);
        if (b) st.bytes_on_disk = first_number(*b);
        next_size = Clock::now() + std::chrono::seconds(10);
      }
    }
  }

  Result<void> exec(const std::string& sql, bool use_db = true) {
    auto r = conn.run(sql, nullptr, {}, use_db);
    if (!r) return fail("ClickHouse: {} (in: {:.80})", r.error().message, sql);
    return {};
  }

  Result<std::string> select(const std::string& sql) {
    // The API's deadline becomes the request's timeout and the server's
    // max_execution_time.
    milliseconds io(0);
    if (auto at = QueryDeadline::at(); at != Clock::time_point::max()) {
      auto left = std::chrono::duration_cast<milliseconds>(at - Clock::now());
      if (left.count() <= 0) return fail_errno(ETIMEDOUT, "the query ran past its time limit");
      io = left;
    }
    auto r = conn.run(sql, nullptr, {}, true, io);
    if (!r) {
      if (r.error().transport && QueryDeadline::passed())
        return fail_errno(ETIMEDOUT, "the query ran past its time limit");
      return fail("ClickHouse query: {}", r.error().message);
    }
    return std::move(*r);
  }

  // The tracker's open flows kept across a clean restart, in the table
  // open_flows of the node the collector talks to: written at shutdown,
  // read back and dropped at start (after a crash there is none, never a
  // stale one). State, not schema: no migration.
  Result<void> save_open() {
    if (tracker.open() == 0) return {};
    if (auto r = exec("DROP TABLE IF EXISTS open_flows"); !r) return r;
    if (auto r = exec("CREATE TABLE open_flows (seq UInt64, key String, bytes UInt64, packets UInt64, retrans UInt64, "
                      "rev_bytes UInt64) ENGINE = TinyLog");
        !r)
      return r;
    std::string data;
    uint64_t seq = 0;
    tracker.for_each_open([&](const std::string& key, uint64_t b, uint64_t rb, uint64_t p, uint64_t r) {
      put_int(data, seq++);
      put_string(data, key);
      put_int(data, b);
      put_int(data, p);
      put_int(data, r);
      put_int(data, rb);
    });
    auto r = conn.run("INSERT INTO open_flows FORMAT RowBinary", &data);
    if (!r) return fail("ClickHouse: {}", r.error().message);
    return {};
  }

  Result<size_t> restore_open() {
    auto has = conn.run(fmt::format("SELECT count() FROM system.tables WHERE database = {} AND name = 'open_flows'",
                                    lit(o.database)));
    if (!has) return fail("ClickHouse: {}", has.error().message);
    if (first_number(*has) == 0) return 0;
    // Saved by a flowscope before bytes were kept each way: no rev_bytes
    // column, and `bytes` holds both ways (counted as sent).
    auto rev = conn.run(fmt::format(
        "SELECT count() FROM system.columns WHERE database = {} AND table = 'open_flows' AND name = 'rev_bytes'",
        lit(o.database)));
    if (!rev) return fail("ClickHouse: {}", rev.error().message);
    auto body = conn.run(fmt::format("SELECT key, bytes, packets, retrans, {} FROM open_flows ORDER BY seq DESC "
                                     "FORMAT RowBinary",
                                     first_number(*rev) ? "rev_bytes" : "toUInt64(0)"));
    if (!body) return fail("ClickHouse: reading open flows: {}", body.error().message);
    size_t n = 0;
    Reader rd{body->data(), body->data() + body->size()};
    while (rd.more()) {
      std::string key = rd.str();
      const auto b = rd.num<uint64_t>(), p = rd.num<uint64_t>(), r = rd.num<uint64_t>(), rb = rd.num<uint64_t>();
      if (!rd.ok) break;
      n += tracker.restore(key, b, rb, p, r);
    }
    if (auto r = exec("DROP TABLE open_flows"); !r) return std::unexpected(r.error());
    return n;
  }

  // Checks the servers, then brings their schema up to date.
  Result<void> start();
  Result<void> start_node(const ClickHouseOptions& node);
  using ColumnsOf = std::function<Result<std::set<std::string>>(const std::string& table)>;
  Result<void> migrate(uint32_t from, const std::function<Result<void>(const std::string&)>& exec,
                       const ColumnsOf& columns_of);
};

Result<void> ClickHouseStore::Impl::start() {
  // The node the collector talks to, then (cluster mode) every other shard.
  if (auto r = start_node(o); !r) return r;
  for (const auto& [host, port] : o.shards) {
    if (host == o.host && port == o.port) continue;
    ClickHouseOptions n = o;
    n.host = host;
    n.port = port;
    if (auto r = start_node(n); !r) return r;
  }
  auto maxid = conn.run(fmt::format("SELECT max(id), count() FROM {}", raw));
  if (!maxid) return fail("ClickHouse at http://{}:{}: {}", o.host, o.port, maxid.error().message);
  next_id = first_number(*maxid) + 1;
  st.rows = first_number(maxid->substr(maxid->find('\t') + 1));
  auto restored = restore_open();
  if (!restored) return std::unexpected(restored.error());
  if (*restored) spdlog::info("ClickHouse: resumed the totals of {} open flows", *restored);
  return {};
}

Result<void> ClickHouseStore::Impl::start_node(const ClickHouseOptions& node) {
  const Conn conn{&node};
  auto exec = [&](const std::string& sql) -> Result<void> {
    auto r = conn.run(sql);
    if (!r) return fail("ClickHouse at http://{}:{}: {} (in: {:.80})", node.host, node.port, r.error().message, sql);
    return {};
  };
  const std::string where = fmt::format("ClickHouse at http://{}:{}", node.host, node.port);
  auto v = conn.run("SELECT version()", nullptr, {}, false);
  if (!v) {
    const auto& e = v.error();
    if (e.transport) return fail("{}", e.message);
    if (e.code == 192 || e.code == 193 || e.code == 516)
      return fail("{} refused user '{}': {}", where, o.user, e.message);
    return fail("{}: {}", where, e.message);
  }
  if (!clickhouse_version_supported(*v))
    return fail("{} runs version {}; flowscope needs {}.{} or later", where, v->substr(0, v->find('\n')),
                kClickHouseMinMajor, kClickHouseMinMinor);
  auto db = conn.run(fmt::format("SELECT count() FROM system.databases WHERE name = {}", lit(o.database)), nullptr, {},
                     false);
  if (!db) return fail("{}: {}", where, db.error().message);
  if (first_number(*db) == 0)
    return fail("{} has no database '{}' (create it: CREATE DATABASE {})", where, o.database, o.database);
  if (auto r = exec("CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, applied DateTime) ENGINE = TinyLog");
      !r)
    return r;
  auto cur = conn.run("SELECT max(version) FROM schema_migrations");
  if (!cur) return fail("{}: {}", where, cur.error().message);
  const auto version = static_cast<uint32_t>(first_number(*cur));
  if (version > kSchemaVersion)
    return fail("{} database '{}' has schema version {}, newer than this flowscope ({}); use a newer flowscope", where,
                o.database, version, kSchemaVersion);
  auto columns_of = [&](const std::string& table) -> Result<std::set<std::string>> {
    auto have = conn.run(fmt::format("SELECT name FROM system.columns WHERE database = {} AND table = {}",
                                     lit(o.database), lit(table)));
    if (!have) return fail("{}: {}", where, have.error().message);
    std::set<std::string> cols;
    for (size_t pos = 0; pos < have->size();) {
      const size_t nl = have->find('\n', pos);
      cols.insert(have->substr(pos, nl == std::string::npos ? std::string::npos : nl - pos));
      pos = nl == std::string::npos ? have->size() : nl + 1;
    }
    return cols;
  };
  if (version < kSchemaVersion)
    if (auto r = migrate(version, exec, columns_of); !r) return fail("{}: {}", where, r.error().message);
  if (version < kSchemaVersion)
    spdlog::info("{}: database '{}' migrated from schema version {} to {}", where, node.database, version,
                 kSchemaVersion);
  // Ownership evidence: made if missing (no versioned step: nothing reads
  // it in older schemas). Heartbeats repeat a range's key with a later end;
  // the engine keeps the latest, and readers take the max meanwhile.
  {
    const bool shards = !o.cluster.empty();
    const std::string t = shards ? "ownership_local" : "ownership";
    if (auto r = exec(fmt::format(
            "CREATE TABLE IF NOT EXISTS {} (addr FixedString(16), port UInt16, protocol UInt8, host String, "
            "host_id String, from_ns UInt64, pid UInt32, to_ns UInt64, held UInt8, exporter String, "
            "exe Nullable(String), unit Nullable(String), comm Nullable(String), container_id Nullable(String), "
            "netns Nullable(UInt32), day Date MATERIALIZED toDate(intDiv(to_ns, 1000000000))) "
            "ENGINE = ReplacingMergeTree(to_ns) PARTITION BY toYYYYMM(day) "
            "ORDER BY (addr, port, protocol, host, host_id, from_ns, pid)",
            t));
        !r)
      return r;
    if (shards)
      if (auto r = exec(fmt::format("CREATE TABLE IF NOT EXISTS ownership AS ownership_local ENGINE = "
                                    "Distributed({}, {}, ownership_local, rand())",
                                    o.cluster, o.database));
          !r)
        return r;
  }
  // A field added to the field table since the table was made: its column
  // is added (as the SQLite store does), so adding a field needs no
  // migration step. Inserts name their columns, so the order does not matter.
  const bool cluster = !o.cluster.empty();
  for (const std::string table : {cluster ? "flows_local" : "flows", cluster ? "flows" : ""}) {
    if (table.empty()) continue;
    auto have = columns_of(table);
    if (!have) return std::unexpected(have.error());
    const std::set<std::string>& cols = *have;
    Result<void> added;
    schema::for_each_field([&](const auto& f) {
      if (!added || cols.contains(std::string(f.column))) return;
      added = exec(fmt::format("ALTER TABLE {} ADD COLUMN {} {}", table, f.column,
                               ch_type<typename std::remove_cvref_t<decltype(f)>::Type>()));
      if (added) spdlog::info("{}: added column {}.{}", where, table, f.column);
    });
    if (!added) return added;
  }
  return {};
}

Result<void> ClickHouseStore::Impl::migrate(uint32_t from, const std::function<Result<void>(const std::string&)>& exec,
                                            const ColumnsOf& columns_of) {
  // Cluster mode: each shard holds <t>_local (and the views feeding its
  // rollups); <t> is a Distributed table over them, on every node. 18.16
  // runs ON CLUSTER only with ZooKeeper, so start() runs these statements on
  // each shard it is given.
  const bool cluster = !o.cluster.empty();
  const std::string sfx = cluster ? "_local" : "";
  auto distributed = [&](const std::string& t) {
    return fmt::format("CREATE TABLE IF NOT EXISTS {0} AS {0}_local ENGINE = Distributed({1}, {2}, {0}_local, rand())",
                       t, o.cluster, o.database);
  };
  std::vector<std::pair<uint32_t, std::vector<std::string>>> steps;
  steps.push_back({1, {raw_table_sql("flows" + sfx)}});
  if (cluster) steps.back().second.push_back(distributed("flows"));
  std::vector<std::string> v2;
  // Version 3 rebuilds them with failures and drops: the same statements.
  for (const auto& r : kRollups) {
    const std::string t = std::string(r.table) + sfx;
    // Rebuilt from the raw table, then fed by the view: dropping first makes
    // a half-done run safe to repeat (the Distributed table too, which
    // copies the columns of the local one when made).
    if (cluster) v2.push_back(fmt::format("DROP TABLE IF EXISTS {}", r.table));
    v2.push_back(fmt::format("DROP TABLE IF EXISTS {}_mv", t));
    v2.push_back(fmt::format("DROP TABLE IF EXISTS {}", t));
    v2.push_back(rollup_table_sql(t));
    v2.push_back(fmt::format("INSERT INTO {} {}", t, rollup_select(r.seconds, "flows" + sfx)));
    v2.push_back(fmt::format("CREATE MATERIALIZED VIEW IF NOT EXISTS {0}_mv TO {0} AS {1}", t,
                             rollup_select(r.seconds, "flows" + sfx)));
    if (cluster) v2.push_back(distributed(r.table));
  }
  steps.push_back({2, v2});
  steps.push_back({3, v2});
  // Version 4 keeps bytes each way. A table made before it gets the columns
  // (a half-done run finds them there); its records split their d_bytes in
  // the proportion of their totals each way, exact for records that are
  // their own share. Then the rollups are rebuilt with them.
  std::vector<std::string> v4;
  if (from >= 1) {
    constexpr const char* kOut =
        "toUInt64(if(bytes + rev_bytes = 0, 0, round(d_bytes * (bytes / (bytes + rev_bytes)))))";
    for (const std::string& table : {"flows" + sfx, cluster ? std::string("flows") : std::string()}) {
      if (table.empty()) continue;
      auto cols = columns_of(table);
      if (!cols) return std::unexpected(cols.error());
      // The Distributed table only reads: no defaults there.
      const bool local = table == "flows" + sfx;
      if (!cols->contains("d_bytes_out"))
        v4.push_back(fmt::format("ALTER TABLE {} ADD COLUMN d_bytes_out UInt64{}", table,
                                 local ? fmt::format(" DEFAULT {}", kOut) : ""));
      if (!cols->contains("d_bytes_in"))
        v4.push_back(fmt::format("ALTER TABLE {} ADD COLUMN d_bytes_in UInt64{}", table,
                                 local ? fmt::format(" DEFAULT d_bytes - {}", kOut) : ""));
    }
  }
  v4.insert(v4.end(), v2.begin(), v2.end());
  steps.push_back({4, std::move(v4)});
  for (auto& [version, stmts] : steps) {
    if (version <= from) continue;
    for (const auto& s : stmts)
      if (auto r = exec(s); !r) return fail("migration to schema version {}: {}", version, r.error().message);
    if (auto r = exec(fmt::format("INSERT INTO schema_migrations VALUES ({}, now())", version)); !r) return r;
  }
  return {};
}

ClickHouseStore::ClickHouseStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ClickHouseStore::~ClickHouseStore() {
  Impl& i = *impl_;
  if (!i.sender.joinable()) return;
  // Give what is queued one chance to go (bounded by the io timeout).
  (void)sync(i.o.io_timeout);
  {
    std::lock_guard lk(i.mu);
    i.stop = true;
  }
  i.cv.notify_all();
  i.sender.join();
  std::lock_guard lk(i.write_mu);
  // A destructor cannot return the error: say what is lost instead.
  if (auto r = i.save_open(); !r)
    spdlog::error("the totals of {} open flows are not kept across the restart ({}); their next records count "
                  "their whole totals again in aggregates",
                  i.tracker.open(), r.error().message);
}

Result<std::unique_ptr<ClickHouseStore>> ClickHouseStore::open(const ClickHouseOptions& opts) {
  auto impl = std::make_unique<Impl>();
  impl->o = opts;
  impl->tracker = DeltaTracker(opts.max_tracked_flows);
  impl->raw = "flows";
  impl->nodes.push_back(opts);
  for (const auto& [host, port] : opts.shards) {
    if (host == opts.host && port == opts.port) continue;
    impl->nodes.push_back(opts);
    impl->nodes.back().host = host;
    impl->nodes.back().port = port;
  }
  impl->insert_sql = fmt::format("INSERT INTO {} ({}) FORMAT RowBinary", impl->raw, column_list());
  if (auto r = impl->start(); !r) return std::unexpected(r.error());
  Impl* p = impl.get();
  impl->sender = std::thread([p] { p->loop(); });
  return std::unique_ptr<ClickHouseStore>(new ClickHouseStore(std::move(impl)));
}

Result<void> ClickHouseStore::insert(std::vector<FlowRow>& rows) {
  if (rows.empty()) return {};
  Impl& i = *impl_;
  Chunk c;
  {
    std::lock_guard lk(i.mu);
    if (!i.spare.empty()) {
      c.data = std::move(i.spare.back());
      i.spare.pop_back();
    }
  }
  c.data.clear();
  {
    std::lock_guard lk(i.write_mu);
    c.data.reserve(rows.size() * (i.row_bytes + i.row_bytes / 8));
    for (auto& r : rows) {
      i.tracker.account(r);
      count_once(r);
      r.id = static_cast<int64_t>(i.next_id++);
      const auto end = static_cast<uint32_t>(r.end_ns / 1'000'000'000ull);
      c.min_end = std::min(c.min_end, end);
      c.max_end = std::max(c.max_end, end);
      encode_row(c.data, r);
    }
    i.row_bytes = c.data.size() / rows.size() + 1;
  }
  c.rows = rows.size();
  c.first_id = static_cast<uint64_t>(rows.front().id);
  c.last_id = static_cast<uint64_t>(rows.back().id);
  c.queued = Clock::now();
  std::unique_lock lk(i.mu);
  i.st.tracker_evicted = i.tracker.evicted();
  // A reachable server that is slower than the input: wait for room (at
  // most an io timeout: a server that stops answering is noticed by then).
  if (i.queue_rows + c.rows > i.o.max_pending_rows && i.healthy && c.rows <= i.o.max_pending_rows)
    i.room_cv.wait_for(lk, i.o.io_timeout, [&] {
      return i.queue_rows + c.rows <= i.o.max_pending_rows || !i.healthy || i.stop;
    });
  if (i.queue_rows + c.rows > i.o.max_pending_rows) {
    i.st.insert_errors += c.rows;
    return fail("ClickHouse does not keep up: {} flow records dropped ({} wait for the server, at most {})", c.rows,
                i.queue_rows, i.o.max_pending_rows);
  }
  i.queue_rows += c.rows;
  const bool full = i.queue_rows >= i.o.batch_rows;
  i.queue.push_back(std::move(c));
  if (full) i.cv.notify_all();
  return {};
}

Result<void> ClickHouseStore::sync(std::chrono::milliseconds timeout) {
  Impl& i = *impl_;
  std::unique_lock lk(i.mu);
  i.flush_now = true;
  i.cv.notify_all();
  if (!i.done_cv.wait_for(lk, timeout, [&] { return (i.queue.empty() && !i.sending) || i.stop; }))
    return fail_errno(ETIMEDOUT, "ClickHouse: {} flow records still wait for the server", i.queue_rows);
  return {};
}

namespace {

// WHERE clauses from fixed fragments; values are numbers or hex literals.
struct Where {
  std::string sql;
  void add(const std::string& fragment) {
    sql += sql.empty() ? " WHERE " : " AND ";
    sql += fragment;
  }
};

void add_common(Where& w, const FlowFilter& f) {
  if (f.protocol) w.add(fmt::format("protocol = {}", *f.protocol));
  if (f.direction) w.add(fmt::format("direction = {}", lit(*f.direction)));
  if (f.comm) w.add(fmt::format("comm = {}", lit(*f.comm)));
  if (f.container) {
    if (f.container->size() >= 64)
      w.add(fmt::format("container_id = {}", lit(*f.container)));
    else
      w.add(fmt::format("substring(container_id, 1, {}) = {}", f.container->size(), lit(*f.container)));
  }
  if (f.close_reason) w.add(fmt::format("close_reason = {}", lit(*f.close_reason)));
  if (f.exporter) w.add(fmt::format("exporter = {}", lit(*f.exporter)));
}

Where raw_where(const FlowFilter& f) {
  Where w;
  // end_time bounds first: they prune partitions and the sort key.
  if (f.from_ns) {
    w.add(fmt::format("end_time >= toDateTime({})", *f.from_ns / 1'000'000'000ull));
    w.add(fmt::format("end_ns >= {}", *f.from_ns));
  }
  if (f.to_ns) w.add(fmt::format("start_ns <= {}", *f.to_ns));
  auto range = [](const char* col, const Cidr& c) {
    return fmt::format("{} BETWEEN {} AND {}", col, lit(c.first), lit(c.last));
  };
  if (f.addr) w.add(fmt::format("({} OR {})", range("src_ip", *f.addr), range("dst_ip", *f.addr)));
  if (f.src) w.add(range("src_ip", *f.src));
  if (f.dst) w.add(range("dst_ip", *f.dst));
  if (f.port) w.add(fmt::format("(src_port = {0} OR dst_port = {0})", *f.port));
  if (f.pid) w.add(fmt::format("pid = {}", *f.pid));
  if (f.workload)
    w.add(fmt::format("coalesce(nullIf(unit, ''), nullIf(exe, ''), nullIf(comm, '')) = {}", lit(*f.workload)));
  if (f.host) w.add(fmt::format("host = {}", lit(*f.host)));
  if (f.netns) w.add(fmt::format("netns = {}", *f.netns));
  if (f.interim) w.add(fmt::format("interim = {}", *f.interim ? 1 : 0));
  if (f.drop_reason) {
    // drops holds the JSON object {"REASON":count,...} the SQLite store keeps.
    if (*f.drop_reason == "any")
      w.add("drops_total > 0");
    else
      w.add(fmt::format("position(drops, {}) > 0", lit("\"" + *f.drop_reason + "\":")));
  }
  if (f.exclude_port) w.add(fmt::format("(src_port != {0} AND dst_port != {0})", *f.exclude_port));
  if (!f.conversations.empty()) w.add(fmt::format("conversation IN ({})", fmt::join(f.conversations, ",")));
  add_common(w, f);
  return w;
}

// A rollup answers a filter when it has every column the filter needs.
bool rollup_can_filter(const FlowFilter& f) {
  return !f.addr && !f.src && !f.dst && !f.port && !f.pid && !f.interim && !f.drop_reason && !f.exclude_port &&
         !f.host && !f.netns && !f.workload && f.conversations.empty();
}

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

// Whether the rollup of `seconds` holds the data of [from, to] whole: its
// buckets must start at `from` and end at `to` (or `to` lies in the future,
// where no record is), and its retention must reach back to `from`.
bool rollup_covers(uint32_t seconds, std::chrono::seconds retention, std::optional<uint64_t> from,
                   std::optional<uint64_t> to) {
  const uint64_t res = uint64_t{seconds} * 1'000'000'000ull;
  const uint64_t now = now_ns();
  if (from && *from % res != 0) return false;
  if (to && (*to + 1) % res != 0 && *to < now) return false;
  if (retention.count() > 0) {
    const uint64_t keep = static_cast<uint64_t>(retention.count()) * 1'000'000'000ull;
    // Whole days are dropped: a day's margin.
    const uint64_t oldest = now > keep ? now - keep + 86'400'000'000'000ull : 0;
    if (!from || *from < oldest) return false;
  }
  return true;
}

std::chrono::seconds rollup_retention(const ClickHouseOptions& o, uint32_t seconds) {
  return seconds == 60 ? o.retention_1m : seconds == 300 ? o.retention_5m : o.retention_1h;
}

}  // namespace

std::string ClickHouseStore::last_table() { return t_last_table; }

Result<FlowPage> ClickHouseStore::query(const FlowQuery& q) {
  Where w = raw_where(q.filter);
  auto body = impl_->select(fmt::format(
      "SELECT {} FROM {}{} ORDER BY end_ns DESC, id DESC LIMIT {}, {} FORMAT RowBinary", read_columns(), impl_->raw,
      w.sql, q.offset, uint64_t{q.limit} + 1));
  if (!body) return std::unexpected(body.error());
  FlowPage page;
  Reader rd{body->data(), body->data() + body->size()};
  while (rd.more()) {
    FlowRow r = decode_row(rd);
    if (!rd.ok) return fail("ClickHouse: a flow row did not decode");
    page.flows.push_back(std::move(r));
  }
  if (page.flows.size() > q.limit) {
    page.flows.resize(q.limit);
    page.more = true;
  }
  return page;
}

Result<std::vector<TopEntry>> ClickHouseStore::top(const TopQuery& q) {
  const Impl& i = *impl_;
  // Keys as strings; addresses as their 16 bytes.
  std::vector<std::string> keys;
  bool ip_keys = false;
  bool net_keys = false;  // two keys: an address's halves, to become one network
  const char* nonnull = nullptr;
  bool rollup_ok = i.o.use_rollups && rollup_can_filter(q.filter);
  std::string drops = kDropsExpr;
  std::string array_join;
  switch (q.group) {
    case TopGroup::Src: keys = {"toString(src_ip)"}; ip_keys = true; rollup_ok = false; break;
    case TopGroup::Dst: keys = {"toString(dst_ip)"}; ip_keys = true; rollup_ok = false; break;
    case TopGroup::Pair: keys = {"toString(src_ip)", "toString(dst_ip)"}; ip_keys = true; rollup_ok = false; break;
    // Rollups fold ephemeral ports: ports come from the raw table.
    case TopGroup::Port: keys = {"toString(if(direction = 'inbound', src_port, dst_port))"}; rollup_ok = false; break;
    case TopGroup::Process: keys = {"assumeNotNull(comm)"}; nonnull = "isNotNull(comm)"; break;
    case TopGroup::Container: keys = {"assumeNotNull(container_id)"}; nonnull = "isNotNull(container_id)"; break;
    case TopGroup::Host: keys = {"assumeNotNull(host)"}; nonnull = "ifNull(host, '') != ''"; rollup_ok = false; break;
    case TopGroup::Netns: keys = {"toString(assumeNotNull(netns))"}; nonnull = "isNotNull(netns)"; rollup_ok = false; break;
    case TopGroup::Close: keys = {"assumeNotNull(close_reason)"}; nonnull = "isNotNull(close_reason)"; break;
    case TopGroup::SrcCidr:
    case TopGroup::DstCidr: {
      // The address's two halves as numbers with the host bits cleared (no
      // IPv6 functions in 18.16); read back into the network's text form.
      const char* col = q.group == TopGroup::SrcCidr ? "src_ip" : "dst_ip";
      auto mask = [](unsigned bits, unsigned half) -> uint64_t {  // half 0: bits 0..63
        const unsigned b = bits > half * 64 ? std::min(64u, bits - half * 64) : 0;
        return b == 0 ? 0 : ~uint64_t{0} << (64 - b);
      };
      const unsigned b4 = 96 + std::min<unsigned>(q.cidr4, 32), b6 = std::min<unsigned>(q.cidr6, 128);
      for (unsigned half : {0u, 1u})
        keys.push_back(fmt::format(
            "toString(bitAnd(reinterpretAsUInt64(reverse(substring(toString({0}), {1}, 8))), "
            "if(substring(toString({0}), 1, 12) = unhex('00000000000000000000FFFF'), toUInt64({2}), toUInt64({3}))))",
            col, 1 + half * 8, mask(b4, half), mask(b6, half)));
      net_keys = true;
      rollup_ok = false;
      break;
    }
    case TopGroup::DropReason:
      // One row per "REASON":count of the drops JSON (no JSON functions in
      // 18.16): the reason and its count.
      array_join = " ARRAY JOIN extractAll(ifNull(drops, ''), '\"[A-Za-z0-9_]+\":[0-9]+') AS dr_tok";
      keys = {"extract(dr_tok, '\"([A-Za-z0-9_]+)\"')"};
      drops = "if(interim AND cumulative, toUInt64(0), toUInt64(extract(dr_tok, ':([0-9]+)')))";
      rollup_ok = false;
      break;
  }
  std::string table = i.raw;
  Where w;
  std::string b = "d_bytes", p = "d_packets", f = "toUInt64(first)", r = "d_retrans", fl = kFailureExpr;
  std::string bo = "d_bytes_out", bi = "d_bytes_in";
  if (rollup_ok) {
    for (const auto& ru : kRollups) {
      if (!rollup_covers(ru.seconds, rollup_retention(i.o, ru.seconds), q.filter.from_ns, q.filter.to_ns)) continue;
      table = ru.table;
      break;
    }
  }
  if (table != i.raw) {
    if (q.filter.from_ns) w.add(fmt::format("time >= toDateTime({})", *q.filter.from_ns / 1'000'000'000ull));
    add_common(w, q.filter);
    // NULL is '' in a rollup.
    switch (q.group) {
      case TopGroup::Process: keys = {"comm"}; nonnull = "comm != ''"; break;
      case TopGroup::Container: keys = {"container_id"}; nonnull = "container_id != ''"; break;
      default: keys = {"close_reason"}; nonnull = "close_reason != ''"; break;
    }
    b = "bytes", p = "packets", f = "flows", r = "retrans", fl = "failures", drops = "drops";
    bo = "bytes_out", bi = "bytes_in";
  } else {
    w = raw_where(q.filter);
  }
  if (nonnull) w.add(nonnull);
  std::string sel, group;
  for (size_t k = 0; k < keys.size(); ++k) {
    sel += fmt::format("{} AS k{}, ", keys[k], k);
    group += fmt::format("{}k{}", k ? ", " : "", k);
  }
  const char* order = "b";
  switch (q.by) {
    case TopMetric::Bytes: order = "b"; break;
    case TopMetric::Flows: order = "f"; break;
    case TopMetric::Retrans: order = "r"; break;
    case TopMetric::Failures: order = "fl"; break;
    case TopMetric::Drops: order = "dr"; break;
  }
  auto body = impl_->select(fmt::format(
      "SELECT {0}sum({1}) AS b, sum({2}) AS p, sum({3}) AS f, sum({4}) AS r, sum({10}) AS fl, sum({11}) AS dr, "
      "sum({13}) AS bo, sum({14}) AS bi FROM {5}{12}{6} GROUP BY {7} ORDER BY {8} DESC, b DESC, {7} LIMIT {9} "
      "FORMAT RowBinary",
      sel, b, p, f, r, table, w.sql, group, order, q.limit, fl, drops, array_join, bo, bi));
  t_last_table = table;
  if (!body) return std::unexpected(body.error());
  std::vector<TopEntry> out;
  Reader rd{body->data(), body->data() + body->size()};
  while (rd.more()) {
    TopEntry e;
    for (size_t k = 0; k < keys.size(); ++k) {
      std::string s = rd.str();
      if (ip_keys && s.size() == 16) {
        Ip16 a;
        std::memcpy(a.data(), s.data(), 16);
        s = ip16_to_string(a);
      }
      e.key.push_back(std::move(s));
    }
    if (net_keys && e.key.size() == 2) {
      Ip16 a;
      for (size_t half = 0; half < 2; ++half) {
        const uint64_t v = std::strtoull(e.key[half].c_str(), nullptr, 10);
        for (size_t k = 0; k < 8; ++k) a[half * 8 + k] = static_cast<uint8_t>(v >> (56 - 8 * k));
      }
      e.key = {network_key(a, q.cidr4, q.cidr6)};
    }
    e.bytes = rd.num<uint64_t>();
    e.packets = rd.num<uint64_t>();
    e.flows = rd.num<uint64_t>();
    e.retrans = rd.num<uint64_t>();
    e.failures = rd.num<uint64_t>();
    e.drops = rd.num<uint64_t>();
    e.bytes_out = rd.num<uint64_t>();
    e.bytes_in = rd.num<uint64_t>();
    if (!rd.ok) return fail("ClickHouse: a top row did not decode");
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::vector<SeriesPoint>> ClickHouseStore::series(const SeriesQuery& q) {
  if (!q.filter.from_ns || !q.filter.to_ns || q.interval_ns == 0 || *q.filter.to_ns < *q.filter.from_ns)
    return fail("time series needs from <= to and an interval");
  const uint64_t from = *q.filter.from_ns, to = *q.filter.to_ns;
  if ((to - from) / q.interval_ns > 100'000) return fail("time series would have more than 100000 points");
  const Impl& i = *impl_;
  FlowFilter f = q.filter;
  f.from_ns.reset();
  f.to_ns.reset();
  std::string table = i.raw;
  if (i.o.use_rollups && rollup_can_filter(f)) {
    for (const auto& ru : kRollups) {
      const uint64_t res = uint64_t{ru.seconds} * 1'000'000'000ull;
      if (q.interval_ns % res != 0) continue;
      if (!rollup_covers(ru.seconds, rollup_retention(i.o, ru.seconds), from, to)) continue;
      table = ru.table;
      break;
    }
  }
  std::string sql;
  if (table == i.raw) {
    // Records are placed by their end time (when their counts were taken).
    Where w = raw_where(f);
    w.add(fmt::format("end_time BETWEEN toDateTime({}) AND toDateTime({})", from / 1'000'000'000ull,
                      to / 1'000'000'000ull));
    w.add(fmt::format("end_ns BETWEEN {} AND {}", from, to));
    sql = fmt::format(
        "SELECT intDiv(end_ns - {}, {}) AS bucket, sum(d_bytes), sum(d_packets), sum(toUInt64(first)), "
        "sum(d_retrans), sum({}), sum({}), sum(d_bytes_out), sum(d_bytes_in) FROM {}{} GROUP BY bucket "
        "ORDER BY bucket FORMAT RowBinary",
        from, q.interval_ns, kFailureExpr, kDropsExpr, table, w.sql);
  } else {
    Where w;
    add_common(w, f);
    w.add(fmt::format("time BETWEEN toDateTime({}) AND toDateTime({})", from / 1'000'000'000ull,
                      to / 1'000'000'000ull));
    sql = fmt::format(
        "SELECT intDiv(toUInt64(time) * 1000000000 - {}, {}) AS bucket, sum(bytes), sum(packets), sum(flows), "
        "sum(retrans), sum(failures), sum(drops), sum(bytes_out), sum(bytes_in) FROM {}{} GROUP BY bucket "
        "ORDER BY bucket FORMAT RowBinary",
        from, q.interval_ns, table, w.sql);
  }
  auto body = impl_->select(sql);
  t_last_table = table;
  if (!body) return std::unexpected(body.error());
  std::vector<SeriesPoint> out;
  Reader rd{body->data(), body->data() + body->size()};
  while (rd.more()) {
    SeriesPoint p;
    p.time_ns = from + rd.num<uint64_t>() * q.interval_ns;
    p.bytes = rd.num<uint64_t>();
    p.packets = rd.num<uint64_t>();
    p.flows = rd.num<uint64_t>();
    p.retrans = rd.num<uint64_t>();
    p.failures = rd.num<uint64_t>();
    p.drops = rd.num<uint64_t>();
    p.bytes_out = rd.num<uint64_t>();
    p.bytes_in = rd.num<uint64_t>();
    if (!rd.ok) return fail("ClickHouse: a series row did not decode");
    out.push_back(p);
  }
  return out;
}

Result<std::vector<std::string>> ClickHouseStore::complete(const CompleteQuery& q) {
  std::string col;
  switch (q.field) {
    case CompleteField::Process: col = "ifNull(comm, '')"; break;
    case CompleteField::Container: col = "ifNull(container_id, '')"; break;
    case CompleteField::Host: col = "ifNull(host, '')"; break;
    case CompleteField::Exporter: col = "exporter"; break;
    case CompleteField::Close: col = "ifNull(close_reason, '')"; break;
    case CompleteField::Direction: col = "direction"; break;
    case CompleteField::DropReason:
      col = "arrayJoin(extractAll(ifNull(drops, ''), '\"([A-Za-z0-9_]+)\":'))";
      break;
  }
  Where w;
  w.add(fmt::format("end_time >= toDateTime({})", q.from_ns / 1'000'000'000ull));
  w.add(fmt::format("end_ns >= {}", q.from_ns));
  auto body = impl_->select(fmt::format(
      "SELECT DISTINCT v FROM (SELECT {} AS v FROM {}{}) WHERE v != '' AND startsWith(v, {}) ORDER BY v LIMIT {} "
      "FORMAT RowBinary",
      col, impl_->raw, w.sql, lit(q.prefix), q.limit));
  if (!body) return std::unexpected(body.error());
  std::vector<std::string> out;
  Reader rd{body->data(), body->data() + body->size()};
  while (rd.more()) {
    out.push_back(rd.str());
    if (!rd.ok) return fail("ClickHouse: a completion row did not decode");
  }
  return out;
}

Result<void> ClickHouseStore::insert_claims(const std::vector<OwnershipClaim>& claims) {
  if (claims.empty()) return {};
  std::string b;
  for (const auto& c : claims) {
    put(b, c.addr);
    put(b, c.port);
    put(b, c.protocol);
    put(b, c.host.value_or(""));
    put(b, c.host_id.value_or(""));
    put(b, c.from_ns);
    put(b, c.pid.value_or(0));
    put(b, c.to_ns);
    put(b, uint8_t{c.held});
    put(b, c.exporter);
    put(b, c.exe);
    put(b, c.unit);
    put(b, c.comm);
    put(b, c.container_id);
    put(b, c.netns);
  }
  // Sent at once, not through the flow queue: evidence is small, and the
  // flows that came with it are queued only after it is stored.
  auto r = impl_->conn.run(
      "INSERT INTO ownership (addr, port, protocol, host, host_id, from_ns, pid, to_ns, held, exporter, exe, unit, "
      "comm, container_id, netns) FORMAT RowBinary",
      &b);
  if (!r) return fail("ClickHouse ownership insert: {}", r.error().message);
  return {};
}

namespace {
// A range's latest state: its row with the largest end (ReplacingMergeTree
// keeps only that one once parts merge).
constexpr const char* kClaimColumns =
    "addr, port, protocol, host, host_id, from_ns, pid, max(to_ns) AS to, argMax(held, to_ns), any(exporter), "
    "argMax(exe, to_ns), argMax(unit, to_ns), argMax(comm, to_ns), argMax(container_id, to_ns), "
    "argMax(netns, to_ns)";
}  // namespace

Result<std::vector<OwnershipClaim>> ClickHouseStore::claims(const ClaimQuery& q) {
  std::vector<OwnershipClaim> out;
  if (q.addrs.empty()) return out;
  std::string in;
  for (const auto& a : q.addrs)
    in += fmt::format("{}{}", in.empty() ? "" : ",", lit(std::string_view(reinterpret_cast<const char*>(a.data()), 16)));
  auto body = impl_->select(fmt::format(
      "SELECT {} FROM ownership WHERE addr IN ({}) AND from_ns <= {} GROUP BY addr, port, protocol, host, host_id, "
      "from_ns, pid HAVING to >= {} FORMAT RowBinary",
      kClaimColumns, in, q.to_ns, q.from_ns));
  if (!body) return std::unexpected(body.error());
  Reader rd{body->data(), body->data() + body->size()};
  while (rd.more()) {
    OwnershipClaim c;
    std::string host, host_id;
    uint32_t pid = 0;
    uint8_t held = 0;
    get(rd, c.addr);
    get(rd, c.port);
    get(rd, c.protocol);
    get(rd, host);
    get(rd, host_id);
    get(rd, c.from_ns);
    get(rd, pid);
    get(rd, c.to_ns);
    get(rd, held);
    get(rd, c.exporter);
    get(rd, c.exe);
    get(rd, c.unit);
    get(rd, c.comm);
    get(rd, c.container_id);
    get(rd, c.netns);
    if (!rd.ok) return fail("ClickHouse: an ownership row did not decode");
    c.host = std::move(host);
    c.host_id = std::move(host_id);
    if (pid) c.pid = pid;
    c.held = held != 0;
    out.push_back(std::move(c));
  }
  return out;
}

Result<std::vector<Claimant>> ClickHouseStore::claimants(uint64_t since_ns) {
  // The stop marker is a released claim of the unspecified address.
  auto body = impl_->select(fmt::format(
      "SELECT host, host_id, max(to_ns), maxIf(to_ns, addr = toFixedString(unhex('{}'), 16) AND held = 0) "
      "FROM ownership WHERE to_ns >= {} GROUP BY host, host_id FORMAT RowBinary",
      std::string(32, '0'), since_ns));
  if (!body) return std::unexpected(body.error());
  std::vector<Claimant> out;
  Reader rd{body->data(), body->data() + body->size()};
  while (rd.more()) {
    Claimant c;
    uint64_t stop = 0;
    get(rd, c.host);
    get(rd, c.host_id);
    get(rd, c.reported_to_ns);
    get(rd, stop);
    if (!rd.ok) return fail("ClickHouse: a claimant row did not decode");
    c.stopped = stop != 0 && stop >= c.reported_to_ns;
    out.push_back(std::move(c));
  }
  return out;
}

Result<uint64_t> ClickHouseStore::expire(uint64_t cutoff_ns) {
  Impl& i = *impl_;
  // Whole day partitions that end before the cutoff's day, per table.
  const std::string sfx = i.o.cluster.empty() ? "" : "_local";
  auto drop_on = [&](const Conn& conn, const std::string& table, uint64_t cutoff_s) -> Result<uint64_t> {
    auto parts = conn.run(fmt::format(
        "SELECT partition, sum(rows) FROM system.parts WHERE database = {} AND table = {} AND active "
        "GROUP BY partition HAVING toUInt32(partition) < toYYYYMMDD(toDateTime({})) ORDER BY partition",
        lit(i.o.database), lit(table), cutoff_s));
    if (!parts) return fail("ClickHouse retention: {}", parts.error().message);
    uint64_t n = 0;
    std::string_view rest = *parts;
    while (!rest.empty()) {
      const auto nl = rest.find('\n');
      const std::string_view line = rest.substr(0, nl);
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
      const auto tab = line.find('\t');
      if (tab == std::string_view::npos) continue;
      const std::string partition(line.substr(0, tab));
      if (partition.find_first_not_of("0123456789") != std::string::npos) continue;
      if (auto r = conn.run(fmt::format("ALTER TABLE {} DROP PARTITION {}", table, partition)); !r)
        return fail("ClickHouse retention: {}", r.error().message);
      n += std::strtoull(std::string(line.substr(tab + 1)).c_str(), nullptr, 10);
    }
    return n;
  };
  auto drop = [&](const std::string& table, uint64_t cutoff_s) -> Result<uint64_t> {
    uint64_t n = 0;
    for (const auto& node : i.nodes) {
      auto r = drop_on(Conn{&node}, table, cutoff_s);
      if (!r) return r;
      n += *r;
    }
    return n;
  };
  auto n = drop("flows" + sfx, cutoff_ns / 1'000'000'000ull);
  if (!n) return n;
  const auto now_s = static_cast<uint64_t>(now_ns() / 1'000'000'000ull);
  for (const auto& ru : kRollups) {
    const auto keep = rollup_retention(i.o, ru.seconds);
    if (keep.count() <= 0 || static_cast<uint64_t>(keep.count()) >= now_s) continue;
    if (auto r = drop(ru.table + sfx, now_s - static_cast<uint64_t>(keep.count())); !r) return r;
  }
  std::lock_guard lk(i.mu);
  i.st.retention_deleted += *n;
  i.st.rows = i.st.rows > *n ? i.st.rows - *n : 0;
  return n;
}

StoreStats ClickHouseStore::stats() {
  std::lock_guard lk(impl_->mu);
  StoreStats s = impl_->st;
  s.pending_rows = impl_->queue_rows;
  return s;
}

}  // namespace flowscope
