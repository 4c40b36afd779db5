#include "net/cidr.h"
#include "export/ipfix_exporter.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
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
        enc_({.domain = o.domain, .pen = o.pen, .max_message = d_.tcp ? 65535 : o.udp_max_message}) {
    thread_ = std::thread([this] { run(); });
  }
  ~Destination() { stop(std::chrono::milliseconds(0)); }

  void push(const Flow& r) {
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
  }

  bool send_templates() {
    for (const auto& m : enc_.template_messages(unix_seconds())) {
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

  // TCP: the collector never writes, so a readable socket means it closed
  // (or reset) the connection. Checked before each batch so records are not
  // written into a dead connection's buffer.
  bool peer_closed() const {
    pollfd p{sock_.get(), POLLIN | POLLRDHUP, 0};
    return ::poll(&p, 1, 0) == 1 && p.revents != 0;
  }

  // Returns false if the session broke; the records not sent are put back at
  // the front of the queue (TCP) to go out after the reconnect.
  bool send_batch(std::vector<Flow>& batch) {
    {
      std::lock_guard lk(mu_);
      enc_.skip(std::exchange(skipped_, 0));
    }
    std::vector<size_t> per_message;
    auto msgs = enc_.encode(batch, unix_seconds(), &per_message);
    size_t sent_records = 0;
    size_t i = 0;
    for (; i < msgs.size(); i++) {
      if (!send_msg(msgs[i])) break;
      sent_records += per_message[i];
    }
    records_sent_ += sent_records;
    bool ok = i == msgs.size();
    if (!ok) {
      const size_t unsent = batch.size() - sent_records;
      if (d_.tcp) {
        // A partly written message is cut off by the close and discarded by
        // the collector, so re-sending these records duplicates nothing.
        disconnect();
        std::lock_guard lk(mu_);
        size_t room = o_.queue_records > q_.size() ? o_.queue_records - q_.size() : 0;
        size_t requeue = std::min(unsent, room);
        for (size_t k = 0; k < requeue; k++) q_.push_front(std::move(batch[batch.size() - 1 - k]));
        dropped_send_failed_ += unsent - requeue;
      } else {
        dropped_send_failed_ += unsent;
        next_templates_ = Clock::now();  // the collector may have restarted
      }
    }
    batch.clear();
    return ok;
  }

  void run() {
    std::vector<Flow> batch;
    for (;;) {
      bool stopping;
      {
        std::unique_lock lk(mu_);
        // While a TCP reconnect waits for its back-off, queued records must
        // not wake us (that would spin): only the retry time or stop does.
        const auto now = Clock::now();
        const bool can_send = sock_ || now >= retry_at_;
        const auto wait = can_send ? std::chrono::milliseconds(200)
                                   : std::min<std::chrono::milliseconds>(
                                         std::chrono::milliseconds(200),
                                         std::chrono::duration_cast<std::chrono::milliseconds>(retry_at_ - now) +
                                             std::chrono::milliseconds(1));
        cv_.wait_for(lk, wait, [&] { return stopping_ || (can_send && !q_.empty()); });
        stopping = stopping_;
        if (stopping && Clock::now() >= drain_deadline_) break;
      }
      if (sock_ && d_.tcp && peer_closed()) {
        spdlog::warn("ipfix {}: collector closed the connection; reconnecting", d_.url);
        disconnect();
      }
      if (!ensure_session()) {
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
        if (q_.empty()) break;
      }
    }
    std::lock_guard lk(mu_);
    dropped_at_exit_ += q_.size();
    q_.clear();
    if (sock_) spdlog::debug("ipfix {}: closed", d_.url);
    disconnect();
  }

  IpfixDestination d_;
  sockaddr_storage addr_;
  socklen_t addr_len_;
  IpfixExportOptions o_;
  ipfix::Encoder enc_;  // sender thread only
  Fd sock_;             // sender thread only
  Clock::time_point next_templates_{};
  Clock::time_point retry_at_{};
  std::chrono::milliseconds backoff_{500};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Flow> q_;
  uint64_t skipped_ = 0;
  uint64_t dropped_queue_full_ = 0;
  bool stopping_ = false;
  Clock::time_point drain_deadline_{};

  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> records_sent_{0}, messages_sent_{0}, bytes_sent_{0}, template_sends_{0};
  std::atomic<uint64_t> dropped_send_failed_{0}, dropped_at_exit_{0}, send_errors_{0};
  std::atomic<uint64_t> connects_{0}, connect_failures_{0};
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
  std::shared_ptr<IpfixExporter> e(new IpfixExporter());
  for (auto& [d, a] : parsed) e->dests_.push_back(std::make_unique<Destination>(d, a.first, a.second, opts));
  return e;
}

IpfixExporter::~IpfixExporter() { close(std::chrono::milliseconds(0)); }

void IpfixExporter::write(const Flow& r) {
  for (auto& d : dests_) d->push(r);
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
        R"("connect_failures":{}}})",
        s.connected, s.queued, s.records_sent, s.messages_sent, s.bytes_sent, s.template_sends, s.dropped_queue_full,
        s.dropped_send_failed, s.dropped_at_exit, s.send_errors, s.connects, s.connect_failures);
  }
  out += ']';
  return out;
}

}  // namespace flowscope
