#pragma once

#include <chrono>
#include <cstdint>

namespace iotinfer {

/// The wall clock in microseconds since the epoch: the unit of every time a record carries
/// (produced_at, inferred_at, the stage times), so that times taken by different processes,
/// and hosts with synchronised clocks, compare.
inline int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace iotinfer
