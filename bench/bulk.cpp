// fs_bulk: a few long TCP streams at full speed.
//
//   fs_bulk server --addr A --port P
//   fs_bulk client --addr A --port P [--streams N] [--duration S] [--first-local-port L]
//
// The server reads and discards; the client writes 128 KiB buffers on each
// stream for S seconds and prints one JSON line with bytes and Gbit/s.
// --first-local-port binds stream 0 to a known port, so a filter can match
// exactly one connection.
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "common.h"

namespace {

using namespace fsbench;

struct Opts {
  std::string addr = "127.0.0.1";
  uint16_t port = 0;
  int streams = 2;
  double duration = 5;
  uint16_t first_local_port = 0;
};

int run_server(const Opts& o) {
  int lfd = listen_on(o.addr, o.port, 128, false);
  ready("bulk-server");
  for (;;) {
    int c = accept(lfd, nullptr, nullptr);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return 1;
    }
    std::thread([c] {
      std::vector<char> buf(256 * 1024);
      while (recv(c, buf.data(), buf.size(), 0) > 0) {
      }
      close(c);
    }).detach();
  }
}

int run_client(const Opts& o) {
  install_signals();
  Addr d = make_addr(o.addr, o.port);
  std::vector<int> fds;
  for (int i = 0; i < o.streams; i++) {
    int fd = socket(d.family(), SOCK_STREAM, 0);
    if (i == 0 && o.first_local_port) {
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      Addr local = make_addr(d.family() == AF_INET ? "0.0.0.0" : "::", o.first_local_port);
      if (bind(fd, local.sa(), local.len) != 0) {
        fmt::print(stderr, "bind port {}: {}\n", o.first_local_port, std::strerror(errno));
        return 1;
      }
    }
    if (connect(fd, d.sa(), d.len) != 0) {
      fmt::print(stderr, "connect {}:{}: {}\n", o.addr, o.port, std::strerror(errno));
      return 1;
    }
    fds.push_back(fd);
  }
  std::atomic<uint64_t> total{0};
  const auto t0 = std::chrono::steady_clock::now();
  const auto until = t0 + std::chrono::duration<double>(o.duration);
  std::vector<std::thread> ts;
  for (int fd : fds) {
    ts.emplace_back([&, fd] {
      std::vector<char> buf(128 * 1024, 'b');
      uint64_t n = 0;
      while (!g_stop.load(std::memory_order_relaxed) && std::chrono::steady_clock::now() < until) {
        ssize_t w = send(fd, buf.data(), buf.size(), MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        n += static_cast<uint64_t>(w);
      }
      total += n;
    });
  }
  for (auto& t : ts) t.join();
  const double secs = seconds_since(t0);
  for (int fd : fds) close(fd);
  fmt::print("{{\"bytes\":{},\"seconds\":{:.3f},\"gbps\":{:.3f}}}\n", total.load(), secs,
             double(total.load()) * 8 / secs / 1e9);
  return total.load() > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fs_bulk: a few long TCP streams"};
  app.require_subcommand(1);
  Opts o;
  auto* srv = app.add_subcommand("server", "read and discard");
  auto* cli = app.add_subcommand("client", "write as fast as possible");
  for (auto* s : {srv, cli}) {
    s->add_option("--addr", o.addr);
    s->add_option("--port", o.port)->required();
  }
  cli->add_option("--streams", o.streams)->check(CLI::Range(1, 64))->capture_default_str();
  cli->add_option("--duration", o.duration, "Seconds")->capture_default_str();
  cli->add_option("--first-local-port", o.first_local_port, "Bind stream 0 to this local port");
  CLI11_PARSE(app, argc, argv);
  return srv->parsed() ? run_server(o) : run_client(o);
}
