// fs_peer: a TCP client and server whose byte counts are the tests' ground
// truth. Prints one JSON line per connection on stdout.
//
//   fs_peer server --addr A --port P [--send N] [--count K] [--rst] [--hold-ms T] [--fork-accept]
//   fs_peer client --addr A --port P [--send N] [--count K] [--rst] [--hold-ms T] [--timeout-ms T] [--dstopts]
//
// client: connect, send N bytes, wait T ms, shutdown(SHUT_WR), read to EOF, close;
//         K times in a row with --count K.
// server: accept K connections one by one; read to EOF, send N bytes, close.
// --fork-accept: a child process accepts on the socket it inherits from the
// listening parent (the parent waits for it), so listener and acceptor differ.
// --rst closes with SO_LINGER{1,0}, which sends a reset instead of a FIN.
// --dstopts (IPv6) puts a destination options header in every segment sent.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <sys/prctl.h>

#include <thread>

#include <fmt/format.h>

namespace {

struct Opts {
  std::string addr = "127.0.0.1";
  uint16_t port = 0;
  uint64_t send = 0;
  int count = 1;
  bool rst = false;
  int hold_ms = 0;
  int timeout_ms = 10000;
  int syn_retries = 2;
  int threads = 4;
  bool dstopts = false;  // IPv6: every segment carries a destination options header
  bool log = false;        // burst: one line per connection
  bool hold_open = false;  // burst: all connections open at once
  bool fork_accept = false;  // server: a forked child accepts on the inherited listener
  std::string thread_name;  // client: connect from a thread of this name (the process keeps its own)
};

sockaddr_storage resolve(const std::string& addr, uint16_t port, socklen_t& len) {
  sockaddr_storage ss{};
  auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, addr.c_str(), &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    len = sizeof(*s4);
  } else if (inet_pton(AF_INET6, addr.c_str(), &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    len = sizeof(*s6);
  } else {
    fmt::print(stderr, "fs_peer: bad address {}\n", addr);
    exit(2);
  }
  return ss;
}

uint16_t port_of(int fd, bool peer) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if ((peer ? getpeername : getsockname)(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                       : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

bool send_all(int fd, uint64_t n) {
  std::vector<char> buf(64 * 1024, 'x');
  while (n > 0) {
    ssize_t w = ::send(fd, buf.data(), std::min<uint64_t>(n, buf.size()), MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    n -= static_cast<uint64_t>(w);
  }
  return true;
}

uint64_t read_all(int fd) {
  std::vector<char> buf(64 * 1024);
  uint64_t total = 0;
  for (;;) {
    ssize_t r = ::recv(fd, buf.data(), buf.size(), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return total;
    total += static_cast<uint64_t>(r);
  }
}

void close_conn(int fd, bool rst) {
  if (rst) {
    linger l{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  }
  ::close(fd);
}

int run_server(const Opts& o) {
  socklen_t len = 0;
  sockaddr_storage ss = resolve(o.addr, o.port, len);
  int fd = socket(ss.ss_family, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, 128) != 0) {
    fmt::print(stderr, "fs_peer: listen {}:{}: {}\n", o.addr, o.port, strerror(errno));
    return 1;
  }
  fmt::print("{{\"role\":\"listening\",\"pid\":{},\"port\":{}}}\n", getpid(), port_of(fd, false));
  fflush(stdout);
  if (o.fork_accept) {
    pid_t child = fork();
    if (child < 0) {
      fmt::print(stderr, "fs_peer: fork: {}\n", strerror(errno));
      return 1;
    }
    if (child > 0) {
      ::close(fd);
      int status = 0;
      if (waitpid(child, &status, 0) != child) return 1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    }
  }
  for (int i = 0; i < o.count; i++) {
    int c = accept(fd, nullptr, nullptr);
    if (c < 0) return 1;
    uint64_t got = read_all(c);
    bool ok = send_all(c, o.send);
    if (o.hold_ms) std::this_thread::sleep_for(std::chrono::milliseconds(o.hold_ms));
    fmt::print("{{\"role\":\"server\",\"pid\":{},\"local_port\":{},\"remote_port\":{},\"received\":{},\"sent\":{}}}\n",
               getpid(), port_of(c, false), port_of(c, true), got, ok ? o.send : 0);
    fflush(stdout);
    close_conn(c, o.rst);
  }
  ::close(fd);
  return 0;
}

int run_client(const Opts& o) {
  socklen_t len = 0;
  sockaddr_storage ss = resolve(o.addr, o.port, len);
  int fd = socket(ss.ss_family, SOCK_STREAM, 0);
  if (o.dstopts) {
    // An 8-byte destination options header holding one PadN option.
    const uint8_t opts[8] = {0, 0, 1, 4, 0, 0, 0, 0};
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_DSTOPTS, opts, sizeof(opts)) != 0) {
      fmt::print(stderr, "fs_peer: IPV6_DSTOPTS: {}\n", strerror(errno));
      return 2;
    }
  }
  // Bounded connect: SYN retransmits stop after the user timeout.
  unsigned timeout = static_cast<unsigned>(o.timeout_ms);
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, sizeof(timeout));
  setsockopt(fd, IPPROTO_TCP, TCP_SYNCNT, &o.syn_retries, sizeof(o.syn_retries));
  if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    int e = errno;
    fmt::print("{{\"role\":\"client\",\"pid\":{},\"local_port\":{},\"error\":\"{}\"}}\n", getpid(), port_of(fd, false),
               strerror(e));
    ::close(fd);
    return 3;
  }
  bool ok = send_all(fd, o.send);
  if (o.hold_ms) std::this_thread::sleep_for(std::chrono::milliseconds(o.hold_ms));
  uint64_t got = 0;
  if (o.rst) {
    fmt::print("{{\"role\":\"client\",\"pid\":{},\"local_port\":{},\"received\":0,\"sent\":{}}}\n", getpid(),
               port_of(fd, false), ok ? o.send : 0);
    close_conn(fd, true);
    return 0;
  }
  shutdown(fd, SHUT_WR);
  got = read_all(fd);
  fmt::print("{{\"role\":\"client\",\"pid\":{},\"local_port\":{},\"received\":{},\"sent\":{}}}\n", getpid(),
             port_of(fd, false), got, ok ? o.send : 0);
  ::close(fd);
  return 0;
}

// burst: a listener that accepts and closes, and `threads` connectors making
// `count` connections in total as fast as they can.
//   --log        one line per connection after the burst: the connector's local
//                port and the CLOCK_MONOTONIC time its connect() returned
//                ("conn"), and for each accepted one the peer's port and when
//                accept() returned ("accepted")
//   --hold-open  every connection stays open until all `count` are made; then
//                each connector sends `send` bytes and closes, and the
//                listener reads each to EOF and closes
uint64_t mono_ns() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return uint64_t(t.tv_sec) * 1000000000ull + uint64_t(t.tv_nsec);
}

