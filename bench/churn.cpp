// fs_churn: short TCP connections as fast as the machine allows.
//
//   fs_churn server --addr A --port P [--threads N] [--size B]
//   fs_churn client --addr A[,A2,...] --port P [--threads N] [--duration S] [--size B]
//
// One connection: the client connects, sends B bytes, the server reads them,
// answers B bytes and closes first (so TIME_WAIT stays on the server side and
// the client's ephemeral ports are free again at once); the client reads to
// EOF and closes. Every connection is two flows (one per end). The client
// prints one JSON line: connections completed, errors, seconds, connections/s.
#include <netinet/tcp.h>
#include <poll.h>

#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "common.h"

namespace {

using namespace fsbench;

struct Opts {
  std::string addr = "127.0.0.1";
  uint16_t port = 0;
  int threads = 2;
  double duration = 5;
  size_t size = 64;
};

bool read_n(int fd, char* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = recv(fd, buf + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

bool write_n(int fd, const char* buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = send(fd, buf + done, n - done, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    done += static_cast<size_t>(w);
  }
  return true;
}

int run_server(const Opts& o) {
  std::vector<int> fds;
  // One SO_REUSEPORT listener per thread: the kernel spreads accepts.
  for (int i = 0; i < o.threads; i++) fds.push_back(listen_on(o.addr, o.port, 4096, true));
  std::vector<std::thread> ts;
  for (int i = 0; i < o.threads; i++) {
    ts.emplace_back([&o, lfd = fds[i]] {
      std::vector<char> buf(o.size, 'r');
      for (;;) {
        int c = accept(lfd, nullptr, nullptr);
        if (c < 0) {
          if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) continue;
          fmt::print(stderr, "accept: {}\n", std::strerror(errno));
          return;
        }
        if (read_n(c, buf.data(), o.size)) write_n(c, buf.data(), o.size);
        close(c);
      }
    });
  }
  ready("churn-server");
  for (auto& t : ts) t.join();
  return 1;
}

int run_client(const Opts& o) {
  install_signals();
  std::vector<Addr> dests;
  size_t start = 0;
  while (start <= o.addr.size()) {
    size_t end = o.addr.find(',', start);
    if (end == std::string::npos) end = o.addr.size();
    if (end > start) dests.push_back(make_addr(o.addr.substr(start, end - start), o.port));
    start = end + 1;
  }
  std::atomic<uint64_t> done{0}, errors{0};
  std::atomic<int> last_errno{0};
  const auto t0 = std::chrono::steady_clock::now();
  const auto until = t0 + std::chrono::duration<double>(o.duration);
  std::vector<std::thread> ts;
  for (int i = 0; i < o.threads; i++) {
    ts.emplace_back([&, i] {
      std::vector<char> req(o.size, 'q'), resp(o.size + 1);
      uint64_t n = 0, e = 0;
      size_t k = static_cast<size_t>(i);
      while (!g_stop.load(std::memory_order_relaxed)) {
        // Check the clock every 16 connections: cheap enough, precise enough.
        if ((n & 15) == 0 && std::chrono::steady_clock::now() >= until) break;
        const Addr& d = dests[k++ % dests.size()];
        int fd = socket(d.family(), SOCK_STREAM, 0);
        if (fd < 0) {
          e++;
          last_errno = errno;
          continue;
        }
        bool ok = connect(fd, d.sa(), d.len) == 0 && write_n(fd, req.data(), o.size) && read_n(fd, resp.data(), o.size);
        if (ok) {
          // Wait for the server's FIN, so the server closes first.
          char c;
          ok = recv(fd, &c, 1, 0) == 0;
        }
        if (!ok) {
          e++;
          last_errno = errno;
          if (errno == EADDRNOTAVAIL) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        } else {
          n++;
        }
        close(fd);
      }
      done += n;
      errors += e;
    });
  }
  for (auto& t : ts) t.join();
  const double secs = seconds_since(t0);
  fmt::print("{{\"connections\":{},\"errors\":{},\"last_error\":\"{}\",\"seconds\":{:.3f},\"cps\":{:.1f}}}\n", done.load(),
             errors.load(), errors.load() ? std::strerror(last_errno.load()) : "", secs, double(done.load()) / secs);
  return done.load() > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fs_churn: short TCP connections as fast as possible"};
  app.require_subcommand(1);
  Opts o;
  auto* srv = app.add_subcommand("server", "accept, answer, close");
  auto* cli = app.add_subcommand("client", "connect, send, receive, close; in a loop");
  for (auto* s : {srv, cli}) {
    s->add_option("--addr", o.addr, "Address (client: comma-separated list, used round-robin)");
    s->add_option("--port", o.port)->required();
    s->add_option("--threads", o.threads)->check(CLI::Range(1, 1024))->capture_default_str();
    s->add_option("--size", o.size, "Request and response bytes")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  }
  cli->add_option("--duration", o.duration, "Seconds")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return srv->parsed() ? run_server(o) : run_client(o);
}
