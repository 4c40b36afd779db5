// Socket helpers shared by the IPFIX inputs: listening sockets, peer
// addresses, the allow-list, and a wake-up handle for stopping a thread
// that waits in poll()/epoll_wait().
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/fd.h"
#include "net/cidr.h"

namespace flowscope {

struct Endpoint {
  Ip16 ip{};
  uint16_t port = 0;
};

Endpoint endpoint_of(const sockaddr_storage& ss);

// A socket of `type` (SOCK_DGRAM, SOCK_STREAM) bound to host:port; "::"
// takes IPv4 peers too.
Result<Fd> bind_socket(const std::string& host, uint16_t port, int type);
uint16_t bound_port(int fd);

// Exporters allowed by the list; an empty list allows any.
bool allowed(const std::vector<Cidr>& allow, const Ip16& ip);

// An eventfd: stop() makes it readable, so a thread polling it with its
// sockets wakes at once instead of at its next timeout.
class Waker {
 public:
  static Result<Waker> create();
  int fd() const { return fd_.get(); }
  void wake() const;

 private:
  Fd fd_;
};

}  // namespace flowscope
