// Prometheus exposition of the collector's own health (prometheus-cpp).
//
// Two sources: a prometheus::Registry for what the HTTP layer measures live
// (requests, latency), and snapshot families built at scrape time from the
// counters the receivers, decoder and store already keep (no second copy of
// each counter to keep in step).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include "storage/flow_row.h"

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

// Traffic series for Prometheus, per local workload (the process name):
// bytes, connections, failed connections, retransmits, and drops by reason.
// Fed with the rows the store committed (their per-record deltas, so a
// long flow reported many times counts once).
//
// Cardinality is bounded: the first `max_workloads` workloads seen get
// series of their own, everything else is summed into workload="other"
// (likewise drop reasons beyond `max_reasons`, into reason="other"). The
// set is fixed once full, not re-ranked: a counter that moved between
// series would go backwards, which Prometheus reads as a reset.
class TrafficMetrics {
 public:
  explicit TrafficMetrics(size_t max_workloads = 50, size_t max_reasons = 32)
      : max_workloads_(max_workloads), max_reasons_(max_reasons) {}
  void add(const std::vector<FlowRow>& rows);
  void collect(FamilyBuilder& b) const;

 private:
  struct Counts {
    uint64_t bytes = 0, connections = 0, failures = 0, retransmits = 0;
    std::map<std::string, uint64_t> drops;  // by reason
  };
  const size_t max_workloads_;
  const size_t max_reasons_;
  mutable std::mutex mu_;
  std::map<std::string, Counts> by_workload_;  // at most max_workloads_ + "other"
  std::map<std::string, bool> reasons_;        // reasons given series of their own
};

}  // namespace flowscope