uint16_t port_of(const sockaddr_storage& ss) {
  return ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6&>(ss).sin6_port
                                        : reinterpret_cast<const sockaddr_in&>(ss).sin_port);
}

struct ConnLog {
  uint16_t port;
  uint64_t t;
};

int run_burst(const Opts& o) {
  socklen_t len = 0;
  sockaddr_storage ss = resolve(o.addr, o.port, len);
  int lfd = socket(ss.ss_family, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(lfd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(lfd, 4096) != 0) {
    fmt::print(stderr, "fs_peer: listen: {}\n", strerror(errno));
    return 1;
  }
  std::atomic<int> done{0}, finished{0};
  std::vector<ConnLog> accepted;
  std::vector<int> held;
  std::thread acceptor([&] {
    for (int i = 0; i < o.count; i++) {
      sockaddr_storage peer{};
      socklen_t plen = sizeof(peer);
      int c = accept(lfd, reinterpret_cast<sockaddr*>(&peer), &plen);
      if (c < 0) break;
      if (o.log) accepted.push_back({port_of(peer), mono_ns()});
      if (o.hold_open)
        held.push_back(c);
      else
        ::close(c);
    }
  });
  std::vector<std::vector<ConnLog>> logs(o.threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < o.threads; t++) {
    workers.emplace_back([&, t] {
      std::vector<int> mine;
      for (int i = t; i < o.count; i += o.threads) {
        int fd = socket(ss.ss_family, SOCK_STREAM, 0);
        if (connect(fd, reinterpret_cast<const sockaddr*>(&ss), len) == 0) {
          done++;
          if (o.log) {
            sockaddr_storage me{};
            socklen_t mlen = sizeof(me);
            getsockname(fd, reinterpret_cast<sockaddr*>(&me), &mlen);
            logs[t].push_back({port_of(me), mono_ns()});
          }
          if (o.hold_open) {
            mine.push_back(fd);
            continue;
          }
        }
        ::close(fd);
      }
      finished++;
      if (!o.hold_open) return;
      // Every connection is open at once before any closes.
      while (finished.load() < o.threads) std::this_thread::yield();
      std::string data(o.send, 'x');
      for (int fd : mine) {
        if (!data.empty() && write(fd, data.data(), data.size()) != ssize_t(data.size()))
          fmt::print(stderr, "fs_peer: short write\n");
        ::close(fd);
      }
    });
  }
  for (auto& w : workers) w.join();
  acceptor.join();
  char buf[4096];
  for (int c : held) {
    while (read(c, buf, sizeof(buf)) > 0) {
    }
    ::close(c);
  }
  ::close(lfd);
  if (o.log) {
    std::string out;
    for (const auto& l : logs)
      for (const auto& c : l) out += fmt::format("{{\"role\":\"conn\",\"port\":{},\"t\":{}}}\n", c.port, c.t);
    for (const auto& c : accepted) out += fmt::format("{{\"role\":\"accepted\",\"port\":{},\"t\":{}}}\n", c.port, c.t);
    fwrite(out.data(), 1, out.size(), stdout);
  }
  fmt::print("{{\"role\":\"burst\",\"pid\":{},\"connections\":{}}}\n", getpid(), done.load());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fs_peer: TCP test peer with known byte counts"};
  app.require_subcommand(1);
  Opts o;
  for (auto* sub : {app.add_subcommand("server", "accept and echo counts"), app.add_subcommand("client", "connect"),
                    app.add_subcommand("burst", "many short connections to itself")}) {
    sub->add_option("--addr", o.addr);
    sub->add_option("--port", o.port);
    sub->add_option("--send", o.send);
    sub->add_option("--count", o.count);
    sub->add_flag("--rst", o.rst);
    sub->add_option("--hold-ms", o.hold_ms);
    sub->add_option("--timeout-ms", o.timeout_ms);
    sub->add_option("--syn-retries", o.syn_retries);
    sub->add_option("--threads", o.threads);
    sub->add_flag("--dstopts", o.dstopts);
    sub->add_flag("--log", o.log);
    sub->add_flag("--hold-open", o.hold_open);
    sub->add_flag("--fork-accept", o.fork_accept);
    sub->add_option("--thread-name", o.thread_name);
  }
  CLI11_PARSE(app, argc, argv);
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (app.got_subcommand("burst")) return run_burst(o);
  if (app.got_subcommand("client") && !o.thread_name.empty()) {
    int rc = 0;
    std::thread t([&] {
      prctl(PR_SET_NAME, o.thread_name.c_str());
      rc = run_client(o);
    });
    t.join();
    return rc;
  }
  if (app.got_subcommand("server")) return run_server(o);
  // client --count K: K connections one after another (one line each).
  int rc = 0;
  for (int i = 0; i < std::max(1, o.count) && rc == 0; i++) rc = run_client(o);
  return rc;
}
