// The history rules both engines answer by: TTL cut-off and the `complete`
// flag (see HistoryResult in engine.hpp).
#pragma once
#include <cstdint>
#include <limits>
#include <vector>

#include "duplex/engines/engine.hpp"
#include "engine_clock.hpp"

namespace duplex::engines::detail {

// Publications accepted before this time are expired (not returned).
inline std::int64_t ttl_cutoff_ms(std::int64_t now_ms, std::chrono::seconds ttl) {
  if (ttl.count() <= 0) return std::numeric_limits<std::int64_t>::min();
  return now_ms - seconds_to_ms(ttl);
}

// True when `ascending` holds every offset in (after, top]. Offsets in it are
// unique and ascending, so the count decides.
inline bool covers_range(const std::vector<PublicationPtr>& ascending, std::uint64_t after,
                         std::uint64_t top) {
  if (after > top) return false;
  if (ascending.size() != top - after) return false;
  return ascending.empty() || ascending.front()->offset == after + 1;
}

// `since` requests that cannot be answered completely before looking at any
// publication: another epoch (history was lost) or a position ahead of top.
inline bool since_is_answerable(const StreamPosition& since, const std::string& epoch,
                                std::uint64_t top) {
  return since.epoch == epoch && since.offset <= top;
}

}  // namespace duplex::engines::detail
