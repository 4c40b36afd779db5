#include "storage/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <list>
#include <mutex>
#include <unordered_map>
#include <variant>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

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
  }
  return "src";
}

const char* to_string(TopMetric m) {
  switch (m) {
    case TopMetric::Bytes: return "bytes";
    case TopMetric::Flows: return "flows";
    case TopMetric::Retrans: return "retransmits";
  }
  return "bytes";
}

namespace {

// Schema version 1. Addresses are 16-byte BLOBs (IPv4 mapped into IPv6) so a
// CIDR is a BETWEEN over an index; text forms are made on the way out.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS flows (
  id            INTEGER PRIMARY KEY,
  exporter      TEXT    NOT NULL,
  domain        INTEGER NOT NULL,
  start_ns      INTEGER NOT NULL,
  end_ns        INTEGER NOT NULL,
  src_ip        BLOB    NOT NULL,
  dst_ip        BLOB    NOT NULL,
  src_port      INTEGER NOT NULL,
  dst_port      INTEGER NOT NULL,
  protocol      INTEGER NOT NULL,
  direction     TEXT    NOT NULL,
  bytes         INTEGER NOT NULL,
  packets       INTEGER NOT NULL,
  rev_bytes     INTEGER NOT NULL,
  rev_packets   INTEGER NOT NULL,
  bidirectional INTEGER NOT NULL,
  cumulative    INTEGER NOT NULL,
  interim       INTEGER NOT NULL,
  retrans       INTEGER,
  srtt_us       INTEGER,
  rttvar_us     INTEGER,
  close_reason  TEXT,
  pid           INTEGER,
  comm          TEXT,
  cgroup_id     INTEGER,
  cgroup        TEXT,
  container_id  TEXT,
  netns         INTEGER,
  drops         TEXT,
  drops_total   INTEGER NOT NULL,
  d_bytes       INTEGER NOT NULL,
  d_packets     INTEGER NOT NULL,
  d_retrans     INTEGER NOT NULL,
  first         INTEGER NOT NULL
);
-- Open cumulative flows' last totals, kept across a restart (written at a
-- clean shutdown, read back and emptied at start).
CREATE TABLE IF NOT EXISTS open_flows (
  seq     INTEGER PRIMARY KEY,
  key     BLOB    NOT NULL,
  bytes   INTEGER NOT NULL,
  packets INTEGER NOT NULL,
  retrans INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS flows_end ON flows(end_ns);
CREATE INDEX IF NOT EXISTS flows_src ON flows(src_ip, end_ns);
CREATE INDEX IF NOT EXISTS flows_dst ON flows(dst_ip, end_ns);
CREATE INDEX IF NOT EXISTS flows_comm ON flows(comm) WHERE comm IS NOT NULL;
CREATE INDEX IF NOT EXISTS flows_container ON flows(container_id) WHERE container_id IS NOT NULL;
PRAGMA user_version = 1;
)sql";

constexpr const char* kColumns =
    "id, exporter, domain, start_ns, end_ns, src_ip, dst_ip, src_port, dst_port, protocol, direction, bytes, "
    "packets, rev_bytes, rev_packets, bidirectional, cumulative, interim, retrans, srtt_us, rttvar_us, close_reason, "
    "pid, comm, cgroup_id, cgroup, container_id, netns, drops, drops_total, d_bytes, d_packets, d_retrans, first";

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;

struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

using Value = std::variant<std::nullptr_t, int64_t, std::string, Ip16>;

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

constexpr int kInsertColumns = 33;  // every column but id
// Rows per multi-row INSERT: one statement execution opens the table's and
// the indexes' cursors once for all of them (33 x 64 = 2112 parameters, far
// below SQLite's limit of 32766).
constexpr int kRowsPerInsert = 64;

// Binds one row's values to parameters base+1 .. base+33, in kColumns order.
// Text and blobs are bound SQLITE_STATIC: the row and `drops` stay alive and
// unchanged until the statement has run (and every parameter is bound again
// before the next run).
// A row from a third-party exporter has none of the agent's columns
// (retrans .. drops): the "lean" statements have NULL literals there, which
// saves 11 binds per row.
constexpr int kAgentFirst = 17, kAgentColumns = 11;  // retrans .. drops, 0-based in the 33

