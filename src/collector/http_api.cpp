#include "collector/http_api.h"

#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_set>

#include <spdlog/spdlog.h>

#include "collector/api_params.h"
#include "collector/attribution.h"
#include "collector/graph.h"
#include "collector/remote_top.h"
#include "collector/web_console.h"
#include "net/cidr.h"
#include "storage/query_deadline.h"

namespace flowscope {

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  auto ip = parse_ip(host);
  if (!ip) return false;
  static const Cidr v4 = *parse_cidr("127.0.0.0/8");
  static const Cidr v6 = *parse_cidr("::1");
  return v4.contains(*ip) || v6.contains(*ip);
}

bool host_header_allowed(std::string_view host, const std::vector<std::string>& allowed) {
  if (host.empty()) return true;
  if (host.size() > 255) return false;
  std::string name;
  if (host.front() == '[') {  // [v6] or [v6]:port
    const auto close = host.find(']');
    if (close == std::string_view::npos) return false;
    const auto rest = host.substr(close + 1);
    if (!rest.empty() && (rest.front() != ':' || rest.size() == 1)) return false;
    name = std::string(host.substr(1, close - 1));
    if (name.find(':') == std::string::npos) return false;  // brackets only hold IPv6
  } else {
    const auto colon = host.rfind(':');
    name = std::string(host.substr(0, colon));
    if (colon != std::string_view::npos) {
      const auto port = host.substr(colon + 1);
      if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) {
            return c >= '0' && c <= '9';
          }))
        return false;
    }
  }
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  if (!name.empty() && name.back() == '.') name.pop_back();  // "localhost." is the same name
  if (name.empty()) return false;
  if (name == "localhost" || is_loopback_host(name)) return true;
  for (const auto& a : allowed) {
    if (a.size() == name.size() && std::equal(a.begin(), a.end(), name.begin(), [](char x, char y) {
          return std::tolower(static_cast<unsigned char>(x)) == y;
        }))
      return true;
  }
  return false;
}

namespace {

bool equal_constant_time(std::string_view a, std::string_view b) {
  if (b.empty()) return false;
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % b.size()]);
  return diff == 0;
}

}  // namespace

