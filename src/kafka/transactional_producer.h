#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "kafka/kafka.h"

namespace iotinfer::kafka {

struct TransactionalProducerOptions {
  KafkaConfig kafka;
  // The same for every run of one job, so that each run fences the ones before it.
  std::string transactional_id;
  // Looked up at creation, so that the first transaction does not wait for them.
  std::vector<std::string> topics;
  std::chrono::milliseconds init_timeout{30000};
};

/// A producer whose writes are Kafka transactions with no consumer behind them: all the
/// messages of one Commit become visible to read_committed readers together, or none of them.
/// Not thread-safe.
class TransactionalProducer {
 public:
  /// Creates the producer and initialises its transactions. That fences every earlier producer
  /// of the same transactional id: a transaction one left open (it crashed, or still runs) is
  /// aborted, one it was committing is completed first, and it can commit nothing more. Once
  /// Create returns, then, a read_committed reader sees everything the id will ever have
  /// committed before. Unavailable when the cluster does not answer within init_timeout;
  /// FailedPrecondition when it refuses the client; InvalidInput for a bad property.
  static Result<std::unique_ptr<TransactionalProducer>> Create(const TransactionalProducerOptions& options);
  ~TransactionalProducer();
  TransactionalProducer(const TransactionalProducer&) = delete;
  TransactionalProducer& operator=(const TransactionalProducer&) = delete;

  /// Writes `messages` in one transaction and commits it. `before_commit`, when set, is called
  /// once every message is written to its partition (acknowledged, not yet visible), just
  /// before the commit. On failure the transaction is aborted and none of it is visible:
  /// InvalidInput when the cluster refused a message itself (too large for its topic, say),
  /// which fails again; FailedPrecondition when another producer of the transactional id has
  /// fenced this one or it is in a fatal state (it can commit nothing more); Unavailable
  /// otherwise.
  Status Commit(std::span<const OutputMessage> messages, const std::function<void()>& before_commit = {});

 private:
  struct Impl;
  explicit TransactionalProducer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace iotinfer::kafka
