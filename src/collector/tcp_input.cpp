#include "collector/tcp_input.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <list>
#include <map>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace flowscope {

using Clock = std::chrono::steady_clock;

struct TcpInput::Conn {
  Fd fd;
  SessionRef session;
  Ip16 ip{};
  ipfix::StreamFramer framer;
  Clock::time_point last_byte;  // idle timeout
  Clock::time_point progress;   // accepted, or last message completed: who makes room first
  std::optional<Clock::time_point> msg_started;  // bytes of an incomplete message are buffered since
  bool dead = false;
};

namespace {

// Logs the first event of a kind and then every 1000th: a flood of them
// must not flood the log too (the counters have the totals).
bool sampled(uint64_t n) { return n == 1 || n % 1000 == 0; }

// Closes with a reset (SO_LINGER 0): the exporter learns at once, on its
// next read or write, that the connection is gone.
void reset_close(Fd& fd) {
  linger l{1, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  fd.reset();
}

}  // namespace

Result<std::unique_ptr<TcpInput>> TcpInput::start(const TcpInputOptions& opts, IngestQueue& queue) {
  std::unique_ptr<TcpInput> in(new TcpInput(queue, opts));
  auto fd = bind_socket(opts.host, opts.port, SOCK_STREAM);
  if (!fd) return std::unexpected(fd.error());
  if (::listen(fd->get(), 128) != 0) return fail_errno(errno, "IPFIX TCP: listen: {}", std::strerror(errno));
  fcntl(fd->get(), F_SETFL, fcntl(fd->get(), F_GETFL) | O_NONBLOCK);
  in->port_ = bound_port(fd->get());
  in->listen_fd_ = std::move(*fd);
  in->epoll_fd_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
  if (!in->epoll_fd_) return fail_errno(errno, "epoll_create1: {}", std::strerror(errno));
  auto w = Waker::create();
  if (!w) return std::unexpected(w.error());
  in->waker_ = std::move(*w);
  // The listener and the waker are told apart from connections by a null
  // pointer and by the waker's own address.
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;
  epoll_ctl(in->epoll_fd_.get(), EPOLL_CTL_ADD, in->listen_fd_.get(), &ev);
  ev.data.ptr = &in->waker_;
  epoll_ctl(in->epoll_fd_.get(), EPOLL_CTL_ADD, in->waker_.fd(), &ev);
  in->thread_ = std::thread([p = in.get()] { p->loop(); });
  return in;
}

TcpInput::~TcpInput() { stop(); }

void TcpInput::stop() {
  stop_.store(true);
  waker_.wake();
  if (thread_.joinable()) thread_.join();
}

TcpInputStats TcpInput::stats() const {
  return {n_.accepted.load(),       n_.open.load(),          n_.messages.load(),      n_.bytes.load(),
          n_.rejected.load(),       n_.refused_source.load(), n_.refused_global.load(), n_.evicted.load(),
          n_.idle_timeouts.load(),  n_.message_timeouts.load(), n_.framing_errors.load(), n_.partial_bytes.load(),
          acks_.load(),             acks_skipped_.load()};
}

void TcpInput::post_ack(const std::string& session, uint32_t domain, uint64_t next_seq) {
  {
    std::lock_guard lk(ack_mu_);
    acks_pending_.push_back({session, domain, next_seq});
  }
  waker_.wake();
}

// "FSAK", observation domain (u32), next sequence number (u64), big-endian.
void TcpInput::write_acks(const std::map<std::string, Conn*>& by_session) {
  std::vector<Ack> acks;
  {
    std::lock_guard lk(ack_mu_);
    acks.swap(acks_pending_);
  }
  for (const auto& a : acks) {
    auto it = by_session.find(a.session);
    if (it == by_session.end()) {
      acks_skipped_++;
      continue;
    }
    uint8_t b[16] = {'F', 'S', 'A', 'K'};
    for (int k = 0; k < 4; k++) b[4 + k] = uint8_t(a.domain >> (24 - 8 * k));
    for (int k = 0; k < 8; k++) b[8 + k] = uint8_t(a.next_seq >> (56 - 8 * k));
    // All or nothing: a partial acknowledgement would corrupt the stream.
    int queued = 0;
    const int fd = it->second->fd.get();
    int sndbuf = 0;
    socklen_t len = sizeof sndbuf;
    if (ioctl(fd, TIOCOUTQ, &queued) != 0 || getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) != 0 ||
        sndbuf - queued < int(sizeof b) * 2 ||
        ::send(fd, b, sizeof b, MSG_DONTWAIT | MSG_NOSIGNAL) != ssize_t(sizeof b)) {
      acks_skipped_++;
      continue;
    }
    acks_++;
  }
}

