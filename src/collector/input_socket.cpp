#include "collector/input_socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace flowscope {

Endpoint endpoint_of(const sockaddr_storage& ss) {
  Endpoint e;
  if (ss.ss_family == AF_INET) {
    const auto* s4 = reinterpret_cast<const sockaddr_in*>(&ss);
    e.ip = ip16_from_v4(reinterpret_cast<const uint8_t*>(&s4->sin_addr));
    e.port = ntohs(s4->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    e.ip = ip16_from_v6(reinterpret_cast<const uint8_t*>(&s6->sin6_addr));
    e.port = ntohs(s6->sin6_port);
  }
  return e;
}

namespace {

Result<std::pair<sockaddr_storage, socklen_t>> bind_addr(const std::string& host, uint16_t port) {
  sockaddr_storage ss{};
  auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    return std::pair{ss, socklen_t(sizeof(sockaddr_in))};
  }
  if (inet_pton(AF_INET6, host.c_str(), &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    return std::pair{ss, socklen_t(sizeof(sockaddr_in6))};
  }
  return fail("bad listen address '{}' (expected an IPv4 or IPv6 address)", host);
}

}  // namespace

Result<Fd> bind_socket(const std::string& host, uint16_t port, int type) {
  auto a = bind_addr(host, port);
  if (!a) return std::unexpected(a.error());
  Fd fd(::socket(a->first.ss_family, type | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno(errno, "socket: {}", std::strerror(errno));
  int one = 1, zero = 0;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (a->first.ss_family == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a->first), a->second) != 0)
    return fail_errno(errno, "IPFIX {}: cannot bind {} port {}: {}", type == SOCK_DGRAM ? "UDP" : "TCP", host, port,
                      std::strerror(errno));
  return fd;
}

uint16_t bound_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  return endpoint_of(ss).port;
}

bool allowed(const std::vector<Cidr>& allow, const Ip16& ip) {
  if (allow.empty()) return true;
  for (const auto& c : allow)
    if (c.contains(ip)) return true;
  return false;
}

Result<Waker> Waker::create() {
  Waker w;
  w.fd_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!w.fd_) return fail_errno(errno, "eventfd: {}", std::strerror(errno));
  return w;
}

void Waker::wake() const {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(fd_.get(), &one, sizeof(one));
}

}  // namespace flowscope
