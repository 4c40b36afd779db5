#include "collector/metrics.h"

#include <prometheus/text_serializer.h>

namespace flowscope {

prometheus::MetricFamily& FamilyBuilder::family(const std::string& name, const std::string& help,
                                                prometheus::MetricType type) {
  for (auto& f : families_)
    if (f.name == name) return f;
  families_.push_back({name, help, type, {}});
  return families_.back();
}

namespace {
prometheus::ClientMetric with_labels(const Labels& labels) {
  prometheus::ClientMetric m;
  for (const auto& [k, v] : labels) m.label.push_back({k, v});
  return m;
}
}  // namespace

void FamilyBuilder::counter(const std::string& name, const std::string& help, double value, const Labels& labels) {
  auto m = with_labels(labels);
  m.counter.value = value;
  family(name, help, prometheus::MetricType::Counter).metric.push_back(std::move(m));
}

void FamilyBuilder::gauge(const std::string& name, const std::string& help, double value, const Labels& labels) {
  auto m = with_labels(labels);
  m.gauge.value = value;
  family(name, help, prometheus::MetricType::Gauge).metric.push_back(std::move(m));
}

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  requests_ = &prometheus::BuildCounter()
                   .Name("flowscope_http_requests_total")
                   .Help("HTTP API requests by endpoint and status code")
                   .Register(*registry_);
  latency_ = &prometheus::BuildHistogram()
                  .Name("flowscope_http_request_duration_seconds")
                  .Help("HTTP API request latency by endpoint")
                  .Register(*registry_);
}

void Metrics::observe_request(const std::string& endpoint, int status, double seconds) {
  requests_->Add({{"endpoint", endpoint}, {"code", std::to_string(status)}}).Increment();
  latency_
      ->Add({{"endpoint", endpoint}},
            prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5})
      .Observe(seconds);
}

std::string Metrics::render() const {
  auto families = registry_->Collect();
  for (const auto& s : snapshots_) {
    FamilyBuilder b;
    s(b);
    auto more = b.take();
    families.insert(families.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  }
  return prometheus::TextSerializer().Serialize(families);
}

void TrafficMetrics::add(const std::vector<FlowRow>& rows) {
  std::lock_guard lk(mu_);
  for (const auto& r : rows) {
    std::string name = r.comm && !r.comm->empty() ? *r.comm : "unattributed";
    if (name == "other") name = "other ";  // never mixed with the overflow series
    auto it = by_workload_.find(name);
    if (it == by_workload_.end()) {
      const size_t own = by_workload_.size() - by_workload_.count("other");
      it = by_workload_.try_emplace(own < max_workloads_ ? name : std::string("other")).first;
    }
    Counts& c = it->second;
    c.bytes += r.delta_bytes;
    c.connections += r.first ? 1 : 0;
    c.retransmits += r.delta_retrans;
    if (r.close == CloseReason::Refused || r.close == CloseReason::Timeout || r.close == CloseReason::RstSent ||
        r.close == CloseReason::RstReceived)
      c.failures++;
    // Interim cumulative records carry the drops so far: counted at the last.
    if (r.cumulative && r.interim) continue;
    for (const auto& d : r.drops) {
      auto seen = reasons_.find(d.reason);
      if (seen == reasons_.end() && reasons_.size() < max_reasons_) seen = reasons_.emplace(d.reason, true).first;
      c.drops[seen == reasons_.end() ? std::string("other") : d.reason] += d.count;
    }
  }
}

void TrafficMetrics::collect(FamilyBuilder& b) const {
  std::lock_guard lk(mu_);
  for (const auto& [w, c] : by_workload_) {
    const Labels l = {{"workload", w}};
    b.counter("flowscope_workload_bytes_total", "Bytes of the flows of a local workload (both directions)",
              double(c.bytes), l);
    b.counter("flowscope_workload_connections_total", "Connections (new flows) of a local workload",
              double(c.connections), l);
    b.counter("flowscope_workload_failed_connections_total",
              "Connections of a local workload that closed refused, timed out or reset", double(c.failures), l);
    b.counter("flowscope_workload_retransmits_total", "TCP segments a local workload retransmitted",
              double(c.retransmits), l);
    for (const auto& [reason, n] : c.drops)
      b.counter("flowscope_workload_drops_total", "Packets of a local workload's flows the kernel dropped, by reason",
                double(n), {{"workload", w}, {"reason", reason}});
  }
}

}  // namespace flowscope
