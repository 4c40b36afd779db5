// fs_holdopen: many concurrent TCP connections, held open.
//
//   fs_holdopen [--conns N] [--addrs K] [--port P] [--hold S]
//
// Listens on 127.0.0.1..127.0.0.K and opens connections to them round-robin
// (K destinations give K times the ephemeral ports), so N can reach 100k on
// loopback. Both ends live in this program: 2N sockets. The fd limit is raised
// to the hard limit; when 2N does not fit under it (containers often cap it
// at 20000 even for root), the connections are split over worker processes,
// worker i listening on port P+i.
// Prints {"established":N,...} once all are accepted, holds them for S
// seconds (or until SIGTERM), closes them and prints {"closed":N}.
#include <sys/wait.h>

#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "common.h"

namespace {

using namespace fsbench;

struct Result {
  int established = 0;
  int accepted = 0;
  int errors = 0;
};

// Opens `conns` connections (both ends) to port `port` on the K addresses.
Result open_all(int conns, int addrs, uint16_t port, std::vector<int>& fds) {
  std::vector<int> listeners;
  std::vector<Addr> dests;
  for (int i = 1; i <= addrs; i++) {
    std::string ip = fmt::format("127.0.0.{}", i);
    listeners.push_back(listen_on(ip, port, 4096, false));
    dests.push_back(make_addr(ip, port));
  }
  std::vector<std::vector<int>> accepted(listeners.size());
  std::atomic<int> n_accepted{0};
  std::atomic<bool> done{false};
  std::vector<std::thread> ts;
  for (size_t i = 0; i < listeners.size(); i++) {
    ts.emplace_back([&, i] {
      while (!done.load() && !g_stop.load()) {
        int c = accept(listeners[i], nullptr, nullptr);
        if (c < 0) {
          if (errno == EINTR || errno == ECONNABORTED) continue;
          return;  // listener shut down
        }
        accepted[i].push_back(c);
        n_accepted++;
      }
    });
  }
  Result r;
  for (int i = 0; i < conns && !g_stop.load(); i++) {
    const Addr& d = dests[static_cast<size_t>(i) % dests.size()];
    int fd = socket(d.family(), SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, d.sa(), d.len) != 0) {
      fmt::print(stderr, "connection {}: {}\n", i, std::strerror(errno));
      if (fd >= 0) close(fd);
      if (++r.errors > 100) break;
      continue;
    }
    fds.push_back(fd);
    r.established++;
  }
  // Every established connection is in some accept queue: wait for them.
  for (int i = 0; i < 2000 && n_accepted.load() < r.established; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  done = true;
  for (int l : listeners) shutdown(l, SHUT_RDWR);
  for (auto& t : ts) t.join();
  for (int l : listeners) close(l);
  for (auto& v : accepted) fds.insert(fds.end(), v.begin(), v.end());
  r.accepted = n_accepted.load();
  return r;
}

void hold_until(double hold) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(hold);
  while (!g_stop.load() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

}  // namespace

int main(int argc, char** argv) {
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

  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  const long per_proc = std::max<long>(1, (static_cast<long>(rl.rlim_cur) - 256) / 2);
  const int procs = static_cast<int>((conns + per_proc - 1) / per_proc);
  const auto t0 = std::chrono::steady_clock::now();

  // Worker i: its share of connections on port+i; reports through a pipe,
  // then holds until SIGTERM.
  struct Worker {
    pid_t pid;
    int rd;
  };
  std::vector<Worker> workers;
  for (int i = 0; i < procs; i++) {
    const int share = conns / procs + (i < conns % procs ? 1 : 0);
    int p[2];
    if (pipe(p) != 0) return 1;
    pid_t pid = fork();
    if (pid == 0) {
      close(p[0]);
      std::vector<int> fds;
      Result r = open_all(share, addrs, static_cast<uint16_t>(port + i), fds);
      std::string line = fmt::format("{} {} {}\n", r.established, r.accepted, r.errors);
      if (write(p[1], line.data(), line.size()) < 0) _exit(1);
      close(p[1]);
      hold_until(1e9);
      for (int fd : fds) close(fd);
      _exit(0);
    }
    close(p[1]);
    workers.push_back({pid, p[0]});
  }
  Result total;
  for (auto& w : workers) {
    char buf[128] = {};
    ssize_t n = read(w.rd, buf, sizeof(buf) - 1);
    close(w.rd);
    Result r;
    if (n > 0) sscanf(buf, "%d %d %d", &r.established, &r.accepted, &r.errors);
    total.established += r.established;
    total.accepted += r.accepted;
    total.errors += r.errors;
  }
  fmt::print("{{\"established\":{},\"accepted\":{},\"errors\":{},\"processes\":{},\"seconds\":{:.3f}}}\n",
             total.established, total.accepted, total.errors, procs, seconds_since(t0));
  std::fflush(stdout);
  hold_until(hold);
  for (auto& w : workers) kill(w.pid, SIGTERM);
  for (auto& w : workers) waitpid(w.pid, nullptr, 0);
  fmt::print("{{\"closed\":{}}}\n", total.established);
  return total.established == conns ? 0 : 1;
}
