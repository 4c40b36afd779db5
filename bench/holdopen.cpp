// fs_holdopen: many concurrent TCP connections, held open.
//
//   fs_holdopen [--conns N] [--addrs K] [--port P] [--hold S]
//
// Listens on 127.0.0.1..127.0.0.K port P and opens N connections to them
// round-robin (K destinations give K times the ephemeral ports), so N can
// reach 100k on loopback. Both ends live in this process: 2N sockets, so the
// fd limit is raised to 2N + slack (needs root or a high hard limit).
// Prints {"established":N,...} once all are accepted, holds them for S
// seconds (or until SIGTERM), closes them all and prints {"closed":N}.
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "common.h"

int main(int argc, char** argv) {
  using namespace fsbench;
  CLI::App app{"fs_holdopen: many concurrent connections, held open"};
  int conns = 100000, addrs = 8;
  uint16_t port = 0;
  double hold = 30;
  app.add_option("--conns", conns)->check(CLI::Range(1, 1000000))->capture_default_str();
  app.add_option("--addrs", addrs, "Destinations 127.0.0.1..127.0.0.K")->check(CLI::Range(1, 250))->capture_default_str();
  app.add_option("--port", port)->required();
  app.add_option("--hold", hold, "Seconds to hold them open")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  install_signals();
  raise_nofile(static_cast<rlim_t>(2 * conns + 1024));

  std::vector<int> listeners;
  std::vector<Addr> dests;
  for (int i = 1; i <= addrs; i++) {
    std::string ip = fmt::format("127.0.0.{}", i);
    listeners.push_back(listen_on(ip, port, 4096, false));
    dests.push_back(make_addr(ip, port));
  }
  std::vector<std::vector<int>> accepted(listeners.size());
  std::atomic<int> n_accepted{0};
  std::vector<std::thread> ts;
  for (size_t i = 0; i < listeners.size(); i++) {
    ts.emplace_back([&, i] {
      while (n_accepted.load() < conns && !g_stop.load()) {
        int c = accept(listeners[i], nullptr, nullptr);
        if (c < 0) {
          if (errno == EINTR || errno == ECONNABORTED) continue;
          return;
        }
        accepted[i].push_back(c);
        if (++n_accepted >= conns) {
          // Wake the other acceptors so they notice we are done.
          for (size_t j = 0; j < listeners.size(); j++) shutdown(listeners[j], SHUT_RD);
        }
      }
    });
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int> clients;
  clients.reserve(static_cast<size_t>(conns));
  int errors = 0;
  for (int i = 0; i < conns && !g_stop.load(); i++) {
    const Addr& d = dests[static_cast<size_t>(i) % dests.size()];
    int fd = socket(d.family(), SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, d.sa(), d.len) != 0) {
      fmt::print(stderr, "connection {}: {}\n", i, std::strerror(errno));
      if (fd >= 0) close(fd);
      if (++errors > 100) break;
      continue;
    }
    clients.push_back(fd);
  }
  for (auto& t : ts) t.join();
  fmt::print("{{\"established\":{},\"accepted\":{},\"errors\":{},\"seconds\":{:.3f}}}\n", clients.size(),
             n_accepted.load(), errors, seconds_since(t0));
  std::fflush(stdout);
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(hold);
  while (!g_stop.load() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  size_t closed = 0;
  for (int fd : clients) closed += close(fd) == 0;
  for (auto& v : accepted)
    for (int fd : v) close(fd);
  fmt::print("{{\"closed\":{}}}\n", closed);
  return clients.size() == static_cast<size_t>(conns) ? 0 : 1;
}