bool lean(const FlowRow& r) {
  return !r.retrans && !r.srtt_us && !r.rttvar_us && !r.close_reason && !r.pid && !r.comm && !r.cgroup_id &&
         !r.cgroup && !r.container_id && !r.netns && r.drops.empty();
}

// The placeholders of one row: "(NULL,?,...)", with NULL literals for the
// agent's columns when `lean_row`.
std::string row_placeholders(bool lean_row) {
  std::string row = "(NULL";
  for (int i = 0; i < kInsertColumns; ++i)
    row += lean_row && i >= kAgentFirst && i < kAgentFirst + kAgentColumns ? ",NULL" : ",?";
  return row + ')';
}

// Binds parameters in column order, without copies (the row outlives the step).
struct Binder {
  sqlite3_stmt* s;
  int k;
  void i(int64_t v) { sqlite3_bind_int64(s, ++k, v); }
  void null() { sqlite3_bind_null(s, ++k); }
  void t(const std::string& v) { sqlite3_bind_text(s, ++k, v.data(), static_cast<int>(v.size()), SQLITE_STATIC); }
  void b(const Ip16& a) { sqlite3_bind_blob(s, ++k, a.data(), static_cast<int>(a.size()), SQLITE_STATIC); }
  void b(std::string_view v) { sqlite3_bind_blob(s, ++k, v.data(), static_cast<int>(v.size()), SQLITE_STATIC); }
  template <class T>
  void opt(const std::optional<T>& o) {
    if (!o) null();
    else if constexpr (std::is_same_v<T, std::string>) t(*o);
    else i(static_cast<int64_t>(*o));
  }
};

// The columns every exporter fills: exporter .. interim.
void bind_basics(Binder& b, const FlowRow& r) {
  b.t(r.exporter);
  b.i(r.domain);
  b.i(i64(r.start_ns));
  b.i(i64(r.end_ns));
  b.b(r.src_ip);
  b.b(r.dst_ip);
  b.i(r.src_port);
  b.i(r.dst_port);
  b.i(r.protocol);
  b.t(r.direction);
  b.i(i64(r.bytes));
  b.i(i64(r.packets));
  b.i(i64(r.rev_bytes));
  b.i(i64(r.rev_packets));
  b.i(r.bidirectional);
  b.i(r.cumulative);
  b.i(r.interim);
}

// The columns after the agent's: drops_total .. first.
void bind_tail(Binder& b, const FlowRow& r, uint64_t drops_total) {
  b.i(i64(drops_total));
  b.i(i64(r.delta_bytes));
  b.i(i64(r.delta_packets));
  b.i(i64(r.delta_retrans));
  b.i(r.first);
}

// Binds a lean row: parameters base+1 .. base+22 (every column but the agent's).
void bind_lean_row(sqlite3_stmt* s, int base, const FlowRow& r) {
  Binder b{s, base};
  bind_basics(b, r);
  bind_tail(b, r, 0);
}

void bind_row(sqlite3_stmt* s, int base, const FlowRow& r, const std::string& drops) {
  Binder b{s, base};
  bind_basics(b, r);
  b.opt(r.retrans);
  b.opt(r.srtt_us);
  b.opt(r.rttvar_us);
  b.opt(r.close_reason);
  b.opt(r.pid);
  b.opt(r.comm);
  b.opt(r.cgroup_id);
  b.opt(r.cgroup);
  b.opt(r.container_id);
  b.opt(r.netns);
  if (drops.empty()) b.null();
  else b.t(drops);
  bind_tail(b, r, r.drops_total());
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
  if (f.pid) w.add("pid = ?", {int64_t{*f.pid}});
  if (f.container) {
    if (f.container->size() >= 64)
      w.add("container_id = ?", {*f.container});
    else
      w.add("substr(container_id, 1, ?) = ?", {static_cast<int64_t>(f.container->size()), *f.container});
  }
  if (f.close_reason) w.add("close_reason = ?", {*f.close_reason});
  if (f.exporter) w.add("exporter = ?", {*f.exporter});
  if (f.interim) w.add("interim = ?", {int64_t{*f.interim ? 1 : 0}});
  return w;
}

