// Cgroup id -> path, and container id from a path, for flow attribution.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace flowscope {

// The container id a cgroup path names, for the layouts of docker, containerd
// (incl. Kubernetes), cri-o and podman, under cgroupfs or systemd drivers.
std::optional<std::string> container_id_from_cgroup(std::string_view path);

// The systemd unit a cgroup path names: its innermost "*.service", else its
// innermost "*.scope" unless that scope is a container's.
std::optional<std::string> unit_from_cgroup(std::string_view path);

struct CgroupInfo {
  std::string path;  // relative to the cgroup2 mount; "" when unknown
  std::optional<std::string> container_id;
  std::optional<std::string> unit;
};

// Resolves cgroup v2 ids (bpf_get_current_cgroup_id) to paths relative to the
// cgroup2 mount and the container they belong to, with a bounded cache: one
// lookup per new cgroup, none per record.
class CgroupResolver {
 public:
  // Finds the cgroup2 mount in /proc/self/mountinfo (empty root: no cgroup2).
  CgroupResolver();
  explicit CgroupResolver(std::string cgroup2_root);

  // Path "" when unknown (the cgroup is gone or no cgroup2 is mounted).
  const CgroupInfo& info(uint64_t id);
  const std::string& path(uint64_t id) { return info(id).path; }
  const std::string& root() const { return root_; }

 private:
  std::string lookup(uint64_t id) const;
  std::string root_;
  std::unordered_map<uint64_t, CgroupInfo> cache_;
};

// The cgroup2 mount point of this host, "" if none.
std::string find_cgroup2_mount();

}  // namespace flowscope
