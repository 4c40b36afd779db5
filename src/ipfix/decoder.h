// IPFIX (RFC 7011) and NetFlow v9 (RFC 3954) decoder: the collector's input.
//
// Usage (one Decoder per collector; it is NOT thread-safe, serialise calls):
//
//   ipfix::Decoder dec({.template_lifetime = std::chrono::seconds(180)});
//   // UDP: one datagram is one message.
//   auto res = dec.feed("udp:192.0.2.1:50000", ipfix::Transport::Udp, datagram, now);
//   // TCP: cut the byte stream into messages with StreamFramer, one per
//   // connection, and feed each message; when the connection closes call
//   // dec.close_session(key) (TCP templates live as long as the session).
//   for (auto& f : res.flows) store(f.record);   // a Flow (flow/flow.h)
//   if (!res.ok()) log(res.error);               // malformed: discarded, counted
//   dec.counters();  dec.exporter_stats();        // for /metrics and the API
//
// The exporter key is an opaque string chosen by the caller (transport,
// address and port, or address only); templates are cached per
// (exporter key, observation domain). Sequence numbers are checked per
// (exporter key, observation domain).
//
// Hostile input: every length is validated before use; a malformed message is
// discarded as a whole (no flows from it) and counted; the decoder never
// crashes, never reads out of bounds, and its memory is bounded (templates
// per domain, domains, template bytes, held data sets and their bytes are all
// capped; domains and template bytes per source too, so one source cannot
// lock others out).
//
// Semantics of decoded flows (DecodedFlow::record, a Flow):
//   src_* = source* (sourceIPv4Address/sourceIPv6Address, sourceTransportPort)
//   dst_* = destination*
//   bytes / packets         = octet/packet count (Total or Delta, whichever
//                             the template has), i.e. source -> destination
//   rev_bytes / rev_packets = RFC 5103 reverse counts (0 if absent)
//   direction: flowDirection egress(1) -> Outbound, ingress(0) -> Inbound,
//              absent or other -> Unknown
//   start_ns / end_ns: from flowStart/End{Seconds,Milliseconds,Micro,Nano}
//              or *SysUpTime (with systemInitTimeMilliseconds or the NetFlow
//              v9 header's uptime). NetFlow v9 field types are read with the
//              IPFIX numbers (shared registry up to 32767). Never 0: a record
//              with only one of them gets it for both; a record with neither
//              (or only times that decode to 1970) gets the message header's
//              export time for both, the time the exporter sent what it had
//              metered (both counted in records_time_fallback); with an
//              export time of 0 as well, the record is not returned
//              (records_no_time, also in records_unusable).
//   interim: flowscopeInterimRecord if present, else flowEndReason ==
//            activeTimeout(2).
//   flowscope's own elements (RTT, retransmits, pid, comm, cgroup, container,
//   netns, close reason, drops) are decoded by the field table
//   (flow/fields.h), recognised by the configured PEN or by the RFC 5610
//   names an exporter announces. A record with any of them is from a
//   flowscope agent: bidirectional, cumulative, and its close reason is
//   taken from flowEndReason when the element is absent. Other exporters'
//   records leave those fields unset.
//
// Ownership claims (flow/ownership.h): a data record carrying
// flowscopeOwnershipState (flowscope's PEN, id 101; or the element an
// exporter's RFC 5610 type record names so) is a claim, returned in
// FeedResult::claims and never as a flow: addr from sourceIPv6Address (or
// sourceIPv4Address), port from sourceTransportPort, from/to from the
// flowStart/End elements (both required, from <= to), held from the state
// (1 held, 2 released; any other value, or no address, makes the record
// unusable: counted in claims_unusable and records_unusable), host and
// workload from flowscope's elements as for flows. Claims count as data
// records in the sequence numbers.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "flow/flow.h"
#include "flow/ownership.h"
#include "ipfix/ie.h"

