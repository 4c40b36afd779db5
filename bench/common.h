// Small helpers shared by the benchmark load generators (bench/*.cpp).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fmt/format.h>

namespace fsbench {

inline std::atomic<bool> g_stop{false};

inline void on_signal(int) { g_stop.store(true); }

inline void install_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

// An IPv4 or IPv6 socket address; exits with a message on a bad literal.
struct Addr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family() const { return ss.ss_family; }
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&ss); }
};

inline Addr make_addr(const std::string& ip, uint16_t port) {
  Addr a;
  auto* s4 = reinterpret_cast<sockaddr_in*>(&a.ss);
  auto* s6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
  if (inet_pton(AF_INET, ip.c_str(), &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    a.len = sizeof(*s4);
  } else if (inet_pton(AF_INET6, ip.c_str(), &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    a.len = sizeof(*s6);
  } else {
    fmt::print(stderr, "bad address: {}\n", ip);
    std::exit(2);
  }
  return a;
}

// A listening socket (SO_REUSEADDR, optionally SO_REUSEPORT); exits on error.
inline int listen_on(const std::string& ip, uint16_t port, int backlog, bool reuseport) {
  Addr a = make_addr(ip, port);
  int fd = socket(a.family(), SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (fd < 0 || bind(fd, a.sa(), a.len) != 0 || listen(fd, backlog) != 0) {
    fmt::print(stderr, "listen {}:{}: {}\n", ip, port, std::strerror(errno));
    std::exit(1);
  }
  return fd;
}

inline void raise_nofile(rlim_t n) {
  rlimit r{n, n};
  if (setrlimit(RLIMIT_NOFILE, &r) != 0) {
    fmt::print(stderr, "setrlimit(RLIMIT_NOFILE, {}): {} (run as root or raise ulimit -n)\n", n, std::strerror(errno));
    std::exit(1);
  }
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Tells the harness we are ready, then waits (used by servers).
inline void ready(const std::string& what) {
  fmt::print("{{\"ready\":\"{}\",\"pid\":{}}}\n", what, getpid());
  std::fflush(stdout);
}

}  // namespace fsbench
