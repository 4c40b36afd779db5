#include "collector/collector.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "kernel/handles.h"

namespace flowscope {

FlowRow flow_row_from_decoded(const ipfix::DecodedFlow& d, const std::string& exporter_addr) {
  if (d.flowscope) {
    FlowRow row = flow_row_from_record(d.record, exporter_addr, d.domain);
    row.cumulative = true;
    return row;
  }
  // A third-party exporter: only what it sent. The record's defaults for the
  // agent's fields would read as "0 retransmits" or "closed by FIN", so they
  // stay unset (NULL).
  FlowRow w = flow_row_basics(d.record, exporter_addr, d.domain);
  w.bidirectional = d.has_reverse;
  w.cumulative = false;
  return w;
}

namespace {

using Clock = std::chrono::steady_clock;

struct Endpoint {
  Ip16 ip{};
  uint16_t port = 0;
};

Endpoint endpoint_of(const sockaddr_storage& ss) {
  Endpoint e;
  if (ss.ss_family == AF_INET) {
    const auto* s4 = reinterpret_cast<const sockaddr_in*>(&ss);
    e.ip = ip16_from_v4(reinterpret_cast<const uint8_t*>(&s4->sin_addr));
    e.port = ntohs(s4->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    e.ip = ip16_from_v6(reinterpret_cast<const uint8_t*>(&s6->sin6_addr));
    e.port = ntohs(s6->sin6_port);
  }
  return e;
}

Result<std::pair<sockaddr_storage, socklen_t>> bind_addr(const std::string& host, uint16_t port) {
  sockaddr_storage ss{};
  auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    return std::pair{ss, socklen_t(sizeof(sockaddr_in))};
  }
  if (inet_pton(AF_INET6, host.c_str(), &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    return std::pair{ss, socklen_t(sizeof(sockaddr_in6))};
  }
  return fail("bad listen address '{}' (expected an IPv4 or IPv6 address)", host);
}

Result<Fd> make_socket(const std::string& host, uint16_t port, int type) {
  auto a = bind_addr(host, port);
  if (!a) return std::unexpected(a.error());
  Fd fd(::socket(a->first.ss_family, type | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno(errno, "socket: {}", std::strerror(errno));
  int one = 1, zero = 0;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  // "::" takes IPv4 exporters too.
  if (a->first.ss_family == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a->first), a->second) != 0)
    return fail_errno(errno, "IPFIX {}: cannot bind {} port {}: {}", type == SOCK_DGRAM ? "UDP" : "TCP", host, port,
                std::strerror(errno));
  return fd;
}

uint16_t bound_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  return endpoint_of(ss).port;
}

// One unit of work for the decoder thread.
struct Event {
  enum Kind { Message, Closed } kind = Message;
  ipfix::Transport transport = ipfix::Transport::Udp;
  std::string key;   // decoder session: "udp:ADDR:PORT" or "tcp:ADDR:PORT#N"
  std::string addr;  // exporter address (text)
  std::vector<uint8_t> bytes;
};

// Per exporter address, across its sessions (decoder sessions come and go
// with TCP connections; these totals stay).
struct ExporterTotals {
  uint64_t messages = 0;
  uint64_t bytes = 0;
  uint64_t flows = 0;
  uint64_t malformed = 0;
  uint64_t sequence_gaps = 0;
  uint64_t records_lost = 0;
  uint64_t templates = 0;
  uint64_t sets_no_template = 0;
  uint64_t queue_drops = 0;
  uint64_t store_drops = 0;
  uint64_t tcp_connections = 0;
  uint64_t tcp_framing_errors = 0;
  std::string last_error;
  std::chrono::system_clock::time_point last_seen{};
  std::set<std::string> transports;
};

constexpr size_t kMetricsExporters = 20;  // exporters with series of their own in /metrics
constexpr size_t kMaxExporters = 10'000;  // distinct addresses tracked (bounded against spoofed UDP sources)

}  // namespace

struct Collector::Impl {
  CollectorOptions opts;
  std::shared_ptr<StoreWriter> writer;
  std::atomic<bool> stop{false};
  Fd udp_fd, tcp_fd;
  uint16_t udp_port = 0, tcp_port = 0;
  int rcvbuf = 0;

