#pragma once

#include <memory>
#include <string>

#include "core/error.h"
#include "kafka/kafka.h"

namespace iotinfer::kafka {

/// librdkafka's in-process mock Kafka cluster: brokers on ephemeral 127.0.0.1 ports that
/// speak enough of the protocol for producers, consumer groups and transactions. Only the
/// embedded demo uses it; tests use a real broker. Data lives in memory and dies with it.
class MockCluster {
 public:
  static Result<std::unique_ptr<MockCluster>> Create(int brokers = 1);
  ~MockCluster();
  MockCluster(const MockCluster&) = delete;
  MockCluster& operator=(const MockCluster&) = delete;

  /// Creates `topic`. The mock cluster does not serve the CreateTopics request (so
  /// EnsureTopics cannot create them): create every topic here first.
  Status CreateTopic(const TopicSpec& topic);

  /// "127.0.0.1:PORT,..." for KafkaConfig::brokers.
  std::string bootstrap_servers() const;

 private:
  struct Impl;
  explicit MockCluster(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace iotinfer::kafka
