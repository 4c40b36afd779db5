// The local addresses of one network namespace, as rtnetlink tells them: a
// dump at start, then every address added or removed as it happens
// (RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR). The agent turns them into
// ownership claims (agent/claims.h).
//
// The socket is opened inside the namespace the agent observes (a netlink
// socket stays bound to the namespace it was created in) and then read from
// the agent's own thread, non-blocking. If the kernel drops notifications
// (ENOBUFS: the socket's buffer overflowed) the watch dumps again and reports
// what vanished meanwhile as removed.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "net/ip16.h"

struct nlmsghdr;

namespace flowscope {

struct AddressChange {
  Ip16 addr{};
  bool added = true;  // false: removed
  bool operator==(const AddressChange&) const = default;
};

class AddressWatch {
 public:
  // netns_path: a path that opens the namespace (/var/run/netns/NAME,
  // /proc/PID/ns/net); unset: the caller's own.
  static Result<AddressWatch> open(const std::optional<std::string>& netns_path);

  int fd() const { return sock_.get(); }
  // Reads what is pending without blocking and appends the changes. A dump
  // in progress reports its addresses as added.
  Result<void> read(std::vector<AddressChange>& out);
  uint64_t resyncs() const { return resyncs_; }

 private:
  explicit AddressWatch(Fd sock) : sock_(std::move(sock)) {}
  Result<void> request_dump();
  void on_message(const ::nlmsghdr* h, std::vector<AddressChange>& out);

  Fd sock_;
  uint32_t seq_ = 0;
  bool dumping_ = false;
  std::set<Ip16> known_;      // present, as far as we know
  std::set<Ip16> dump_seen_;  // seen by the dump in progress
  bool pending_redump_ = false;  // lost notifications during a dump: dump again after it
  uint64_t resyncs_ = 0;
};

// Addresses that name no single host: loopback (127/8, ::1), IPv6
// link-local (fe80::/10), unspecified (0.0.0.0, ::).
bool address_is_local_only(const Ip16& a);

}  // namespace flowscope