bool bearer_matches(std::string_view auth, const std::string& token) {
  static constexpr std::string_view kScheme = "bearer";
  if (auth.size() <= kScheme.size() + 1) return false;
  for (size_t k = 0; k < kScheme.size(); ++k)
    if (std::tolower(static_cast<unsigned char>(auth[k])) != kScheme[k]) return false;
  auto cred = auth.substr(kScheme.size());
  if (cred.front() != ' ' && cred.front() != '\t') return false;
  while (!cred.empty() && (cred.front() == ' ' || cred.front() == '\t')) cred.remove_prefix(1);
  while (!cred.empty() && (cred.back() == ' ' || cred.back() == '\t')) cred.remove_suffix(1);
  return equal_constant_time(cred, token);
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

using Clock = std::chrono::steady_clock;

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

struct Reply {
  int status = 200;
  std::string body;
  std::string type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

Reply json_reply(int status, const nlohmann::json& body) {
  return {status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"};
}

Reply error_reply(int status, const std::string& msg) { return json_reply(status, {{"error", msg}}); }

// A connection as the header deadline sees it (MHD's socket context).
struct Conn {
  int fd = -1;
  Clock::time_point head_since;  // when the current request's head began (or the last one ended)
  bool in_head = true;           // waiting for a request line and headers
};

// One request (MHD's per-request context). A store query fills `reply` on
// a worker, then resumes the connection.
struct Pending {
  std::string endpoint;  // metrics label: a known route, never the raw path
  Clock::time_point t0;
  Reply reply;
};

// Store queries: a fixed number of workers and a short queue; no room means
// 503 at once, so a burst of heavy queries never piles up connections.
class QueryPool {
 public:
  struct Job {
    std::function<Reply()> run;
    Clock::time_point deadline;
    std::function<void(Reply)> done;
  };
  QueryPool(unsigned workers, unsigned queue, int nice) : capacity_(workers + queue) {
    for (unsigned k = 0; k < workers; ++k) threads_.emplace_back([this, nice] { work(nice); });
  }
  ~QueryPool() { stop(); }
  // Takes a slot, or false when every worker and queue place is taken.
  bool reserve() {
    std::lock_guard lk(mu_);
    if (stopping_ || taken_ >= capacity_) return false;
    ++taken_;
    return true;
  }
  // After reserve(). A job pushed while stopping is answered at once: its
  // connection is suspended, and the daemon cannot stop with one left so.
  void push(Job j) {
    {
      std::lock_guard lk(mu_);
      if (!stopping_) {
        jobs_.push_back(std::move(j));
        cv_.notify_one();
        return;
      }
    }
    j.done(error_reply(503, "the server is shutting down"));
  }
  // Stops running jobs at their next check, answers queued ones 503, joins.
  void stop() {
    std::deque<Job> left;
    {
      std::lock_guard lk(mu_);
      if (stopping_) return;
      stopping_ = true;
      cancel_ = true;
      left.swap(jobs_);
    }
    cv_.notify_all();
    for (auto& j : left) j.done(error_reply(503, "the server is shutting down"));
    for (auto& t : threads_) t.join();
  }

 private:
  void work(int nice) {
    if (nice) setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), nice);
    for (;;) {
      Job j;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [&] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        j = std::move(jobs_.front());
        jobs_.pop_front();
      }
      Reply r;
      try {
        // The limit counts from the request's arrival: a query whose time
        // ran out in the queue stops at its first check.
        QueryDeadline d(j.deadline, &cancel_);
        r = j.run();
      } catch (const std::exception& e) {
        spdlog::warn("HTTP query: {}", e.what());
        r = error_reply(500, "internal error");
      }
      {
        std::lock_guard lk(mu_);
        --taken_;
      }
      j.done(std::move(r));
    }
  }

  const unsigned capacity_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  unsigned taken_ = 0;
  bool stopping_ = false;
  std::atomic<bool> cancel_{false};
  std::vector<std::thread> threads_;
};

// The listening socket, made here so a busy port is a clear error: only
// SO_REUSEADDR (restarts while old connections linger in TIME_WAIT), never
// SO_REUSEPORT, which would let a second instance share the port silently.
Result<int> listen_on(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0)
    return fail("HTTP API: cannot resolve {}: {}", host, gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
  const int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail_errno(errno, "HTTP API: socket: {}", std::strerror(errno));
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (res->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 128) != 0) {
    const int err = errno;
    close(fd);
    if (err == EADDRINUSE)
      return fail_errno(err, "HTTP API: {} port {} is already in use (another flowscope collector?); stop it or "
                        "choose another --http-port", host, port);
    return fail_errno(err, "HTTP API: cannot listen on {} port {}: {}", host, port, std::strerror(err));
  }
  return fd;
}

uint16_t bound_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

void mhd_log(void*, const char* fmt, va_list ap) {
  char buf[512];
  vsnprintf(buf, sizeof buf, fmt, ap);
  std::string_view msg(buf);
  while (!msg.empty() && msg.back() == '\n') msg.remove_suffix(1);
  spdlog::debug("HTTP: {}", msg);
}

}  // namespace

struct ApiServer::Impl {
  ApiOptions opts;
  std::shared_ptr<FlowStore> store;
  ExportersFn exporters;
  std::shared_ptr<Metrics> metrics;
  std::unique_ptr<QueryPool> pool;   // store queries
  std::unique_ptr<QueryPool> light;  // /metrics and /api/exporters
  // Bodies of answers computed and not yet completed (shared with /metrics,
  // which may outlive the server).
  std::shared_ptr<std::atomic<size_t>> held = std::make_shared<std::atomic<size_t>>(0);
  std::atomic<size_t>& held_bytes = *held;
  MHD_Daemon* daemon = nullptr;
  uint16_t port = 0;
  bool host_guard = false;

