#include "agent/address_watch.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "kernel/system.h"

namespace flowscope {

bool address_is_local_only(const Ip16& a) {
  if (ip16_is_v4(a)) return a[12] == 127 || (a[12] == 0 && a[13] == 0 && a[14] == 0 && a[15] == 0);
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) return true;  // fe80::/10
  for (size_t i = 0; i < 15; i++)
    if (a[i]) return false;
  return a[15] <= 1;  // :: and ::1
}

Result<AddressWatch> AddressWatch::open(const std::optional<std::string>& netns_path) {
  Fd sock;
  int err = 0;
  auto make = [&] {
    Fd s(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE));
    if (!s) {
      err = errno;
      return;
    }
    sockaddr_nl sa{};
    sa.nl_family = AF_NETLINK;
    sa.nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      err = errno;
      return;
    }
    sock = std::move(s);
  };
  if (netns_path) {
    if (auto r = run_in_netns(*netns_path, make); !r) return std::unexpected(r.error());
  } else {
    make();
  }
  if (!sock) return fail_errno(err, "address watch: rtnetlink socket failed: {}", std::strerror(err));
  AddressWatch w(std::move(sock));
  if (auto r = w.request_dump(); !r) return std::unexpected(r.error());
  return w;
}

Result<void> AddressWatch::request_dump() {
  struct {
    nlmsghdr h;
    ifaddrmsg m;
  } req{};
  req.h.nlmsg_len = sizeof req;
  req.h.nlmsg_type = RTM_GETADDR;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.h.nlmsg_seq = ++seq_;
  req.m.ifa_family = AF_UNSPEC;
  sockaddr_nl to{};
  to.nl_family = AF_NETLINK;
  if (::sendto(sock_.get(), &req, sizeof req, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0)
    return fail_errno(errno, "address watch: address dump request failed: {}", std::strerror(errno));
  dumping_ = true;
  dump_seen_.clear();
  return {};
}

void AddressWatch::on_message(const nlmsghdr* h, std::vector<AddressChange>& out) {
  const bool of_dump = dumping_ && h->nlmsg_seq == seq_;
  if (h->nlmsg_type == NLMSG_DONE && of_dump) {
    dumping_ = false;
    // What the dump did not show is gone (notifications of it were lost).
    for (auto it = known_.begin(); it != known_.end();) {
      if (dump_seen_.contains(*it)) {
        ++it;
        continue;
      }
      out.push_back({*it, false});
      it = known_.erase(it);
    }
    return;
  }
  if (h->nlmsg_type == NLMSG_ERROR && of_dump) {
    const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
    if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(nlmsgerr)) && e->error)
      spdlog::warn("address watch: address dump failed: {}", std::strerror(-e->error));
    dumping_ = false;
    return;
  }
  if (h->nlmsg_type != RTM_NEWADDR && h->nlmsg_type != RTM_DELADDR) return;
  if (h->nlmsg_len < NLMSG_LENGTH(sizeof(ifaddrmsg))) return;
  const auto* m = static_cast<const ifaddrmsg*>(NLMSG_DATA(h));
  if (m->ifa_family != AF_INET && m->ifa_family != AF_INET6) return;
  const size_t alen = m->ifa_family == AF_INET ? 4 : 16;
  uint32_t flags = m->ifa_flags;
  const uint8_t *local = nullptr, *address = nullptr;
  int len = static_cast<int>(IFA_PAYLOAD(h));
  for (auto* a = IFA_RTA(m); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    const size_t plen = RTA_PAYLOAD(a);
    const auto* data = static_cast<const uint8_t*>(RTA_DATA(a));
    if (a->rta_type == IFA_LOCAL && plen == alen) local = data;
    if (a->rta_type == IFA_ADDRESS && plen == alen) address = data;
    if (a->rta_type == IFA_FLAGS && plen == 4) std::memcpy(&flags, data, 4);
  }
  // IFA_LOCAL is this end of a point-to-point link (IFA_ADDRESS the peer).
  const uint8_t* p = local ? local : address;
  if (!p) return;
  const Ip16 addr = m->ifa_family == AF_INET ? ip16_from_v4(p) : ip16_from_v6(p);
  if (address_is_local_only(addr)) return;
  // An address that failed duplicate detection is not ours.
  const bool present = h->nlmsg_type == RTM_NEWADDR && !(flags & IFA_F_DADFAILED);
  if (of_dump && present) dump_seen_.insert(addr);
  if (present) {
    if (known_.insert(addr).second) out.push_back({addr, true});
  } else if (known_.erase(addr)) {
    out.push_back({addr, false});
  }
}

Result<void> AddressWatch::read(std::vector<AddressChange>& out) {
  alignas(nlmsghdr) char buf[32768];
  bool redump = false;
  for (;;) {
    const ssize_t n = ::recv(sock_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == ENOBUFS) {  // notifications lost: the next dump tells what is true
        redump = true;
        continue;
      }
      return fail_errno(errno, "address watch: reading rtnetlink failed: {}", std::strerror(errno));
    }
    // NLMSG_OK/NLMSG_NEXT, unsigned throughout (the macros compare the
    // kernel's u32 length with an int).
    size_t left = static_cast<size_t>(n);
    for (auto* h = reinterpret_cast<const nlmsghdr*>(buf);
         left >= sizeof(nlmsghdr) && h->nlmsg_len >= sizeof(nlmsghdr) && h->nlmsg_len <= left;) {
      on_message(h, out);
      const size_t step = NLMSG_ALIGN(h->nlmsg_len);
      if (step >= left) break;
      left -= step;
      h = reinterpret_cast<const nlmsghdr*>(reinterpret_cast<const char*>(h) + step);
    }
  }
  // One dump at a time per socket (the kernel refuses a second one).
  if (redump && !dumping_) {
    resyncs_++;
    spdlog::warn("address watch: address notifications were lost; reading the addresses again");
    return request_dump();
  }
  if (redump) pending_redump_ = true;
  if (pending_redump_ && !dumping_) {
    pending_redump_ = false;
    resyncs_++;
    return request_dump();
  }
  return {};
}

}  // namespace flowscope
