#include "storage/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <variant>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "flow/fields.h"
#include "storage/delta_tracker.h"
#include "storage/query_deadline.h"

namespace flowscope {

const char* to_string(TopGroup g) {
  switch (g) {
    case TopGroup::Src: return "src";
    case TopGroup::Dst: return "dst";
    case TopGroup::Pair: return "pair";
    case TopGroup::Port: return "port";
    case TopGroup::Process: return "process";
    case TopGroup::Container: return "container";
    case TopGroup::Host: return "host";
    case TopGroup::Netns: return "netns";
    case TopGroup::Close: return "close";
    case TopGroup::DropReason: return "drop_reason";
    case TopGroup::SrcCidr: return "src_cidr";
    case TopGroup::DstCidr: return "dst_cidr";
  }
  return "src";
}

std::string network_key(Ip16 a, uint8_t cidr4, uint8_t cidr6) {
  const bool v4 = ip16_is_v4(a);
  const unsigned len = v4 ? cidr4 : cidr6;
  const unsigned bits = v4 ? 96 + len : len;  // of the 16-byte form
  for (unsigned i = 0; i < 16; ++i) {
    const unsigned keep = bits > i * 8 ? std::min(8u, bits - i * 8) : 0;
    a[i] &= static_cast<uint8_t>(0xff00u >> keep);
  }
  return fmt::format("{}/{}", ip16_to_string(a), len);
}

const char* to_string(CompleteField f) {
  switch (f) {
    case CompleteField::Process: return "process";
    case CompleteField::Container: return "container";
    case CompleteField::Host: return "host";
    case CompleteField::Exporter: return "exporter";
    case CompleteField::Close: return "close";
    case CompleteField::Direction: return "direction";
    case CompleteField::DropReason: return "drops";
  }
  return "process";
}

const char* to_string(TopMetric m) {
  switch (m) {
    case TopMetric::Bytes: return "bytes";
    case TopMetric::Flows: return "flows";
    case TopMetric::Retrans: return "retransmits";
    case TopMetric::Failures: return "failures";
    case TopMetric::Drops: return "drops";
  }
  return "bytes";
}

namespace {

// Schema version 4 (1 plus the preexisting column, added in place; 3 adds
// the per-minute rollup, built from the flows at the first start; 4 keeps
// bytes each way, d_bytes_out and d_bytes_in, added in place and the rollup
// rebuilt).
// Addresses are 16-byte BLOBs (IPv4 mapped into IPv6) so a CIDR is a BETWEEN
// over an index; text forms are made on the way out. The flows table's
// columns come from the field table (flow/fields.h), followed by the store's
// own: drops_total (for sums without parsing JSON), this record's share of
// the flow's totals (d_*), and whether it is the flow's first record.
constexpr int kSchemaVersion = 4;

struct StoreColumn {
  const char* name;
  const char* decl;
};
constexpr StoreColumn kStoreColumns[] = {{"drops_total", "INTEGER NOT NULL"},
                                         {"d_bytes", "INTEGER NOT NULL"},
                                         {"d_packets", "INTEGER NOT NULL"},
                                         {"d_retrans", "INTEGER NOT NULL"},
                                         {"first", "INTEGER NOT NULL"},
                                         {"d_bytes_out", "INTEGER NOT NULL DEFAULT 0"},
                                         {"d_bytes_in", "INTEGER NOT NULL DEFAULT 0"}};

const char* sql_type(schema::Sql s) {
  switch (s) {
    case schema::Sql::Integer: return "INTEGER";
    case schema::Sql::Text: return "TEXT";
    case schema::Sql::Blob: return "BLOB";
  }
  return "BLOB";
}

// NULL stands for "not sent": optional fields, and drops when there are none.
template <class T>
constexpr bool nullable_column() {
  return schema::is_optional_v<T> || std::is_same_v<T, std::vector<DropCount>>;
}

// A flow column's declaration. Columns added after version 1 carry a default,
// so ALTER TABLE can add them to an existing database.
template <class F>
std::string column_decl(const F& f) {
  using T = typename F::Type;
  std::string d = sql_type(f.sql);
  if (!nullable_column<T>()) d += " NOT NULL";
  if (f.column == "preexisting") d += " DEFAULT 0";
  return d;
}

std::string schema_sql() {
  std::string cols = "  id INTEGER PRIMARY KEY";
  schema::for_each_field([&](const auto& f) { cols += fmt::format(",\n  {} {}", f.column, column_decl(f)); });
  for (const auto& c : kStoreColumns) cols += fmt::format(",\n  {} {}", c.name, c.decl);
  return fmt::format(R"sql(
CREATE TABLE IF NOT EXISTS flows (
{}
);
-- Open cumulative flows' last totals, kept across a restart (written at a
-- clean shutdown, read back and emptied at start).
CREATE TABLE IF NOT EXISTS open_flows (
  seq     INTEGER PRIMARY KEY,
  key     BLOB    NOT NULL,
  bytes   INTEGER NOT NULL,
  packets INTEGER NOT NULL,
  retrans INTEGER NOT NULL,
  rev_bytes INTEGER NOT NULL DEFAULT 0 -- bytes holds src -> dst, this the other way
);
-- Per exporter instance and observation domain: the sequence number up to
-- which every record is stored, written in the same transaction as the rows.
CREATE TABLE IF NOT EXISTS delivery (
  instance   INTEGER NOT NULL,
  domain     INTEGER NOT NULL,
  next_seq   INTEGER NOT NULL,
  updated_ns INTEGER NOT NULL,
  PRIMARY KEY (instance, domain)
);
-- Ownership evidence (flow/ownership.h): one row per claimed range; an
-- agent's heartbeats and its release extend or end the same row.
CREATE TABLE IF NOT EXISTS ownership (
  host TEXT NOT NULL, host_id TEXT NOT NULL, addr BLOB NOT NULL, port INTEGER NOT NULL,
  protocol INTEGER NOT NULL, from_ns INTEGER NOT NULL, pid INTEGER NOT NULL,
  to_ns INTEGER NOT NULL, held INTEGER NOT NULL, exporter TEXT NOT NULL,
  exe TEXT, unit TEXT, comm TEXT, container_id TEXT, netns INTEGER,
  PRIMARY KEY (addr, port, protocol, host, host_id, from_ns, pid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ownership_to ON ownership(to_ns);
-- Each claimant's latest report and latest stop marker, kept with its claims:
-- attribution asks for every claimant on each page it names, and grouping the
-- whole ownership table for that costs a scan of every claim.
CREATE TABLE IF NOT EXISTS claimants (
  host TEXT NOT NULL, host_id TEXT NOT NULL,
  reported_to_ns INTEGER NOT NULL,  -- the latest to_ns of its claims
  stopped_ns INTEGER NOT NULL,      -- the latest stop marker's to_ns (0: none)
  PRIMARY KEY (host, host_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS flows_end ON flows(end_ns);
CREATE INDEX IF NOT EXISTS flows_src ON flows(src_ip, end_ns);
CREATE INDEX IF NOT EXISTS flows_dst ON flows(dst_ip, end_ns);
CREATE INDEX IF NOT EXISTS flows_comm ON flows(comm) WHERE comm IS NOT NULL;
CREATE INDEX IF NOT EXISTS flows_container ON flows(container_id) WHERE container_id IS NOT NULL;
)sql",
                     cols);
}

// Every column but id, in table order: flow fields, then the store's own.
std::string columns_sql() {
  std::string cols;
  schema::for_each_field([&](const auto& f) {
    if (!cols.empty()) cols += ", ";
    cols += f.column;
  });
  for (const auto& c : kStoreColumns) cols += fmt::format(", {}", c.name);
  return cols;
}

// The per-minute rollup: what top() and series() group and filter by,
// without per-connection columns (addresses, pid, the ephemeral port), summed
// per minute of the records' end time. Kept in the insert's transaction, so
// it always holds exactly the rows of `flows`. `port` is the service port
// (the local one of an inbound flow, else the destination's); `low_port` the
// other port when below 32768, else -1, so port filters below that stay exact.
constexpr int64_t kMinuteNs = 60'000'000'000;
constexpr const char* kRollupSchema = R"sql(
CREATE TABLE IF NOT EXISTS flows_1m (
  minute INTEGER NOT NULL, exporter TEXT NOT NULL, host TEXT, comm TEXT, container_id TEXT,
  port INTEGER NOT NULL, low_port INTEGER NOT NULL, protocol INTEGER NOT NULL, direction TEXT NOT NULL,
  close_reason TEXT, interim INTEGER NOT NULL, has_drops INTEGER NOT NULL,
  bytes INTEGER NOT NULL, packets INTEGER NOT NULL, flows INTEGER NOT NULL, retrans INTEGER NOT NULL,
  failures INTEGER NOT NULL, drops INTEGER NOT NULL, bytes_out INTEGER NOT NULL, bytes_in INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS flows_1m_minute ON flows_1m(minute);
)sql";
constexpr const char* kRollupColumns =
    "minute, exporter, host, comm, container_id, port, low_port, protocol, direction, close_reason, interim, "
    "has_drops, bytes, packets, flows, retrans, failures, drops, bytes_out, bytes_in";
constexpr const char* kRollupDims =
    "minute, exporter, host, comm, container_id, port, low_port, protocol, direction, close_reason, interim, has_drops";
// Per record: a failed connection (refused, timed out, reset), and the
// packets dropped, counted from a flow's last record (interim cumulative
// records carry the totals so far).
#define FS_SQLITE_FAILED "(close_reason IN ('refused', 'timeout', 'rst_sent', 'rst_received'))"
#define FS_SQLITE_DROPS(v) "(CASE WHEN interim AND cumulative THEN 0 ELSE " v " END)"
// Rollup rows from the flows of `where` (a WHERE clause on flows).
std::string rollup_from_flows(const std::string& where) {
  return fmt::format(
      "INSERT INTO flows_1m ({}) SELECT end_ns / {} AS minute, exporter, host, comm, container_id, "
      "CASE WHEN direction = 'inbound' THEN src_port ELSE dst_port END AS port, "
      "CASE WHEN (CASE WHEN direction = 'inbound' THEN dst_port ELSE src_port END) < 32768 "
      "THEN (CASE WHEN direction = 'inbound' THEN dst_port ELSE src_port END) ELSE -1 END AS low_port, "
      "protocol, direction, close_reason, interim, drops_total > 0 AS has_drops, SUM(d_bytes), SUM(d_packets), "
      "SUM(first), SUM(d_retrans), COALESCE(SUM(" FS_SQLITE_FAILED "), 0), SUM(" FS_SQLITE_DROPS("drops_total") "), "
      "SUM(d_bytes_out), SUM(d_bytes_in) "
      "FROM flows {} GROUP BY {}",
      kRollupColumns, kMinuteNs, where, kRollupDims);
}

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;

struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

using Value = std::variant<std::nullptr_t, int64_t, std::string, Ip16>;

// fs_net(addr, bits): the 16-byte address with all but its first `bits`
// bits cleared (the CIDR groups' key).
void sqlite_fs_net(sqlite3_context* ctx, int, sqlite3_value** v) {
  if (sqlite3_value_bytes(v[0]) != 16) {
    sqlite3_result_null(ctx);
    return;
  }
  uint8_t a[16];
  std::memcpy(a, sqlite3_value_blob(v[0]), 16);
  const int64_t bits = sqlite3_value_int64(v[1]);
  for (int i = 0; i < 16; ++i) {
    const int64_t keep = std::clamp<int64_t>(bits - i * 8, 0, 8);
    a[i] &= static_cast<uint8_t>(0xff00u >> keep);
  }
  sqlite3_result_blob(ctx, a, 16, SQLITE_TRANSIENT);
}

Result<Db> open_db(const std::string& path, bool readonly) {
  sqlite3* raw = nullptr;
  int flags = readonly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  flags |= SQLITE_OPEN_NOMUTEX;  // each connection is used by one thread at a time
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  Db db(raw);
  if (rc != SQLITE_OK)
    return fail("cannot open SQLite database {}: {}", path, raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc));
  sqlite3_busy_timeout(db.get(), 5000);
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_create_function_v2(db.get(), "fs_net", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr, sqlite_fs_net, nullptr,
                             nullptr, nullptr);
  return db;
}

Result<void> exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return fail("SQLite: {}", msg);
  }
  return {};
}

Result<Stmt> prepare(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &s, nullptr) !=
      SQLITE_OK)
    return fail("SQLite prepare: {}", sqlite3_errmsg(db));
  return Stmt(s);
}