  // Receivers -> decoder.
  mutable std::mutex q_mu;
  std::condition_variable q_cv, q_space_cv;
  std::deque<Event> q;
  size_t q_bytes = 0;

  // Emptied datagram buffers, returned by the decoder for the UDP receiver
  // to fill again (under q_mu; at most kSpareBytes of them).
  std::vector<std::vector<uint8_t>> spare_bufs;
  size_t spare_bytes = 0;
  static constexpr size_t kSpareBytes = 8u << 20;

  // Decoder thread: rows of one exporter address on their way to the store,
  // pushed as one chunk.
  std::vector<FlowRow> pending;
  std::string pending_addr;

  // Decoder state (decoder thread; read by the API under dec_mu).
  mutable std::mutex dec_mu;
  ipfix::Decoder decoder;
  std::map<std::string, ExporterTotals> exporters;  // by address
  uint64_t exporters_overflow = 0;

  // Counters (atomics: written by receiver threads).
  std::atomic<uint64_t> udp_datagrams{0}, udp_bytes{0}, udp_queue_drops{0}, udp_errors{0};
  std::atomic<uint64_t> rejected_datagrams{0}, rejected_connections{0}, tcp_connections{0}, tcp_refused_limit{0};
  std::atomic<uint64_t> tcp_messages{0}, tcp_bytes{0}, tcp_framing_errors{0}, tcp_open{0};
  std::atomic<uint64_t> queue_high_water{0};

  std::thread udp_thread, tcp_thread, dec_thread;
  std::mutex conn_mu;
  std::list<std::pair<int, std::thread>> conns;  // fd (owned by the thread) and its thread
  uint64_t next_conn_id = 0;

  // Rows carry binary addresses only: the decoder need not format text ones.
  static ipfix::DecoderOptions decoder_options(ipfix::DecoderOptions d) {
    d.text_addresses = false;
    return d;
  }
  explicit Impl(const CollectorOptions& o) : opts(o), decoder(decoder_options(o.decoder)) {}

  bool allowed(const Ip16& ip) const {
    if (opts.allow.empty()) return true;
    for (const auto& c : opts.allow)
      if (c.contains(ip)) return true;
    return false;
  }

  // UDP: drop when full. TCP: wait (the exporter's TCP window then fills),
  // already at queue_max_bytes_tcp: buffering more of a stream that can
  // wait only costs memory (and first-touch page faults).
  bool enqueue(Event e, bool block) {
    std::unique_lock lk(q_mu);
    const size_t max_bytes = block ? std::min(opts.queue_max_bytes_tcp, opts.queue_max_bytes) : opts.queue_max_bytes;
    auto full = [&] {
      return q.size() >= opts.queue_max_messages || (!q.empty() && q_bytes + e.bytes.size() > max_bytes);
    };
    if (full()) {
      if (!block) return false;
      q_space_cv.wait(lk, [&] { return !full() || stop.load(); });
      if (stop.load() && full()) return false;
    }
    q_bytes += e.bytes.size();
    q.push_back(std::move(e));
    if (q.size() > queue_high_water.load(std::memory_order_relaxed)) queue_high_water.store(q.size());
    lk.unlock();
    q_cv.notify_one();
    return true;
  }

  ExporterTotals* totals(const std::string& addr) {
    auto it = exporters.find(addr);
    if (it != exporters.end()) return &it->second;
    if (exporters.size() >= kMaxExporters) {
      exporters_overflow++;
      return nullptr;
    }
    return &exporters[addr];
  }

