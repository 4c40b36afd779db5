// pcap-filter expressions compiled by libpcap into classic BPF for raw IP
// packets (DLT_RAW: the program starts at the IP header), ready for the
// interpreter in bpf/cbpf.h.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "trace/trace_abi.h"

namespace flowscope::trace {

// Empty expression: empty program (everything matches). A bad expression
// fails with libpcap's message and the expression.
Result<std::vector<fs_cbpf_insn>> compile_filter(const std::string& expr);

// Runs a program with the same interpreter the kernel runs (host build of
// bpf/cbpf.h). caplen <= FS_CBPF_PKT_MAX. Returns the program's return value.
uint32_t run_filter(const std::vector<fs_cbpf_insn>& prog, const uint8_t* pkt, uint32_t caplen, uint32_t wirelen);

// An upper bound on the bytes (from the IP header) that any packet load of
// `prog` can reach, at most FS_CBPF_PKT_MAX: the kernel copies no more for the
// filter. Copying min(captured, bound) bytes gives the same verdict as
// copying min(captured, FS_CBPF_PKT_MAX), since a load either ends inside the
// bound or past the captured bytes in both cases. Indirect loads are bounded
// through what X can hold (4*(P[k]&0xf) <= 60, constants, masked and shifted
// values); an X computed any other way makes the bound FS_CBPF_PKT_MAX.
uint32_t filter_bytes_needed(const std::vector<fs_cbpf_insn>& prog);

// "VALUE[/MASK]" (decimal or 0x hex) -> value, mask.
Result<std::pair<uint32_t, uint32_t>> parse_mark(const std::string& spec);

}  // namespace flowscope::trace
