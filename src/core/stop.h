#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

namespace iotinfer {

/// Sleeps `duration` in short steps, so that a service waiting out a failure still stops
/// promptly; false when `stop` became true meanwhile.
inline bool SleepUnlessStopped(std::chrono::milliseconds duration, const std::atomic<bool>& stop) {
  using Clock = std::chrono::steady_clock;
  const auto until = Clock::now() + duration;
  while (Clock::now() < until) {
    if (stop.load()) return false;
    std::this_thread::sleep_for(std::min<Clock::duration>(std::chrono::milliseconds(50), until - Clock::now()));
  }
  return !stop.load();
}

}  // namespace iotinfer