  void udp_loop() {
    // This thread only moves datagrams from the socket to the decode queue;
    // it must run whenever they arrive, or the kernel drops them when the
    // socket buffer is full. A higher priority (best effort: needs
    // CAP_SYS_NICE) gets it the CPU ahead of the decoder and the writer.
    if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), -10) != 0)
      spdlog::debug("UDP receiver: priority unchanged: {}", std::strerror(errno));
    constexpr int kBatch = 64;
    constexpr size_t kMax = 65536;
    std::vector<std::vector<uint8_t>> bufs(kBatch, std::vector<uint8_t>(kMax));
    std::vector<mmsghdr> msgs(kBatch);
    std::vector<iovec> iov(kBatch);
    std::vector<sockaddr_storage> from(kBatch);
    std::vector<std::vector<uint8_t>> stash;
    Endpoint last;
    bool have_last = false, last_allowed = false;
    std::string last_addr, last_key;
    while (!stop.load()) {
      pollfd p{udp_fd.get(), POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      for (int i = 0; i < kBatch; ++i) {
        iov[i] = {bufs[i].data(), kMax};
        msgs[i] = {};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &from[i];
        msgs[i].msg_hdr.msg_namelen = sizeof(from[i]);
      }
      int n = recvmmsg(udp_fd.get(), msgs.data(), kBatch, MSG_DONTWAIT, nullptr);
      if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) udp_errors++;
        continue;
      }
      // Buffers the decoder is done with, for this round's datagrams.
      {
        std::lock_guard lk(q_mu);
        while (stash.size() < size_t(n) && !spare_bufs.empty()) {
          spare_bytes -= spare_bufs.back().capacity();
          stash.push_back(std::move(spare_bufs.back()));
          spare_bufs.pop_back();
        }
      }
      for (int i = 0; i < n; ++i) {
        udp_datagrams++;
        const size_t len = msgs[i].msg_len;
        udp_bytes += len;
        Endpoint ep = endpoint_of(from[i]);
        if (!have_last || ep.ip != last.ip || ep.port != last.port) {
          // A new sender: its text forms and verdict, kept for the datagrams it sends next.
          last = ep;
          have_last = true;
          last_allowed = allowed(ep.ip);
          last_addr = ip16_to_string(ep.ip);
          last_key = fmt::format("udp:{}:{}", last_addr, ep.port);
        }
        if (!last_allowed) {
          rejected_datagrams++;
          continue;
        }
        Event e;
        e.transport = ipfix::Transport::Udp;
        e.addr = last_addr;
        e.key = last_key;
        if (!stash.empty()) {
          e.bytes = std::move(stash.back());
          stash.pop_back();
        }
        e.bytes.assign(bufs[i].data(), bufs[i].data() + len);
        if (!enqueue(std::move(e), false)) udp_queue_drops++;
      }
      // The socket is drained. Waking for every datagram costs a context
      // switch each (measured: 22k of them and 1.3 CPU-s for 67k datagrams);
      // a millisecond's nap lets the next ones gather, and the socket
      // buffer (udp_rcvbuf) holds far more than a millisecond of any rate.
      if (n < kBatch) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  void tcp_accept_loop() {
    while (!stop.load()) {
      pollfd p{tcp_fd.get(), POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      Fd c(::accept4(tcp_fd.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC));
      if (!c) continue;
      Endpoint ep = endpoint_of(ss);
      if (!allowed(ep.ip)) {
        rejected_connections++;
        continue;  // closed by Fd
      }
      std::lock_guard lk(conn_mu);
      // Reap finished connection threads.
      for (auto it = conns.begin(); it != conns.end();) {
        if (it->first < 0) {
          it->second.join();
          it = conns.erase(it);
        } else {
          ++it;
        }
      }
      if (conns.size() >= opts.max_tcp_connections) {
        tcp_refused_limit++;
        continue;
      }
      tcp_connections++;
      const std::string addr = ip16_to_string(ep.ip);
      const std::string key = fmt::format("tcp:{}:{}#{}", addr, ep.port, next_conn_id++);
      conns.emplace_back(c.get(), std::thread());
      auto slot = std::prev(conns.end());
      slot->second = std::thread([this, fd = std::move(c), addr, key, slot]() mutable {
        tcp_conn_loop(std::move(fd), addr, key);
        std::lock_guard lk2(conn_mu);
        slot->first = -1;
      });
    }
  }

  void tcp_conn_loop(Fd fd, const std::string& addr, const std::string& key) {
    tcp_open++;
    spdlog::info("IPFIX TCP exporter {} connected", key);
    {
      Event hello;
      hello.kind = Event::Closed;  // a fresh session: forget any stale state under this key
      hello.key = key;
      hello.addr = addr;
      hello.transport = ipfix::Transport::Tcp;
      enqueue(std::move(hello), true);
    }
    ipfix::StreamFramer framer;
    std::vector<uint8_t> buf(64 * 1024);
    bool framing_error = false;
    // Reads once; false when the connection is over (EOF, error, bad framing).
    auto read_once = [&](int flags, bool& again) {
      again = false;
      ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), flags);
      if (n == 0) return false;
      if (n < 0) {
        again = errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK;
        return again;
      }
      tcp_bytes += static_cast<uint64_t>(n);
      framer.append({buf.data(), static_cast<size_t>(n)});
      for (;;) {
        auto msg = framer.next();
        if (msg.empty()) break;
        tcp_messages++;
        Event e;
        e.transport = ipfix::Transport::Tcp;
        e.key = key;
        e.addr = addr;
        e.bytes = std::move(msg);
        enqueue(std::move(e), true);
      }
      if (framer.broken()) {
        // The stream cannot be re-synchronised: drop the connection (the
        // exporter reconnects and re-sends its templates).
        framing_error = true;
        tcp_framing_errors++;
        return false;
      }
      return true;
    };
    bool open = true, again = false;
    while (open && !stop.load()) {
      pollfd p{fd.get(), POLLIN, 0};
      int pr = ::poll(&p, 1, 200);
      if (pr == 0) continue;
      if (pr < 0) {
        if (errno == EINTR) continue;
        break;
      }
      open = read_once(0, again);
    }
    // Stopping: what the exporter already sent is in our receive buffer and
    // it counts it as delivered, so decode it before closing.
    while (open) {
      open = read_once(MSG_DONTWAIT, again);
      if (again) break;
    }
    Event bye;
    bye.kind = Event::Closed;
    bye.key = key;
    bye.addr = addr;
    bye.transport = ipfix::Transport::Tcp;
    bye.bytes.push_back(framing_error ? 1 : 0);
    enqueue(std::move(bye), true);
    tcp_open--;
    spdlog::info("IPFIX TCP exporter {} disconnected{}", key, framing_error ? " (framing error)" : "");
  }

  void decode_loop() {
    auto next_expire = Clock::now() + std::chrono::seconds(5);
    for (;;) {
      std::deque<Event> batch;
      {
        std::unique_lock lk(q_mu);
        q_cv.wait_for(lk, std::chrono::milliseconds(200), [&] { return !q.empty() || stop.load(); });
        if (q.empty() && stop.load()) return;
        batch.swap(q);
        q_bytes = 0;
      }
      q_space_cv.notify_all();
      for (auto& e : batch) handle(e);
      flush_rows();  // nothing waits for more input
      // The datagram buffers go back to the UDP receiver.
      {
        std::lock_guard lk(q_mu);
        for (auto& e : batch) {
          const size_t cap = e.bytes.capacity();
          if (e.transport != ipfix::Transport::Udp || cap == 0 || spare_bytes + cap > kSpareBytes) continue;
          e.bytes.clear();
          spare_bytes += cap;
          spare_bufs.push_back(std::move(e.bytes));
        }
      }
      if (Clock::now() >= next_expire) {
        std::lock_guard lk(dec_mu);
        decoder.expire();
        next_expire = Clock::now() + std::chrono::seconds(5);
      }
    }
  }

  // Sends the pending rows to the store (waiting for room in its queue).
  void flush_rows() {
    if (pending.empty()) return;
    const uint64_t dropped = writer->push(pending, true);  // only when the writer stops
    if (dropped) {
      std::lock_guard lk(dec_mu);
      if (auto* t = totals(pending_addr)) t->store_drops += dropped;
    }
    pending.clear();
  }

  void handle(Event& e) {
    // A chunk holds one exporter's rows, so drops can be counted against it.
    if (e.kind == Event::Message && !pending.empty() && pending_addr != e.addr) flush_rows();
    {
      std::lock_guard lk(dec_mu);
      ExporterTotals* t = totals(e.addr);
      if (e.kind == Event::Closed) {
        decoder.close_session(e.key);
        // A new connection's first event carries no bytes; its last one
        // says whether the stream broke.
        if (t && e.bytes.empty()) {
          t->tcp_connections++;
          t->transports.insert("tcp");
        }
        if (t && !e.bytes.empty() && e.bytes[0] == 1) t->tcp_framing_errors++;
        return;
      }
      const auto before = decoder.counters();
      auto res = decoder.feed(e.key, e.transport, e.bytes);
      const auto& after = decoder.counters();
      if (t) {
        t->transports.insert(e.transport == ipfix::Transport::Udp ? "udp" : "tcp");
        t->messages++;
        t->bytes += e.bytes.size();
        t->last_seen = std::chrono::system_clock::now();
        t->malformed += after.messages_malformed - before.messages_malformed;
        t->sequence_gaps += after.sequence_gaps - before.sequence_gaps;
        t->records_lost += (after.records_lost - before.records_lost) + (after.packets_lost - before.packets_lost);
        t->templates += after.templates - before.templates;
        t->sets_no_template += after.sets_no_template - before.sets_no_template;
        t->flows += res.flows.size();
        if (!res.ok()) t->last_error = res.error.substr(0, 200);
      }
      if (!res.ok()) spdlog::debug("IPFIX from {}: {}", e.key, res.error);
      if (!res.flows.empty()) pending_addr = e.addr;
      for (const auto& f : res.flows) pending.push_back(flow_row_from_decoded(f, e.addr));
    }
    // Wait for room in the store queue, whatever the transport: TCP then
    // pushes back on its exporter, and a UDP burst waits in the decode queue
    // as datagrams (~45 bytes a record, a tenth of a decoded row) instead of
    // being decoded only to be dropped. When the decode queue is full too,
    // the UDP receiver drops and counts datagrams (udp_queue_drops).
    if (pending.size() >= writer->batch_max()) flush_rows();
  }
};