Ip16 column_ip(sqlite3_stmt* s, int i) {
  Ip16 a{};
  if (sqlite3_column_bytes(s, i) == 16) std::memcpy(a.data(), sqlite3_column_blob(s, i), 16);
  return a;
}

std::string column_text(sqlite3_stmt* s, int i) {
  const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return t ? std::string(t, static_cast<size_t>(sqlite3_column_bytes(s, i))) : std::string();
}

template <class T>
std::optional<T> column_opt(sqlite3_stmt* s, int i) {
  if (sqlite3_column_type(s, i) == SQLITE_NULL) return std::nullopt;
  if constexpr (std::is_same_v<T, std::string>)
    return column_text(s, i);
  else
    return static_cast<T>(sqlite3_column_int64(s, i));
}

FlowRow read_row(sqlite3_stmt* s) {
  FlowRow r;
  int c = 0;
  auto u64 = [&] { return static_cast<uint64_t>(sqlite3_column_int64(s, c++)); };
  r.id = sqlite3_column_int64(s, c++);
  r.exporter = column_text(s, c++);
  r.domain = static_cast<uint32_t>(u64());
  r.start_ns = u64();
  r.end_ns = u64();
  r.src_ip = column_ip(s, c++);
  r.dst_ip = column_ip(s, c++);
  r.src_port = static_cast<uint16_t>(u64());
  r.dst_port = static_cast<uint16_t>(u64());
  r.protocol = static_cast<uint8_t>(u64());
  r.direction = column_text(s, c++);
  r.bytes = u64();
  r.packets = u64();
  r.rev_bytes = u64();
  r.rev_packets = u64();
  r.bidirectional = u64() != 0;
  r.cumulative = u64() != 0;
  r.interim = u64() != 0;
  r.retrans = column_opt<uint32_t>(s, c++);
  r.srtt_us = column_opt<uint32_t>(s, c++);
  r.rttvar_us = column_opt<uint32_t>(s, c++);
  r.close_reason = column_opt<std::string>(s, c++);
  r.pid = column_opt<uint32_t>(s, c++);
  r.comm = column_opt<std::string>(s, c++);
  r.cgroup_id = column_opt<uint64_t>(s, c++);
  r.cgroup = column_opt<std::string>(s, c++);
  r.container_id = column_opt<std::string>(s, c++);
  r.netns = column_opt<uint32_t>(s, c++);
  if (auto d = column_opt<std::string>(s, c++)) {
    auto j = nlohmann::json::parse(*d, nullptr, false);
    if (j.is_object())
      for (auto& [k, v] : j.items())
        if (v.is_number_unsigned()) r.drops.push_back({k, v.get<uint64_t>()});
  }
  c++;  // drops_total
  r.delta_bytes = u64();
  r.delta_packets = u64();
  r.delta_retrans = u64();
  r.first = u64() != 0;
  return r;
}

// Identity of one flow across its records (the agent's interim records and
// its final one share it).
std::string flow_key(const FlowRow& r) {
  std::string k = r.exporter;
  k += '|';
  k += std::to_string(r.domain);
  k += '|';
  k += std::to_string(r.start_ns);
  k.append(reinterpret_cast<const char*>(r.src_ip.data()), 16);
  k.append(reinterpret_cast<const char*>(r.dst_ip.data()), 16);
  k += std::to_string(r.src_port) + ':' + std::to_string(r.dst_port) + '/' + std::to_string(r.protocol);
  return k;
}

struct Totals {
  uint64_t bytes = 0, packets = 0, retrans = 0;
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