void TcpInput::loop() {
  std::list<Conn> conns;
  std::map<std::string, Conn*> by_session;  // open connections, for acknowledgements
  std::map<Ip16, size_t> per_source;
  uint64_t next_id = 0;
  std::vector<uint8_t> buf(64 * 1024);
  std::vector<epoll_event> evs(o_.max_connections + 2);
  // Timeouts are checked at least this often (and whenever one is due).
  const auto check_every = std::clamp<Clock::duration>(std::min(o_.idle_timeout, o_.message_timeout) / 4,
                                                       std::chrono::milliseconds(5), std::chrono::seconds(1));
  auto next_check = Clock::now() + check_every;

  auto close_conn = [&](Conn& c, CloseCause why) {
    if (c.dead) return;
    c.dead = true;
    by_session.erase(c.session->key);
    // Counted before the socket closes, so whoever sees the close sees the count.
    n_.partial_bytes += c.framer.buffered();
    if (auto it = per_source.find(c.ip); it != per_source.end() && --it->second == 0) per_source.erase(it);
    n_.open--;
    uint64_t n = 0;
    switch (why) {
      case CloseCause::FramingError: n = ++n_.framing_errors; break;
      case CloseCause::IdleTimeout: n = ++n_.idle_timeouts; break;
      case CloseCause::MessageTimeout: n = ++n_.message_timeouts; break;
      case CloseCause::Evicted: n = ++n_.evicted; break;
      case CloseCause::PeerClosed:
      case CloseCause::Shutdown: break;
    }
    epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);
    if (why == CloseCause::Evicted || why == CloseCause::MessageTimeout || why == CloseCause::IdleTimeout) {
      reset_close(c.fd);  // nothing more from this one is wanted
    } else {
      c.fd.reset();
    }
    if (n == 0)
      spdlog::info("IPFIX TCP exporter {} disconnected", c.session->key);
    else if (sampled(n))
      spdlog::warn("IPFIX TCP exporter {} closed: {} ({} so far)", c.session->key, to_string(why), n);
    q_.push_wait(SessionClosed{c.session, why});
  };

  // Reads what one connection has (once: connections take turns); false
  // when there was nothing to read.
  auto read_conn = [&](Conn& c) {
    ssize_t n = ::recv(c.fd.get(), buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return false;
    if (n <= 0) {
      close_conn(c, CloseCause::PeerClosed);
      return false;
    }
    const auto now = Clock::now();
    n_.bytes += uint64_t(n);
    c.last_byte = now;
    const bool had_partial = c.framer.buffered() > 0;
    c.framer.append({buf.data(), size_t(n)});
    bool completed = false;
    for (auto msg = c.framer.next(); !msg.empty(); msg = c.framer.next()) {
      n_.messages++;
      completed = true;
      q_.push_wait(MessageEvent{c.session, std::move(msg)});
    }
    if (completed) c.progress = now;
    if (c.framer.broken()) {
      // The stream cannot be re-synchronised: the exporter reconnects and
      // re-sends its templates.
      close_conn(c, CloseCause::FramingError);
      return false;
    }
    if (c.framer.buffered() == 0)
      c.msg_started.reset();
    else if (completed || !had_partial)
      c.msg_started = now;
    return true;
  };

  // The connection (of `ip`, or any) that has gone longest without
  // completing a message.
  auto stalest = [&](const Ip16* ip) -> Conn* {
    Conn* best = nullptr;
    for (auto& c : conns)
      if (!c.dead && (!ip || c.ip == *ip) && (!best || c.progress < best->progress)) best = &c;
    return best;
  };

  // At a limit: make room by closing the stalest connection, or refuse.
  auto make_room = [&](const Ip16* ip, Clock::time_point now) {
    Conn* victim = stalest(ip);
    if (!victim || now - victim->progress < o_.evict_after) return false;
    close_conn(*victim, CloseCause::Evicted);
    return true;
  };

  auto accept_all = [&] {
    for (;;) {
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      Fd fd(::accept4(listen_fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!fd) return;
      const Endpoint ep = endpoint_of(ss);
      if (!allowed(o_.allow, ep.ip)) {
        n_.rejected++;
        continue;  // closed by Fd
      }
      const auto now = Clock::now();
      std::optional<RefuseCause> refuse;
      if (auto it = per_source.find(ep.ip);
          it != per_source.end() && it->second >= o_.max_connections_per_source && !make_room(&ep.ip, now))
        refuse = RefuseCause::SourceLimit;
      else if (size_t(n_.open.load()) >= o_.max_connections && !make_room(nullptr, now))
        refuse = RefuseCause::GlobalLimit;
      const std::string addr = ip16_to_string(ep.ip);
      if (refuse) {
        const uint64_t n = *refuse == RefuseCause::SourceLimit ? ++n_.refused_source : ++n_.refused_global;
        reset_close(fd);
        if (sampled(n))
          spdlog::warn("IPFIX TCP: refused a connection from {}: {} ({} so far)", addr, to_string(*refuse), n);
        q_.try_push(ConnectionRefused{addr, *refuse});
        continue;
      }
      auto s = std::make_shared<Session>();
      s->transport = ipfix::Transport::Tcp;
      s->exporter = addr;
      s->key = fmt::format("tcp:{}:{}#{}", addr, ep.port, next_id++);
      Conn& c = conns.emplace_back();
      c.fd = std::move(fd);
      c.session = s;
      c.ip = ep.ip;
      c.last_byte = c.progress = now;
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.ptr = &c;
      if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, c.fd.get(), &ev) != 0) {
        spdlog::warn("IPFIX TCP: epoll_ctl: {}", std::strerror(errno));
        conns.pop_back();
        continue;
      }
      per_source[ep.ip]++;
      by_session[s->key] = &c;
      n_.open++;
      n_.accepted++;
      spdlog::info("IPFIX TCP exporter connected: {}", s->key);
      q_.push_wait(SessionOpened{s});
    }
  };

  auto check_timeouts = [&](Clock::time_point now) {
    auto next = now + check_every;
    for (auto& c : conns) {
      if (c.dead) continue;
      // A message that started and stalled is the more telling cause.
      if (c.msg_started && now - *c.msg_started >= o_.message_timeout) {
        close_conn(c, CloseCause::MessageTimeout);
      } else if (now - c.last_byte >= o_.idle_timeout) {
        close_conn(c, CloseCause::IdleTimeout);
      } else {
        next = std::min(next, c.last_byte + o_.idle_timeout);
        if (c.msg_started) next = std::min(next, *c.msg_started + o_.message_timeout);
      }
    }
    next_check = next;
  };

  while (!stop_.load()) {
    const auto wait = std::chrono::ceil<std::chrono::milliseconds>(next_check - Clock::now());
    const int n = ::epoll_wait(epoll_fd_.get(), evs.data(), int(evs.size()), int(std::max<int64_t>(0, wait.count())));
    for (int i = 0; i < n; ++i) {
      void* p = evs[i].data.ptr;
      if (p == nullptr) {
        accept_all();
      } else if (p != &waker_) {
        auto* c = static_cast<Conn*>(p);
        if (!c->dead) read_conn(*c);  // closed earlier in this round (made room): its event is stale
      }
    }
    write_acks(by_session);
    if (Clock::now() >= next_check) check_timeouts(Clock::now());
    conns.remove_if([](const Conn& c) { return c.dead; });
  }
  // Stopping: what exporters already sent is in our receive buffers and they
  // count it as delivered, so queue it before closing.
  for (auto& c : conns) {
    while (!c.dead && read_conn(c)) {
    }
    close_conn(c, CloseCause::Shutdown);
  }
}

}  // namespace flowscope
