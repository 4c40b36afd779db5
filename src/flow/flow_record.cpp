#include "flow/flow_record.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace flowscope {

const char* to_string(Direction d) {
  switch (d) {
    case Direction::Outbound: return "outbound";
    case Direction::Inbound: return "inbound";
    case Direction::Unknown: break;
  }
  return "unknown";
}

const char* to_string(CloseReason c) {
  switch (c) {
    case CloseReason::Active: return "active";
    case CloseReason::Fin: return "fin";
    case CloseReason::RstSent: return "rst_sent";
    case CloseReason::RstReceived: return "rst_received";
    case CloseReason::Refused: return "refused";
    case CloseReason::Timeout: return "timeout";
  }
  return "fin";
}

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

std::string format_addr(int family, const uint8_t* a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family == 4) {
    // Per record at high rates: dotted quads without inet_ntop's generality.
    char* p = buf;
    for (int i = 0; i < 4; i++) {
      unsigned v = a[i];
      if (v >= 100) *p++ = static_cast<char>('0' + v / 100);
      if (v >= 10) *p++ = static_cast<char>('0' + v / 10 % 10);
      *p++ = static_cast<char>('0' + v % 10);
      if (i < 3) *p++ = '.';
    }
    return std::string(buf, p);
  }
  inet_ntop(AF_INET6, a, buf, sizeof(buf));
  return buf;
}

}  // namespace

FlowRecord decode_flow(const fs_flow& k, int64_t mono_to_real_ns, const DropReasonNames& names) {
  FlowRecord r;
  r.interim = k.kind == FS_KIND_INTERIM;
  r.preexisting = k.flags & FS_F_PREEXISTING;
  r.start_ns = static_cast<uint64_t>(static_cast<int64_t>(k.start_ns) + mono_to_real_ns);
  r.end_ns = static_cast<uint64_t>(static_cast<int64_t>(k.end_ns) + mono_to_real_ns);

  const uint8_t* la = k.tuple.local_addr;
  const uint8_t* ra = k.tuple.remote_addr;
  if (k.tuple.family == AF_INET6 && !(is_v4_mapped(la) && is_v4_mapped(ra))) {
    r.family = 6;
    std::copy_n(la, 16, r.local_ip.begin());
    std::copy_n(ra, 16, r.remote_ip.begin());
  } else {
    r.family = 4;
    const size_t off = k.tuple.family == AF_INET6 ? 12 : 0;
    std::copy_n(la + off, 4, r.local_ip.begin());
    std::copy_n(ra + off, 4, r.remote_ip.begin());
  }
  r.local_addr = format_addr(r.family, r.local_ip.data());
  r.remote_addr = format_addr(r.family, r.remote_ip.data());
  r.local_port = k.tuple.local_port;
  r.remote_port = k.tuple.remote_port;

  r.direction = k.direction == FS_DIR_OUTBOUND  ? Direction::Outbound
                : k.direction == FS_DIR_INBOUND ? Direction::Inbound
                                                : Direction::Unknown;

  // bytes_acked / bytes_received count sequence space: take out our SYN (active
  // open) and FIN when acknowledged, and the peer's FIN when received.
  uint64_t seq_overhead = ((k.flags & FS_F_SYN_ACKED) ? 1 : 0) + ((k.flags & FS_F_FIN_ACKED) ? 1 : 0);
  r.bytes_sent = k.bytes_acked > seq_overhead ? k.bytes_acked - seq_overhead : 0;
  uint64_t fin_in = (k.flags & FS_F_FIN_RECEIVED) ? 1 : 0;
  r.bytes_received = k.bytes_received > fin_in ? k.bytes_received - fin_in : 0;
  r.segs_sent = k.segs_out;
  r.segs_received = k.segs_in;
  r.retrans_segs = k.total_retrans;
  r.srtt_us = k.srtt_us >> 3;   // stored x8 by the kernel
  // tcp_info's tcpi_rttvar; without an RTT sample the kernel's initial value means nothing.
  r.rttvar_us = k.srtt_us ? k.mdev_us >> 2 : 0;
  r.close = close_reason(k);

  r.pid = k.pid;
  r.comm.assign(k.comm, strnlen(k.comm, sizeof(k.comm)));
  r.cgroup_id = k.cgroup_id;
  r.netns = k.netns;

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