Collector::Collector(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Collector::~Collector() {
  Impl& i = *impl_;
  i.stop.store(true);
  i.q_space_cv.notify_all();
  if (i.udp_thread.joinable()) i.udp_thread.join();
  if (i.tcp_thread.joinable()) i.tcp_thread.join();
  // Connection threads see `stop` within a poll interval, read what is
  // buffered and finish; they take conn_mu on the way out, so join without it.
  for (auto& c : i.conns) c.second.join();
  i.q_cv.notify_all();
  if (i.dec_thread.joinable()) i.dec_thread.join();
}

uint16_t Collector::udp_port() const { return impl_->udp_port; }
uint16_t Collector::tcp_port() const { return impl_->tcp_port; }
int Collector::udp_rcvbuf() const { return impl_->rcvbuf; }

Result<std::unique_ptr<Collector>> Collector::start(const CollectorOptions& opts, std::shared_ptr<StoreWriter> writer) {
  auto impl = std::make_unique<Impl>(opts);
  impl->writer = std::move(writer);
  if (opts.udp) {
    auto fd = make_socket(opts.host, opts.udp_port, SOCK_DGRAM);
    if (!fd) return std::unexpected(fd.error());
    int want = opts.udp_rcvbuf;
    // SO_RCVBUFFORCE (CAP_NET_ADMIN) may exceed net.core.rmem_max; fall back.
    if (setsockopt(fd->get(), SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) != 0)
      setsockopt(fd->get(), SOL_SOCKET, SO_RCVBUF, &want, sizeof(want));
    socklen_t l = sizeof(impl->rcvbuf);
    getsockopt(fd->get(), SOL_SOCKET, SO_RCVBUF, &impl->rcvbuf, &l);
    impl->udp_port = bound_port(fd->get());
    impl->udp_fd = std::move(*fd);
  }
  if (opts.tcp) {
    auto fd = make_socket(opts.host, opts.tcp_port, SOCK_STREAM);
    if (!fd) return std::unexpected(fd.error());
    if (::listen(fd->get(), 64) != 0) return fail_errno(errno, "IPFIX TCP: listen: {}", std::strerror(errno));
    impl->tcp_port = bound_port(fd->get());
    impl->tcp_fd = std::move(*fd);
  }
  Impl* raw = impl.get();
  impl->dec_thread = std::thread([raw] { raw->decode_loop(); });
  if (opts.udp) impl->udp_thread = std::thread([raw] { raw->udp_loop(); });
  if (opts.tcp) impl->tcp_thread = std::thread([raw] { raw->tcp_accept_loop(); });
  return std::unique_ptr<Collector>(new Collector(std::move(impl)));
}

namespace {
int64_t unix_ms(std::chrono::system_clock::time_point t) {
  return t.time_since_epoch().count() == 0
             ? 0
             : std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
}  // namespace

nlohmann::json Collector::exporters_json(const std::string& after, size_t limit) const {
  const Impl& i = *impl_;
  using nlohmann::json;
  json out;
  out["receivers"] = {
      {"udp_port", i.udp_port},
      {"tcp_port", i.tcp_port},
      {"udp_rcvbuf", i.rcvbuf},
      {"udp_datagrams", i.udp_datagrams.load()},
      {"udp_queue_drops", i.udp_queue_drops.load()},
      {"udp_errors", i.udp_errors.load()},
      {"rejected_datagrams", i.rejected_datagrams.load()},
      {"rejected_connections", i.rejected_connections.load()},
      {"tcp_connections", i.tcp_connections.load()},
      {"tcp_open", i.tcp_open.load()},
      {"tcp_refused_limit", i.tcp_refused_limit.load()},
      {"tcp_framing_errors", i.tcp_framing_errors.load()},
      {"queue_high_water", i.queue_high_water.load()},
  };
  const auto ws = i.writer->stats();
  out["store"] = {{"queued", ws.queued},
                  {"written", ws.written},
                  {"dropped", ws.dropped},
                  {"failed", ws.failed},
                  {"queue_depth", ws.queue_depth}};
  // One page is copied under the decoder's lock (a map seek plus `limit`
  // entries and the session list) and formatted after it is released, so a
  // large exporter table never stalls ingest.
  std::unique_lock lk(i.dec_mu);
  const auto c = i.decoder.counters();
  std::vector<std::pair<std::string, ExporterTotals>> page;
  auto it = after.empty() ? i.exporters.begin() : i.exporters.upper_bound(after);
  for (; it != i.exporters.end() && page.size() < limit; ++it) page.emplace_back(it->first, it->second);
  const bool more = it != i.exporters.end();
  const size_t total = i.exporters.size();
  const uint64_t overflow = i.exporters_overflow;
  std::map<std::string, std::vector<ipfix::ExporterStats>> sessions_of;
  for (const auto& [addr, t] : page) sessions_of[addr];
  for (auto& s : i.decoder.exporter_stats()) {
    // Sessions are keyed "udp:ADDR:PORT" or "tcp:ADDR:PORT#N".
    auto colon = s.exporter.find(':');
    auto last = s.exporter.rfind(':');
    if (colon == std::string::npos || last <= colon) continue;
    auto found = sessions_of.find(s.exporter.substr(colon + 1, last - colon - 1));
    if (found != sessions_of.end()) found->second.push_back(std::move(s));
  }
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
      {"data_records", c.data_records},
      {"flows", c.flows},
      {"records_unusable", c.records_unusable},
      {"sets_held", c.sets_held},
      {"sets_no_template", c.sets_no_template},
      {"sequence_gaps", c.sequence_gaps},
      {"records_lost", c.records_lost},
      {"packets_lost", c.packets_lost},
  };
  json ex = json::array();
  for (const auto& [addr, t] : page) {
    json sessions = json::array();
    for (const auto& s : sessions_of[addr]) {
      sessions.push_back({{"session", s.exporter},
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
                  {"store_drops", t.store_drops},
                  {"tcp_connections", t.tcp_connections},
                  {"tcp_framing_errors", t.tcp_framing_errors},
                  {"last_error", t.last_error.empty() ? json(nullptr) : json(t.last_error)},
                  {"last_seen_ms", unix_ms(t.last_seen)},
                  {"sessions", sessions}});
  }
  out["exporters"] = ex;
  out["exporters_total"] = total;
  if (more) out["next_after"] = page.back().first;
  out["exporters_untracked"] = overflow;
  return out;
}

void Collector::collect_metrics(FamilyBuilder& b) const {
  const Impl& i = *impl_;
  b.counter("flowscope_ipfix_udp_datagrams_total", "IPFIX datagrams received", double(i.udp_datagrams.load()));
  b.counter("flowscope_ipfix_udp_bytes_total", "IPFIX UDP bytes received", double(i.udp_bytes.load()));
  b.counter("flowscope_ipfix_udp_queue_drops_total", "Datagrams dropped because the decode queue was full",
            double(i.udp_queue_drops.load()));
  b.counter("flowscope_ipfix_rejected_total", "Exporters outside the allow-list (datagrams or connections)",
            double(i.rejected_datagrams.load()), {{"transport", "udp"}});
  b.counter("flowscope_ipfix_rejected_total", "", double(i.rejected_connections.load()), {{"transport", "tcp"}});
  b.counter("flowscope_ipfix_tcp_connections_total", "IPFIX TCP connections accepted", double(i.tcp_connections.load()));
  b.gauge("flowscope_ipfix_tcp_connections_open", "IPFIX TCP connections open", double(i.tcp_open.load()));
  b.counter("flowscope_ipfix_tcp_framing_errors_total", "TCP streams dropped for a bad message header",
            double(i.tcp_framing_errors.load()));
  b.gauge("flowscope_ipfix_udp_rcvbuf_bytes", "SO_RCVBUF of the UDP socket", double(i.rcvbuf));
  {
    std::lock_guard lk(i.q_mu);
    b.gauge("flowscope_ipfix_queue_depth", "Messages waiting for the decoder", double(i.q.size()));
  }
  std::lock_guard lk(i.dec_mu);
  const auto& c = i.decoder.counters();
  b.counter("flowscope_ipfix_messages_total", "IPFIX/NetFlow messages decoded", double(c.messages));
  b.counter("flowscope_ipfix_malformed_total", "Malformed messages discarded", double(c.messages_malformed));
  b.counter("flowscope_ipfix_templates_total", "Template records accepted", double(c.templates));
  b.counter("flowscope_ipfix_templates_expired_total", "UDP templates expired", double(c.templates_expired));
  b.counter("flowscope_ipfix_flows_total", "Flows decoded", double(c.flows));
  b.counter("flowscope_ipfix_sets_no_template_total", "Data sets dropped: no template in time",
            double(c.sets_no_template));
  b.counter("flowscope_ipfix_sequence_gaps_total", "Sequence number gaps", double(c.sequence_gaps));
  b.counter("flowscope_ipfix_records_lost_total", "Data records missing per sequence numbers", double(c.records_lost));
  // Per-exporter series for the busiest exporters only (spoofed UDP
  // sources must not grow a scrape without bound); the rest are summed
  // under exporter="_other".
  std::vector<const std::pair<const std::string, ExporterTotals>*> by_flows;
  by_flows.reserve(i.exporters.size());
  for (const auto& e : i.exporters) by_flows.push_back(&e);
  const size_t shown = std::min(by_flows.size(), kMetricsExporters);
  std::partial_sort(by_flows.begin(), by_flows.begin() + static_cast<std::ptrdiff_t>(shown), by_flows.end(),
                    [](auto* a, auto* b) {
                      return std::tie(a->second.flows, a->second.messages) > std::tie(b->second.flows, b->second.messages);
                    });
  ExporterTotals rest;
  for (size_t k = shown; k < by_flows.size(); ++k) {
    const auto& t = by_flows[k]->second;
    rest.messages += t.messages;
    rest.flows += t.flows;
    rest.sequence_gaps += t.sequence_gaps;
    rest.malformed += t.malformed;
  }
  b.gauge("flowscope_exporters", "Exporter addresses tracked", double(i.exporters.size()));
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
