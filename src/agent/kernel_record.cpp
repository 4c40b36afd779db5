#include "agent/kernel_record.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace flowscope {

CloseReason close_reason(const fs_flow& k) {
  if (k.kind == FS_KIND_INTERIM) return CloseReason::Active;
  const bool connecting = k.last_state == TCP_SYN_SENT;
  if ((k.flags & FS_F_RST_RECEIVED) || k.sk_err == ECONNREFUSED || k.sk_err == ECONNRESET || k.sk_err == EPIPE) {
    return connecting || k.sk_err == ECONNREFUSED ? CloseReason::Refused : CloseReason::RstReceived;
  }
  if (k.flags & FS_F_RST_SENT) return CloseReason::RstSent;
  // A connect that never completed ended by its SYN timer (or was abandoned).
  if (k.sk_err == ETIMEDOUT || connecting) return CloseReason::Timeout;
  // An abort (close with unread data, SO_LINGER 0, shutdown by the owner)
  // moves the socket to CLOSE *before* the kernel sends the reset, so the
  // reset tracepoint comes too late for the record: the state it left from
  // says it. From these states only an abort leads straight to CLOSE.
  switch (k.last_state) {
    case TCP_ESTABLISHED:
    case TCP_CLOSE_WAIT:
    case TCP_SYN_RECV:
    case TCP_FIN_WAIT1:
      return CloseReason::RstSent;
    default:
      break;
  }
  return CloseReason::Fin;
}

namespace {

bool is_v4_mapped(const uint8_t* a) {
  static constexpr uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a, prefix, 12) == 0;
}

}  // namespace

Flow decode_flow(const fs_flow& k, int64_t mono_to_real_ns, const DropReasonNames& names) {
  Flow r;
  r.exporter = "local";
  r.bidirectional = true;
  r.cumulative = true;
  r.interim = k.kind == FS_KIND_INTERIM;
  r.preexisting = k.flags & FS_F_PREEXISTING;
  r.start_ns = static_cast<uint64_t>(static_cast<int64_t>(k.start_ns) + mono_to_real_ns);
  r.end_ns = static_cast<uint64_t>(static_cast<int64_t>(k.end_ns) + mono_to_real_ns);

  const uint8_t* la = k.tuple.local_addr;
  const uint8_t* ra = k.tuple.remote_addr;
  // IPv4-mapped IPv6 (a v4 peer on a dual-stack socket) is reported as IPv4.
  if (k.tuple.family == AF_INET6 && !(is_v4_mapped(la) && is_v4_mapped(ra))) {
    r.src_ip = ip16_from_v6(la);
    r.dst_ip = ip16_from_v6(ra);
  } else {
    const size_t off = k.tuple.family == AF_INET6 ? 12 : 0;
    r.src_ip = ip16_from_v4(la + off);
    r.dst_ip = ip16_from_v4(ra + off);
  }
  r.src_port = k.tuple.local_port;
  r.dst_port = k.tuple.remote_port;
  r.protocol = 6;

  r.direction = k.direction == FS_DIR_OUTBOUND  ? Direction::Outbound
                : k.direction == FS_DIR_INBOUND ? Direction::Inbound
                                                : Direction::Unknown;

  // bytes_acked / bytes_received count sequence space: take out our SYN (active
  // open) and FIN when acknowledged, and the peer's FIN when received.
  uint64_t seq_overhead = ((k.flags & FS_F_SYN_ACKED) ? 1 : 0) + ((k.flags & FS_F_FIN_ACKED) ? 1 : 0);
  r.bytes = k.bytes_acked > seq_overhead ? k.bytes_acked - seq_overhead : 0;
  uint64_t fin_in = (k.flags & FS_F_FIN_RECEIVED) ? 1 : 0;
  r.rev_bytes = k.bytes_received > fin_in ? k.bytes_received - fin_in : 0;
  r.packets = k.segs_out;
  r.rev_packets = k.segs_in;
  r.retrans = k.total_retrans;
  r.srtt_us = k.srtt_us >> 3;  // stored x8 by the kernel
  // tcp_info's tcpi_rttvar; without an RTT sample the kernel's initial value means nothing.
  r.rttvar_us = k.srtt_us ? k.mdev_us >> 2 : 0;
  r.close = close_reason(k);

  if (k.pid) {
    r.pid = k.pid;
    r.comm.emplace(k.comm, strnlen(k.comm, sizeof(k.comm)));
    if (k.exe[0]) r.exe.emplace(k.exe, strnlen(k.exe, sizeof(k.exe)));
  }
  if (k.cgroup_id) r.cgroup_id = k.cgroup_id;
  if (k.netns) r.netns = k.netns;

  for (const auto& slot : k.drops) {
    if (slot.reason == 0 || slot.count == 0) continue;
    const int64_t reason = static_cast<int64_t>(slot.reason) - 1;
    auto it = names.find(reason);
    r.drops.push_back({it != names.end() ? it->second : "reason_" + std::to_string(reason), slot.count});
  }
  if (k.drops_other) r.drops.push_back({"other", k.drops_other});
  return r;
}

}  // namespace flowscope
