#include "export/ipfix_exporter.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "flow/json.h"
#include "ipfix/encoder.h"
#include "ipfix/wire.h"
#include "base/fd.h"

namespace flowscope {

using Clock = std::chrono::steady_clock;

Result<IpfixDestination> parse_ipfix_url(const std::string& url) {
  IpfixDestination d;
  d.url = url;
  std::string_view rest = url;
  if (rest.starts_with("udp://")) {
    d.tcp = false;
  } else if (rest.starts_with("tcp://")) {
    d.tcp = true;
  } else {
    return fail("--ipfix {}: expected udp://HOST:PORT or tcp://HOST:PORT", url);
  }
  rest.remove_prefix(6);
  std::string_view port;
  if (rest.starts_with('[')) {
    auto close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':')
      return fail("--ipfix {}: expected [IPv6]:PORT", url);
    d.host = rest.substr(1, close - 1);
    port = rest.substr(close + 2);
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string_view::npos || rest.find(':') != colon)
      return fail("--ipfix {}: expected HOST:PORT (IPv6 addresses in brackets)", url);
    d.host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  unsigned p = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (d.host.empty() || ec != std::errc() || ptr != port.data() + port.size() || p == 0 || p > 65535)
    return fail("--ipfix {}: bad host or port", url);
  d.port = uint16_t(p);
  return d;
}

namespace {

uint32_t unix_seconds() {
  return uint32_t(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                      .count());
}

Result<sockaddr_storage> resolve(const IpfixDestination& d, socklen_t& len) {
  addrinfo hints{};
  hints.ai_socktype = d.tcp ? SOCK_STREAM : SOCK_DGRAM;
  hints.ai_family = AF_UNSPEC;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(d.port);
  if (int e = getaddrinfo(d.host.c_str(), port.c_str(), &hints, &res); e != 0)
    return fail("--ipfix {}: cannot resolve {}: {}", d.url, d.host, gai_strerror(e));
  sockaddr_storage ss{};
  std::memcpy(&ss, res->ai_addr, res->ai_addrlen);
  len = res->ai_addrlen;
  freeaddrinfo(res);
  return ss;
}

}  // namespace

class IpfixExporter::Destination {
 public:
  Destination(IpfixDestination d, sockaddr_storage addr, socklen_t len, const IpfixExportOptions& o)
      : d_(std::move(d)), addr_(addr), addr_len_(len), o_(o),
        enc_({.domain = o.domain,
              .pen = o.pen,
              .max_message = d_.tcp ? 65535 : o.udp_max_message,
              .instance = d_.tcp ? std::optional<uint64_t>(o.instance) : std::nullopt}) {
    thread_ = std::thread([this] { run(); });
  }
  ~Destination() { stop(std::chrono::milliseconds(0)); }

  // A flow or a claim: both are data records of the same stream, numbered,
  // windowed, acknowledged and resent alike.
  template <class R>
  void push(const R& r) {
    {
      std::lock_guard lk(mu_);
      if (q_.size() >= o_.queue_records) {
        dropped_queue_full_++;
        skipped_++;  // the sequence number accounts for it
        return;
      }
      q_.push_back(r);
    }
  }
  void wake() { cv_.notify_one(); }

