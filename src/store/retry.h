#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>

#include "core/error.h"
#include "core/stop.h"

namespace iotinfer::store {

/// How a service waits out a store outage: the first wait, doubled after each failed try up
/// to the longest.
struct RetryPolicy {
  std::chrono::milliseconds initial{200};
  std::chrono::milliseconds max{5000};
};

/// True for the errors a store gives while it is down or busy (Unavailable, Io): trying again
/// later may succeed. Anything else (a bad document, a refused command) would fail again.
inline bool IsOutage(const Error& error) {
  return error.code() == Error::Code::kUnavailable || error.code() == Error::Code::kIo;
}

/// Calls `write` (returning a Result) until it succeeds or fails with an error that is no
/// outage, calling `on_retry(error, wait)` before each wait. Unavailable when `stop` becomes
/// true while waiting: the caller keeps what it was writing, nothing is lost.
template <typename Write, typename OnRetry>
auto WriteWithRetries(Write write, const RetryPolicy& policy, const std::atomic<bool>& stop, OnRetry on_retry)
    -> decltype(write()) {
  auto wait = policy.initial;
  for (;;) {
    auto result = write();
    if (result || !IsOutage(result.error())) return result;
    on_retry(result.error(), wait);
    if (!SleepUnlessStopped(wait, stop)) {
      return std::unexpected(Error::Unavailable("stopped while the store was unavailable"));
    }
    wait = std::min(wait * 2, policy.max);
  }
}

}  // namespace iotinfer::store