void bind(sqlite3_stmt* s, int i, const Value& v) {
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::nullptr_t>)
          sqlite3_bind_null(s, i);
        else if constexpr (std::is_same_v<T, int64_t>)
          sqlite3_bind_int64(s, i, x);
        else if constexpr (std::is_same_v<T, std::string>)
          sqlite3_bind_text(s, i, x.data(), static_cast<int>(x.size()), SQLITE_TRANSIENT);
        else
          sqlite3_bind_blob(s, i, x.data(), static_cast<int>(x.size()), SQLITE_TRANSIENT);
      },
      v);
}

int64_t i64(uint64_t v) { return static_cast<int64_t>(v); }

// Reader connections stop a statement once the calling thread's
// QueryDeadline has passed (SQLite then returns SQLITE_INTERRUPT). Checked
// every 1000 virtual-machine steps: a clock read per ~10 us of work.
void stop_at_query_deadline(sqlite3* db) {
  sqlite3_progress_handler(db, 1000, [](void*) { return QueryDeadline::passed() ? 1 : 0; }, nullptr);
}

constexpr int kInsertColumns = static_cast<int>(schema::kFieldCount + std::size(kStoreColumns));
// Rows per multi-row INSERT: one statement execution opens the table's and
// the indexes' cursors once for all of them (~35 x 64 parameters, far below
// SQLite's limit of 32766).
constexpr int kRowsPerInsert = 64;

// Binds one row's values to parameters base+1 .., in columns_sql() order.
// Text and blobs are bound SQLITE_STATIC: the row and `drops` stay alive and
// unchanged until the statement has run (and every parameter is bound again
// before the next run).
// A row from a third-party exporter has none of the nullable columns (the
// agent's): the "lean" statements have NULL literals there, which saves a
// dozen binds per row.
constexpr int kNullableColumns = [] {
  int n = 0;
  schema::for_each_field([&](const auto& f) { n += nullable_column<typename std::remove_cvref_t<decltype(f)>::Type>(); });
  return n;
}();

bool lean(const FlowRow& r) {
  bool all_unset = true;
  schema::for_each_field([&](const auto& f) {
    using T = typename std::remove_cvref_t<decltype(f)>::Type;
    if constexpr (schema::is_optional_v<T>)
      all_unset = all_unset && !(r.*f.member);
    else if constexpr (std::is_same_v<T, std::vector<DropCount>>)
      all_unset = all_unset && (r.*f.member).empty();
  });
  return all_unset;
}

// The placeholders of one row: "(NULL,?,...)", with NULL literals for the
// nullable columns when `lean_row`.
std::string row_placeholders(bool lean_row) {
  std::string row = "(NULL";
  schema::for_each_field([&](const auto& f) {
    row += lean_row && nullable_column<typename std::remove_cvref_t<decltype(f)>::Type>() ? ",NULL" : ",?";
  });
  for (size_t i = 0; i < std::size(kStoreColumns); ++i) row += ",?";
  return row + ')';
}

// Binds parameters in column order, without copies (the row outlives the step).
struct Binder {
  sqlite3_stmt* s;
  int k;
  std::string_view drops = {};  // the drops column's JSON, made beforehand
  void i(int64_t v) { sqlite3_bind_int64(s, ++k, v); }
  void null() { sqlite3_bind_null(s, ++k); }
  void t(std::string_view v) { sqlite3_bind_text(s, ++k, v.data(), static_cast<int>(v.size()), SQLITE_STATIC); }
  void b(const Ip16& a) { sqlite3_bind_blob(s, ++k, a.data(), static_cast<int>(a.size()), SQLITE_STATIC); }
  void b(std::string_view v) { sqlite3_bind_blob(s, ++k, v.data(), static_cast<int>(v.size()), SQLITE_STATIC); }
  template <class T>
  void value(const T& v) {
    if constexpr (schema::is_optional_v<T>) {
      if (v)
        value(*v);
      else
        null();
    } else if constexpr (std::is_same_v<T, std::string>) {
      t(v);
    } else if constexpr (std::is_same_v<T, Ip16>) {
      b(v);
    } else if constexpr (std::is_enum_v<T>) {
      t(to_string(v));
    } else if constexpr (std::is_same_v<T, std::vector<DropCount>>) {
      if (drops.empty())
        null();
      else
        t(drops);
    } else {
      i(static_cast<int64_t>(v));
    }
  }
};

void bind_row(sqlite3_stmt* s, int base, const FlowRow& r, const std::string& drops, bool lean_row) {
  Binder b{s, base, drops};
  schema::for_each_field([&](const auto& f) {
    if (lean_row && nullable_column<typename std::remove_cvref_t<decltype(f)>::Type>()) return;
    b.value(r.*f.member);
  });
  b.i(i64(r.drops_total()));
  b.i(i64(r.delta_bytes));
  b.i(i64(r.delta_packets));
  b.i(i64(r.delta_retrans));
  b.i(r.first);
  b.i(i64(r.delta_bytes_out));
  b.i(i64(r.delta_bytes_in));
}