namespace flowscope::ipfix {

enum class Transport : uint8_t { Udp, Tcp };

struct DecoderOptions {
  // UDP only: a template not refreshed for this long expires (RFC 7011 §8.4
  // says at least 3x the exporter's template refresh interval).
  std::chrono::seconds template_lifetime{1800};
  // Data sets that arrive before their template are held this long...
  std::chrono::seconds hold_time{10};
  // ...up to this many bytes in total, and this many per source (exporter
  // address); beyond, the oldest are counted and dropped.
  size_t hold_max_bytes = 1 << 20;
  size_t hold_max_bytes_per_source = 256 << 10;
  // Memory bounds against hostile exporters. State is kept per session
  // (the caller's key) and observation domain, and charged to the session's
  // source (the exporter's address). Each source has budgets of its own, so
  // no single source can take what others need: at its budget, its own least
  // recently used domain or template makes room (evicted, counted). At a
  // global bound, the source holding the most gives way the same way.
  size_t max_domains = 4096;               // (session, version, domain) triples, all sources
  size_t max_domains_per_source = 256;
  size_t max_templates_per_domain = 1024;  // beyond: refused, counted
  // Template memory, charged kTemplateCost plus kFieldCost per field (what a
  // cached template really costs, measured: map node, field vector, LRU entry).
  size_t max_template_bytes = 16u << 20;
  size_t max_template_bytes_per_source = 1u << 20;
  // A UDP domain that sent nothing for this long is removed with its
  // templates and sequence state; 0: template_lifetime. (TCP domains live
  // as long as their connection.)
  std::chrono::seconds session_idle{0};
  // flowscope's private enterprise number (see ie.h).
  uint32_t flowscope_pen = kDefaultPen;
};

struct DecodedFlow {
  Flow record;                // see the mapping above; exporter is left to the caller
  uint32_t domain = 0;        // observation domain id (NetFlow v9: source id)
  uint16_t template_id = 0;
  uint16_t version = 10;      // 10 = IPFIX, 9 = NetFlow v9
  bool flowscope = false;     // carried flowscope enterprise elements
  bool has_reverse = false;   // carried RFC 5103 reverse counts
  uint8_t end_reason = 0;     // flowEndReason, 0 if absent
  uint8_t tcp_flags = 0;      // tcpControlBits (low 8 bits), 0 if absent
};

// Decoder-wide counters (monotonic).
struct DecoderCounters {
  uint64_t messages = 0;             // fed to the decoder
  uint64_t messages_malformed = 0;   // discarded whole: bad header, lengths, set structure
  uint64_t messages_bad_version = 0; // neither 9 nor 10 (also counted malformed)
  uint64_t sets = 0;
  uint64_t templates = 0;            // template records accepted (incl. refreshes)
  uint64_t options_templates = 0;
  uint64_t templates_rejected = 0;   // invalid template records (message discarded)
  uint64_t templates_limit = 0;      // refused: max_templates_per_domain reached, larger than a budget, no domain
  uint64_t templates_expired = 0;    // UDP lifetime passed
  uint64_t templates_evicted = 0;    // made room for a newer one (its source's LRU, or the largest source's)
  uint64_t domains_expired = 0;      // idle UDP domains removed (session_idle)
  uint64_t domains_evicted = 0;      // made room for a new one (its source's LRU, or the largest source's)
  uint64_t templates_withdrawn = 0;  // TCP withdrawals applied
  uint64_t withdrawals_ignored = 0;  // withdrawals over UDP (RFC 7011 §8.4: ignored)
  uint64_t data_records = 0;         // data records decoded (flows and options data)
  uint64_t flows = 0;                // flows returned
  uint64_t claims = 0;               // ownership claims returned (template 260: flowscopeOwnershipState)
  uint64_t claims_unusable = 0;      // claim records refused: bad state, no address, no or reversed times
  uint64_t options_records = 0;      // options data records (RFC 5610 ones are used)
  uint64_t records_unusable = 0;     // decoded but no flow (no addresses, or records_no_time)
  uint64_t records_time_fallback = 0;  // stored with a time the record lacked (see start_ns/end_ns above)
  uint64_t records_no_time = 0;      // not stored: no time in the record and export time 0
  uint64_t sets_held = 0;            // data sets that waited for their template
  uint64_t sets_held_decoded = 0;    // ... and were decoded when it came
  uint64_t sets_no_template = 0;     // data sets dropped: template never came in time / hold full
  uint64_t bytes_no_template = 0;
  uint64_t sequence_gaps = 0;        // times a message's sequence number was not the expected one
  uint64_t records_lost = 0;         // data records missing per the sequence numbers (IPFIX)
  uint64_t packets_lost = 0;         // NetFlow v9: export packets missing
  uint64_t sequence_reordered = 0;   // sequence number behind the expected one
};

// Per (exporter, observation domain) state, for the ingest statistics API.
struct ExporterStats {
  std::string exporter;  // the session key
  std::string source;    // the exporter address it is charged to
  uint32_t domain = 0;
  uint16_t version = 10;
  uint64_t messages = 0;
  uint64_t data_records = 0;
  uint64_t flows = 0;
  uint64_t malformed = 0;  // malformed messages whose header named this domain
  uint64_t sequence_gaps = 0;
  uint64_t records_lost = 0;  // IPFIX records (NetFlow v9: packets) missing
  uint64_t templates = 0;     // currently cached
  uint64_t sets_no_template = 0;
  uint32_t last_sequence = 0;
  std::chrono::system_clock::time_point last_seen{};
};

// What a source (exporter address) lost to the budgets, since the counters
// were last taken.
struct SourceCounters {
  uint64_t domains_evicted = 0;
  uint64_t domains_expired = 0;
  uint64_t templates_evicted = 0;
  uint64_t templates_refused = 0;
};

// What a source holds now.
struct SourceUsage {
  std::string source;
  size_t domains = 0;
  size_t templates = 0;
  size_t template_bytes = 0;
};

struct DecoderUsage {
  size_t sources = 0;
  size_t domains = 0;
  size_t templates = 0;
  size_t template_bytes = 0;
  size_t held_bytes = 0;
};

// The template memory charge (see max_template_bytes).
inline constexpr size_t kTemplateCost = 256;
inline constexpr size_t kFieldCost = 12;

struct FeedResult {
  std::vector<DecodedFlow> flows;  // from this message, plus held sets its templates unlocked
  std::vector<OwnershipClaim> claims;  // ownership evidence records (template 260), exporter left to the caller
  std::string error;               // non-empty: the message was malformed and discarded
  // The message's header, and the data records its sequence number covers,
  // for a caller that tracks delivery across an exporter's connections.
  uint16_t version = 0;
  uint32_t domain = 0;
  uint32_t sequence = 0;
  uint64_t data_records = 0;
  std::optional<uint64_t> instance;  // the session's flowscope exporter instance, once announced
  bool ok() const { return error.empty(); }
};

class Decoder {
 public:
  explicit Decoder(DecoderOptions opts = {});
  ~Decoder();
  Decoder(Decoder&&) noexcept;
  Decoder& operator=(Decoder&&) noexcept;

