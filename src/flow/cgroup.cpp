#include "flow/cgroup.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "base/fd.h"

namespace flowscope {
namespace {

bool is_hex_id(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

constexpr size_t kMaxCached = 16384;

}  // namespace

std::optional<std::string> container_id_from_cgroup(std::string_view path) {
  // Walk components from the deepest: a nested container's own id wins.
  static constexpr std::array<std::string_view, 5> prefixes = {"docker-", "cri-containerd-", "crio-", "libpod-",
                                                              "containerd-"};
  while (!path.empty()) {
    size_t slash = path.rfind('/');
    std::string_view comp = slash == std::string_view::npos ? path : path.substr(slash + 1);
    path = slash == std::string_view::npos ? std::string_view{} : path.substr(0, slash);
    if (comp.ends_with(".scope")) comp.remove_suffix(6);
    for (auto p : prefixes) {
      if (comp.starts_with(p)) {
        comp.remove_prefix(p.size());
        break;
      }
    }
    // "crio-conmon-<id>" and "libpod-conmon-<id>" are the monitors, not the
    // containers: what is left is not a bare id, so they are skipped.
    if (is_hex_id(comp)) return std::string(comp);
  }
  return std::nullopt;
}

std::optional<std::string> unit_from_cgroup(std::string_view path) {
  std::optional<std::string_view> scope;
  while (!path.empty()) {
    size_t slash = path.rfind('/');
    std::string_view comp = slash == std::string_view::npos ? path : path.substr(slash + 1);
    path = slash == std::string_view::npos ? std::string_view{} : path.substr(0, slash);
    if (comp.ends_with(".service") && comp.size() > 8) return std::string(comp);
    if (!scope && comp.ends_with(".scope") && comp.size() > 6) scope = comp;
  }
  // A scope that is a container's names no unit a person chose.
  if (scope && !container_id_from_cgroup(*scope)) return std::string(*scope);
  return std::nullopt;
}

std::string find_cgroup2_mount() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // ... mount_point ... - fstype source options
    size_t sep = line.find(" - ");
    if (sep == std::string::npos) continue;
    std::istringstream post(line.substr(sep + 3));
    std::string fstype;
    post >> fstype;
    if (fstype != "cgroup2") continue;
    std::istringstream pre(line.substr(0, sep));
    std::string id, parent, devno, root, mnt;
    pre >> id >> parent >> devno >> root >> mnt;
    if (root == "/") return mnt;
  }
  return {};
}

CgroupResolver::CgroupResolver() : CgroupResolver(find_cgroup2_mount()) {}
CgroupResolver::CgroupResolver(std::string cgroup2_root) : root_(std::move(cgroup2_root)) {}

const CgroupInfo& CgroupResolver::info(uint64_t id) {
  auto it = cache_.find(id);
  if (it != cache_.end()) return it->second;
  if (cache_.size() >= kMaxCached) cache_.clear();
  CgroupInfo ci{lookup(id), std::nullopt, std::nullopt};
  ci.container_id = container_id_from_cgroup(ci.path);
  ci.unit = unit_from_cgroup(ci.path);
  return cache_.emplace(id, std::move(ci)).first->second;
}

namespace {

// nftw has no user pointer: the walk is single-threaded and short-lived.
thread_local uint64_t t_want;
thread_local std::string t_found;

int visit(const char* p, const struct stat* st, int type, FTW*) {
  if (type == FTW_D && st->st_ino == t_want) {
    t_found = p;
    return 1;
  }
  return 0;
}

}  // namespace

std::string CgroupResolver::lookup(uint64_t id) const {
  if (root_.empty() || id == 0) return {};
  // cgroup2's id is the kernfs inode: a file handle of type FILEID_KERNFS
  // opens it directly, so no walk of the hierarchy is needed.
  Fd mnt(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  std::string full;
  if (mnt) {
    struct {
      file_handle fh;
      uint64_t id;
    } h{};
    h.fh.handle_bytes = sizeof(uint64_t);
    h.fh.handle_type = 0xfe;  // FILEID_KERNFS
    std::memcpy(h.fh.f_handle, &id, sizeof(id));
    Fd cg(::open_by_handle_at(mnt.get(), &h.fh, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (cg) {
      std::array<char, 4096> buf{};
      std::string link = "/proc/self/fd/" + std::to_string(cg.get());
      ssize_t n = ::readlink(link.c_str(), buf.data(), buf.size() - 1);
      if (n > 0) full.assign(buf.data(), static_cast<size_t>(n));
    }
  }
  if (full.empty()) {
    t_want = id;
    t_found.clear();
    nftw(root_.c_str(), visit, 32, FTW_PHYS | FTW_MOUNT);
    full = t_found;
  }
  if (full.empty()) return {};
  if (full.rfind(root_, 0) == 0) full.erase(0, root_.size());
  if (full.empty()) full = "/";
  return full;
}

}  // namespace flowscope
