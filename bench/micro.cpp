// Micro-benchmarks of the agent's user-space hot path (Google Benchmark):
// decoding a kernel record and formatting it as a JSON line, per record.
#include <sys/socket.h>

#include <cstring>
#include <string>

#include <benchmark/benchmark.h>

#include "agent/kernel_record.h"
#include "flow/json.h"

namespace {

using namespace flowscope;

fs_flow sample_record() {
  fs_flow k{};
  k.sk = 0xffff888012345678ull;
  k.start_ns = 1'000'000'000;
  k.end_ns = 1'000'250'000;
  k.bytes_acked = 10002;
  k.bytes_received = 501;
  k.segs_out = 12;
  k.segs_in = 9;
  k.srtt_us = 8 * 35;
  k.mdev_us = 4 * 10;
  k.netns = 4026531840u;
  k.pid = 4242;
  std::strncpy(k.comm, "fs_churn", sizeof(k.comm));
  const uint8_t l[4] = {127, 0, 0, 1}, r[4] = {127, 0, 0, 2};
  std::memcpy(k.tuple.local_addr, l, 4);
  std::memcpy(k.tuple.remote_addr, r, 4);
  k.tuple.local_port = 40000;
  k.tuple.remote_port = 5201;
  k.tuple.family = AF_INET;
  k.direction = 1;
  k.last_state = 9;
  k.flags = FS_F_ESTABLISHED | FS_F_FIN_SENT | FS_F_FIN_ACKED | FS_F_SYN_ACKED | FS_F_FIN_RECEIVED | FS_F_ATTRIBUTED;
  return k;
}

void BM_decode_flow(benchmark::State& st) {
  const fs_flow k = sample_record();
  const DropReasonNames names{{2, "NOT_SPECIFIED"}, {6, "NETFILTER_DROP"}};
  for (auto _ : st) {
    Flow r = decode_flow(k, 1'700'000'000'000'000'000ll, names);
    benchmark::DoNotOptimize(r);
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_decode_flow);

void BM_json_line(benchmark::State& st) {
  const Flow r = decode_flow(sample_record(), 1'700'000'000'000'000'000ll, {});
  std::string out;
  out.reserve(1 << 16);
  for (auto _ : st) {
    out.clear();
    append_json_line(out, r);
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_json_line);

void BM_decode_and_json(benchmark::State& st) {
  const fs_flow k = sample_record();
  const DropReasonNames names;
  std::string out;
  out.reserve(1 << 16);
  for (auto _ : st) {
    out.clear();
    append_json_line(out, decode_flow(k, 1'700'000'000'000'000'000ll, names));
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_decode_and_json);

}  // namespace

BENCHMARK_MAIN();
