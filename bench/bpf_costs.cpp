// fs_bpf_costs: what each building block of the agent's BPF programs costs on
// this kernel. Every program of bpf/costs.bpf.c does one thing on the agent's
// busiest hook (inet_sock_set_state); each is attached alone while loopback
// connections churn, and its run time per run is read from the kernel's
// BPF statistics. Prints one JSON line per program.
//
//   fs_bpf_costs [--port P] [--seconds S]
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <memory>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "common.h"
#include "costs.skel.h"

namespace {

using namespace fsbench;

struct SkelFree {
  void operator()(costs_bpf* s) const { costs_bpf__destroy(s); }
};
struct LinkFree {
  void operator()(bpf_link* l) const { bpf_link__destroy(l); }
};

// Loopback connections for `secs` seconds: connect, one byte each way, close.
uint64_t churn(uint16_t port, double secs) {
  const int lfd = listen_on("127.0.0.1", port, 1024, false);
  std::atomic<bool> stop{false};
  std::thread server([&] {
    while (!stop.load()) {
      int c = accept(lfd, nullptr, nullptr);
      if (c < 0) continue;
      char b;
      if (recv(c, &b, 1, 0) == 1) send(c, &b, 1, MSG_NOSIGNAL);
      close(c);
    }
  });
  const Addr a = make_addr("127.0.0.1", port);
  uint64_t n = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (seconds_since(t0) < secs) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char b = 'x';
    if (connect(fd, a.sa(), a.len) == 0 && send(fd, &b, 1, MSG_NOSIGNAL) == 1 && recv(fd, &b, 1, 0) == 1) n++;
    close(fd);
  }
  stop.store(true);
  // Wake the server's accept with one last connection.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  connect(fd, a.sa(), a.len);
  close(fd);
  server.join();
  close(lfd);
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fs_bpf_costs: the cost of BPF building blocks on this kernel"};
  uint16_t port = 17450;
  double secs = 2;
  app.add_option("--port", port)->capture_default_str();
  app.add_option("--seconds", secs, "Churn per program")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  signal(SIGPIPE, SIG_IGN);

  std::unique_ptr<costs_bpf, SkelFree> skel(costs_bpf__open_and_load());
  if (!skel) {
    fmt::print(stderr, "fs_bpf_costs: cannot load bpf/costs.bpf.c: {}\n", std::strerror(errno));
    return 1;
  }
  // Keeps run-time statistics on while the fd is open.
  const int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (stats_fd < 0) {
    fmt::print(stderr, "fs_bpf_costs: cannot enable BPF statistics: {}\n", std::strerror(errno));
    return 1;
  }
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel->obj) {
    std::unique_ptr<bpf_link, LinkFree> link(bpf_program__attach(prog));
    if (!link) {
      fmt::print(stderr, "fs_bpf_costs: attach {}: {}\n", bpf_program__name(prog), std::strerror(errno));
      return 1;
    }
    const uint64_t conns = churn(port++, secs);
    link.reset();
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) != 0 || info.run_cnt == 0) {
      fmt::print(stderr, "fs_bpf_costs: no statistics for {}\n", bpf_program__name(prog));
      return 1;
    }
    fmt::print("{{\"program\":\"{}\",\"runs\":{},\"ns_per_run\":{:.1f},\"connections\":{}}}\n", bpf_program__name(prog),
               info.run_cnt, double(info.run_time_ns) / double(info.run_cnt), conns);
    std::fflush(stdout);
  }
  close(stats_fd);
  return 0;
}