  void stop(std::chrono::milliseconds drain) {
    {
      std::lock_guard lk(mu_);
      if (stopping_) return;
      stopping_ = true;
      drain_deadline_ = Clock::now() + drain;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

  IpfixDestinationStats stats() const {
    IpfixDestinationStats s;
    s.url = d_.url;
    {
      std::lock_guard lk(mu_);
      s.queued = q_.size();
      s.dropped_queue_full = dropped_queue_full_;
    }
    s.connected = connected_.load();
    s.records_sent = records_sent_.load();
    s.messages_sent = messages_sent_.load();
    s.bytes_sent = bytes_sent_.load();
    s.template_sends = template_sends_.load();
    s.dropped_send_failed = dropped_send_failed_.load();
    s.dropped_at_exit = dropped_at_exit_.load();
    s.send_errors = send_errors_.load();
    s.connects = connects_.load();
    s.connect_failures = connect_failures_.load();
    s.acknowledged = acking_.load();
    s.records_acked = records_acked_.load();
    s.records_replayed = records_replayed_.load();
    s.window_records = window_size_.load();
    s.window_evicted = window_evicted_.load();
    s.unconfirmed = unconfirmed_.load();
    s.ack_errors = ack_errors_.load();
    return s;
  }

 private:
  bool connect_socket() {
    Fd s(::socket(addr_.ss_family, (d_.tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0));
    if (!s) return false;
    if (!d_.tcp) {
      // Not connected: ICMP port-unreachable from an absent collector would
      // otherwise fail the next send (and lose its datagram).
      sock_ = std::move(s);
      return true;
    }
    // Non-blocking connect bounded by io_timeout, then blocking sends with a
    // send timeout: a stuck collector costs the sender thread, never capture.
    int fl = fcntl(s.get(), F_GETFL);
    fcntl(s.get(), F_SETFL, fl | O_NONBLOCK);
    int rc = ::connect(s.get(), reinterpret_cast<const sockaddr*>(&addr_), addr_len_);
    if (rc != 0 && errno != EINPROGRESS) return false;
    if (rc != 0) {
      pollfd p{s.get(), POLLOUT, 0};
      if (::poll(&p, 1, int(o_.io_timeout.count())) != 1) return false;
      int err = 0;
      socklen_t el = sizeof(err);
      if (getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) return false;
    }
    fcntl(s.get(), F_SETFL, fl);
    timeval tv{long(o_.io_timeout.count() / 1000), long(o_.io_timeout.count() % 1000) * 1000};
    setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sock_ = std::move(s);
    return true;
  }

  bool send_msg(const ipfix::Message& m) {
    size_t off = 0;
    while (off < m.size()) {
      ssize_t n = d_.tcp ? ::send(sock_.get(), m.data() + off, m.size() - off, MSG_NOSIGNAL)
                         : ::sendto(sock_.get(), m.data(), m.size(), 0, reinterpret_cast<const sockaddr*>(&addr_),
                                    addr_len_);
      if (n < 0) {
        if (errno == EINTR) continue;
        send_errors_++;
        if (send_errors_ == 1 || send_errors_ % 1000 == 0)
          spdlog::warn("ipfix {}: send failed: {}", d_.url, std::strerror(errno));
        return false;
      }
      if (!d_.tcp) break;  // a datagram goes whole or not at all
      off += size_t(n);
    }
    messages_sent_++;
    bytes_sent_ += m.size();
    return true;
  }

  void disconnect() {
    sock_.reset();
    connected_ = false;
    ackbuf_.clear();
    if (!d_.tcp) return;
    // What was written on the closed connection and not acknowledged: with
    // an acknowledging collector it is sent again (the collector drops what
    // it already has); without, nobody can tell whether it arrived: counted.
    if (acking_) {
      replay_ = unsent_;
    } else {
      uint64_t n = 0;
      for (size_t i = 0; i < unsent_; i++) n += window_[i].records;
      window_records_ -= n;
      unconfirmed_ += n;
      window_.erase(window_.begin(), window_.begin() + ptrdiff_t(unsent_));
      replay_ = 0;
    }
    unsent_ = 0;
    window_size_ = window_records_;
  }

  bool send_templates() {
    // TCP: numbered to end where the first message still to go begins.
    const uint32_t next = window_.empty() ? enc_.sequence() : window_.front().seq;
    const auto msgs = d_.tcp ? enc_.template_messages_before(unix_seconds(), next)
                             : enc_.template_messages(unix_seconds());
    for (const auto& m : msgs) {
      if (!send_msg(m)) return false;
    }
    template_sends_++;
    next_templates_ = Clock::now() + o_.template_refresh;
    return true;
  }

  // Makes sure there is a usable session; false while waiting to retry.
  bool ensure_session() {
    if (sock_) {
      if (!d_.tcp && Clock::now() >= next_templates_ && !send_templates()) next_templates_ = Clock::now();
      return true;
    }
    if (Clock::now() < retry_at_) return false;
    if (!connect_socket()) {
      connect_failures_++;
      if (connect_failures_ == 1 || backoff_ >= o_.max_backoff)
        spdlog::warn("ipfix {}: cannot connect: {}; retrying", d_.url, std::strerror(errno));
      retry_at_ = Clock::now() + backoff_;
      backoff_ = std::min(backoff_ * 2, o_.max_backoff);
      return false;
    }
    if (d_.tcp) {
      connects_++;
      spdlog::info("ipfix {}: connected", d_.url);
      // Until a collector has acknowledged once, data waits a moment after
      // the templates: a flowscope collector acknowledges them within its
      // store's flush interval, and from then on nothing written is lost
      // uncounted. A collector that does not acknowledge costs this wait
      // once per connection.
      if (!acking_) await_ack_until_ = Clock::now() + kFirstAckWait;
    }
    connected_ = true;
    backoff_ = std::chrono::milliseconds(500);
    // New session: templates first (TCP: once per connection).
    if (!send_templates()) {
      if (d_.tcp) {
        disconnect();
        return false;
      }
      next_templates_ = Clock::now();
    }
    return true;
  }

  // TCP: the only bytes a collector writes back are acknowledgements
  // (docs/ipfix.md): "FSAK", observation domain (u32), the sequence number
  // up to which it has stored every record (u64; its low 32 bits compare
  // with ours). End of stream or an error means the connection is gone.
  // Returns false if it is.
  bool read_acks() {
    uint8_t buf[4096];
    for (;;) {
      ssize_t n = ::recv(sock_.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0) return false;
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
      ackbuf_.insert(ackbuf_.end(), buf, buf + n);
      size_t pos = 0;
      for (; ackbuf_.size() - pos >= kAckSize; pos += kAckSize) {
        const uint8_t* a = ackbuf_.data() + pos;
        if (std::memcmp(a, "FSAK", 4) != 0) {
          ack_errors_++;
          ackbuf_.clear();
          return false;  // not our protocol: the stream cannot be trusted
        }
        if (ipfix::wire::get32(a + 4) != o_.domain) continue;
        acked(uint32_t(ipfix::wire::get_uint(a + 8, 8)));
      }
      ackbuf_.erase(ackbuf_.begin(), ackbuf_.begin() + ptrdiff_t(pos));
    }
  }

  // Everything numbered before `next` is stored: those messages leave the window.
  void acked(uint32_t next) {
    acking_ = true;
    while (unsent_ > 0 && !window_.empty()) {
      const Sent& m = window_.front();
      if (int32_t(next - (m.seq + m.records)) < 0) break;
      records_acked_ += m.records;
      window_records_ -= m.records;
      window_.pop_front();
      unsent_--;
      if (replay_) replay_--;
    }
    window_size_ = window_records_;
  }

  // TCP: writes the window's messages not yet written on this connection.
  bool pump() {
    while (unsent_ < window_.size()) {
      const Sent& m = window_[unsent_];
      if (!send_msg(m.msg)) return false;
      records_sent_ += m.records;
      if (unsent_ < replay_) records_replayed_ += m.records;
      unsent_++;
    }
    replay_ = 0;
    return true;
  }

  // Makes room for `records` more in the window: the oldest leave. A sent
  // one an acknowledging collector has not confirmed may be lost: counted.
  // Without acknowledgements, sent messages are kept only to count what a
  // broken connection may have lost.
  void make_room(size_t records) {
    while (!window_.empty() && window_records_ + records > std::max<size_t>(o_.replay_window, records)) {
      const Sent& m = window_.front();
      if (unsent_ == 0)
        dropped_send_failed_ += m.records;
      else if (acking_)
        window_evicted_ += m.records;
      window_records_ -= m.records;
      window_.pop_front();
      if (unsent_) unsent_--;
      if (replay_) replay_--;
    }
  }

  // Returns false if the session broke.
  bool send_batch(std::vector<ipfix::ExportRecord>& batch) {
    {
      std::lock_guard lk(mu_);
      enc_.skip(std::exchange(skipped_, 0));
    }
    std::vector<size_t> per_message;
    auto msgs = enc_.encode(batch, unix_seconds(), &per_message);
    batch.clear();
    if (d_.tcp) {
      for (size_t i = 0; i < msgs.size(); i++) {
        make_room(per_message[i]);
        const uint32_t seq = ipfix::wire::get32(msgs[i].data() + 8);
        window_records_ += per_message[i];
        window_.push_back({std::move(msgs[i]), seq, uint32_t(per_message[i])});
      }
      window_size_ = window_records_;
      if (pump()) return true;
      disconnect();  // a partly written message is cut off by the close and discarded
      return false;
    }
    for (size_t i = 0; i < msgs.size(); i++) {
      if (send_msg(msgs[i])) {
        records_sent_ += per_message[i];
      } else {
        dropped_send_failed_ += per_message[i];
        next_templates_ = Clock::now();  // the collector may have restarted
      }
    }
    return true;
  }

  // TCP, acknowledging collector: messages written but not yet confirmed.
  bool unconfirmed_in_window() const { return d_.tcp && acking_ && unsent_ > 0; }

  void run() {
    std::vector<ipfix::ExportRecord> batch;
    for (;;) {
      bool stopping;
      {
        std::unique_lock lk(mu_);
        // While a TCP reconnect waits for its back-off, queued records must
        // not wake us (that would spin): only the retry time or stop does.
        const auto now = Clock::now();
        const bool can_send = sock_ || now >= retry_at_;
        const bool awaiting = d_.tcp && sock_ && !acking_ && now < await_ack_until_;
        const auto tick = unconfirmed_in_window() || awaiting ? std::chrono::milliseconds(20)
                                                              : std::chrono::milliseconds(200);
        const auto wait = can_send ? tick
                                   : std::min<std::chrono::milliseconds>(
                                         tick, std::chrono::duration_cast<std::chrono::milliseconds>(retry_at_ - now) +
                                                   std::chrono::milliseconds(1));
        cv_.wait_for(lk, wait, [&] { return stopping_ || (can_send && !awaiting && !q_.empty()); });
        stopping = stopping_;
        if (stopping && Clock::now() >= drain_deadline_) break;
      }
      if (sock_ && d_.tcp && !read_acks()) {
        spdlog::warn("ipfix {}: collector closed the connection; reconnecting", d_.url);
        disconnect();
      }
      if (!ensure_session()) {
        continue;
      }
      if (d_.tcp && !acking_ && Clock::now() < await_ack_until_) continue;
      if (d_.tcp && unsent_ < window_.size() && !pump()) {
        disconnect();
        continue;
      }
      {
        std::lock_guard lk(mu_);
        while (!q_.empty() && batch.size() < 512) {
          batch.push_back(std::move(q_.front()));
          q_.pop_front();
        }
      }
      if (!batch.empty()) send_batch(batch);
      if (stopping) {
        std::lock_guard lk(mu_);
        // Draining: done when nothing waits and an acknowledging collector
        // has confirmed everything.
        if (q_.empty() && unsent_ == window_.size() && !unconfirmed_in_window()) break;
      }
    }
    std::lock_guard lk(mu_);
    dropped_at_exit_ += q_.size();
    q_.clear();
    for (size_t i = 0; i < window_.size(); i++) {
      if (i >= unsent_)
        dropped_at_exit_ += window_[i].records;
      else if (acking_)
        unconfirmed_ += window_[i].records;
    }
    window_.clear();
    window_records_ = 0;
    window_size_ = 0;
    if (sock_) spdlog::debug("ipfix {}: closed", d_.url);
    sock_.reset();
    connected_ = false;
  }

  static constexpr size_t kAckSize = 16;
  static constexpr auto kFirstAckWait = std::chrono::milliseconds(1000);

  // An encoded message of data records (flows, claims), kept until the collector confirms it.
  struct Sent {
    ipfix::Message msg;
    uint32_t seq;      // its header's sequence number
    uint32_t records;  // data records in it
  };

  IpfixDestination d_;
  sockaddr_storage addr_;
  socklen_t addr_len_;
  IpfixExportOptions o_;
  ipfix::Encoder enc_;  // sender thread only
  Fd sock_;             // sender thread only
  Clock::time_point next_templates_{};
  // TCP delivery (sender thread only): messages encoded and not yet
  // confirmed, oldest first; those before unsent_ were written on this
  // connection, those before replay_ are being written again after a reconnect.
  std::deque<Sent> window_;
  size_t window_records_ = 0;
  size_t unsent_ = 0;
  size_t replay_ = 0;
  std::atomic<bool> acking_{false};  // the collector has acknowledged (on any connection); stats read it
  Clock::time_point await_ack_until_{};
  std::vector<uint8_t> ackbuf_;
  Clock::time_point retry_at_{};
  std::chrono::milliseconds backoff_{500};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ipfix::ExportRecord> q_;
  uint64_t skipped_ = 0;
  uint64_t dropped_queue_full_ = 0;
  bool stopping_ = false;
  Clock::time_point drain_deadline_{};

  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> records_sent_{0}, messages_sent_{0}, bytes_sent_{0}, template_sends_{0};
  std::atomic<uint64_t> dropped_send_failed_{0}, dropped_at_exit_{0}, send_errors_{0};
  std::atomic<uint64_t> connects_{0}, connect_failures_{0};
  std::atomic<uint64_t> records_acked_{0}, records_replayed_{0}, window_evicted_{0}, unconfirmed_{0}, ack_errors_{0};
  std::atomic<uint64_t> window_size_{0};
  std::thread thread_;
};

Result<std::shared_ptr<IpfixExporter>> IpfixExporter::create(const std::vector<std::string>& urls,
                                                             const IpfixExportOptions& opts) {
  std::vector<std::pair<IpfixDestination, std::pair<sockaddr_storage, socklen_t>>> parsed;
  for (const auto& u : urls) {
    auto d = parse_ipfix_url(u);
    if (!d) return std::unexpected(d.error());
    socklen_t len = 0;
    auto addr = resolve(*d, len);
    if (!addr) return std::unexpected(addr.error());
    parsed.push_back({*d, {*addr, len}});
  }
  IpfixExportOptions o = opts;
  // One instance number per exporting process, for all its destinations.
  while (o.instance == 0 && getrandom(&o.instance, sizeof o.instance, 0) != sizeof o.instance) {
  }
  std::shared_ptr<IpfixExporter> e(new IpfixExporter());
  for (auto& [d, a] : parsed) e->dests_.push_back(std::make_unique<Destination>(d, a.first, a.second, o));
  return e;
}

IpfixExporter::~IpfixExporter() { close(std::chrono::milliseconds(0)); }

void IpfixExporter::write(const Flow& r) {
  for (auto& d : dests_) d->push(r);
}

void IpfixExporter::write_claim(const OwnershipClaim& c) {
  for (auto& d : dests_) d->push(c);
}

void IpfixExporter::flush() {
  for (auto& d : dests_) d->wake();
}

void IpfixExporter::close(std::chrono::milliseconds timeout) {
  for (auto& d : dests_) d->stop(timeout);
}

std::vector<IpfixDestinationStats> IpfixExporter::stats() const {
  std::vector<IpfixDestinationStats> out;
  for (const auto& d : dests_) out.push_back(d->stats());
  return out;
}

std::string IpfixExporter::stats_fields() const {
  std::string out = R"("ipfix":[)";
  bool first = true;
  for (const auto& s : stats()) {
    if (!first) out += ',';
    first = false;
    out += R"({"dest":)";
    append_json_string(out, s.url);
    out += fmt::format(
        R"(,"connected":{},"queued":{},"records_sent":{},"messages_sent":{},"bytes_sent":{},"template_sends":{},)"
        R"("dropped_queue_full":{},"dropped_send_failed":{},"dropped_at_exit":{},"send_errors":{},"connects":{},)"
        R"("connect_failures":{},"acknowledged":{},"records_acked":{},"records_replayed":{},"window_records":{},)"
        R"("window_evicted":{},"unconfirmed":{},"ack_errors":{}}})",
        s.connected, s.queued, s.records_sent, s.messages_sent, s.bytes_sent, s.template_sends, s.dropped_queue_full,
        s.dropped_send_failed, s.dropped_at_exit, s.send_errors, s.connects, s.connect_failures, s.acknowledged,
        s.records_acked, s.records_replayed, s.window_records, s.window_evicted, s.unconfirmed, s.ack_errors);
  }
  out += ']';
  return out;
}

}  // namespace flowscope
