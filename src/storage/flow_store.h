// Where flows are kept: the interface every backend implements (SQLite, the
// default; ClickHouse). Queries are described by value types, never by SQL text,
// so a backend decides how to express them and user input never reaches a
// query string.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "net/cidr.h"
#include "storage/flow_row.h"

namespace flowscope {

// Filters shared by every query; unset fields do not filter.
struct FlowFilter {
  std::optional<uint64_t> from_ns;  // flows that end at or after
  std::optional<uint64_t> to_ns;    // flows that start at or before
  std::optional<Cidr> addr;         // src or dst in the network
  std::optional<Cidr> src;
  std::optional<Cidr> dst;
  std::optional<uint16_t> port;     // src or dst port
  std::optional<uint8_t> protocol;
  std::optional<std::string> direction;
  std::optional<std::string> comm;
  // The workload name as the fleet view shows it (collector/attribution.h
  // workload_of): the systemd unit, else the program, else the thread comm.
  std::optional<std::string> workload;
  std::optional<uint32_t> pid;
  std::optional<std::string> container;  // container id (exact, or a prefix of at least 12 characters)
  std::optional<std::string> close_reason;
  std::optional<std::string> exporter;
  std::optional<std::string> host;   // the agent's host name
  std::optional<uint64_t> netns;     // network namespace inode
  std::optional<bool> interim;      // only interim (true) or only final (false) records
  // Flows with at least one drop of this kernel reason ("any": any reason).
  std::optional<std::string> drop_reason;
  // Neither port is this one (the console hides its own API traffic).
  std::optional<uint16_t> exclude_port;
  // Records of these connections (conversation ids); empty: any.
  std::vector<uint64_t> conversations;
};

struct FlowQuery {
  FlowFilter filter;
  uint32_t limit = 100;
  uint64_t offset = 0;
};

struct FlowPage {
  std::vector<FlowRow> flows;  // newest first (by end time, then id)
  bool more = false;           // another page exists
};

// DropReason: one entry per kernel drop reason, over the flows that had it
// (its drops are that reason's packets).
// SrcCidr, DstCidr: the address's network, IPv4 addresses at prefix length
// cidr4 and IPv6 ones at cidr6 ("10.1.2.0/24", "fd00:1::/64").
enum class TopGroup { Src, Dst, Pair, Port, Process, Container, Host, Netns, Close, DropReason, SrcCidr, DstCidr };
// Failures: connections that closed refused, timed out or reset. Drops:
// packets the kernel dropped, counted from each flow's last record (a
// flow's interim records carry its totals so far).
enum class TopMetric { Bytes, Flows, Retrans, Failures, Drops };

struct TopQuery {
  FlowFilter filter;
  TopGroup group = TopGroup::Src;
  TopMetric by = TopMetric::Bytes;
  uint32_t limit = 10;
  uint8_t cidr4 = 24;  // 0..32, for the CIDR groups
  uint8_t cidr6 = 64;  // 0..128
};

// The network of `a` (host bits cleared) at its family's prefix length, as
// text with the length: "10.1.2.0/24". For the CIDR groups on every backend.
std::string network_key(Ip16 a, uint8_t cidr4, uint8_t cidr6);

struct TopEntry {
  std::vector<std::string> key;  // one value per group column (pair: src, dst)
  uint64_t bytes = 0;      // both directions: bytes_out + bytes_in
  uint64_t bytes_out = 0;  // src -> dst (the agent: sent by the local end)
  uint64_t bytes_in = 0;   // dst -> src (the agent: received by the local end)
  uint64_t packets = 0;
  uint64_t flows = 0;
  uint64_t retrans = 0;
  uint64_t failures = 0;
  uint64_t drops = 0;
};

struct SeriesQuery {
  FlowFilter filter;  // from_ns and to_ns are required
  uint64_t interval_ns = 60'000'000'000;
};

struct SeriesPoint {
  uint64_t time_ns = 0;  // bucket start
  uint64_t bytes = 0;      // both directions: bytes_out + bytes_in
  uint64_t bytes_out = 0;  // src -> dst (the agent: sent by the local end)
  uint64_t bytes_in = 0;   // dst -> src (the agent: received by the local end)
  uint64_t packets = 0;
  uint64_t flows = 0;
  uint64_t retrans = 0;
  uint64_t failures = 0;
  uint64_t drops = 0;
};

// Values seen of one field, for the console's filter completion: those
// starting with `prefix`, in order, at most `limit`, from records that
// ended at or after `from_ns`.
enum class CompleteField { Process, Container, Host, Exporter, Close, Direction, DropReason };
struct CompleteQuery {
  CompleteField field = CompleteField::Process;
  std::string prefix;
  uint64_t from_ns = 0;
  uint32_t limit = 20;
};

// Where an exporter instance's records are stored up to: every data record
// numbered before next_seq in its observation domain (IPFIX sequence
// numbers, extended to 64 bits). Kept with the rows, so a collector that
// restarts knows what it already has (docs/ipfix.md, "Delivery").
struct DeliveryMark {
  uint64_t instance = 0;
  uint32_t domain = 0;
  uint64_t next_seq = 0;
};

// The store's own health, for /metrics and /api/exporters.
struct StoreStats {
  uint64_t rows_inserted = 0;
  uint64_t batches = 0;
  uint64_t insert_errors = 0;     // rows lost because a batch failed
  uint64_t retention_deleted = 0;
  uint64_t rows = 0;              // rows stored now
  uint64_t bytes_on_disk = 0;
  uint64_t pending_rows = 0;      // accepted, waiting for a server (backends that send in the background)
  uint64_t retries = 0;           // requests sent again after a failure
  uint64_t tracker_evicted = 0;   // open flows forgotten by the delta tracker
};

// Ownership evidence (flow/ownership.h) over a time range.
struct ClaimQuery {
  std::vector<Ip16> addrs;  // the addresses asked about
  uint64_t from_ns = 0;     // claims overlapping [from_ns, to_ns]
  uint64_t to_ns = 0;
};

// What one claimant (an agent: host name and id) has reported so far.
struct Claimant {
  std::string host, host_id;
  uint64_t reported_to_ns = 0;  // the latest to_ns of its claims
  bool stopped = false;         // its latest claim says it stopped (claims nothing more until it starts again)
};

class FlowStore {
 public:
  virtual ~FlowStore() = default;
  // Stores a batch atomically (all or none). Fills id/delta/first of the rows.
  virtual Result<void> insert(std::vector<FlowRow>& rows) = 0;
  // The same, with the delivery marks the batch completes. A backend that
  // can commits both atomically (then an acknowledged record is stored once,
  // even across a crash); the default stores the rows and keeps no marks.
  virtual Result<void> insert_marked(std::vector<FlowRow>& rows, const std::vector<DeliveryMark>& marks) {
    (void)marks;
    return rows.empty() ? Result<void>{} : insert(rows);
  }
  // The marks stored so far, read once at start.
  virtual Result<std::vector<DeliveryMark>> delivery_marks() { return std::vector<DeliveryMark>{}; }
  virtual Result<FlowPage> query(const FlowQuery& q) = 0;
  virtual Result<std::vector<TopEntry>> top(const TopQuery& q) = 0;
  virtual Result<std::vector<SeriesPoint>> series(const SeriesQuery& q) = 0;
  virtual Result<std::vector<std::string>> complete(const CompleteQuery& /*q*/) {
    return std::vector<std::string>{};
  }
  // Ownership evidence. Claims are idempotent (a claim stored twice decides
  // nothing differently), so they need no delivery marks: a writer stores
  // them before the flows that came with them.
  // A store without them (test doubles) refuses claims and knows none.
  virtual Result<void> insert_claims(const std::vector<OwnershipClaim>& claims) {
    if (claims.empty()) return {};
    return fail("this store keeps no ownership evidence");
  }
  virtual Result<std::vector<OwnershipClaim>> claims(const ClaimQuery& /*q*/) {
    return std::vector<OwnershipClaim>{};
  }
  // Claimants that reported anything ending at or after `since_ns`.
  virtual Result<std::vector<Claimant>> claimants(uint64_t /*since_ns*/) { return std::vector<Claimant>{}; }
  // Deletes flows that ended before `cutoff_ns`; returns how many.
  virtual Result<uint64_t> expire(uint64_t cutoff_ns) = 0;
  virtual StoreStats stats() = 0;
  // Waits until every row inserted so far can be read: backends that send
  // in the background (ClickHouse) flush; others are done already.
  virtual Result<void> sync(std::chrono::milliseconds /*timeout*/) { return {}; }
};

const char* to_string(TopGroup g);
const char* to_string(TopMetric m);
const char* to_string(CompleteField f);

// Close reasons that count as a failed connection.
inline constexpr const char* kFailedCloses[] = {"refused", "timeout", "rst_sent", "rst_received"};

}  // namespace flowscope