// The drops column: a JSON object of reason -> count, empty for none (NULL).
void drops_json(const FlowRow& r, std::string& out) {
  out.clear();
  if (r.drops.empty()) return;
  nlohmann::json j = nlohmann::json::object();
  for (const auto& d : r.drops) j[d.reason] = d.count;
  out = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// A WHERE clause built from fixed fragments; every value is a bound parameter.
struct Where {
  std::string sql;
  std::vector<Value> args;
  void add(const char* fragment, std::initializer_list<Value> vals) {
    sql += sql.empty() ? " WHERE " : " AND ";
    sql += fragment;
    args.insert(args.end(), vals);
  }
};

Where build_where(const FlowFilter& f) {
  Where w;
  if (f.from_ns) w.add("end_ns >= ?", {i64(*f.from_ns)});
  if (f.to_ns) w.add("start_ns <= ?", {i64(*f.to_ns)});
  if (f.addr)
    w.add("(src_ip BETWEEN ? AND ? OR dst_ip BETWEEN ? AND ?)", {f.addr->first, f.addr->last, f.addr->first, f.addr->last});
  if (f.src) w.add("src_ip BETWEEN ? AND ?", {f.src->first, f.src->last});
  if (f.dst) w.add("dst_ip BETWEEN ? AND ?", {f.dst->first, f.dst->last});
  if (f.port) w.add("(src_port = ? OR dst_port = ?)", {int64_t{*f.port}, int64_t{*f.port}});
  if (f.protocol) w.add("protocol = ?", {int64_t{*f.protocol}});
  if (f.direction) w.add("direction = ?", {*f.direction});
  if (f.comm) w.add("comm = ?", {*f.comm});
  if (f.workload) w.add("coalesce(nullif(unit, ''), nullif(exe, ''), nullif(comm, '')) = ?", {*f.workload});
  if (f.pid) w.add("pid = ?", {int64_t{*f.pid}});
  if (f.container) {
    if (f.container->size() >= 64)
      w.add("container_id = ?", {*f.container});
    else
      w.add("substr(container_id, 1, ?) = ?", {static_cast<int64_t>(f.container->size()), *f.container});
  }
  if (f.close_reason) w.add("close_reason = ?", {*f.close_reason});
  if (f.exporter) w.add("exporter = ?", {*f.exporter});
  if (f.host) w.add("host = ?", {*f.host});
  if (f.netns) w.add("netns = ?", {i64(*f.netns)});
  if (f.interim) w.add("interim = ?", {int64_t{*f.interim ? 1 : 0}});
  if (f.drop_reason) {
    if (*f.drop_reason == "any")
      w.add("drops_total > 0", {});
    else
      w.add("drops IS NOT NULL AND EXISTS (SELECT 1 FROM json_each(flows.drops) WHERE json_each.key = ?)",
            {*f.drop_reason});
  }
  if (f.exclude_port) w.add("(src_port <> ? AND dst_port <> ?)", {int64_t{*f.exclude_port}, int64_t{*f.exclude_port}});
  if (!f.conversations.empty()) {
    std::string in = "conversation IN (?";
    for (size_t k = 1; k < f.conversations.size(); ++k) in += ",?";
    in += ')';
    w.add(in.c_str(), {});
    for (uint64_t c : f.conversations) w.args.push_back(i64(c));
  }
  return w;
}

std::string column_text(sqlite3_stmt* s, int i) {
  const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return t ? std::string(t, static_cast<size_t>(sqlite3_column_bytes(s, i))) : std::string();
}

Ip16 column_ip(sqlite3_stmt* s, int i) {
  Ip16 a{};
  if (sqlite3_column_bytes(s, i) == 16) std::memcpy(a.data(), sqlite3_column_blob(s, i), 16);
  return a;
}

// One column into a field, by the field's C++ type.
template <class T>
void read_column(sqlite3_stmt* s, int i, T& out) {
  if constexpr (schema::is_optional_v<T>) {
    if (sqlite3_column_type(s, i) == SQLITE_NULL) {
      out.reset();
    } else {
      typename T::value_type v{};
      read_column(s, i, v);
      out = std::move(v);
    }
  } else if constexpr (std::is_same_v<T, std::string>) {
    out = column_text(s, i);
  } else if constexpr (std::is_same_v<T, Ip16>) {
    out = column_ip(s, i);
  } else if constexpr (std::is_same_v<T, Direction>) {
    out = direction_from_string(column_text(s, i)).value_or(Direction::Unknown);
  } else if constexpr (std::is_same_v<T, CloseReason>) {
    out = close_reason_from_string(column_text(s, i)).value_or(CloseReason::Fin);
  } else if constexpr (std::is_same_v<T, std::vector<DropCount>>) {
    out.clear();
    if (sqlite3_column_type(s, i) == SQLITE_NULL) return;
    auto j = nlohmann::json::parse(column_text(s, i), nullptr, false);
    if (j.is_object())
      for (auto& [k, v] : j.items())
        if (v.is_number_unsigned()) out.push_back({k, v.template get<uint64_t>()});
  } else if constexpr (std::is_same_v<T, bool>) {
    out = sqlite3_column_int64(s, i) != 0;
  } else {
    out = static_cast<T>(sqlite3_column_int64(s, i));
  }
}

FlowRow read_row(sqlite3_stmt* s) {
  FlowRow r;
  int c = 0;
  r.id = sqlite3_column_int64(s, c++);
  schema::for_each_field([&](const auto& f) { read_column(s, c++, r.*f.member); });
  auto u64 = [&] { return static_cast<uint64_t>(sqlite3_column_int64(s, c++)); };
  c++;  // drops_total
  r.delta_bytes = u64();
  r.delta_packets = u64();
  r.delta_retrans = u64();
  r.first = u64() != 0;
  r.delta_bytes_out = u64();
  r.delta_bytes_in = u64();
  return r;
}

struct Totals {
  uint64_t bytes = 0, rev_bytes = 0;  // each way: the deltas keep the directions apart
  uint64_t packets = 0, retrans = 0;
};

uint64_t sub0(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

}  // namespace

struct SqliteStore::Impl {
  SqliteOptions opts;
  std::mutex write_mu;  // the writer connection and the delta tracker
  Db writer;
  Stmt insert_stmt;   // one row
  Stmt insert_multi;  // kRowsPerInsert rows
  Stmt insert_lean;        // one row without the agent's columns
  Stmt insert_multi_lean;  // kRowsPerInsert of them
  // Open cumulative flows: last totals seen, in least-recently-seen order.
  std::list<std::string> lru;
  std::unordered_map<std::string, std::pair<Totals, std::list<std::string>::iterator>> open;

  std::mutex read_mu;  // the pool of reader connections
  std::vector<Db> readers;

  std::mutex stats_mu;
  StoreStats st;
  uint64_t tracker_evicted = 0;

  // Rollup rows are added per batch and merged per minute now and then
  // (rows above `compacted` are not merged yet).
  int64_t compacted = 0;
  std::chrono::steady_clock::time_point next_compaction{};

  // Merges the rollup rows of the minutes touched since the last merge
  // into one row per minute and key (under write_mu, in a transaction).
  Result<void> compact_rollup() {
    sqlite3* w = writer.get();
    int64_t top = 0;
    auto r = [&]() -> Result<void> {
      auto st = prepare(w, "SELECT COALESCE(MAX(rowid), 0) FROM flows_1m");
      if (!st) return std::unexpected(st.error());
      if (sqlite3_step(st->get()) == SQLITE_ROW) top = sqlite3_column_int64(st->get(), 0);
      return {};
    }();
    if (!r) return r;
    if (top <= compacted) return {};
    const std::string touched =
        fmt::format("SELECT DISTINCT minute FROM flows_1m WHERE rowid > {} AND rowid <= {}", compacted, top);
    const std::string sql = fmt::format(
        "INSERT INTO flows_1m ({0}) SELECT {1}, SUM(bytes), SUM(packets), SUM(flows), SUM(retrans), SUM(failures), "
        "SUM(drops), SUM(bytes_out), SUM(bytes_in) FROM flows_1m WHERE minute IN ({2}) AND rowid <= {3} GROUP BY {1};"
        "DELETE FROM flows_1m WHERE minute IN ({2}) AND rowid <= {3};",
        kRollupColumns, kRollupDims, touched, top);
    if (auto e = exec(w, sql.c_str()); !e) return e;
    auto st = prepare(w, "SELECT COALESCE(MAX(rowid), 0) FROM flows_1m");
    if (!st) return std::unexpected(st.error());
    if (sqlite3_step(st->get()) == SQLITE_ROW) compacted = sqlite3_column_int64(st->get(), 0);
    return {};
  }

  Result<Db> reader() {
    {
      std::lock_guard lk(read_mu);
      if (!readers.empty()) {
        Db db = std::move(readers.back());
        readers.pop_back();
        return db;
      }
    }
    auto db = open_db(opts.path, true);
    if (db) stop_at_query_deadline(db->get());
    return db;
  }
  void give_back(Db db) {
    std::lock_guard lk(read_mu);
    if (readers.size() < 8) readers.push_back(std::move(db));
  }

  // A database made by an older flowscope lacks the columns of fields added
  // since: add them in place (each has a default or is nullable).
  Result<void> add_missing_columns() {
    sqlite3* w = writer.get();
    auto info = prepare(w, "PRAGMA table_info(flows)");
    if (!info) return std::unexpected(info.error());
    std::vector<std::string> have;
    while (sqlite3_step(info->get()) == SQLITE_ROW) have.push_back(column_text(info->get(), 1));
    auto missing = [&](std::string_view c) { return std::find(have.begin(), have.end(), c) == have.end(); };
    std::string alter;
    schema::for_each_field([&](const auto& f) {
      if (missing(f.column)) alter += fmt::format("ALTER TABLE flows ADD COLUMN {} {};", f.column, column_decl(f));
    });
    // Bytes each way (version 4): older records split their d_bytes in the
    // proportion of their totals each way (exact for records that are their
    // own share), and the rollup is rebuilt from them.
    if (missing("d_bytes_out")) {
      alter +=
          "ALTER TABLE flows ADD COLUMN d_bytes_out INTEGER NOT NULL DEFAULT 0;"
          "ALTER TABLE flows ADD COLUMN d_bytes_in INTEGER NOT NULL DEFAULT 0;"
          "UPDATE flows SET d_bytes_out = CASE WHEN bytes + rev_bytes = 0 THEN 0 "
          "ELSE CAST(ROUND(d_bytes * (CAST(bytes AS REAL) / (bytes + rev_bytes))) AS INTEGER) END;"
          "UPDATE flows SET d_bytes_in = d_bytes - d_bytes_out;"
          "DROP TABLE IF EXISTS flows_1m;";
    }
    auto open_info = prepare(w, "PRAGMA table_info(open_flows)");
    if (!open_info) return std::unexpected(open_info.error());
    bool open_rev = false;
    while (sqlite3_step(open_info->get()) == SQLITE_ROW) open_rev = open_rev || column_text(open_info->get(), 1) == "rev_bytes";
    if (!open_rev) alter += "ALTER TABLE open_flows ADD COLUMN rev_bytes INTEGER NOT NULL DEFAULT 0;";
    alter += fmt::format("PRAGMA user_version = {};", kSchemaVersion);
    // One transaction: a start stopped half-way leaves the old database.
    alter = "BEGIN IMMEDIATE;" + alter + "COMMIT;";
    auto r = exec(w, alter.c_str());
    if (!r) (void)exec(w, "ROLLBACK");
    return r;
  }

  // Fills the per-record deltas of a row (under write_mu).
  void account(FlowRow& r) {
    const uint64_t retrans = r.retrans.value_or(0);
    if (!r.cumulative) {
      r.delta_bytes_out = r.bytes;
      r.delta_bytes_in = r.rev_bytes;
      r.delta_bytes = r.bytes + r.rev_bytes;
      r.delta_packets = r.packets + r.rev_packets;
      r.delta_retrans = retrans;
      r.first = true;
      return;
    }
    Totals now{r.bytes, r.rev_bytes, r.packets + r.rev_packets, retrans};
    const std::string key = flow_identity(r);
    auto it = open.find(key);
    Totals prev;
    r.first = it == open.end();
    if (!r.first) prev = it->second.first;
    r.delta_bytes_out = sub0(now.bytes, prev.bytes);
    r.delta_bytes_in = sub0(now.rev_bytes, prev.rev_bytes);
    r.delta_bytes = r.delta_bytes_out + r.delta_bytes_in;
    r.delta_packets = sub0(now.packets, prev.packets);
    r.delta_retrans = sub0(now.retrans, prev.retrans);
    if (!r.interim) {
      if (it != open.end()) {
        lru.erase(it->second.second);
        open.erase(it);
      }
      return;
    }
    if (it != open.end()) {
      lru.erase(it->second.second);
      lru.push_front(key);
      it->second = {now, lru.begin()};
      return;
    }
    lru.push_front(key);
    open.emplace(key, std::make_pair(now, lru.begin()));
    while (open.size() > opts.max_tracked_flows) {
      open.erase(lru.back());
      lru.pop_back();
      ++tracker_evicted;
    }
  }

  // The tracker outlives a clean restart: without it, the first record of
  // every flow open across the restart would count its whole totals again.
  // Saved most recent first (seq 0).
  Result<void> save_open() {
    sqlite3* db = writer.get();
    if (auto r = exec(db, "BEGIN IMMEDIATE; DELETE FROM open_flows;"); !r) return r;
    auto ins = prepare(db, "INSERT INTO open_flows (seq, key, bytes, packets, retrans, rev_bytes) VALUES (?, ?, ?, ?, ?, ?)");
    if (!ins) {
      (void)exec(db, "ROLLBACK");
      return std::unexpected(ins.error());
    }
    int64_t seq = 0;
    for (const std::string& key : lru) {
      const Totals& t = open.at(key).first;
      sqlite3_stmt* st = ins->get();
      Binder b{st, 0};
      b.i(seq++);
      b.b(key);
      b.i(i64(t.bytes));
      b.i(i64(t.packets));
      b.i(i64(t.retrans));
      b.i(i64(t.rev_bytes));
      const int rc = sqlite3_step(st);
      sqlite3_reset(st);
      if (rc != SQLITE_DONE) {
        auto err = fail("SQLite: saving open flows: {}", sqlite3_errmsg(db));
        (void)exec(db, "ROLLBACK");
        return err;
      }
    }
    return exec(db, "COMMIT");
  }

  // Reads back what save_open() wrote, then empties the table: after a crash
  // the next start must not resume from totals older than the flows' last
  // records.
  Result<size_t> restore_open() {
    sqlite3* db = writer.get();
    auto sel = prepare(db, "SELECT key, bytes, packets, retrans, rev_bytes FROM open_flows ORDER BY seq DESC");
    if (!sel) return std::unexpected(sel.error());
    sqlite3_stmt* st = sel->get();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      const auto* data = static_cast<const char*>(sqlite3_column_blob(st, 0));
      std::string key(data ? data : "", static_cast<size_t>(sqlite3_column_bytes(st, 0)));
      const Totals t{static_cast<uint64_t>(sqlite3_column_int64(st, 1)),
                     static_cast<uint64_t>(sqlite3_column_int64(st, 4)),
                     static_cast<uint64_t>(sqlite3_column_int64(st, 2)),
                     static_cast<uint64_t>(sqlite3_column_int64(st, 3))};
      if (open.contains(key) || open.size() >= opts.max_tracked_flows) continue;
      lru.push_front(key);
      open.emplace(std::move(key), std::make_pair(t, lru.begin()));
    }
    if (rc != SQLITE_DONE) return fail("SQLite: reading open flows: {}", sqlite3_errmsg(db));
    sel->reset();
    if (auto r = exec(db, "DELETE FROM open_flows"); !r) return std::unexpected(r.error());
    return open.size();
  }
};

