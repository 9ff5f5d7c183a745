#pragma once

#include <chrono>
#include <compare>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "kafka/kafka.h"

namespace iotinfer::kafka {

struct PartitionId {
  std::string topic;
  int32_t partition = 0;
  friend auto operator<=>(const PartitionId&, const PartitionId&) = default;
};

/// Where each newly assigned partition starts: the next offset to read. Partitions missing
/// from the result start at the beginning. Called from inside Poll.
using StartOffsets = std::function<Result<std::map<PartitionId, int64_t>>(std::span<const PartitionId>)>;
/// Told about partitions before they are taken away, from inside Poll: the last moment to
/// save what was counted for them.
using OnRevoke = std::function<void(std::span<const PartitionId>)>;

struct ExternalOffsetConsumerOptions {
  KafkaConfig kafka;
  std::string group;
  std::vector<std::string> topics;
  int max_batch = 10000;
  size_t max_batch_bytes = 64 << 20;       // a batch also ends once it holds this many bytes
  std::chrono::milliseconds max_wait{20};  // how long a batch may wait to fill up
  // Optional: one line per rebalance ("assigned 3 partition(s): inferences[0] ..."), for the log.
  std::function<void(const std::string&)> log;
};

/// A consumer group member (read_committed) whose positions live with its caller's state,
/// not in Kafka: when partitions are assigned it asks `start_offsets` where to begin, so a
/// state saved atomically with its offsets (iotinfer stream) resumes exactly where it was.
/// Offsets are also committed to the group, asynchronously, only so that the usual tools
/// show the group's lag; they are never read back. Not thread-safe.
class ExternalOffsetConsumer {
 public:
  static Result<std::unique_ptr<ExternalOffsetConsumer>> Create(const ExternalOffsetConsumerOptions& options,
                                                                StartOffsets start_offsets, OnRevoke on_revoke = {});
  ~ExternalOffsetConsumer();
  ExternalOffsetConsumer(const ExternalOffsetConsumer&) = delete;
  ExternalOffsetConsumer& operator=(const ExternalOffsetConsumer&) = delete;

  /// Up to max_batch messages (and max_batch_bytes) of currently assigned partitions, returned within `idle`: the
  /// first awaited for at most that long, then more for at most max_wait. An error when
  /// `start_offsets` failed (the partitions were not taken: the caller should stop, as it
  /// cannot know where to start) or the consumer failed fatally.
  Result<std::vector<InputMessage>> Poll(std::chrono::milliseconds idle = std::chrono::milliseconds(200));

  /// Moves an assigned partition's position, e.g. back to a state saved by another member.
  Status Seek(const PartitionId& partition, int64_t offset);

  /// Records `next` (next offset per partition) as the group's committed offsets, for
  /// monitoring only; fire and forget.
  void CommitForMonitoring(const std::map<PartitionId, int64_t>& next);

  std::vector<PartitionId> assigned() const;
  int64_t lag() const;

  /// Leaves the group (revoking its partitions first, so `on_revoke` runs).
  void Close();

 private:
  struct Impl;
  explicit ExternalOffsetConsumer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace iotinfer::kafka
