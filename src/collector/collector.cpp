#include "collector/collector.h"

#include "collector/decode_stage.h"
#include "collector/ingest_events.h"
#include "collector/tcp_input.h"
#include "collector/udp_input.h"

namespace flowscope {

FlowRow flow_row_from_decoded(const ipfix::DecodedFlow& d, const std::string& exporter_addr) {
  // The decoder left unset what the exporter did not send; only who sent it
  // is added here.
  FlowRow row(d.record);
  row.exporter = exporter_addr;
  return row;
}

struct Collector::Impl {
  explicit Impl(const CollectorOptions& o, std::shared_ptr<StoreWriter> w)
      : queue({o.queue_max_messages, o.queue_max_bytes, o.queue_max_bytes_tcp}),
        writer(w),
        decode(o.decoder, std::move(w), queue) {}

  // Declared in the order they are built; ~Collector stops them inputs first.
  IngestQueue queue;
  std::shared_ptr<StoreWriter> writer;
  DecodeStage decode;
  std::unique_ptr<UdpInput> udp;
  std::unique_ptr<TcpInput> tcp;
};

Collector::Collector(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Collector::~Collector() {
  // Inputs first: the TCP input queues what its exporters already sent
  // while the decode stage still runs; then the decode stage drains.
  if (impl_->udp) impl_->udp->stop();
  if (impl_->tcp) impl_->tcp->stop();
  impl_->decode.on_ack(nullptr);
  impl_->decode.finish();
  // What was decoded is stored (and its marks with it) before the
  // acknowledgement path, which points into this collector, goes away.
  impl_->writer->drain();
  impl_->writer->on_stored(nullptr);
}

uint16_t Collector::udp_port() const { return impl_->udp ? impl_->udp->port() : 0; }
uint16_t Collector::tcp_port() const { return impl_->tcp ? impl_->tcp->port() : 0; }
int Collector::udp_rcvbuf() const { return impl_->udp ? impl_->udp->rcvbuf() : 0; }

Result<std::unique_ptr<Collector>> Collector::start(const CollectorOptions& opts, std::shared_ptr<StoreWriter> writer) {
  auto impl = std::make_unique<Impl>(opts, std::move(writer));
  // Delivery: what the store already holds from each exporter instance, so
  // that what an agent resends after our restart is stored once.
  if (auto marks = impl->writer->store().delivery_marks(); marks)
    impl->decode.load_delivery(*marks);
  else
    return fail("reading the delivery marks: {}", marks.error().message);
  if (opts.udp) {
    auto in = UdpInput::start({opts.host, opts.udp_port, opts.allow, opts.udp_rcvbuf}, impl->queue);
    if (!in) return std::unexpected(in.error());
    impl->udp = std::move(*in);
  }
  if (opts.tcp) {
    TcpInputOptions t;
    t.host = opts.host;
    t.port = opts.tcp_port;
    t.allow = opts.allow;
    t.max_connections = opts.max_tcp_connections;
    t.max_connections_per_source = opts.max_tcp_connections_per_source;
    t.idle_timeout = opts.tcp_idle_timeout;
    t.message_timeout = opts.tcp_message_timeout;
    t.evict_after = opts.tcp_evict_after;
    auto in = TcpInput::start(t, impl->queue);
    if (!in) return std::unexpected(in.error());
    impl->tcp = std::move(*in);
    impl->decode.on_ack([tcp = impl->tcp.get()](const std::string& session, uint32_t domain, uint64_t next) {
      tcp->post_ack(session, domain, next);
    });
    impl->writer->on_stored([decode = &impl->decode](const std::vector<DeliveryMark>& m) { decode->stored(m); });
  }
  impl->decode.start();
  return std::unique_ptr<Collector>(new Collector(std::move(impl)));
}

nlohmann::json Collector::exporters_json(const std::string& after, size_t limit) const {
  const Impl& i = *impl_;
  const UdpInputStats u = i.udp ? i.udp->stats() : UdpInputStats{};
  const TcpInputStats t = i.tcp ? i.tcp->stats() : TcpInputStats{};
  nlohmann::json out;
  out["receivers"] = {
      {"udp_port", udp_port()},
      {"tcp_port", tcp_port()},
      {"udp_rcvbuf", udp_rcvbuf()},
      {"udp_datagrams", u.datagrams},
      {"udp_queue_drops", u.queue_drops},
      {"udp_errors", u.errors},
      {"rejected_datagrams", u.rejected},
      {"rejected_connections", t.rejected},
      {"tcp_connections", t.accepted},
      {"tcp_open", t.open},
      {"tcp_refused_limit", t.refused_source_limit + t.refused_global_limit},
      {"tcp_refused_source_limit", t.refused_source_limit},
      {"tcp_refused_global_limit", t.refused_global_limit},
      {"tcp_evicted", t.evicted},
      {"tcp_idle_timeouts", t.idle_timeouts},
      {"tcp_message_timeouts", t.message_timeouts},
      {"tcp_framing_errors", t.framing_errors},
      {"tcp_partial_bytes_dropped", t.partial_bytes_dropped},
      {"tcp_acks", t.acks},
      {"tcp_acks_skipped", t.acks_skipped},
      {"queue_high_water", i.queue.high_water()},
  };
  const auto ws = i.writer->stats();
  out["store"] = {{"queued", ws.queued},
                  {"written", ws.written},
                  {"dropped", ws.dropped},
                  {"failed", ws.failed},
                  {"queue_depth", ws.queue_depth}};
  out["ownership"] = {{"claims_stored", ws.claims_stored},
                      {"claims_dropped", ws.claims_dropped},
                      {"claims_failed", ws.claims_failed},
                      {"conflicts", ws.claim_conflicts}};
  const auto cs = i.writer->conversation_stats();
  out["conversations"] = {{"records", cs.records}, {"joined", cs.joined}, {"skipped", cs.skipped},
                          {"forgotten", cs.forgotten}, {"open", cs.open}};
  i.decode.add_json(out, after, limit);
  const auto d = i.decode.delivery_stats();
  out["delivery"] = {{"instances", d.instances},
                     {"instances_untracked", d.instances_untracked},
                     {"records_duplicate", d.records_duplicate},
                     {"acks", d.acks}};
  return out;
}

void Collector::collect_metrics(FamilyBuilder& b) const {
  const Impl& i = *impl_;
  const UdpInputStats u = i.udp ? i.udp->stats() : UdpInputStats{};
  const TcpInputStats t = i.tcp ? i.tcp->stats() : TcpInputStats{};
  b.counter("flowscope_ipfix_udp_datagrams_total", "IPFIX datagrams received", double(u.datagrams));
  b.counter("flowscope_ipfix_udp_bytes_total", "IPFIX UDP bytes received", double(u.bytes));
  b.counter("flowscope_ipfix_udp_queue_drops_total", "Datagrams dropped because the decode queue was full",
            double(u.queue_drops));
  b.counter("flowscope_ipfix_rejected_total", "Exporters outside the allow-list (datagrams or connections)",
            double(u.rejected), {{"transport", "udp"}});
  b.counter("flowscope_ipfix_rejected_total", "", double(t.rejected), {{"transport", "tcp"}});
  b.counter("flowscope_ipfix_tcp_connections_total", "IPFIX TCP connections accepted", double(t.accepted));
  b.gauge("flowscope_ipfix_tcp_connections_open", "IPFIX TCP connections open", double(t.open));
  b.counter("flowscope_ipfix_tcp_refused_total", "TCP connections reset at once at a connection limit",
            double(t.refused_source_limit), {{"limit", "source"}});
  b.counter("flowscope_ipfix_tcp_refused_total", "", double(t.refused_global_limit), {{"limit", "global"}});
  b.counter("flowscope_ipfix_tcp_closed_total", "TCP connections the collector closed, by cause",
            double(t.idle_timeouts), {{"cause", "idle_timeout"}});
  b.counter("flowscope_ipfix_tcp_closed_total", "", double(t.message_timeouts), {{"cause", "message_timeout"}});
  b.counter("flowscope_ipfix_tcp_closed_total", "", double(t.evicted), {{"cause", "evicted"}});
  b.counter("flowscope_ipfix_tcp_framing_errors_total", "TCP streams dropped for a bad message header",
            double(t.framing_errors));
  const auto d = i.decode.delivery_stats();
  b.counter("flowscope_ipfix_records_duplicate_total",
            "Records an agent sent again after a reconnect that were already stored (dropped)",
            double(d.records_duplicate));
  b.counter("flowscope_ipfix_acks_total", "Delivery acknowledgements written to agents", double(t.acks));
  // Connections recorded at both ends (docs/fleet.md).
  const ConversationStats cs = i.writer->conversation_stats();
  b.counter("flowscope_conversations_joined_total", "Records that joined the other end of their connection",
            double(cs.joined));
  b.counter("flowscope_conversations_forgotten_total",
            "Connections forgotten before their other end could arrive (memory bound)", double(cs.forgotten));
  b.gauge("flowscope_conversations_open", "Connections held waiting for their other end", double(cs.open));
  b.gauge("flowscope_ipfix_udp_rcvbuf_bytes", "SO_RCVBUF of the UDP socket", double(udp_rcvbuf()));
  b.gauge("flowscope_ipfix_queue_depth", "Messages waiting for the decoder", double(i.queue.depth()));
  i.decode.collect_metrics(b);
}

}  // namespace flowscope
