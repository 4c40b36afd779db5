// The agent's kernel ABI (bpf/agent.h, whose layout checks both compilers run)
// turned into the neutral Flow. Only the agent includes this: everything
// downstream of it sees flows, never kernel records.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <agent.h>  // bpf/agent.h (angle brackets: not agent/agent.h): the structs shared with agent.bpf.c
#include "flow/flow.h"

namespace flowscope {

using DropReasonNames = std::map<int64_t, std::string>;

// Pure decoding of a kernel record: payload bytes (SYN/FIN taken out), close
// reason, addresses, times. Cgroup path and container id are left unset (the
// cgroup resolver fills them).
Flow decode_flow(const fs_flow& k, int64_t mono_to_real_ns, const DropReasonNames& names);

// The close reason implied by the kernel's flags, last state and socket error.
CloseReason close_reason(const fs_flow& k);

}  // namespace flowscope
