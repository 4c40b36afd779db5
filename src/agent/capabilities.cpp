#include "agent/capabilities.h"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

namespace flowscope {

namespace {

// capget/capset directly: two calls do not justify a dependency on libcap.
int capget_(cap_user_header_t h, cap_user_data_t d) { return static_cast<int>(syscall(SYS_capget, h, d)); }
int capset_(cap_user_header_t h, const cap_user_data_t d) { return static_cast<int>(syscall(SYS_capset, h, d)); }

Result<void> write_sets(const CapSets& s) {
  __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct d[2]{};
  for (int i = 0; i < 2; i++) {
    d[i].effective = static_cast<uint32_t>(s.effective >> (32 * i));
    d[i].permitted = static_cast<uint32_t>(s.permitted >> (32 * i));
    d[i].inheritable = static_cast<uint32_t>(s.inheritable >> (32 * i));
  }
  if (capset_(&h, d) != 0) return fail_errno(errno, "capset: {}", std::strerror(errno));
  return {};
}

const char* const kNames[] = {
    "cap_chown",           "cap_dac_override",  "cap_dac_read_search", "cap_fowner",        "cap_fsetid",
    "cap_kill",            "cap_setgid",        "cap_setuid",          "cap_setpcap",       "cap_linux_immutable",
    "cap_net_bind_service", "cap_net_broadcast", "cap_net_admin",       "cap_net_raw",       "cap_ipc_lock",
    "cap_ipc_owner",       "cap_sys_module",    "cap_sys_rawio",       "cap_sys_chroot",    "cap_sys_ptrace",
    "cap_sys_pacct",       "cap_sys_admin",     "cap_sys_boot",        "cap_sys_nice",      "cap_sys_resource",
    "cap_sys_time",        "cap_sys_tty_config", "cap_mknod",          "cap_lease",         "cap_audit_write",
    "cap_audit_control",   "cap_setfcap",       "cap_mac_override",    "cap_mac_admin",     "cap_syslog",
    "cap_wake_alarm",      "cap_block_suspend", "cap_audit_read",      "cap_perfmon",       "cap_bpf",
    "cap_checkpoint_restore"};

}  // namespace

int last_capability() {
  std::ifstream in("/proc/sys/kernel/cap_last_cap");
  int last = 0;
  if (in >> last && last > 0 && last < 64) return last;
  return CAP_LAST_CAP;
}

Result<CapSets> current_capabilities() {
  __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct d[2]{};
  if (capget_(&h, d) != 0) return fail_errno(errno, "capget: {}", std::strerror(errno));
  CapSets s;
  for (int i = 0; i < 2; i++) {
    s.effective |= CapMask{d[i].effective} << (32 * i);
    s.permitted |= CapMask{d[i].permitted} << (32 * i);
    s.inheritable |= CapMask{d[i].inheritable} << (32 * i);
  }
  return s;
}

Result<void> set_effective_capabilities(CapMask effective) {
  auto cur = current_capabilities();
  if (!cur) return std::unexpected(cur.error());
  CapSets s = *cur;
  s.effective = effective & s.permitted;
  return write_sets(s);
}

Result<void> limit_capabilities(CapMask keep) {
  auto cur = current_capabilities();
  if (!cur) return std::unexpected(cur.error());
  keep &= cur->permitted;
  // The bounding set first: dropping from it needs CAP_SETPCAP, which the
  // capset below may remove.
  if (cur->effective & cap_bit(CAP_SETPCAP)) {
    for (int c = 0; c <= last_capability(); c++) {
      if (keep & cap_bit(c)) continue;
      if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL)
        return fail_errno(errno, "dropping {} from the bounding set: {}", capability_names(cap_bit(c)), std::strerror(errno));
    }
  }
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  return write_sets(CapSets{keep, keep, 0});
}

std::string capability_names(CapMask m) {
  std::string out;
  for (int c = 0; c < 64; c++) {
    if (!(m & cap_bit(c))) continue;
    if (!out.empty()) out += ',';
    out += c < int(std::size(kNames)) ? kNames[c] : "cap_" + std::to_string(c);
  }
  return out.empty() ? "none" : out;
}

}  // namespace flowscope
