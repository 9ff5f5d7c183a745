#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kafka/external_offset_consumer.h"
#include "kafka/kafka.h"
#include "stream/dashboard.h"

namespace iotinfer::stream {

/// Follows dead-letter topics for the dashboard: counts by reason, and the latest letters.
/// Each topic is read from its beginning (read_committed) by a consumer group of this process
/// alone, which never commits, so every instance sees every letter and leaves nothing behind;
/// a partition assigned again resumes after the letters already counted.
/// A topic that does not exist yet (no service has dead-lettered anything) is looked for again
/// every 5 s. Not thread-safe.
class DeadLetterWatch {
 public:
  DeadLetterWatch(kafka::KafkaConfig kafka, std::vector<std::string> topics, std::string group);
  ~DeadLetterWatch();

  /// Reads what has come since the last call, without waiting, into `view`.
  void Poll(DeadLetterView& view);

 private:
  struct Topic {
    std::string name;
    std::unique_ptr<kafka::ExternalOffsetConsumer> consumer;
    std::chrono::steady_clock::time_point next_look{};
    // The next offset to count in each partition read so far: where a partition assigned
    // again (after a rebalance, or to a new consumer after an error) resumes, so that no
    // letter is counted twice. Shared with the consumer's start-offsets callback.
    std::shared_ptr<std::map<kafka::PartitionId, int64_t>> counted =
        std::make_shared<std::map<kafka::PartitionId, int64_t>>();
  };
  kafka::KafkaConfig kafka_;
  std::string group_;
  std::vector<Topic> topics_;
};

}  // namespace iotinfer::stream
