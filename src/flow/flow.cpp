#include "flow/flow.h"

namespace flowscope {

const char* to_string(Direction d) {
  switch (d) {
    case Direction::Outbound: return "outbound";
    case Direction::Inbound: return "inbound";
    case Direction::Unknown: break;
  }
  return "unknown";
}

const char* to_string(CloseReason c) {
  switch (c) {
    case CloseReason::Active: return "active";
    case CloseReason::Fin: return "fin";
    case CloseReason::RstSent: return "rst_sent";
    case CloseReason::RstReceived: return "rst_received";
    case CloseReason::Refused: return "refused";
    case CloseReason::Timeout: return "timeout";
  }
  return "fin";
}

std::optional<Direction> direction_from_string(std::string_view s) {
  for (auto d : {Direction::Unknown, Direction::Outbound, Direction::Inbound})
    if (s == to_string(d)) return d;
  return std::nullopt;
}

std::optional<CloseReason> close_reason_from_string(std::string_view s) {
  for (auto c : {CloseReason::Active, CloseReason::Fin, CloseReason::RstSent, CloseReason::RstReceived,
                 CloseReason::Refused, CloseReason::Timeout})
    if (s == to_string(c)) return c;
  return std::nullopt;
}

uint64_t Flow::drops_total() const {
  uint64_t n = 0;
  for (const auto& d : drops) n += d.count;
  return n;
}

}  // namespace flowscope
