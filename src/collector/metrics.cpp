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

}  // namespace flowscope
