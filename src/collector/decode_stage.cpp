#include "collector/decode_stage.h"

#include <algorithm>
#include <set>
#include <tuple>

#include <spdlog/spdlog.h>

#include "collector/collector.h"

namespace flowscope {

namespace {

constexpr size_t kMetricsExporters = 20;  // exporters with series of their own in /metrics

using Clock = std::chrono::steady_clock;

int64_t unix_ms(std::chrono::system_clock::time_point t) {
  return t.time_since_epoch().count() == 0
             ? 0
             : std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

}  // namespace

DecodeStage::DecodeStage(const ipfix::DecoderOptions& opts, std::shared_ptr<StoreWriter> writer, IngestQueue& queue)
    : writer_(std::move(writer)), q_(queue), decoder_(opts) {}

DecodeStage::~DecodeStage() { finish(); }

void DecodeStage::start() { thread_ = std::thread([this] { loop(); }); }

void DecodeStage::finish() {
  q_.close();
  if (thread_.joinable()) thread_.join();
}

ExporterTotals* DecodeStage::totals(const std::string& addr) {
  auto it = exporters_.find(addr);
  if (it != exporters_.end()) return &it->second;
  if (exporters_.size() >= kMaxExporters) {
    exporters_overflow_++;
    return nullptr;
  }
  return &exporters_[addr];
}

void DecodeStage::loop() {
  auto next_expire = Clock::now() + std::chrono::seconds(5);
  std::deque<IngestEvent> batch;
  while (q_.pop_all(batch, std::chrono::milliseconds(200))) {
    for (auto& e : batch) std::visit([this](auto& ev) { on(ev); }, e);
    flush_rows();  // nothing waits for more input
    {
      std::lock_guard lk(mu_);
      if (Clock::now() >= next_expire) {
        decoder_.expire();
        next_expire = Clock::now() + std::chrono::seconds(5);
      }
      take_budget_counters();
    }
    // The datagram buffers go back to the UDP input.
    for (auto& e : batch)
      if (auto* m = std::get_if<MessageEvent>(&e); m && m->session->transport == ipfix::Transport::Udp)
        q_.recycle(std::move(m->bytes));
    batch.clear();
  }
  flush_rows();
}

// What the budgets took from each source goes to its exporter's totals
// (a source may lose state to another's message, at a global bound).
void DecodeStage::take_budget_counters() {
  for (const auto& [source, sc] : decoder_.take_source_counters()) {
    if (auto* t = totals(source)) {
      t->budget.domains_evicted += sc.domains_evicted;
      t->budget.domains_expired += sc.domains_expired;
      t->budget.templates_evicted += sc.templates_evicted;
      t->budget.templates_refused += sc.templates_refused;
    }
  }
}

// Sends the pending rows to the store (waiting for room in its queue), then
// the delivery marks they complete.
void DecodeStage::flush_rows() {
  if (!pending_.empty()) {
    const uint64_t dropped = writer_->push(pending_, true);  // only when the writer stops
    if (dropped) {
      std::lock_guard lk(mu_);
      if (auto* t = totals(pending_addr_)) t->store_drops += dropped;
    }
    pending_.clear();
  }
  for (const auto& m : pending_marks_) writer_->mark(m);
  pending_marks_.clear();
}

void DecodeStage::load_delivery(const std::vector<DeliveryMark>& marks) {
  std::lock_guard lk(mu_);
  for (const auto& m : marks) {
    if (received_.size() >= kMaxInstances) break;
    received_[{m.instance, m.domain}] = m.next_seq;
  }
  delivery_.instances = received_.size();
}

void DecodeStage::stored(const std::vector<DeliveryMark>& marks) {
  std::lock_guard lk(mu_);
  if (!ack_) return;
  for (const auto& m : marks) {
    auto it = instance_session_.find(m.instance);
    if (it == instance_session_.end()) continue;  // gone; its next connection resends and is acknowledged then
    ack_(it->second, m.domain, m.next_seq);
    delivery_.acks++;
  }
}

DeliveryStats DecodeStage::delivery_stats() const {
  std::lock_guard lk(mu_);
  return delivery_;
}

namespace {

// A 32-bit sequence number as the 64-bit one nearest `ref`.
uint64_t extend_seq(uint32_t s, uint64_t ref) {
  const int64_t d = int32_t(s - uint32_t(ref));
  return d < 0 && uint64_t(-d) > ref ? uint64_t(s) : ref + uint64_t(d);
}

}  // namespace

void DecodeStage::on(MessageEvent& e) {
  const Session& s = *e.session;
  // A chunk holds one exporter's rows, so drops can be counted against it.
  if (!pending_.empty() && pending_addr_ != s.exporter) flush_rows();
  {
    std::lock_guard lk(mu_);
    const auto before = decoder_.counters();
    auto res = decoder_.feed(s.key, s.exporter, s.transport, e.bytes);
    const auto& after = decoder_.counters();
    if (ExporterTotals* t = totals(s.exporter)) {
      t->transports.insert(s.transport == ipfix::Transport::Udp ? "udp" : "tcp");
      t->messages++;
      t->bytes += e.bytes.size();
      t->last_seen = std::chrono::system_clock::now();
      t->malformed += after.messages_malformed - before.messages_malformed;
      t->sequence_gaps += after.sequence_gaps - before.sequence_gaps;
      t->records_lost += (after.records_lost - before.records_lost) + (after.packets_lost - before.packets_lost);
      t->templates += after.templates - before.templates;
      t->sets_no_template += after.sets_no_template - before.sets_no_template;
      t->records_time_fallback += after.records_time_fallback - before.records_time_fallback;
      t->records_no_time += after.records_no_time - before.records_no_time;
      t->flows += res.flows.size();
      if (!res.ok()) t->last_error = res.error.substr(0, 200);
    }
    if (!res.ok()) spdlog::debug("IPFIX from {}: {}", s.key, res.error);
    if (res.ok() && res.instance && s.transport == ipfix::Transport::Tcp && res.version == ipfix::kVersionIpfix)
      track_delivery(s, res, totals(s.exporter));
    if (!res.flows.empty()) pending_addr_ = s.exporter;
    if (!res.claims.empty()) {
      // Stored before any row or delivery mark pushed after them.
      for (auto& c : res.claims) c.exporter = s.exporter;
      writer_->push_claims(res.claims);
    }
    for (const auto& f : res.flows) pending_.push_back(flow_row_from_decoded(f, s.exporter));
  }
  // Wait for room in the store queue, whatever the transport: TCP then
  // pushes back on its exporter, and a UDP burst waits in the ingest queue
  // as datagrams instead of being decoded only to be dropped. When the
  // ingest queue is full too, the UDP input drops and counts datagrams.
  if (pending_.size() >= writer_->batch_max()) flush_rows();
}

void DecodeStage::track_delivery(const Session& s, ipfix::FeedResult& res, ExporterTotals* t) {
  const uint64_t instance = *res.instance;
  instance_session_[instance] = s.key;
  const std::pair key{instance, res.domain};
  auto it = received_.find(key);
  if (it == received_.end()) {
    if (received_.size() >= kMaxInstances) {
      delivery_.instances_untracked++;
      return;
    }
    // First contact: the 64-bit numbering starts at this message.
    it = received_.emplace(key, uint64_t(res.sequence)).first;
    delivery_.instances = received_.size();
  }
  const uint64_t seq = extend_seq(res.sequence, it->second);
  if (seq < it->second) {
    delivery_.records_duplicate += res.flows.size();
    if (t) t->records_duplicate += res.flows.size();
    res.flows.clear();
    // Acknowledged again (once what came before it is stored), so the
    // agent's window empties even when nothing new follows.
    pending_marks_.push_back({instance, res.domain, it->second});
    return;
  }
  it->second = seq + res.data_records;
  pending_marks_.push_back({instance, res.domain, it->second});
}

void DecodeStage::on(SessionOpened& e) {
  std::lock_guard lk(mu_);
  if (ExporterTotals* t = totals(e.session->exporter)) {
    t->tcp_connections++;
    t->transports.insert("tcp");
  }
}

void DecodeStage::on(SessionClosed& e) {
  std::lock_guard lk(mu_);
  decoder_.close_session(e.session->key);
  ExporterTotals* t = totals(e.session->exporter);
  if (!t) return;
  switch (e.cause) {
    case CloseCause::FramingError: t->tcp_framing_errors++; break;
    case CloseCause::IdleTimeout: t->tcp_idle_timeouts++; break;
    case CloseCause::MessageTimeout: t->tcp_message_timeouts++; break;
    case CloseCause::Evicted: t->tcp_evicted++; break;
    case CloseCause::PeerClosed:
    case CloseCause::Shutdown: break;
  }
}

void DecodeStage::on(ConnectionRefused& e) {
  std::lock_guard lk(mu_);
  if (ExporterTotals* t = totals(e.exporter)) t->tcp_refused++;
}

void DecodeStage::add_json(nlohmann::json& out, const std::string& after, size_t limit) const {
  using nlohmann::json;
  // One page is copied under the lock (a map seek plus `limit` entries and
  // their sessions) and formatted after it is released, so a large exporter
  // table never stalls ingest.
  std::unique_lock lk(mu_);
  const auto c = decoder_.counters();
  const auto u = decoder_.usage();
  const auto o = decoder_.options();
  std::vector<std::pair<std::string, ExporterTotals>> page;
  auto it = after.empty() ? exporters_.begin() : exporters_.upper_bound(after);
  for (; it != exporters_.end() && page.size() < limit; ++it) page.emplace_back(it->first, it->second);
  const bool more = it != exporters_.end();
  const size_t total = exporters_.size();
  const uint64_t overflow = exporters_overflow_;
  std::set<std::string> wanted;
  for (const auto& [addr, t] : page) wanted.insert(addr);
  std::vector<ipfix::ExporterStats> page_sessions;
  for (auto& st : decoder_.exporter_stats())
    if (wanted.count(st.source)) page_sessions.push_back(std::move(st));
  std::map<std::string, ipfix::SourceUsage> usage;
  for (auto& su : decoder_.source_usage())
    if (wanted.count(su.source)) usage[su.source] = su;
  lk.unlock();
  out["decoder"] = {
      {"messages", c.messages},
      {"malformed", c.messages_malformed},
      {"bad_version", c.messages_bad_version},
      {"templates", c.templates},
      {"options_templates", c.options_templates},
      {"templates_rejected", c.templates_rejected},
      {"templates_limit", c.templates_limit},
      {"templates_expired", c.templates_expired},
      {"templates_withdrawn", c.templates_withdrawn},
      {"templates_evicted", c.templates_evicted},
      {"domains_evicted", c.domains_evicted},
      {"domains_expired", c.domains_expired},
      {"data_records", c.data_records},
      {"flows", c.flows},
      {"records_unusable", c.records_unusable},
      {"records_time_fallback", c.records_time_fallback},
      {"records_no_time", c.records_no_time},
      {"sets_held", c.sets_held},
      {"sets_no_template", c.sets_no_template},
      {"sequence_gaps", c.sequence_gaps},
      {"records_lost", c.records_lost},
      {"packets_lost", c.packets_lost},
      {"usage", {{"sources", u.sources}, {"domains", u.domains}, {"templates", u.templates},
                 {"template_bytes", u.template_bytes}, {"held_bytes", u.held_bytes}}},
      {"budgets", {{"domains", o.max_domains}, {"domains_per_source", o.max_domains_per_source},
                   {"templates_per_domain", o.max_templates_per_domain}, {"template_bytes", o.max_template_bytes},
                   {"template_bytes_per_source", o.max_template_bytes_per_source}}},
  };
  // Sessions and usage grouped by exporter address in one pass each.
  std::map<std::string, json> sessions;
  for (const auto& s : page_sessions) {
    sessions[s.source].push_back({{"session", s.exporter},
                                  {"domain", s.domain},
                                  {"version", s.version},
                                  {"messages", s.messages},
                                  {"flows", s.flows},
                                  {"malformed", s.malformed},
                                  {"sequence_gaps", s.sequence_gaps},
                                  {"records_lost", s.records_lost},
                                  {"templates", s.templates},
                                  {"last_sequence", s.last_sequence},
                                  {"last_seen_ms", unix_ms(s.last_seen)}});
  }
  json ex = json::array();
  for (const auto& [addr, t] : page) {
    auto s = sessions.find(addr);
    auto su = usage.find(addr);
    const ipfix::SourceUsage held = su == usage.end() ? ipfix::SourceUsage{} : su->second;
    ex.push_back({{"exporter", addr},
                  {"transports", t.transports},
                  {"messages", t.messages},
                  {"bytes", t.bytes},
                  {"flows", t.flows},
                  {"malformed", t.malformed},
                  {"sequence_gaps", t.sequence_gaps},
                  {"records_lost", t.records_lost},
                  {"templates_received", t.templates},
                  {"sets_no_template", t.sets_no_template},
                  {"records_time_fallback", t.records_time_fallback},
                  {"records_no_time", t.records_no_time},
                  {"store_drops", t.store_drops},
                  {"records_duplicate", t.records_duplicate},
                  {"domains", held.domains},
                  {"templates_cached", held.templates},
                  {"template_bytes", held.template_bytes},
                  {"domains_evicted", t.budget.domains_evicted},
                  {"domains_expired", t.budget.domains_expired},
                  {"templates_evicted", t.budget.templates_evicted},
                  {"templates_refused", t.budget.templates_refused},
                  {"tcp_connections", t.tcp_connections},
                  {"tcp_framing_errors", t.tcp_framing_errors},
                  {"tcp_idle_timeouts", t.tcp_idle_timeouts},
                  {"tcp_message_timeouts", t.tcp_message_timeouts},
                  {"tcp_evicted", t.tcp_evicted},
                  {"tcp_refused", t.tcp_refused},
                  {"last_error", t.last_error.empty() ? json(nullptr) : json(t.last_error)},
                  {"last_seen_ms", unix_ms(t.last_seen)},
                  {"sessions", s == sessions.end() ? json::array() : s->second}});
  }
  out["exporters"] = std::move(ex);
  out["exporters_total"] = total;
  if (more) out["next_after"] = page.back().first;
  out["exporters_untracked"] = overflow;
}

void DecodeStage::collect_metrics(FamilyBuilder& b) const {
  std::lock_guard lk(mu_);
  const auto& c = decoder_.counters();
  const auto u = decoder_.usage();
  b.counter("flowscope_ipfix_messages_total", "IPFIX/NetFlow messages decoded", double(c.messages));
  b.counter("flowscope_ipfix_malformed_total", "Malformed messages discarded", double(c.messages_malformed));
  b.counter("flowscope_ipfix_templates_total", "Template records accepted", double(c.templates));
  b.counter("flowscope_ipfix_templates_expired_total", "UDP templates expired", double(c.templates_expired));
  b.counter("flowscope_ipfix_templates_evicted_total", "Templates evicted to stay within a budget",
            double(c.templates_evicted));
  b.counter("flowscope_ipfix_templates_refused_total", "Templates refused (per-domain limit or larger than a budget)",
            double(c.templates_limit));
  b.counter("flowscope_ipfix_domains_evicted_total", "Sessions/domains evicted to stay within a budget",
            double(c.domains_evicted));
  b.counter("flowscope_ipfix_domains_expired_total", "Idle UDP sessions/domains removed", double(c.domains_expired));
  b.gauge("flowscope_ipfix_domains", "Sessions/domains the decoder holds", double(u.domains));
  b.gauge("flowscope_ipfix_template_bytes", "Template memory charged to the budgets", double(u.template_bytes));
  b.counter("flowscope_ipfix_flows_total", "Flows decoded", double(c.flows));
  b.counter("flowscope_ipfix_sets_no_template_total", "Data sets dropped: no template in time",
            double(c.sets_no_template));
  b.counter("flowscope_ipfix_records_time_fallback_total",
            "Records stored with a time they lacked: export time, or their other end", double(c.records_time_fallback));
  b.counter("flowscope_ipfix_records_no_time_total", "Records not stored: no time and no export time",
            double(c.records_no_time));
  b.counter("flowscope_ipfix_sequence_gaps_total", "Sequence number gaps", double(c.sequence_gaps));
  b.counter("flowscope_ipfix_records_lost_total", "Data records missing per sequence numbers", double(c.records_lost));
  // Per-exporter series for the busiest exporters only (spoofed UDP sources
  // must not grow a scrape without bound); the rest are summed under
  // exporter="_other".
  std::vector<const std::pair<const std::string, ExporterTotals>*> by_flows;
  by_flows.reserve(exporters_.size());
  for (const auto& e : exporters_) by_flows.push_back(&e);
  const size_t shown = std::min(by_flows.size(), kMetricsExporters);
  std::partial_sort(by_flows.begin(), by_flows.begin() + static_cast<std::ptrdiff_t>(shown), by_flows.end(),
                    [](auto* x, auto* y) {
                      return std::tie(x->second.flows, x->second.messages) > std::tie(y->second.flows, y->second.messages);
                    });
  ExporterTotals rest;
  for (size_t k = shown; k < by_flows.size(); ++k) {
    const auto& t = by_flows[k]->second;
    rest.messages += t.messages;
    rest.flows += t.flows;
    rest.sequence_gaps += t.sequence_gaps;
    rest.malformed += t.malformed;
  }
  b.gauge("flowscope_exporters", "Exporter addresses tracked", double(exporters_.size()));
  auto series = [&](const std::string& addr, const ExporterTotals& t) {
    b.counter("flowscope_exporter_messages_total", "Messages per exporter", double(t.messages), {{"exporter", addr}});
    b.counter("flowscope_exporter_flows_total", "Flows per exporter", double(t.flows), {{"exporter", addr}});
    b.counter("flowscope_exporter_sequence_gaps_total", "Sequence gaps per exporter", double(t.sequence_gaps),
              {{"exporter", addr}});
    b.counter("flowscope_exporter_malformed_total", "Malformed messages per exporter", double(t.malformed),
              {{"exporter", addr}});
  };
  for (size_t k = 0; k < shown; ++k) series(by_flows[k]->first, by_flows[k]->second);
  if (by_flows.size() > shown) series("_other", rest);
}

}  // namespace flowscope
