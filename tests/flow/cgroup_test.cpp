#include <gtest/gtest.h>

#include "flow/cgroup.h"

namespace flowscope {
namespace {

const std::string kId = "4c0e2c4d3f0a9b8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706";

TEST(ContainerId, Layouts) {
  EXPECT_EQ(container_id_from_cgroup("/system.slice/docker-" + kId + ".scope"), kId);
  EXPECT_EQ(container_id_from_cgroup("/docker/" + kId), kId);
  EXPECT_EQ(container_id_from_cgroup("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234.slice/cri-containerd-" + kId + ".scope"), kId);
  EXPECT_EQ(container_id_from_cgroup("/kubepods/burstable/pod5d2c/" + kId), kId);
  EXPECT_EQ(container_id_from_cgroup("/kubepods.slice/kubepods-pod1.slice/crio-" + kId + ".scope"), kId);
  EXPECT_EQ(container_id_from_cgroup("/machine.slice/libpod-" + kId + ".scope/container"), kId);
  EXPECT_EQ(container_id_from_cgroup("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + kId + ".scope"), kId);
}

TEST(ContainerId, NotContainers) {
  EXPECT_EQ(container_id_from_cgroup("/"), std::nullopt);
  EXPECT_EQ(container_id_from_cgroup(""), std::nullopt);
  EXPECT_EQ(container_id_from_cgroup("/user.slice/user-1000.slice/session-2.scope"), std::nullopt);
  EXPECT_EQ(container_id_from_cgroup("/machine.slice/crio-conmon-" + kId + ".scope"), std::nullopt);
  EXPECT_EQ(container_id_from_cgroup("/docker/" + kId.substr(0, 63)), std::nullopt);
  EXPECT_EQ(container_id_from_cgroup("/docker/" + kId + "0"), std::nullopt);
  std::string upper = kId;
  upper[0] = 'A';
  EXPECT_EQ(container_id_from_cgroup("/docker/" + upper), std::nullopt);
}

TEST(Unit, FromCgroupPaths) {
  EXPECT_EQ(unit_from_cgroup("/system.slice/nginx.service"), "nginx.service");
  EXPECT_EQ(unit_from_cgroup("/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-1234.scope"),
            "user@1000.service");
  EXPECT_EQ(unit_from_cgroup("/user.slice/user-1000.slice/session-2.scope"), "session-2.scope");
  EXPECT_EQ(unit_from_cgroup("/system.slice/docker-" + kId + ".scope"), std::nullopt);  // a container, not a unit
  EXPECT_EQ(unit_from_cgroup("/system.slice/containerd.service/kubepods-pod1.slice/cri-containerd-" + kId + ".scope"),
            "containerd.service");
  EXPECT_EQ(unit_from_cgroup("/"), std::nullopt);
  EXPECT_EQ(unit_from_cgroup("/docker/" + kId), std::nullopt);
  EXPECT_EQ(unit_from_cgroup("/.service"), std::nullopt);
}

TEST(ContainerId, DeepestWins) {
  const std::string inner = std::string(64, 'b');
  EXPECT_EQ(container_id_from_cgroup("/docker/" + kId + "/docker/" + inner), inner);
}

TEST(CgroupResolver, UnknownIdIsEmpty) {
  CgroupResolver r("");
  EXPECT_EQ(r.path(12345), "");
}

}  // namespace
}  // namespace flowscope
