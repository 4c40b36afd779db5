// Validation of the HTTP API's query parameters into store queries. Pure
// functions (no HTTP here) so every hostile input has a unit test. Anything
// unexpected is refused with a message meant for the caller: unknown or
// repeated parameters, limits out of range, bad CIDRs, bad times.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "base/result.h"
#include "storage/flow_store.h"

namespace flowscope {

using Params = std::multimap<std::string, std::string>;

inline constexpr uint32_t kMaxFlowLimit = 10'000;
inline constexpr uint32_t kDefaultFlowLimit = 100;
inline constexpr uint64_t kMaxOffset = 10'000'000;
inline constexpr uint32_t kMaxTopLimit = 1'000;
inline constexpr uint64_t kMaxSeriesPoints = 10'000;
inline constexpr uint32_t kMaxCompleteLimit = 100;
// Times are stored as signed 64-bit nanoseconds: later ones (past the year
// 2262) are refused rather than wrapped into the past.
inline constexpr uint64_t kMaxTimeNs = static_cast<uint64_t>(INT64_MAX);

// Times: Unix seconds ("1700000000", "1700000000.25"), RFC 3339
// ("2026-11-25T12:00:00Z", "2026-11-25T12:00:00.5+01:00") or relative to
// `now_ns` ("-15m", "-2h", "-7d", "-30s", "now").
Result<uint64_t> parse_time(std::string_view text, uint64_t now_ns);
// Durations: "30s", "5m", "1h", "1d", or plain seconds.
Result<uint64_t> parse_duration_ns(std::string_view text);

Result<FlowQuery> parse_flow_query(const Params& p, uint64_t now_ns);
Result<TopQuery> parse_top_query(const Params& p, uint64_t now_ns);  // default: last hour
// The filters every endpoint shares, plus `extra` parameters the caller
// reads itself; from/to default to the last hour.
Result<FlowFilter> parse_ranged_filter(const Params& p, uint64_t now_ns, const std::set<std::string>& extra);
Result<SeriesQuery> parse_series_query(const Params& p, uint64_t now_ns);  // default: last hour
// Filter completion: field (process, container, host, exporter, close,
// direction, drops), prefix, limit (default 20), from (default: a day ago).
Result<CompleteQuery> parse_complete_query(const Params& p, uint64_t now_ns);

}  // namespace flowscope
