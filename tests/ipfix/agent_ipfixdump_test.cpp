// The real agent's IPFIX export, over UDP and TCP, read by libfixbuf's
// ipfixDump: every flowscope element must be named with its type in every
// template the agent sent (at start and, over UDP, at each refresh) and in the
// agent's flow records. A loopback receiver keeps the bytes as they arrived:
// over TCP the stream is an IPFIX file as it is, over UDP the datagrams one
// after another. Needs root (BPF).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <regex>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "ipfix/ie.h"
#include "ipfixdump.h"
#include "support/agent_runner.h"
#include "support/ports.h"
#include "support/process.h"

using namespace fstest;
using namespace std::chrono_literals;

namespace {

// Receives IPFIX on 127.0.0.1 (port chosen by the kernel) and keeps every
// byte; counts the messages that carry a template set (set id 2).
class Receiver {
 public:
  explicit Receiver(bool tcp) : tcp_(tcp) {
    fd_ = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || (tcp && listen(fd_, 4) != 0))
      throw std::runtime_error("cannot bind the receiver");
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    th_ = std::thread([this] { loop(); });
  }
  ~Receiver() {
    stop_ = true;
    th_.join();
    close(fd_);
  }
  uint16_t port() const { return port_; }
  std::string bytes() const {
    std::lock_guard lk(mu_);
    return bytes_;
  }
  // UDP messages carrying a template set.
  size_t template_messages() const {
    std::lock_guard lk(mu_);
    return template_msgs_;
  }
  // Everything the sender sent is here. Call after the sender exited: over
  // TCP the stream has ended; over UDP (loopback delivers within sendto) no
  // datagram waits in the socket. The thread reads under the lock, so nothing
  // is between the two.
  bool drained() const {
    std::lock_guard lk(mu_);
    if (tcp_) return eof_;
    int pending = 0;
    ioctl(fd_, FIONREAD, &pending);
    return pending == 0;
  }

 private:
  void loop() {
    int conn = -1;
    std::vector<char> buf(1 << 16);
    while (!stop_) {
      pollfd p{conn >= 0 ? conn : fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      std::lock_guard lk(mu_);
      if (tcp_ && conn < 0) {
        conn = accept(fd_, nullptr, nullptr);
        continue;
      }
      const ssize_t n = recv(tcp_ ? conn : fd_, buf.data(), buf.size(), MSG_DONTWAIT);
      if (n <= 0) {
        if (tcp_ && n == 0) {
          close(conn);
          conn = -1;
          eof_ = true;
        }
        continue;
      }
      // The agent's template messages start with the options template (set
      // 3) and carry the flow templates (set 2) later: any set 2 counts.
      if (!tcp_) {
        for (size_t pos = 16; pos + 4 <= size_t(n);) {
          const uint16_t id = uint16_t((uint8_t(buf[pos]) << 8) | uint8_t(buf[pos + 1]));
          const uint16_t len = uint16_t((uint8_t(buf[pos + 2]) << 8) | uint8_t(buf[pos + 3]));
          if (id == 2) template_msgs_++;
          if (len < 4) break;
          pos += len;
        }
      }
      bytes_.append(buf.data(), size_t(n));
    }
    if (conn >= 0) close(conn);
  }

  bool tcp_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread th_;
  mutable std::mutex mu_;
  std::string bytes_;
  size_t template_msgs_ = 0;
  bool eof_ = false;
};

class AgentIpfixDump : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(AgentIpfixDump, EveryFlowscopeElementIsNamedWithItsType) {
  if (run_command("command -v ipfixDump").empty())
    GTEST_FAIL() << "ipfixDump is not installed (scripts/setup.sh installs libfixbuf-tools)";
  const bool tcp = GetParam() == "tcp";
  Receiver rx(tcp);
  const uint16_t port = free_loopback_port(SOCK_STREAM);
  AgentRunner agent({"--ipfix", fmt::format("{}://127.0.0.1:{}", GetParam(), rx.port()), "--ipfix-template-refresh",
                     "1", "--port", std::to_string(port)});
  // UDP: wait for a template refresh before the traffic, so the flows come
  // after the second round of templates.
  if (!tcp) {
    for (auto deadline = std::chrono::steady_clock::now() + 10s;
         rx.template_messages() < 2 && std::chrono::steady_clock::now() < deadline;)
      std::this_thread::sleep_for(20ms);
    ASSERT_GE(rx.template_messages(), 2u);
  }
  {
    Process server({FS_PEER_BIN, "server", "--addr", "127.0.0.1", "--port", std::to_string(port), "--send", "777"});
    ASSERT_TRUE(server.wait_for("listening", 5s, false)) << server.err();
    Process client({FS_PEER_BIN, "client", "--addr", "127.0.0.1", "--port", std::to_string(port), "--send", "4321"});
    ASSERT_EQ(client.wait(10s), 0) << client.err();
    ASSERT_EQ(server.wait(10s), 0) << server.err();
  }
  auto flows = agent.wait_flows(
      [&](const Json& f) { return f["record"] == "final" && (f["local_port"] == port || f["remote_port"] == port); },
      10s);
  ASSERT_EQ(agent.stop(), 0);  // flushes the exporter
  ASSERT_GE(flows.size(), 2u);  // client and server side
  for (auto deadline = std::chrono::steady_clock::now() + 10s;
       !rx.drained() && std::chrono::steady_clock::now() < deadline;)
    std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(rx.drained());

  const std::string path = fmt::format("{}/fs-agent-ipfixdump-{}.ipfix", ::testing::TempDir(), getpid());
  std::ofstream(path, std::ios::binary) << rx.bytes();
  const auto dump = ipfix_dump(path);
  std::filesystem::remove(path);
  EXPECT_EQ(dump.text.find("rror"), std::string::npos) << dump.text;
  EXPECT_GE(dump.flow_templates.size(), tcp ? 2u : 4u) << dump.text;
  for (const auto& t : dump.flow_templates) expect_template_names_all(t, flowscope::ipfix::kDefaultPen);
  size_t ours = 0;
  for (const auto& r : dump.flow_records) {
    expect_record_names_all(r, flowscope::ipfix::kDefaultPen);
    if (r.find(fmt::format("TransportPort : {}\n", port)) == std::string::npos) continue;
    ours++;
    EXPECT_NE(r.find("flowscopeProcessName : (len: 7) fs_peer\n"), std::string::npos) << r;
  }
  EXPECT_GE(ours, 2u) << dump.text;
  // Over TCP the agent announces its instance (delivery acknowledgements),
  // by name, once per connection; over UDP there is nothing to acknowledge.
  EXPECT_EQ(dump.instance_records.size(), tcp ? 1u : 0u) << dump.text;
  for (const auto& r : dump.instance_records)
    EXPECT_TRUE(std::regex_search(r, std::regex(R"(\(32473/100\) \(S\)flowscopeExporterInstance : [1-9]\d*)"))) << r;
}

INSTANTIATE_TEST_SUITE_P(Transports, AgentIpfixDump, ::testing::Values("udp", "tcp"));
