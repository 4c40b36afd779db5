// The agent's kernel ABI (bpf/agent.h) as seen from C++: layout checks so a
// change on one side cannot silently break the other.
#pragma once

#include <cstddef>

#include "agent.h"

static_assert(sizeof(fs_tuple) == 40);
static_assert(offsetof(fs_tuple, local_port) == 32);
static_assert(sizeof(fs_drop_slot) == 8);
static_assert(offsetof(fs_flow, comm) == 88);
static_assert(offsetof(fs_flow, tuple) == 104);
static_assert(offsetof(fs_flow, direction) == 144);
static_assert(offsetof(fs_flow, flags) == 148);
static_assert(offsetof(fs_flow, drops) == 160);
static_assert(sizeof(fs_flow) == 160 + 8 * FS_DROP_SLOTS);
static_assert(sizeof(fs_tuple_key) == 36);
static_assert(sizeof(fs_flow) % 8 == 0, "ring buffer records must not need padding");
