// The collector's HTTP JSON API and Prometheus endpoint (cpp-httplib).
//
//   GET /api/flows       flow search with filters and paging
//   GET /api/top         top-N by src, dst, pair, port, process, container
//   GET /api/timeseries  bytes/packets/flows/retransmits per interval
//   GET /api/exporters   ingest statistics per exporter
//   GET /healthz         liveness (never needs the token)
//   GET /metrics         Prometheus text format
//
// Security: a non-loopback bind requires a bearer token; the server refuses
// to start without one. Every error is a JSON object {"error": "..."}.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "collector/metrics.h"
#include "base/result.h"
#include "storage/flow_store.h"

namespace flowscope {

struct ApiOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 9740;  // 0: any free port (tests)
  std::optional<std::string> token;
};

// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(const std::string& host);
// Reads a bearer token from a file (surrounding whitespace removed). Refuses
// short tokens and files others can read.
Result<std::string> read_token_file(const std::string& path);

class ApiServer {
 public:
  using JsonFn = std::function<nlohmann::json()>;
  // Binds and starts serving on a thread of its own.
  static Result<std::unique_ptr<ApiServer>> start(const ApiOptions& opts, std::shared_ptr<FlowStore> store,
                                                  JsonFn exporters, std::shared_ptr<Metrics> metrics);
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