  // Header deadline: a watchdog shuts down connections whose request head
  // has not arrived in time (a client sending a byte a second never trips
  // an inactivity timeout).
  std::mutex conns_mu;
  std::unordered_set<Conn*> conns;
  std::condition_variable watch_cv;
  bool stopping = false;
  std::thread watchdog;

  ~Impl() {
    // Queued queries answer 503 and running ones stop (503 too) before the
    // daemon that owns their connections goes.
    if (pool) pool->stop();
    if (light) light->stop();
    {
      std::lock_guard lk(conns_mu);
      stopping = true;
    }
    watch_cv.notify_all();
    if (watchdog.joinable()) watchdog.join();
    if (daemon) MHD_stop_daemon(daemon);
  }

  void watch() {
    std::unique_lock lk(conns_mu);
    while (!stopping) {
      watch_cv.wait_for(lk, std::chrono::milliseconds(250));
      const auto now = Clock::now();
      for (Conn* c : conns) {
        if (c->in_head && now - c->head_since > opts.limits.header_timeout && c->fd >= 0) {
          // MHD sees the end of the stream and closes the connection itself;
          // the fd stays valid until its CLOSED notification, which takes
          // this lock.
          shutdown(c->fd, SHUT_RDWR);
          c->fd = -1;
          metrics->observe_request("header_timeout", 408, 0);
        }
      }
    }
  }

