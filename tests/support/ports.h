// Loopback ports for tests that start their own servers.
#pragma once

#include <sys/socket.h>

#include <cstdint>

namespace fstest {

// A 127.0.0.1 port of the given socket type (SOCK_STREAM, SOCK_DGRAM) that
// nobody uses right now: bound and released.
uint16_t free_loopback_port(int type = SOCK_STREAM);

}  // namespace fstest
