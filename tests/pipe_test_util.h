#pragma once

// Helpers for the tests of TransactionalPipe, on the mock cluster and on the real broker.
#include <gtest/gtest.h>

#include <chrono>
#include <span>
#include <string>
#include <vector>

#include "kafka/transactional_pipe.h"

namespace iotinfer::kafka {

/// What the pipe's polls return until `count` messages came (or 100 polls passed); `held` as
/// PollBatch's.
inline std::vector<InputMessage> PollUpTo(TransactionalPipe& pipe, size_t count,
                                          std::span<const InputMessage> held = {}) {
  std::vector<InputMessage> batch;
  for (int i = 0; i < 100 && batch.size() < count; ++i) {
    auto more = pipe.PollBatch(std::chrono::milliseconds(200), held);
    EXPECT_TRUE(more) << more.error().message();
    if (more) batch.insert(batch.end(), more->begin(), more->end());
  }
  return batch;
}

/// Each message of `batch` again, to `topic`.
inline std::vector<OutputMessage> OutputsOf(const std::vector<InputMessage>& batch, const std::string& topic = "out") {
  std::vector<OutputMessage> outputs;
  for (const auto& in : batch) outputs.push_back({topic, {in.message.key, in.message.value, {}}});
  return outputs;
}

}  // namespace iotinfer::kafka
