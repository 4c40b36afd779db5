#include "collector/http_api.h"

#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <httplib.h>
#include <spdlog/spdlog.h>

#include "collector/api_params.h"
#include "collector/web_console.h"
#include "net/cidr.h"

namespace flowscope {

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  auto ip = parse_ip(host);
  if (!ip) return false;
  static const Cidr v4 = *parse_cidr("127.0.0.0/8");
  static const Cidr v6 = *parse_cidr("::1");
  return v4.contains(*ip) || v6.contains(*ip);
}

Result<std::string> read_token_file(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return fail_errno(errno, "token file {}: {}", path, std::strerror(errno));
  if (st.st_mode & (S_IRWXG | S_IRWXO))
    return fail("token file {} is readable by others (mode {:o}); chmod 600 it", path, st.st_mode & 0777);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string t = ss.str();
  const auto b = t.find_first_not_of(" \t\r\n");
  const auto e = t.find_last_not_of(" \t\r\n");
  t = b == std::string::npos ? "" : t.substr(b, e - b + 1);
  if (t.size() < 16) return fail("token file {}: the token must be at least 16 characters", path);
  for (unsigned char c : t)
    if (c < 0x21 || c > 0x7e) return fail("token file {}: the token must be printable ASCII without spaces", path);
  return t;
}

namespace {

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

bool equal_constant_time(const std::string& a, const std::string& b) {
  if (b.empty()) return false;
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % b.size()]);
  return diff == 0;
}

void json_reply(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", "application/json");
}

void error_reply(httplib::Response& res, int status, const std::string& msg) {
  json_reply(res, status, {{"error", msg}});
}

}  // namespace