  static void on_connection(void* cls, MHD_Connection* c, void** ctx, MHD_ConnectionNotificationCode code) {
    auto& self = *static_cast<Impl*>(cls);
    std::lock_guard lk(self.conns_mu);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
      auto* conn = new Conn;
      const auto* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
      conn->fd = info ? info->connect_fd : -1;
      conn->head_since = Clock::now();
      self.conns.insert(conn);
      *ctx = conn;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
      auto* conn = static_cast<Conn*>(*ctx);
      self.conns.erase(conn);
      delete conn;
      *ctx = nullptr;
    }
  }

  Conn* conn_of(MHD_Connection* c) {
    const auto* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? static_cast<Conn*>(info->socket_context) : nullptr;
  }

  void set_in_head(MHD_Connection* c, bool in_head) {
    std::lock_guard lk(conns_mu);
    if (Conn* conn = conn_of(c)) {
      conn->in_head = in_head;
      conn->head_since = Clock::now();
    }
  }

  static void on_completed(void* cls, MHD_Connection* c, void** req_ctx, MHD_RequestTerminationCode) {
    auto& self = *static_cast<Impl*>(cls);
    if (auto* p = static_cast<Pending*>(*req_ctx)) self.held_bytes -= p->reply.body.size();
    delete static_cast<Pending*>(*req_ctx);
    *req_ctx = nullptr;
    self.set_in_head(c, true);  // the next request's head starts now (keep-alive)
  }

  // `kept`: the body outlives the response (a Pending's, freed when the
  // request completes), so it is sent from where it is, not copied.
  MHD_Result send(MHD_Connection* c, const std::string& endpoint, Clock::time_point t0, const Reply& r,
                  bool kept = false) {
    MHD_Response* resp = MHD_create_response_from_buffer(r.body.size(), const_cast<char*>(r.body.data()),
                                                         kept ? MHD_RESPMEM_PERSISTENT : MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r.type.c_str());
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    for (const auto& [k, v] : r.headers) MHD_add_response_header(resp, k.c_str(), v.c_str());
    const MHD_Result ok = MHD_queue_response(c, static_cast<unsigned>(r.status), resp);
    MHD_destroy_response(resp);
    metrics->observe_request(endpoint, r.status, std::chrono::duration<double>(Clock::now() - t0).count());
    return ok;
  }

  static MHD_Result on_request(void* cls, MHD_Connection* c, const char* url, const char* method, const char*,
                               const char*, size_t* upload_size, void** req_ctx) {
    auto& self = *static_cast<Impl*>(cls);
    if (auto* p = static_cast<Pending*>(*req_ctx)) {  // resumed: the worker's answer is ready
      *upload_size = 0;
      return self.send(c, p->endpoint, p->t0, p->reply, true);
    }
    const auto t0 = Clock::now();
    self.set_in_head(c, false);
    auto [endpoint, reply] = self.screen(c, url, method);
    if (reply) return self.send(c, endpoint, t0, *reply);
    // Runs on a pool while the connection waits suspended: store queries on
    // theirs, /metrics and /api/exporters (which take the collector's
    // locks) on a thread of their own, so neither can stall this thread.
    Params params = query_params(c);
    auto run = self.query_for(endpoint, params);
    if (!run) return self.send(c, endpoint, t0, error_reply(400, run.error().message));
    const bool light = endpoint == "/metrics" || endpoint == "/api/exporters";
    QueryPool& pool = light ? *self.light : *self.pool;
    if (!light && self.held_bytes.load() > self.opts.limits.max_held_bytes) {
      Reply busy = error_reply(503, fmt::format("busy: {} MiB of answers wait for their clients to read them; retry "
                                                "later",
                                                self.held_bytes.load() >> 20));
      busy.headers.emplace_back("Retry-After", "1");
      return self.send(c, endpoint, t0, busy);
    }
    if (!pool.reserve()) {
      Reply busy = error_reply(503, light ? std::string("busy: too many /metrics and /api/exporters requests at once; "
                                                        "retry later")
                                          : fmt::format("busy: {} queries are running or waiting; retry later",
                                                        self.opts.limits.query_workers + self.opts.limits.query_queue));
      busy.headers.emplace_back("Retry-After", "1");
      return self.send(c, endpoint, t0, busy);
    }
    auto* p = new Pending{endpoint, t0, {}};
    *req_ctx = p;
    MHD_suspend_connection(c);
    pool.push({std::move(*run), t0 + self.opts.limits.query_timeout, [&self, c, p](Reply r) {
                       p->reply = std::move(r);
                       self.held_bytes += p->reply.body.size();
                       MHD_resume_connection(c);  // p belongs to MHD again from here
                     }});
    return MHD_YES;
  }

  static Params query_params(MHD_Connection* c) {
    Params params;
    MHD_get_connection_values(
        c, MHD_GET_ARGUMENT_KIND,
        [](void* cls, MHD_ValueKind, const char* key, const char* value) {
          static_cast<Params*>(cls)->emplace(key ? key : "", value ? value : "");
          return MHD_YES;
        },
        &params);
    return params;
  }

  // Everything answered on the event thread: refusals, and the cheap
  // endpoints. Returns the metrics label and, unless the request is a store
  // query, its reply.
  std::pair<std::string, std::optional<Reply>> screen(MHD_Connection* c, std::string_view path,
                                                      std::string_view method) {
    static const std::unordered_set<std::string_view> kRoutes = {"/", "/healthz", "/metrics", "/api/flows",
                                                                 "/api/top", "/api/timeseries", "/api/exporters",
                                                                 "/api/complete", "/api/graph"};
    const std::string endpoint = kRoutes.contains(path)           ? std::string(path)
                                 : web_console_asset(path).has_value() ? std::string("/")
                                                                       : std::string("other");
    if (MHD_get_connection_values(c, MHD_HEADER_KIND, nullptr, nullptr) > static_cast<int>(opts.limits.max_headers))
      return {"rejected", error_reply(431, fmt::format("more than {} header fields", opts.limits.max_headers))};
    if (host_guard) {
      const char* host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
      if (!host_header_allowed(host ? host : "", opts.allowed_hosts))
        return {"rejected", error_reply(421, "Host header does not name this server (loopback or a name given "
                                             "with --allow-host)")};
    }
    if (method != "GET" && method != "HEAD") {
      Reply r = error_reply(405, "only GET is supported");
      r.headers.emplace_back("Allow", "GET, HEAD");
      return {endpoint, r};
    }
    if (opts.token && path != "/healthz" && endpoint != "/") {
      const char* auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
      if (!auth || !bearer_matches(auth, *opts.token)) {
        Reply r = error_reply(401, auth ? "bad bearer token" : "missing bearer token");
        r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"flowscope\"");
        return {"unauthorized", r};
      }
    }
    if (path == "/healthz") return {endpoint, json_reply(200, {{"status", "ok"}})};
    if (endpoint == "/") {
      // The console's page and assets need no token: the page asks for it
      // when the API answers 401. They hold no flow data.
      if (auto asset = web_console_asset(path)) {
        Reply r{200, std::string(asset->body), std::string(asset->type)};
        r.headers.emplace_back("Cache-Control", "no-cache");
        r.headers.emplace_back("Content-Security-Policy",
                               "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'");
        return {endpoint, r};
      }
    }
    if (endpoint == "other") return {endpoint, error_reply(404, "no such endpoint")};
    return {endpoint, std::nullopt};
  }

  Reply exporters_page(const Params& p) {
    ExporterPage page;
    for (const auto& [k, v] : p) {
      if (p.count(k) > 1) return error_reply(400, fmt::format("parameter '{}' given more than once", k));
      if (k == "after") {
        if (v.empty() || v.size() > 128) return error_reply(400, "parameter 'after': expected 1..128 characters");
        page.after = v;
      } else if (k == "limit") {
        size_t n = 0;
        auto [e, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (v.empty() || ec != std::errc{} || e != v.data() + v.size() || n == 0 || n > kMaxExporterPage)
          return error_reply(400, fmt::format("parameter 'limit': expected 1..{}", kMaxExporterPage));
        page.limit = n;
      } else {
        return error_reply(400, "/api/exporters takes only 'after' and 'limit'");
      }
    }
    return json_reply(200, exporters ? exporters(page) : nlohmann::json::object());
  }

  // Validates a store query's parameters now (400 on the event thread) and
  // returns the work to run on the pool.
  Result<std::function<Reply()>> query_for(const std::string& endpoint, const Params& params) {
    if (endpoint == "/metrics") return [this] { return Reply{200, metrics->render(), "text/plain; version=0.0.4"}; };
    if (endpoint == "/api/exporters") return [this, params] { return exporters_page(params); };
    const uint64_t now = now_ns();
    if (endpoint == "/api/flows") {
      auto q = parse_flow_query(params, now);
      if (!q) return std::unexpected(q.error());
      return [this, q = *q] { return flows(q); };
    }
    if (endpoint == "/api/complete") {
      auto q = parse_complete_query(params, now);
      if (!q) return std::unexpected(q.error());
      return [this, q = *q] { return complete(q); };
    }
    if (endpoint == "/api/graph") {
      auto q = parse_graph_query(params, now);
      if (!q) return std::unexpected(q.error());
      return [this, q = *q] {
        auto g = build_graph(*store, q, opts.owner_rules);
        return g ? json_reply(200, *g) : store_error(g.error());
      };
    }
    if (endpoint == "/api/top" && is_remote_top(params)) {
      auto q = parse_remote_top_query(params, now);
      if (!q) return std::unexpected(q.error());
      return [this, q = *q] { return top_remote(q); };
    }
    if (endpoint == "/api/top") {
      auto q = parse_top_query(params, now);
      if (!q) return std::unexpected(q.error());
      return [this, q = *q] { return top(q); };
    }
    auto q = parse_series_query(params, now);
    if (!q) return std::unexpected(q.error());
    return [this, q = *q] { return series(q); };
  }

  Reply store_error(const Error& e) const {
    if (e.code == ETIMEDOUT) {
      Reply r = error_reply(503, fmt::format("the query ran past the time limit of {} ms: narrow the time range or "
                                             "add filters",
                                             opts.limits.query_timeout.count()));
      r.headers.emplace_back("Retry-After", "1");
      return r;
    }
    return error_reply(500, e.message);
  }

  Reply flows(const FlowQuery& q) {
    auto page = store->query(q);
    if (!page) return store_error(page.error());
    // Each flow says who is at its other end (collector/attribution.h).
    AttributionCounts n;
    auto remote = attribution_members(*store, page->flows, &n, opts.owner_rules);
    if (!remote) return store_error(remote.error());
    std::string body = "{\"flows\":[";
    for (size_t i = 0; i < page->flows.size(); ++i) {
      if (i) body += ',';
      body += with_members(flow_row_json(page->flows[i]), (*remote)[i]);
    }
    body += fmt::format("],\"count\":{},\"limit\":{},\"offset\":{},\"more\":{}", page->flows.size(), q.limit,
                        q.offset, page->more ? "true" : "false");
    if (page->more) body += fmt::format(",\"next_offset\":{}", q.offset + page->flows.size());
    // How this page's remote ends were named (collector/attribution.h).
    body += fmt::format(",\"attribution\":{{\"joined\":{},\"owner\":{},\"none\":{}", n.joined, n.owner, n.none);
    for (auto v : {OwnerVerdict::NoClaim, OwnerVerdict::Edge, OwnerVerdict::Conflict, OwnerVerdict::Pending})
      body += fmt::format(",\"{}\":{}", to_string(v), n.unattributed[static_cast<size_t>(v)]);
    body += "}}\n";
    return {200, std::move(body)};
  }

  Reply top(const TopQuery& q) {
    auto top = store->top(q);
    if (!top) return store_error(top.error());
    nlohmann::json items = nlohmann::json::array();
    for (const auto& e : *top) {
      nlohmann::json j;
      switch (q.group) {
        case TopGroup::Pair:
          j["src"] = e.key.at(0);
          j["dst"] = e.key.at(1);
          break;
        case TopGroup::Port: j["port"] = std::stoul(e.key.at(0)); break;
        case TopGroup::Netns: j["netns"] = std::stoull(e.key.at(0)); break;
        default: j[to_string(q.group)] = e.key.at(0);
      }
      j["bytes"] = e.bytes;
      j["bytes_out"] = e.bytes_out;
      j["bytes_in"] = e.bytes_in;
      j["packets"] = e.packets;
      j["flows"] = e.flows;
      j["retransmits"] = e.retrans;
      j["failures"] = e.failures;
      j["drops"] = e.drops;
      items.push_back(std::move(j));
    }
    return json_reply(200, {{"group", to_string(q.group)},
                            {"by", to_string(q.by)},
                            {"from_ns", *q.filter.from_ns},
                            {"to_ns", *q.filter.to_ns},
                            {"top", items}});
  }

  static nlohmann::json point_json(const SeriesPoint& p) {
    return {{"time_ns", p.time_ns}, {"bytes", p.bytes},     {"bytes_out", p.bytes_out},
            {"bytes_in", p.bytes_in}, {"packets", p.packets}, {"flows", p.flows},
            {"retransmits", p.retrans}, {"failures", p.failures}, {"drops", p.drops}};
  }

  Reply top_remote(const RemoteTopQuery& q) {
    auto top = remote_top(*store, q, opts.owner_rules);
    if (!top) return store_error(top.error());
    nlohmann::json items = nlohmann::json::array();
    for (const auto& e : *top) {
      nlohmann::json points = nlohmann::json::array();
      for (const auto& p : e.points) points.push_back(point_json(p));
      items.push_back({{to_string(q.level), e.key},
                       {"attributed", e.attributed},
                       {"bytes", e.total.bytes},
                       {"bytes_out", e.total.bytes_out},
                       {"bytes_in", e.total.bytes_in},
                       {"packets", e.total.packets},
                       {"flows", e.total.flows},
                       {"retransmits", e.total.retrans},
                       {"failures", e.total.failures},
                       {"drops", e.total.drops},
                       {"points", std::move(points)}});
    }
    return json_reply(200, {{"group", to_string(q.level)},
                            {"by", to_string(q.top.by)},
                            {"from_ns", *q.top.filter.from_ns},
                            {"to_ns", *q.top.filter.to_ns},
                            {"interval_ns", q.interval_ns},
                            {"top", items}});
  }

  Reply complete(const CompleteQuery& q) {
    auto values = store->complete(q);
    if (!values) return store_error(values.error());
    return json_reply(200, {{"field", to_string(q.field)}, {"prefix", q.prefix}, {"values", *values}});
  }

  Reply series(const SeriesQuery& q) {
    auto pts = store->series(q);
    if (!pts) return store_error(pts.error());
    // Every bucket of the range is answered, empty ones as zeros, so a
    // chart's x axis is the range asked for and gaps read as "nothing".
    const uint64_t from = *q.filter.from_ns;
    const uint64_t buckets = (*q.filter.to_ns - from) / q.interval_ns + 1;
    std::vector<SeriesPoint> filled(buckets);
    for (uint64_t k = 0; k < buckets; ++k) filled[k].time_ns = from + k * q.interval_ns;
    for (const auto& p : *pts) {
      const uint64_t k = (p.time_ns - from) / q.interval_ns;
      if (p.time_ns >= from && k < buckets) filled[k] = p;
    }
    nlohmann::json items = nlohmann::json::array();
    for (const auto& p : filled) items.push_back(point_json(p));
    return json_reply(200, {{"from_ns", *q.filter.from_ns},
                            {"to_ns", *q.filter.to_ns},
                            {"interval_ns", q.interval_ns},
                            {"points", items}});
  }
};

