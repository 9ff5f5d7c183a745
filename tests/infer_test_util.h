#pragma once

// Runs the inference service in tests until it has consumed what they sent.
#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "infer/infer.h"

namespace iotinfer::testing {

/// Runs RunInfer in a thread until `expected` messages are consumed (committed) or `timeout`
/// passes, then stops it and returns its final counters (or its error).
/// `at_end` (optional) runs on the service's thread once `expected` are consumed, before it
/// stops: while its endpoints still serve. `each` (optional) sees every progress report before.
inline Result<infer::InferStats> RunInferUntil(const infer::InferOptions& options, int64_t expected,
                                               std::chrono::seconds timeout,
                                               const std::function<void(const infer::InferStats&)>& at_end = {},
                                               const std::function<void(const infer::InferStats&)>& each = {}) {
  std::atomic<bool> stop{false};
  Result<infer::InferStats> result = std::unexpected(Error::Internal("did not run"));
  std::thread service([&] {
    result = infer::RunInfer(options, stop, [&](const infer::InferStats& s) {
      if (each) each(s);
      if (s.consumed >= expected && !stop) {
        if (at_end) at_end(s);
        stop = true;
      }
    });
  });
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!stop && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  stop = true;
  service.join();
  return result;
}

}  // namespace iotinfer::testing
