// Prometheus exposition of the collector's own health (prometheus-cpp).
//
// Two sources: a prometheus::Registry for what the HTTP layer measures live
// (requests, latency), and snapshot families built at scrape time from the
// counters the receivers, decoder and store already keep (no second copy of
// each counter to keep in step).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

namespace flowscope {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Builds metric families from values read at scrape time.
class FamilyBuilder {
 public:
  void counter(const std::string& name, const std::string& help, double value, const Labels& labels = {});
  void gauge(const std::string& name, const std::string& help, double value, const Labels& labels = {});
  std::vector<prometheus::MetricFamily> take() { return std::move(families_); }

 private:
  prometheus::MetricFamily& family(const std::string& name, const std::string& help, prometheus::MetricType type);
  std::vector<prometheus::MetricFamily> families_;
};

class Metrics {
 public:
  using Snapshot = std::function<void(FamilyBuilder&)>;
  Metrics();
  // Called at every scrape to add families from live counters.
  void add_snapshot(Snapshot s) { snapshots_.push_back(std::move(s)); }
  void observe_request(const std::string& endpoint, int status, double seconds);
  // The text exposition format (version 0.0.4).
  std::string render() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Histogram>* latency_;
  std::vector<Snapshot> snapshots_;
};

}  // namespace flowscope