ApiServer::ApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ApiServer::~ApiServer() = default;

uint16_t ApiServer::port() const { return impl_->port; }

Result<std::unique_ptr<ApiServer>> ApiServer::start(const ApiOptions& opts, std::shared_ptr<FlowStore> store,
                                                     ExportersFn exporters, std::shared_ptr<Metrics> metrics) {
  if (!is_loopback_host(opts.host) && !opts.token)
    return fail("the HTTP API binds to {} (not loopback): a bearer token is required (--token-file)", opts.host);
  const ApiLimits& l = opts.limits;
  if (l.query_workers == 0 || l.max_connections == 0 || l.query_timeout.count() <= 0)
    return fail("HTTP API: query workers, connections and the query time limit must be above 0");
  auto fd = listen_on(opts.host, opts.port);
  if (!fd) return std::unexpected(fd.error());
  auto impl = std::make_unique<Impl>();
  impl->opts = opts;
  impl->store = std::move(store);
  impl->exporters = std::move(exporters);
  impl->metrics = metrics ? std::move(metrics) : std::make_shared<Metrics>();
  impl->metrics->add_snapshot([held = impl->held](FamilyBuilder& b) {
    b.gauge("flowscope_http_held_bytes", "Bytes of HTTP answers computed and not yet read by their clients",
            double(held->load()));
  });
  impl->host_guard = !opts.token;
  impl->port = bound_port(*fd);
  // Store queries yield the CPU to the other threads: on a busy host
  // /healthz and /metrics keep answering in milliseconds while queries take
  // longer.
  impl->pool = std::make_unique<QueryPool>(l.query_workers, l.query_queue, 10);
  impl->light = std::make_unique<QueryPool>(1, 16, 0);
  Impl* raw = impl.get();
  impl->daemon = MHD_start_daemon(
      MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, nullptr, nullptr,
      &Impl::on_request, raw, MHD_OPTION_LISTEN_SOCKET, *fd, MHD_OPTION_CONNECTION_LIMIT, l.max_connections,
      MHD_OPTION_CONNECTION_TIMEOUT, static_cast<unsigned>(l.idle_timeout.count()),
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, l.connection_memory, MHD_OPTION_NOTIFY_CONNECTION, &Impl::on_connection,
      raw, MHD_OPTION_NOTIFY_COMPLETED, &Impl::on_completed, raw, MHD_OPTION_EXTERNAL_LOGGER, &mhd_log, nullptr,
      MHD_OPTION_END);
  if (!impl->daemon) {
    close(*fd);
    return fail("HTTP API: the HTTP server did not start on {} port {}", opts.host, impl->port);
  }
  impl->watchdog = std::thread([raw] { raw->watch(); });
  return std::unique_ptr<ApiServer>(new ApiServer(std::move(impl)));
}

}  // namespace flowscope