  // Fills the per-record deltas of a row (under write_mu).
  void account(FlowRow& r) {
    const uint64_t retrans = r.retrans.value_or(0);
    if (!r.cumulative) {
      r.delta_bytes = r.bytes + r.rev_bytes;
      r.delta_packets = r.packets + r.rev_packets;
      r.delta_retrans = retrans;
      r.first = true;
      return;
    }
    Totals now{r.bytes + r.rev_bytes, r.packets + r.rev_packets, retrans};
    const std::string key = flow_key(r);
    auto it = open.find(key);
    Totals prev;
    r.first = it == open.end();
    if (!r.first) prev = it->second.first;
    r.delta_bytes = sub0(now.bytes, prev.bytes);
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
    auto ins = prepare(db, "INSERT INTO open_flows (seq, key, bytes, packets, retrans) VALUES (?, ?, ?, ?, ?)");
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
    auto sel = prepare(db, "SELECT key, bytes, packets, retrans FROM open_flows ORDER BY seq DESC");
    if (!sel) return std::unexpected(sel.error());
    sqlite3_stmt* st = sel->get();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      const auto* data = static_cast<const char*>(sqlite3_column_blob(st, 0));
      std::string key(data ? data : "", static_cast<size_t>(sqlite3_column_bytes(st, 0)));
      const Totals t{static_cast<uint64_t>(sqlite3_column_int64(st, 1)),
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
    if (version > 1) return fail("{}: schema version {} is newer than this flowscope (1)", opts.path, version);
  }
  if (auto r = exec(w, kSchema); !r) return fail("{}: {}", opts.path, r.error().message);
  // The insert statements: one row or kRowsPerInsert rows, with every
  // column bound or with NULL literals for the agent's columns.
  for (bool lean_rows : {false, true}) {
    const std::string row = row_placeholders(lean_rows);
    std::string rows = row;
    for (int i = 1; i < kRowsPerInsert; ++i) rows += "," + row;
    auto one = prepare(w, fmt::format("INSERT OR ROLLBACK INTO flows ({}) VALUES {}", kColumns, row));
    if (!one) return std::unexpected(one.error());
    auto multi = prepare(w, fmt::format("INSERT OR ROLLBACK INTO flows ({}) VALUES {}", kColumns, rows));
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

Result<void> SqliteStore::insert(std::vector<FlowRow>& rows) {
  if (rows.empty()) return {};
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
  for (auto& r : rows) i.account(r);
  bool ok = true;
  // kRowsPerInsert rows per statement while that many are left, then one by
  // one; the lean statement when none of the rows has the agent's columns.
  for (size_t pos = 0, n; ok && pos < rows.size(); pos += n) {
    n = rows.size() - pos >= size_t(kRowsPerInsert) ? size_t(kRowsPerInsert) : 1;
    const auto first = rows.begin() + static_cast<std::ptrdiff_t>(pos);
    const bool lean_rows = std::all_of(first, first + static_cast<std::ptrdiff_t>(n), lean);
    sqlite3_stmt* s = n > 1 ? (lean_rows ? i.insert_multi_lean : i.insert_multi).get()
                            : (lean_rows ? i.insert_lean : i.insert_stmt).get();
    const int stride = lean_rows ? kInsertColumns - kAgentColumns : kInsertColumns;
    for (size_t k = 0; k < n; ++k) {
      const FlowRow& r = rows[pos + k];
      if (lean_rows) {
        bind_lean_row(s, static_cast<int>(k) * stride, r);
      } else {
        drops_json(r, drops[k]);
        bind_row(s, static_cast<int>(k) * stride, r, drops[k]);
      }
    }
    ok = run(s, pos, n);
  }
  // Nothing may keep pointers into this batch.
  for (auto* st : {i.insert_multi.get(), i.insert_stmt.get(), i.insert_multi_lean.get(), i.insert_lean.get()})
    sqlite3_clear_bindings(st);
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
  std::string sql = fmt::format("SELECT {} FROM flows{} ORDER BY end_ns DESC, id DESC LIMIT ? OFFSET ?", kColumns, w.sql);
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

Result<std::vector<TopEntry>> SqliteStore::top(const TopQuery& q) {
  // Group and order expressions come from these fixed tables only.
  const char* key = "src_ip";
  int nkeys = 1;
  bool blob_keys = true;
  const char* nonnull = nullptr;
  switch (q.group) {
    case TopGroup::Src: key = "src_ip"; break;
    case TopGroup::Dst: key = "dst_ip"; break;
    case TopGroup::Pair: key = "src_ip, dst_ip"; nkeys = 2; break;
    // The service port: the local port of an inbound flow, else the destination's.
    case TopGroup::Port: key = "CASE WHEN direction = 'inbound' THEN src_port ELSE dst_port END"; blob_keys = false; break;
    case TopGroup::Process: key = "comm"; blob_keys = false; nonnull = "comm IS NOT NULL"; break;
    case TopGroup::Container: key = "container_id"; blob_keys = false; nonnull = "container_id IS NOT NULL"; break;
  }
  const char* order = q.by == TopMetric::Bytes ? "b" : q.by == TopMetric::Flows ? "f" : "r";
  Where w = build_where(q.filter);
  if (nonnull) w.add(nonnull, {});
  std::string sql = fmt::format(
      "SELECT {0}, SUM(d_bytes) AS b, SUM(d_packets) AS p, SUM(first) AS f, SUM(d_retrans) AS r FROM flows{1} "
      "GROUP BY {0} ORDER BY {2} DESC, b DESC LIMIT ?",
      key, w.sql, order);
  w.args.push_back(static_cast<int64_t>(q.limit));
  auto db = impl_->reader();
  if (!db) return std::unexpected(db.error());
  std::vector<TopEntry> out;
  auto r = run_query(db->get(), sql, w.args, [&](sqlite3_stmt* s) {
    TopEntry e;
    for (int k = 0; k < nkeys; ++k)
      e.key.push_back(blob_keys ? ip16_to_string(column_ip(s, k)) : column_text(s, k));
    e.bytes = static_cast<uint64_t>(sqlite3_column_int64(s, nkeys));
    e.packets = static_cast<uint64_t>(sqlite3_column_int64(s, nkeys + 1));
    e.flows = static_cast<uint64_t>(sqlite3_column_int64(s, nkeys + 2));
    e.retrans = static_cast<uint64_t>(sqlite3_column_int64(s, nkeys + 3));
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
  Where w = build_where(f);
  w.add("end_ns BETWEEN ? AND ?", {i64(from), i64(to)});
  std::string sql = fmt::format(
      "SELECT (end_ns - ?) / ? AS bucket, SUM(d_bytes), SUM(d_packets), SUM(first), SUM(d_retrans) FROM flows{} "
      "GROUP BY bucket ORDER BY bucket",
      w.sql);
  std::vector<Value> args = {i64(from), i64(q.interval_ns)};
  args.insert(args.end(), w.args.begin(), w.args.end());
  auto db = impl_->reader();
  if (!db) return std::unexpected(db.error());
  std::vector<SeriesPoint> out;
  auto r = run_query(db->get(), sql, args, [&](sqlite3_stmt* s) {
    SeriesPoint p;
    p.time_ns = from + static_cast<uint64_t>(sqlite3_column_int64(s, 0)) * q.interval_ns;
    p.bytes = static_cast<uint64_t>(sqlite3_column_int64(s, 1));
    p.packets = static_cast<uint64_t>(sqlite3_column_int64(s, 2));
    p.flows = static_cast<uint64_t>(sqlite3_column_int64(s, 3));
    p.retrans = static_cast<uint64_t>(sqlite3_column_int64(s, 4));
    out.push_back(p);
  });
  impl_->give_back(std::move(*db));
  if (!r) return std::unexpected(r.error());
  return out;
}

Result<uint64_t> SqliteStore::expire(uint64_t cutoff_ns) {
  Impl& i = *impl_;
  std::lock_guard lk(i.write_mu);
  auto st = prepare(i.writer.get(), "DELETE FROM flows WHERE end_ns < ?");
  if (!st) return std::unexpected(st.error());
  sqlite3_bind_int64(st->get(), 1, i64(cutoff_ns));
  if (sqlite3_step(st->get()) != SQLITE_DONE) return fail("SQLite delete: {}", sqlite3_errmsg(i.writer.get()));
  const auto n = static_cast<uint64_t>(sqlite3_changes64(i.writer.get()));
  std::lock_guard sl(i.stats_mu);
  i.st.retention_deleted += n;
  i.st.rows = i.st.rows > n ? i.st.rows - n : 0;
  return n;
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