  // Decodes one IPFIX or NetFlow v9 message (the version is read from the
  // header). `now` drives template expiry and held-data timeouts.
  FeedResult feed(const std::string& exporter, Transport transport, std::span<const uint8_t> message,
                  std::chrono::system_clock::time_point now = std::chrono::system_clock::now());
  // The same, with the session's state charged to `source` (the exporter's
  // address) instead of to the session key itself.
  FeedResult feed(const std::string& session, const std::string& source, Transport transport,
                  std::span<const uint8_t> message,
                  std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

  // A TCP session ended: its templates and held data go with it (RFC 7011 §8.1).
  void close_session(const std::string& exporter);
  // Drops expired templates and held sets (feed() also does this lazily).
  void expire(std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

  const DecoderCounters& counters() const;
  std::vector<ExporterStats> exporter_stats() const;
  // Per-source budget losses since the last call (then reset), for the
  // caller's per-exporter totals; sources with nothing to report are left out.
  std::vector<std::pair<std::string, SourceCounters>> take_source_counters();
  std::vector<SourceUsage> source_usage() const;
  DecoderUsage usage() const;
  const DecoderOptions& options() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Cuts an IPFIX byte stream (TCP) into messages using the header's length
// field. One per connection. A header that is not IPFIX version 10 or whose
// length is below 16 breaks the stream: the caller should count it and close
// the connection (framing cannot be recovered).
class StreamFramer {
 public:
  // Appends bytes read from the socket.
  void append(std::span<const uint8_t> bytes);
  // Next complete message, or empty when more bytes are needed or broken().
  std::vector<uint8_t> next();
  bool broken() const { return broken_; }
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;
  bool broken_ = false;
};

}  // namespace flowscope::ipfix