SqliteStore::SqliteStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SqliteStore::~SqliteStore() {
  std::lock_guard lk(impl_->write_mu);
  if (impl_->open.empty()) return;
  // A destructor cannot return the error: say what is lost instead.
  if (auto r = impl_->save_open(); !r)
    spdlog::error("{}: the totals of {} open flows are not kept across the restart ({}); their next records count "
                  "their whole totals again in aggregates",
                  impl_->opts.path, impl_->open.size(), r.error().message);
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const SqliteOptions& opts) {
  auto impl = std::make_unique<Impl>();
  impl->opts = opts;
  auto db = open_db(opts.path, false);
  if (!db) return std::unexpected(db.error());
  impl->writer = std::move(*db);
  sqlite3* w = impl->writer.get();
  // 16 KiB pages for a new database (an existing one keeps its own): a
  // quarter of the WAL writes and page splits of 4 KiB pages, for rows of
  // ~130 bytes plus three index entries each.
  if (auto r = exec(w, "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"); !r)
    return fail("{}: {}", opts.path, r.error().message);
  {
    auto v = prepare(w, "PRAGMA user_version");
    if (!v) return std::unexpected(v.error());
    int version = sqlite3_step(v->get()) == SQLITE_ROW ? sqlite3_column_int(v->get(), 0) : 0;
    if (version > kSchemaVersion)
      return fail("{}: schema version {} is newer than this flowscope ({})", opts.path, version, kSchemaVersion);
  }
  auto has_table = [&](const char* name) -> Result<bool> {
    auto st = prepare(w, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?");
    if (!st) return std::unexpected(st.error());
    sqlite3_bind_text(st->get(), 1, name, -1, SQLITE_STATIC);
    return sqlite3_step(st->get()) == SQLITE_ROW && sqlite3_column_int(st->get(), 0) > 0;
  };
  auto had_claimants = has_table("claimants");
  if (!had_claimants) return std::unexpected(had_claimants.error());
  if (auto r = exec(w, schema_sql().c_str()); !r) return fail("{}: {}", opts.path, r.error().message);
  if (auto r = impl->add_missing_columns(); !r) return fail("{}: {}", opts.path, r.error().message);
  // The claimants of claims stored before that table was kept, once.
  if (auto r = *had_claimants ? Result<void>{} : exec(w, "INSERT INTO claimants (host, host_id, reported_to_ns, stopped_ns) "
                       "SELECT host, host_id, max(to_ns), coalesce(max(CASE WHEN addr = zeroblob(16) AND held = 0 "
                       "THEN to_ns END), 0) FROM ownership WHERE true GROUP BY host, host_id "
                       "ON CONFLICT (host, host_id) DO UPDATE SET "
                       "reported_to_ns = max(reported_to_ns, excluded.reported_to_ns), "
                       "stopped_ns = max(stopped_ns, excluded.stopped_ns)");
      !r)
    return fail("{}: {}", opts.path, r.error().message);
  {
    // A database from before the rollup: built from its flows once.
    auto have = prepare(w, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'flows_1m'");
    if (!have) return std::unexpected(have.error());
    const bool exists = sqlite3_step(have->get()) == SQLITE_ROW && sqlite3_column_int(have->get(), 0) > 0;
    have->reset();
    std::string sql = fmt::format("BEGIN IMMEDIATE; {}", kRollupSchema);
    if (!exists) sql += rollup_from_flows("") + ";";
    sql += "COMMIT;";
    if (auto r = exec(w, sql.c_str()); !r) {
      (void)exec(w, "ROLLBACK");
      return fail("{}: building the per-minute rollup: {}", opts.path, r.error().message);
    }
    if (!exists && sqlite3_total_changes64(w) > 0)
      spdlog::info("{}: built the per-minute rollup of the stored flows", opts.path);
  }
  // The insert statements: one row or kRowsPerInsert rows, with every
  // column bound or with NULL literals for the agent's columns.
  for (bool lean_rows : {false, true}) {
    const std::string row = row_placeholders(lean_rows);
    std::string rows = row;
    for (int i = 1; i < kRowsPerInsert; ++i) rows += "," + row;
    auto one = prepare(w, fmt::format("INSERT OR ROLLBACK INTO flows (id, {}) VALUES {}", columns_sql(), row));
    if (!one) return std::unexpected(one.error());
    auto multi = prepare(w, fmt::format("INSERT OR ROLLBACK INTO flows (id, {}) VALUES {}", columns_sql(), rows));
    if (!multi) return std::unexpected(multi.error());
    (lean_rows ? impl->insert_lean : impl->insert_stmt) = std::move(*one);
    (lean_rows ? impl->insert_multi_lean : impl->insert_multi) = std::move(*multi);
  }
  {
    auto c = prepare(w, "SELECT count(*) FROM flows");
    if (!c) return std::unexpected(c.error());
    if (sqlite3_step(c->get()) == SQLITE_ROW) impl->st.rows = static_cast<uint64_t>(sqlite3_column_int64(c->get(), 0));
  }
  auto restored = impl->restore_open();
  if (!restored) return fail("{}: {}", opts.path, restored.error().message);
  if (*restored) spdlog::info("{}: resumed the totals of {} open flows", opts.path, *restored);
  return std::unique_ptr<SqliteStore>(new SqliteStore(std::move(impl)));
}

Result<void> SqliteStore::insert(std::vector<FlowRow>& rows) { return insert_marked(rows, {}); }

Result<void> SqliteStore::insert_marked(std::vector<FlowRow>& rows, const std::vector<DeliveryMark>& marks) {
  if (rows.empty() && marks.empty()) return {};
  Impl& i = *impl_;
  std::lock_guard lk(i.write_mu);
  sqlite3* db = i.writer.get();
  if (auto r = exec(db, "BEGIN IMMEDIATE"); !r) {
    std::lock_guard sl(i.stats_mu);
    i.st.insert_errors += rows.size();
    return r;
  }
  // Runs one statement (`n` rows bound); false after a failed step (rolled back, counted).
  std::string failure;
  auto run = [&](sqlite3_stmt* s, size_t first, size_t n) {
    const int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) {
      failure = sqlite3_errmsg(db);
      sqlite3_reset(s);
      return false;
    }
    // The statement's rows got consecutive ids ending at the last one (an
    // INTEGER PRIMARY KEY takes max(id) + 1 for each new row).
    const int64_t last = sqlite3_last_insert_rowid(db);
    for (size_t k = 0; k < n; ++k) rows[first + k].id = last - static_cast<int64_t>(n - 1 - k);
    sqlite3_reset(s);
    return true;
  };
  std::vector<std::string> drops(kRowsPerInsert);
  for (auto& r : rows) {
    i.account(r);
    count_once(r);
  }
  bool ok = true;
  // kRowsPerInsert rows per statement while that many are left, then one by
  // one; the lean statement when none of the rows has the agent's columns.
  for (size_t pos = 0, n; ok && pos < rows.size(); pos += n) {
    n = rows.size() - pos >= size_t(kRowsPerInsert) ? size_t(kRowsPerInsert) : 1;
    const auto first = rows.begin() + static_cast<std::ptrdiff_t>(pos);
    const bool lean_rows = std::all_of(first, first + static_cast<std::ptrdiff_t>(n), lean);
    sqlite3_stmt* s = n > 1 ? (lean_rows ? i.insert_multi_lean : i.insert_multi).get()
                            : (lean_rows ? i.insert_lean : i.insert_stmt).get();
    const int stride = lean_rows ? kInsertColumns - kNullableColumns : kInsertColumns;
    for (size_t k = 0; k < n; ++k) {
      const FlowRow& r = rows[pos + k];
      if (lean_rows)
        drops[k].clear();
      else
        drops_json(r, drops[k]);
      bind_row(s, static_cast<int>(k) * stride, r, drops[k], lean_rows);
    }
    ok = run(s, pos, n);
  }
  // Nothing may keep pointers into this batch.
  for (auto* st : {i.insert_multi.get(), i.insert_stmt.get(), i.insert_multi_lean.get(), i.insert_lean.get()})
    sqlite3_clear_bindings(st);
  if (ok && !rows.empty()) {
    // The batch's rows (consecutive ids) into the rollup, in the same
    // transaction; merged per minute about once a minute.
    auto r = exec(db, rollup_from_flows(fmt::format("WHERE id BETWEEN {} AND {}", rows.front().id, rows.back().id))
                          .c_str());
    if (r && std::chrono::steady_clock::now() >= i.next_compaction) {
      r = i.compact_rollup();
      i.next_compaction = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    }
    if (!r) {
      ok = false;
      failure = r.error().message;
    }
  }
  if (ok && !marks.empty()) {
    auto st = prepare(db,
                      "INSERT INTO delivery(instance, domain, next_seq, updated_ns) VALUES(?, ?, ?, ?) "
                      "ON CONFLICT(instance, domain) DO UPDATE SET next_seq = excluded.next_seq, "
                      "updated_ns = excluded.updated_ns");
    if (!st) {
      ok = false;
      failure = st.error().message;
    }
    const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
    for (size_t k = 0; ok && k < marks.size(); ++k) {
      sqlite3_bind_int64(st->get(), 1, i64(marks[k].instance));
      sqlite3_bind_int64(st->get(), 2, marks[k].domain);
      sqlite3_bind_int64(st->get(), 3, i64(marks[k].next_seq));
      sqlite3_bind_int64(st->get(), 4, now);
      if (sqlite3_step(st->get()) != SQLITE_DONE) {
        ok = false;
        failure = sqlite3_errmsg(db);
      }
      sqlite3_reset(st->get());
    }
  }
  if (!ok) {
    (void)exec(db, "ROLLBACK");
    std::lock_guard sl(i.stats_mu);
    i.st.insert_errors += rows.size();
    return fail("SQLite insert: {}", failure);
  }
  if (auto r = exec(db, "COMMIT"); !r) {
    (void)exec(db, "ROLLBACK");
    std::lock_guard sl(i.stats_mu);
    i.st.insert_errors += rows.size();
    return r;
  }
  std::lock_guard sl(i.stats_mu);
  i.st.rows_inserted += rows.size();
  i.st.rows += rows.size();
  i.st.batches++;
  return {};
}

namespace {

// Runs a read-only statement: binds `args`, calls `row` for each result row.
template <class F>
Result<void> run_query(sqlite3* db, const std::string& sql, const std::vector<Value>& args, F&& row) {
  auto st = prepare(db, sql);
  if (!st) return std::unexpected(st.error());
  for (size_t k = 0; k < args.size(); ++k) bind(st->get(), static_cast<int>(k + 1), args[k]);
  for (;;) {
    int rc = sqlite3_step(st->get());
    if (rc == SQLITE_ROW) {
      row(st->get());
      continue;
    }
    if (rc == SQLITE_DONE) return {};
    if ((rc & 0xff) == SQLITE_INTERRUPT) return fail_errno(ETIMEDOUT, "the query ran past its time limit");
    return fail("SQLite query: {}", sqlite3_errmsg(db));
  }
}

}  // namespace

Result<FlowPage> SqliteStore::query(const FlowQuery& q) {
  auto db = impl_->reader();
  if (!db) return std::unexpected(db.error());
  Where w = build_where(q.filter);
  std::string sql = fmt::format("SELECT id, {} FROM flows{} ORDER BY end_ns DESC, id DESC LIMIT ? OFFSET ?", columns_sql(), w.sql);
  w.args.push_back(static_cast<int64_t>(q.limit) + 1);
  w.args.push_back(i64(q.offset));
  FlowPage page;
  auto r = run_query(db->get(), sql, w.args, [&](sqlite3_stmt* s) { page.flows.push_back(read_row(s)); });
  impl_->give_back(std::move(*db));
  if (!r) return std::unexpected(r.error());
  if (page.flows.size() > q.limit) {
    page.flows.resize(q.limit);
    page.more = true;
  }
  return page;
}

// The aggregates every top and series row carries, in this order: bytes,
// packets, connections, retransmits, failures, drops (see TopMetric).
#define FS_SQLITE_AGGREGATES(drops_value)                                                   \
  "SUM(d_bytes) AS b, SUM(d_packets) AS p, SUM(first) AS f, SUM(d_retrans) AS r, "          \
  "COALESCE(SUM(" FS_SQLITE_FAILED "), 0) AS fl, COALESCE(SUM(" FS_SQLITE_DROPS(drops_value) "), 0) AS dr, " \
  "SUM(d_bytes_out) AS bo, SUM(d_bytes_in) AS bi"
// The same from the rollup.
constexpr const char* kRollupAggregates =
    "SUM(bytes) AS b, SUM(packets) AS p, SUM(flows) AS f, SUM(retrans) AS r, SUM(failures) AS fl, SUM(drops) AS dr, "
    "SUM(bytes_out) AS bo, SUM(bytes_in) AS bi";
// The sum of each of those over the parts of a union.
constexpr const char* kOuterAggregates =
    "SUM(b) AS b, SUM(p) AS p, SUM(f) AS f, SUM(r) AS r, SUM(fl) AS fl, SUM(dr) AS dr, SUM(bo) AS bo, SUM(bi) AS bi";

// Reads those aggregates from column `c` on into a TopEntry or SeriesPoint.
template <class T>
void read_aggregates(sqlite3_stmt* s, int c, T& out) {
  auto u = [&](int k) { return static_cast<uint64_t>(sqlite3_column_int64(s, c + k)); };
  out.bytes = u(0);
  out.packets = u(1);
  out.flows = u(2);
  out.retrans = u(3);
  out.failures = u(4);
  out.drops = u(5);
  out.bytes_out = u(6);
  out.bytes_in = u(7);
}

namespace {

thread_local bool t_used_rollup = false;

// The filter on the rollup's columns, or nothing when the filter needs a
// column only `flows` has (addresses, pid, netns, workload, one drop
// reason, a port that may be ephemeral). Time bounds are the caller's.
std::optional<Where> rollup_where(const FlowFilter& f) {
  if (f.addr || f.src || f.dst || f.pid || f.netns || f.workload) return std::nullopt;
  if (f.drop_reason && *f.drop_reason != "any") return std::nullopt;
  if ((f.port && *f.port >= 32768) || (f.exclude_port && *f.exclude_port >= 32768)) return std::nullopt;
  Where w;
  if (f.port) w.add("(port = ? OR low_port = ?)", {int64_t{*f.port}, int64_t{*f.port}});
  if (f.protocol) w.add("protocol = ?", {int64_t{*f.protocol}});
  if (f.direction) w.add("direction = ?", {*f.direction});
  if (f.comm) w.add("comm = ?", {*f.comm});
  if (f.container) {
    if (f.container->size() >= 64)
      w.add("container_id = ?", {*f.container});
    else
      w.add("substr(container_id, 1, ?) = ?", {static_cast<int64_t>(f.container->size()), *f.container});
  }
  if (f.close_reason) w.add("close_reason = ?", {*f.close_reason});
  if (f.exporter) w.add("exporter = ?", {*f.exporter});
  if (f.host) w.add("host = ?", {*f.host});
  if (f.interim) w.add("interim = ?", {int64_t{*f.interim ? 1 : 0}});
  if (f.drop_reason) w.add("has_drops = 1", {});
  if (f.exclude_port) w.add("(port <> ? AND low_port <> ?)", {int64_t{*f.exclude_port}, int64_t{*f.exclude_port}});
  return w;
}

// Appends a part's WHERE (sql and args) to a statement being built.
void append(std::string& sql, std::vector<Value>& args, const Where& w) {
  sql += w.sql;
  args.insert(args.end(), w.args.begin(), w.args.end());
}

const char* order_of(TopMetric m) {
  switch (m) {
    case TopMetric::Bytes: return "b";
    case TopMetric::Flows: return "f";
    case TopMetric::Retrans: return "r";
    case TopMetric::Failures: return "fl";
    case TopMetric::Drops: return "dr";
  }
  return "b";
}

}  // namespace

Result<std::vector<TopEntry>> SqliteStore::top(const TopQuery& q) {
  // Group and order expressions come from these fixed tables only (and the
  // prefix lengths, numbers the API checked).
  std::string key = "src_ip";
  int nkeys = 1;
  bool blob_keys = true;
  const char* nonnull = nullptr;
  const char* from = "flows";
  bool per_reason = false;
  switch (q.group) {
    case TopGroup::Src: key = "src_ip"; break;
    case TopGroup::Dst: key = "dst_ip"; break;
    case TopGroup::Pair: key = "src_ip, dst_ip"; nkeys = 2; break;
    // The service port: the local port of an inbound flow, else the destination's.
    case TopGroup::Port: key = "CASE WHEN direction = 'inbound' THEN src_port ELSE dst_port END"; blob_keys = false; break;
    case TopGroup::Process: key = "comm"; blob_keys = false; nonnull = "comm IS NOT NULL"; break;
    case TopGroup::Container: key = "container_id"; blob_keys = false; nonnull = "container_id IS NOT NULL"; break;
    case TopGroup::Host: key = "host"; blob_keys = false; nonnull = "host <> ''"; break;
    // As text, so ties order as on every backend.
    case TopGroup::Netns: key = "CAST(netns AS TEXT)"; blob_keys = false; nonnull = "netns IS NOT NULL"; break;
    case TopGroup::Close: key = "close_reason"; blob_keys = false; nonnull = "close_reason IS NOT NULL"; break;
    case TopGroup::DropReason:
      key = "dr_each.key";
      blob_keys = false;
      from = "flows, json_each(flows.drops) AS dr_each";
      per_reason = true;
      break;
    case TopGroup::SrcCidr:
    case TopGroup::DstCidr: {
      const char* col = q.group == TopGroup::SrcCidr ? "src_ip" : "dst_ip";
      key = fmt::format("fs_net({0}, CASE WHEN substr({0}, 1, 12) = X'00000000000000000000FFFF' THEN {1} ELSE {2} END)",
                        col, 96 + std::min<int>(q.cidr4, 32), std::min<int>(q.cidr6, 128));
      break;
    }
  }
  // The rollup's key for groups it keeps.
  const char* rkey = nullptr;
  switch (q.group) {
    case TopGroup::Port: rkey = "port"; break;
    case TopGroup::Process: rkey = "comm"; break;
    case TopGroup::Container: rkey = "container_id"; break;
    case TopGroup::Host: rkey = "host"; break;
    case TopGroup::Close: rkey = "close_reason"; break;
    default: break;
  }
  // Whole minutes inside [from, to] come from the rollup: every record
  // ending in them overlaps the range. The rest (the partial minute at each
  // end, and records that end after `to` but started before it) from flows.
  // (Clamped so the minute arithmetic below cannot overflow.)
  const int64_t from_ns = i64(std::min<uint64_t>(q.filter.from_ns.value_or(0), INT64_MAX - kMinuteNs));
  const int64_t to_ns = i64(std::min<uint64_t>(q.filter.to_ns.value_or(INT64_MAX), INT64_MAX - 1));
  const int64_t m_from = (from_ns + kMinuteNs - 1) / kMinuteNs, m_to = (to_ns + 1) / kMinuteNs;
  std::optional<Where> rw;
  if (impl_->opts.use_rollups && rkey && m_to > m_from) rw = rollup_where(q.filter);
  if (rw) {
    FlowFilter attrs = q.filter;
    attrs.from_ns.reset();
    attrs.to_ns.reset();
    std::string sql = fmt::format("SELECT k0, {} FROM (", kOuterAggregates);
    std::vector<Value> args;
    for (int part = 0; part < 2; ++part) {  // the head and the tail, from flows
      Where w = build_where(attrs);
      if (nonnull) w.add(nonnull, {});
      if (part == 0)
        w.add("end_ns >= ? AND end_ns < ? AND start_ns <= ?", {from_ns, m_from * kMinuteNs, to_ns});
      else
        w.add("end_ns >= ? AND start_ns <= ?", {m_to * kMinuteNs, to_ns});
      // These parts are narrow ranges of end times: by that index, never
      // by one that would save the grouping's sort but read every row.
      sql += fmt::format("SELECT {} AS k0, " FS_SQLITE_AGGREGATES("drops_total") " FROM flows INDEXED BY flows_end", key);
      append(sql, args, w);
      sql += fmt::format(" GROUP BY k0 UNION ALL ");
    }
    Where w = *rw;
    if (nonnull) w.add(fmt::format("{} {}", rkey, q.group == TopGroup::Host ? "<> ''" : "IS NOT NULL").c_str(), {});
    w.add("minute >= ? AND minute < ?", {m_from, m_to});
    sql += fmt::format("SELECT {} AS k0, {} FROM flows_1m", rkey, kRollupAggregates);
    append(sql, args, w);
    sql += fmt::format(" GROUP BY k0) GROUP BY k0 ORDER BY {} DESC, b DESC, k0 LIMIT ?", order_of(q.by));
    args.push_back(static_cast<int64_t>(q.limit));
    auto db = impl_->reader();
    if (!db) return std::unexpected(db.error());
    std::vector<TopEntry> out;
    auto r = run_query(db->get(), sql, args, [&](sqlite3_stmt* s) {
      TopEntry e;
      e.key.push_back(column_text(s, 0));
      read_aggregates(s, 1, e);
      out.push_back(std::move(e));
    });
    impl_->give_back(std::move(*db));
    if (!r) return std::unexpected(r.error());
    t_used_rollup = true;
    return out;
  }
  t_used_rollup = false;
  Where w = build_where(q.filter);
  if (nonnull) w.add(nonnull, {});
  // A range without an address filter is read by end time. Left to itself
  // the planner takes the address index for an address grouping (it saves
  // a sort) and reads every row of the store instead of the range's: with
  // 1M stored flows, twice as slow for the last hour's top pairs.
  std::string table = from;
  if (q.filter.from_ns && !q.filter.addr && !q.filter.src && !q.filter.dst)
    table.replace(0, 5, "flows INDEXED BY flows_end");
  std::string sql = fmt::format(
      "SELECT {0}, {3} FROM {4}{1} "
      "GROUP BY {0} ORDER BY {2} DESC, b DESC, {0} LIMIT ?",  // ties in key order, as on every backend
      key, w.sql, order_of(q.by),
      per_reason ? FS_SQLITE_AGGREGATES("dr_each.value") : FS_SQLITE_AGGREGATES("drops_total"), table);
  w.args.push_back(static_cast<int64_t>(q.limit));
  auto db = impl_->reader();
  if (!db) return std::unexpected(db.error());
  std::vector<TopEntry> out;
  auto r = run_query(db->get(), sql, w.args, [&](sqlite3_stmt* s) {
    TopEntry e;
    const bool cidr = q.group == TopGroup::SrcCidr || q.group == TopGroup::DstCidr;
    for (int k = 0; k < nkeys; ++k)
      e.key.push_back(cidr        ? network_key(column_ip(s, k), q.cidr4, q.cidr6)
                      : blob_keys ? ip16_to_string(column_ip(s, k))
                                  : column_text(s, k));
    read_aggregates(s, nkeys, e);
    out.push_back(std::move(e));
  });
  impl_->give_back(std::move(*db));
  if (!r) return std::unexpected(r.error());
  return out;
}

Result<std::vector<SeriesPoint>> SqliteStore::series(const SeriesQuery& q) {
  if (!q.filter.from_ns || !q.filter.to_ns || q.interval_ns == 0 || *q.filter.to_ns < *q.filter.from_ns)
    return fail("time series needs from <= to and an interval");
  const uint64_t from = *q.filter.from_ns, to = *q.filter.to_ns;
  if ((to - from) / q.interval_ns > 100'000) return fail("time series would have more than 100000 points");
  // Records are placed by their end time (when their counts were taken).
  FlowFilter f = q.filter;
  f.from_ns.reset();
  f.to_ns.reset();
  // The rollup answers the whole minutes when they fall inside buckets:
  // `from` on a minute and the interval whole minutes. The partial minute
  // at the end comes from flows.
  const int64_t m_from = i64(from) / kMinuteNs,
                m_to = (i64(std::min<uint64_t>(to, INT64_MAX - 1)) + 1) / kMinuteNs;
  std::optional<Where> rw;
  if (impl_->opts.use_rollups && from % kMinuteNs == 0 && q.interval_ns % kMinuteNs == 0 && m_to > m_from)
    rw = rollup_where(f);
  t_used_rollup = rw.has_value();
  Where w = build_where(f);
  std::string sql;
  std::vector<Value> args = {i64(from), i64(q.interval_ns)};
  if (rw) {
    w.add("end_ns BETWEEN ? AND ?", {m_to * kMinuteNs, i64(to)});
    sql = fmt::format("SELECT bucket, {} FROM (SELECT (end_ns - ?) / ? AS bucket, " FS_SQLITE_AGGREGATES("drops_total")
                      " FROM flows INDEXED BY flows_end",
                      kOuterAggregates);
    append(sql, args, w);
    sql += fmt::format(" GROUP BY bucket UNION ALL SELECT (minute - ?) / ? AS bucket, {} FROM flows_1m",
                       kRollupAggregates);
    args.push_back(m_from);
    args.push_back(i64(q.interval_ns) / kMinuteNs);
    rw->add("minute >= ? AND minute < ?", {m_from, m_to});
    append(sql, args, *rw);
    sql += " GROUP BY bucket) GROUP BY bucket ORDER BY bucket";
  } else {
    w.add("end_ns BETWEEN ? AND ?", {i64(from), i64(to)});
    sql = "SELECT (end_ns - ?) / ? AS bucket, " FS_SQLITE_AGGREGATES("drops_total") " FROM flows";
    append(sql, args, w);
    sql += " GROUP BY bucket ORDER BY bucket";
  }
  auto db = impl_->reader();
  if (!db) return std::unexpected(db.error());
  std::vector<SeriesPoint> out;
  auto r = run_query(db->get(), sql, args, [&](sqlite3_stmt* s) {
    SeriesPoint p;
    p.time_ns = from + static_cast<uint64_t>(sqlite3_column_int64(s, 0)) * q.interval_ns;
    read_aggregates(s, 1, p);
    out.push_back(p);
  });
  impl_->give_back(std::move(*db));
  if (!r) return std::unexpected(r.error());
  return out;
}

bool SqliteStore::last_used_rollup() { return t_used_rollup; }

Result<std::vector<std::string>> SqliteStore::complete(const CompleteQuery& q) {
  // Distinct values that start with the prefix, stopping at `limit`: the
  // rollup's rows for whole minutes (a few per minute), the flows for the
  // partial first minute.
  const char* col = "comm";
  switch (q.field) {
    case CompleteField::Process: col = "comm"; break;
    case CompleteField::Container: col = "container_id"; break;
    case CompleteField::Host: col = "host"; break;
    case CompleteField::Exporter: col = "exporter"; break;
    case CompleteField::Close: col = "close_reason"; break;
    case CompleteField::Direction: col = "direction"; break;
    case CompleteField::DropReason: col = "dr_each.key"; break;
  }
  const bool reasons = q.field == CompleteField::DropReason;
  // Values from prefix up to (not including) prefix with its last byte
  // raised: every string that starts with it, compared bytewise.
  std::string upper = q.prefix;
  while (!upper.empty() && static_cast<unsigned char>(upper.back()) == 0xff) upper.pop_back();
  if (!upper.empty()) upper.back() = static_cast<char>(upper.back() + 1);
  auto match = [&](Where& w) {
    w.add(fmt::format("{0} IS NOT NULL AND {0} <> ''", col).c_str(), {});
    if (!q.prefix.empty()) w.add(fmt::format("{} >= ?", col).c_str(), {q.prefix});
    if (!upper.empty()) w.add(fmt::format("{} < ?", col).c_str(), {upper});
  };
  // Whole minutes from the rollup (a few rows per minute), the partial
  // first minute from the flows; drop reasons only from the flows.
  const int64_t from = i64(std::min<uint64_t>(q.from_ns, INT64_MAX - kMinuteNs));
  const int64_t m_from = (from + kMinuteNs - 1) / kMinuteNs;
  const bool rollup = impl_->opts.use_rollups && !reasons;
  Where raw;
  match(raw);
  if (rollup)
    raw.add("end_ns >= ? AND end_ns < ?", {from, m_from * kMinuteNs});
  else
    raw.add("end_ns >= ?", {from});
  if (reasons) raw.add("drops IS NOT NULL", {});
  std::string sql = fmt::format("SELECT DISTINCT v FROM (SELECT {} AS v FROM {}", col,
                                reasons ? "flows, json_each(flows.drops) AS dr_each"
                                        : rollup ? "flows INDEXED BY flows_end" : "flows");
  std::vector<Value> args;
  append(sql, args, raw);
  if (rollup) {
    Where r;
    match(r);
    r.add("minute >= ?", {m_from});
    sql += fmt::format(" UNION ALL SELECT {} AS v FROM flows_1m", col);
    append(sql, args, r);
  }
  sql += ") ORDER BY v LIMIT ?";
  args.push_back(static_cast<int64_t>(q.limit));
  auto db = impl_->reader();
  if (!db) return std::unexpected(db.error());
  std::vector<std::string> out;
  auto r = run_query(db->get(), sql, args, [&](sqlite3_stmt* s) { out.push_back(column_text(s, 0)); });
  impl_->give_back(std::move(*db));
  if (!r) return std::unexpected(r.error());
  return out;
}

Result<std::vector<DeliveryMark>> SqliteStore::delivery_marks() {
  Impl& i = *impl_;
  std::lock_guard lk(i.write_mu);
  std::vector<DeliveryMark> out;
  auto r = run_query(i.writer.get(), "SELECT instance, domain, next_seq FROM delivery", {}, [&](sqlite3_stmt* s) {
    out.push_back({uint64_t(sqlite3_column_int64(s, 0)), uint32_t(sqlite3_column_int64(s, 1)),
                   uint64_t(sqlite3_column_int64(s, 2))});
  });
  if (!r) return std::unexpected(r.error());
  return out;
}

Result<uint64_t> SqliteStore::expire(uint64_t cutoff_ns) {
  Impl& i = *impl_;
  std::lock_guard lk(i.write_mu);
  // An instance silent for the whole retention period is gone.
  if (auto st = prepare(i.writer.get(), "DELETE FROM delivery WHERE updated_ns < ?")) {
    sqlite3_bind_int64(st->get(), 1, i64(cutoff_ns));
    (void)sqlite3_step(st->get());
  }
  // Evidence about flows no longer stored decides nothing.
  for (const char* sql : {"DELETE FROM ownership WHERE to_ns < ?", "DELETE FROM claimants WHERE reported_to_ns < ?"}) {
    if (auto st = prepare(i.writer.get(), sql)) {
      sqlite3_bind_int64(st->get(), 1, i64(cutoff_ns));
      (void)sqlite3_step(st->get());
    }
  }
  // Whole minutes, so the rollup and the flows always hold the same records.
  cutoff_ns -= cutoff_ns % kMinuteNs;
  if (auto r = exec(i.writer.get(), "BEGIN IMMEDIATE"); !r) return std::unexpected(r.error());
  auto st = prepare(i.writer.get(), "DELETE FROM flows WHERE end_ns < ?");
  if (!st) {
    (void)exec(i.writer.get(), "ROLLBACK");
    return std::unexpected(st.error());
  }
  sqlite3_bind_int64(st->get(), 1, i64(cutoff_ns));
  if (sqlite3_step(st->get()) != SQLITE_DONE) {
    auto err = fail("SQLite delete: {}", sqlite3_errmsg(i.writer.get()));
    (void)exec(i.writer.get(), "ROLLBACK");
    return err;
  }
  const auto n = static_cast<uint64_t>(sqlite3_changes64(i.writer.get()));
  const std::string rollup = fmt::format("DELETE FROM flows_1m WHERE minute < {}; COMMIT;", i64(cutoff_ns) / kMinuteNs);
  if (auto r = exec(i.writer.get(), rollup.c_str()); !r) {
    (void)exec(i.writer.get(), "ROLLBACK");
    return std::unexpected(r.error());
  }
  std::lock_guard sl(i.stats_mu);
  i.st.retention_deleted += n;
  i.st.rows = i.st.rows > n ? i.st.rows - n : 0;
  return n;
}

Result<void> SqliteStore::insert_claims(const std::vector<OwnershipClaim>& claims) {
  if (claims.empty()) return {};
  Impl& i = *impl_;
  std::lock_guard lk(i.write_mu);
  sqlite3* w = i.writer.get();
  // A heartbeat repeats its range's start and moves its end; a release ends
  // it. Whatever the order they arrive in, the row keeps the latest end.
  auto st = prepare(w,
                    "INSERT INTO ownership (host, host_id, addr, port, protocol, from_ns, pid, to_ns, held, exporter, "
                    "exe, unit, comm, container_id, netns) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT (addr, port, protocol, host, host_id, from_ns, pid) DO UPDATE SET "
                    "held = CASE WHEN excluded.to_ns >= to_ns THEN excluded.held ELSE held END, "
                    "to_ns = max(to_ns, excluded.to_ns)");
  if (!st) return std::unexpected(st.error());
  auto who = prepare(w,
                     "INSERT INTO claimants (host, host_id, reported_to_ns, stopped_ns) VALUES (?,?,?,?) "
                     "ON CONFLICT (host, host_id) DO UPDATE SET "
                     "reported_to_ns = max(reported_to_ns, excluded.reported_to_ns), "
                     "stopped_ns = max(stopped_ns, excluded.stopped_ns)");
  if (!who) return std::unexpected(who.error());
  if (auto r = exec(w, "BEGIN IMMEDIATE"); !r) return r;
  auto text = [](const std::optional<std::string>& v) -> Value { return v ? Value(*v) : Value(nullptr); };
  static const Ip16 kUnspecified{};
  for (const auto& c : claims) {
    const std::vector<Value> args = {
        c.host.value_or(""), c.host_id.value_or(""), c.addr, int64_t{c.port}, int64_t{c.protocol}, i64(c.from_ns),
        int64_t{c.pid.value_or(0)}, i64(c.to_ns), int64_t{c.held}, c.exporter, text(c.exe), text(c.unit),
        text(c.comm), text(c.container_id), c.netns ? Value(int64_t{*c.netns}) : Value(nullptr)};
    for (size_t k = 0; k < args.size(); ++k) bind(st->get(), static_cast<int>(k + 1), args[k]);
    int rc = sqlite3_step(st->get());
    sqlite3_reset(st->get());
    if (rc == SQLITE_DONE) {
      // The stop marker is a released claim of the unspecified address.
      const bool stop = c.addr == kUnspecified && !c.held;
      const std::vector<Value> w_args = {c.host.value_or(""), c.host_id.value_or(""), i64(c.to_ns),
                                         stop ? i64(c.to_ns) : int64_t{0}};
      for (size_t k = 0; k < w_args.size(); ++k) bind(who->get(), static_cast<int>(k + 1), w_args[k]);
      rc = sqlite3_step(who->get());
      sqlite3_reset(who->get());
    }
    if (rc != SQLITE_DONE) {
      auto err = fail("SQLite ownership insert: {}", sqlite3_errmsg(w));
      (void)exec(w, "ROLLBACK");
      return err;
    }
  }
  sqlite3_clear_bindings(st->get());
  sqlite3_clear_bindings(who->get());
  return exec(w, "COMMIT");
}

Result<std::vector<OwnershipClaim>> SqliteStore::claims(const ClaimQuery& q) {
  std::vector<OwnershipClaim> out;
  if (q.addrs.empty()) return out;
  auto db = impl_->reader();
  if (!db) return std::unexpected(db.error());
  std::string in;
  std::vector<Value> args;
  for (const auto& a : q.addrs) {
    in += in.empty() ? "?" : ",?";
    args.emplace_back(a);
  }
  args.emplace_back(i64(q.from_ns));
  args.emplace_back(i64(q.to_ns));
  auto r = run_query(db->get(),
                     fmt::format("SELECT host, host_id, addr, port, protocol, from_ns, pid, to_ns, held, exporter, exe, "
                                 "unit, comm, container_id, netns FROM ownership WHERE addr IN ({}) AND to_ns >= ? "
                                 "AND from_ns <= ?",
                                 in),
                     args, [&](sqlite3_stmt* s) {
                       OwnershipClaim c;
                       auto opt_text = [&](int k) -> std::optional<std::string> {
                         if (sqlite3_column_type(s, k) == SQLITE_NULL) return std::nullopt;
                         return column_text(s, k);
                       };
                       c.host = column_text(s, 0);
                       c.host_id = column_text(s, 1);
                       c.addr = column_ip(s, 2);
                       c.port = static_cast<uint16_t>(sqlite3_column_int(s, 3));
                       c.protocol = static_cast<uint8_t>(sqlite3_column_int(s, 4));
                       c.from_ns = static_cast<uint64_t>(sqlite3_column_int64(s, 5));
                       if (const auto pid = sqlite3_column_int64(s, 6)) c.pid = static_cast<uint32_t>(pid);
                       c.to_ns = static_cast<uint64_t>(sqlite3_column_int64(s, 7));
                       c.held = sqlite3_column_int(s, 8) != 0;
                       c.exporter = column_text(s, 9);
                       c.exe = opt_text(10);
                       c.unit = opt_text(11);
                       c.comm = opt_text(12);
                       c.container_id = opt_text(13);
                       if (sqlite3_column_type(s, 14) != SQLITE_NULL)
                         c.netns = static_cast<uint32_t>(sqlite3_column_int64(s, 14));
                       out.push_back(std::move(c));
                     });
  impl_->give_back(std::move(*db));
  if (!r) return std::unexpected(r.error());
  return out;
}

Result<std::vector<Claimant>> SqliteStore::claimants(uint64_t since_ns) {
  std::vector<Claimant> out;
  auto db = impl_->reader();
  if (!db) return std::unexpected(db.error());
  auto r = run_query(db->get(),
                     "SELECT host, host_id, reported_to_ns, stopped_ns FROM claimants WHERE reported_to_ns >= ?",
                     {i64(since_ns)}, [&](sqlite3_stmt* s) {
                       Claimant c{column_text(s, 0), column_text(s, 1),
                                  static_cast<uint64_t>(sqlite3_column_int64(s, 2)), false};
                       const auto stopped = static_cast<uint64_t>(sqlite3_column_int64(s, 3));
                       c.stopped = stopped != 0 && stopped >= c.reported_to_ns;
                       out.push_back(std::move(c));
                     });
  impl_->give_back(std::move(*db));
  if (!r) return std::unexpected(r.error());
  return out;
}

StoreStats SqliteStore::stats() {
  StoreStats s;
  {
    std::lock_guard sl(impl_->stats_mu);
    s = impl_->st;
  }
  std::error_code ec;
  for (const char* suffix : {"", "-wal"}) {
    auto n = std::filesystem::file_size(impl_->opts.path + suffix, ec);
    if (!ec) s.bytes_on_disk += n;
  }
  return s;
}

}  // namespace flowscope