struct ApiServer::Impl {
  ApiOptions opts;
  std::shared_ptr<FlowStore> store;
  JsonFn exporters;
  std::shared_ptr<Metrics> metrics;
  httplib::Server srv;
  std::thread thread;
  int port = 0;

  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  void route(const std::string& path, Handler h) {
    srv.Get(path, [this, path, h = std::move(h)](const httplib::Request& req, httplib::Response& res) {
      const auto t0 = std::chrono::steady_clock::now();
      res.status = 200;
      try {
        h(req, res);
      } catch (const std::exception& e) {
        spdlog::warn("HTTP {}: {}", path, e.what());
        error_reply(res, 500, "internal error");
      }
      metrics->observe_request(path, res.status,
                               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    });
  }

  void setup() {
    srv.set_read_timeout(5, 0);
    srv.set_write_timeout(5, 0);
    srv.set_keep_alive_max_count(100);
    srv.set_payload_max_length(64 * 1024);
    srv.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!opts.token || req.path == "/healthz") return httplib::Server::HandlerResponse::Unhandled;
      const std::string auth = req.get_header_value("Authorization");
      static constexpr std::string_view kBearer = "Bearer ";
      if (auth.size() > kBearer.size() && auth.compare(0, kBearer.size(), kBearer) == 0 &&
          equal_constant_time(auth.substr(kBearer.size()), *opts.token))
        return httplib::Server::HandlerResponse::Unhandled;
      res.set_header("WWW-Authenticate", "Bearer realm=\"flowscope\"");
      error_reply(res, 401, auth.empty() ? "missing bearer token" : "bad bearer token");
      metrics->observe_request("unauthorized", 401, 0);
      return httplib::Server::HandlerResponse::Handled;
    });
    srv.set_error_handler([](const httplib::Request&, httplib::Response& res) {
      if (res.body.empty()) error_reply(res, res.status, res.status == 404 ? "no such endpoint" : "bad request");
    });

    route("/healthz", [](const httplib::Request&, httplib::Response& res) { json_reply(res, 200, {{"status", "ok"}}); });

    route("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics->render(), "text/plain; version=0.0.4");
    });

    route("/api/flows", [this](const httplib::Request& req, httplib::Response& res) {
      auto q = parse_flow_query(req.params, now_ns());
      if (!q) return error_reply(res, 400, q.error().message);
      auto page = store->query(*q);
      if (!page) return error_reply(res, 500, page.error().message);
      std::string body = "{\"flows\":[";
      for (size_t i = 0; i < page->flows.size(); ++i) {
        if (i) body += ',';
        body += flow_row_json(page->flows[i]);
      }
      body += fmt::format("],\"count\":{},\"limit\":{},\"offset\":{},\"more\":{}", page->flows.size(), q->limit,
                          q->offset, page->more ? "true" : "false");
      if (page->more) body += fmt::format(",\"next_offset\":{}", q->offset + page->flows.size());
      body += "}\n";
      res.set_content(body, "application/json");
    });

    route("/api/top", [this](const httplib::Request& req, httplib::Response& res) {
      auto q = parse_top_query(req.params, now_ns());
      if (!q) return error_reply(res, 400, q.error().message);
      auto top = store->top(*q);
      if (!top) return error_reply(res, 500, top.error().message);
      nlohmann::json items = nlohmann::json::array();
      for (const auto& e : *top) {
        nlohmann::json j;
        switch (q->group) {
          case TopGroup::Pair:
            j["src"] = e.key.at(0);
            j["dst"] = e.key.at(1);
            break;
          case TopGroup::Port: j["port"] = std::stoul(e.key.at(0)); break;
          default: j[to_string(q->group)] = e.key.at(0);
        }
        j["bytes"] = e.bytes;
        j["packets"] = e.packets;
        j["flows"] = e.flows;
        j["retransmits"] = e.retrans;
        items.push_back(std::move(j));
      }
      json_reply(res, 200,
                 {{"group", to_string(q->group)},
                  {"by", to_string(q->by)},
                  {"from_ns", *q->filter.from_ns},
                  {"to_ns", *q->filter.to_ns},
                  {"top", items}});
    });

    route("/api/timeseries", [this](const httplib::Request& req, httplib::Response& res) {
      auto q = parse_series_query(req.params, now_ns());
      if (!q) return error_reply(res, 400, q.error().message);
      auto pts = store->series(*q);
      if (!pts) return error_reply(res, 500, pts.error().message);
      nlohmann::json items = nlohmann::json::array();
      for (const auto& p : *pts)
        items.push_back({{"time_ns", p.time_ns},
                         {"bytes", p.bytes},
                         {"packets", p.packets},
                         {"flows", p.flows},
                         {"retransmits", p.retrans}});
      json_reply(res, 200,
                 {{"from_ns", *q->filter.from_ns},
                  {"to_ns", *q->filter.to_ns},
                  {"interval_ns", q->interval_ns},
                  {"points", items}});
    });

    route("/api/exporters", [this](const httplib::Request& req, httplib::Response& res) {
      if (!req.params.empty()) return error_reply(res, 400, "/api/exporters takes no parameters");
      json_reply(res, 200, exporters ? exporters() : nlohmann::json::object());
    });

    route("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(web_console_html()), "text/html; charset=utf-8");
    });
  }
};

ApiServer::ApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ApiServer::~ApiServer() {
  impl_->srv.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

uint16_t ApiServer::port() const { return static_cast<uint16_t>(impl_->port); }

Result<std::unique_ptr<ApiServer>> ApiServer::start(const ApiOptions& opts, std::shared_ptr<FlowStore> store,
                                                     JsonFn exporters, std::shared_ptr<Metrics> metrics) {
  if (!is_loopback_host(opts.host) && !opts.token)
    return fail("the HTTP API binds to {} (not loopback): a bearer token is required (--token-file)", opts.host);
  auto impl = std::make_unique<Impl>();
  impl->opts = opts;
  impl->store = std::move(store);
  impl->exporters = std::move(exporters);
  impl->metrics = metrics ? std::move(metrics) : std::make_shared<Metrics>();
  impl->setup();
  if (opts.port == 0) {
    impl->port = impl->srv.bind_to_any_port(opts.host);
    if (impl->port <= 0) return fail("HTTP API: cannot bind {}", opts.host);
  } else {
    if (!impl->srv.bind_to_port(opts.host, opts.port))
      return fail_errno(errno, "HTTP API: cannot bind {} port {}: {}", opts.host, opts.port, std::strerror(errno));
    impl->port = opts.port;
  }
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->srv.listen_after_bind(); });
  return std::unique_ptr<ApiServer>(new ApiServer(std::move(impl)));
}

}  // namespace flowscope
