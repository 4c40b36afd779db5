// The collector's HTTP JSON API and Prometheus endpoint (libmicrohttpd).
//
//   GET /api/flows       flow search with filters and paging
//   GET /api/top         top-N by src, dst, pair, port, process, container
//   GET /api/timeseries  bytes/packets/flows/retransmits per interval
//   GET /api/exporters   ingest statistics per exporter, paged
//   GET /healthz         liveness (never needs the token)
//   GET /metrics         Prometheus text format
//
// Staying up under abuse: one event-driven thread reads every connection,
// so slow or idle clients cost a connection slot, never a thread. The
// request line and headers must arrive within a deadline and fit a size and
// count limit. /healthz and errors are answered on that thread at once;
// /metrics and /api/exporters (which take the collector's locks) on a thread
// of their own; store queries on a small pool of their own, each under a time
// limit (503 past it), and when the pool and its queue are full a query is
// answered 503 "busy" instead of waiting.
//
// Security: a non-loopback bind requires a bearer token; the server refuses
// to start without one. Without a token (loopback only) the Host header must
// name loopback or a name the operator allowed, so a web page a browser on
// this host loads cannot reach the API through DNS rebinding. Every error is
// a JSON object {"error": "..."}.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "collector/metrics.h"
#include "collector/ownership.h"
#include "storage/flow_store.h"

namespace flowscope {

struct ApiLimits {
  std::chrono::milliseconds query_timeout{10'000};  // one store query, from its arrival; then 503
  unsigned query_workers = 4;                       // store queries running at once
  unsigned query_queue = 64;                        // waiting for a worker; beyond: 503 busy
  std::chrono::seconds header_timeout{10};          // request line and headers complete (also keep-alive idle)
  std::chrono::seconds idle_timeout{30};            // no byte in either direction
  unsigned max_connections = 512;                   // open at once; more are refused
  size_t connection_memory = 32 * 1024;             // per connection: request head and buffers
  unsigned max_headers = 64;                        // header fields in one request
  // Answers computed and not yet taken by their clients (a client that does
  // not read holds its answer); beyond this, new queries get 503 busy.
  size_t max_held_bytes = 256u << 20;
};

struct ApiOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 9740;  // 0: any free port (tests)
  std::optional<std::string> token;
  // Host names the unauthenticated loopback API answers besides loopback
  // ones (e.g. a name in /etc/hosts the operator uses).
  std::vector<std::string> allowed_hosts;
  ApiLimits limits;
  OwnerRules owner_rules;  // how remote ends are named by ownership
};

// One page of /api/exporters: exporters after `after` (in address order),
// at most `limit` of them.
struct ExporterPage {
  std::string after;
  size_t limit = 100;
};
inline constexpr size_t kMaxExporterPage = 1000;

// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(const std::string& host);
// Whether a Host header value names this loopback API: localhost,
// 127.x.y.z or [::1], with or without a port, or one of `allowed` (names
// compared without case). An empty value (HTTP/1.0) passes: browsers always
// send one.
bool host_header_allowed(std::string_view host, const std::vector<std::string>& allowed);
// Whether an Authorization value carries `token` under the Bearer scheme
// (scheme without case, RFC 7235), compared in constant time.
bool bearer_matches(std::string_view authorization, const std::string& token);
// Reads a bearer token from a file (surrounding whitespace removed). Refuses
// short tokens and files others can read.
Result<std::string> read_token_file(const std::string& path);

class ApiServer {
 public:
  using ExportersFn = std::function<nlohmann::json(const ExporterPage&)>;
  // Binds (a busy port is an error: no SO_REUSEPORT) and starts serving on
  // threads of its own.
  static Result<std::unique_ptr<ApiServer>> start(const ApiOptions& opts, std::shared_ptr<FlowStore> store,
                                                  ExportersFn exporters, std::shared_ptr<Metrics> metrics);
  ~ApiServer();  // stops and joins
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;
  uint16_t port() const;

  struct Impl;

 private:
  explicit ApiServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace flowscope
