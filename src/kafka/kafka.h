#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/image_message.h"

namespace iotinfer::kafka {

/// Property prefixes that direct a property to one kind of client, as Kafka Streams does:
/// "consumer.fetch.wait.max.ms=10" reaches consumers only, "producer.linger.ms=20" producers
/// (and admin clients) only. librdkafka has no property that starts with either.
inline constexpr std::string_view kConsumerPrefix = "consumer.";
inline constexpr std::string_view kProducerPrefix = "producer.";

/// How to reach a Kafka cluster: bootstrap servers plus any librdkafka property
/// (security.protocol, sasl.*, ssl.*, ...), so SASL and TLS need no code of ours. A property
/// without a prefix goes to every client a command makes: a service that consumes and
/// produces would otherwise log librdkafka's warning that one of them ignores it.
struct KafkaConfig {
  std::string brokers = "127.0.0.1:9092";
  std::map<std::string, std::string> properties;

  /// Adds "KEY=VALUE" (the --kafka flag); InvalidInput when there is no '=' or no key.
  Status AddProperty(std::string_view key_equals_value);

  /// Adds every "KEY=VALUE" line of a properties file (--kafka-config: SASL/TLS settings
  /// mounted from a Kubernetes Secret, say). Blank lines and lines starting with '#' or '!'
  /// are skipped; spaces around keys and values are trimmed. NotFound when the file cannot
  /// be read; InvalidInput naming the file and line (never its value) for a malformed line.
  Status AddPropertiesFile(const std::string& path);

  /// What every command does with --kafka-config and --kafka: the file (none when empty),
  /// then each KEY=VALUE, which wins over it. Errors as AddPropertiesFile's and AddProperty's.
  Status AddProperties(const std::string& file, std::span<const std::string> overrides);

  /// "bootstrap.servers=... k=v ..." with the values of secret-bearing properties
  /// (passwords, keys, tokens, secrets, JAAS configs) replaced by "***": safe to log.
  std::string Describe() const;
};

/// True for librdkafka properties whose values must never reach a log.
bool IsSecretProperty(std::string_view key);

/// A consumed message with where it came from.
struct InputMessage {
  WireMessage message;
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  // The record's timestamp, milliseconds since the epoch; -1 when it has none.
  int64_t timestamp_ms = -1;
  // Whether timestamp_ms is the broker's append time (the topic's message.timestamp.type is
  // LogAppendTime) rather than the one its producer gave.
  bool log_append_time = false;
  // When the client handed the record to this process, microseconds since the epoch.
  int64_t received_at_us = 0;

  /// The broker's append time in microseconds since the epoch, where the record has one.
  std::optional<int64_t> appended_at_us() const {
    if (!log_append_time || timestamp_ms < 0) return std::nullopt;
    return timestamp_ms * 1000;
  }
  // Set when the client could not read the record (a corrupt batch, unknown compression):
  // why. `message` is then empty, and the message stands only for its place in the partition,
  // which must still be dead-lettered and committed past, or the partition would stall.
  std::string unreadable;
};

/// A message to produce and the topic it goes to.
struct OutputMessage {
  std::string topic;
  WireMessage message;
};

struct TopicSpec {
  std::string name;
  int partitions = 6;
  // kBrokerDefault: the cluster's default.replication.factor, so that a topic a service
  // creates on a production cluster is replicated as the operator set it (3, typically), not 1.
  static constexpr int kBrokerDefault = -1;
  int replication_factor = kBrokerDefault;
  // Topic configs for a topic that is created (max.message.bytes, min.insync.replicas, ...).
  // message.timestamp.type is LogAppendTime unless set here.
  std::map<std::string, std::string> configs;
};

/// Creates the topics that do not exist yet; existing topics are left as they are (their
/// partition counts are not changed). Returns once every partition of every topic has a leader,
/// so that the caller's first writes cannot go to a partition still being set up. Unavailable
/// when the cluster does not answer, or a partition has no leader, within `timeout`;
/// InvalidInput for a bad spec or a broker that refuses it.
Status EnsureTopics(const KafkaConfig& config, const std::vector<TopicSpec>& topics,
                    std::chrono::milliseconds timeout = std::chrono::seconds(30));

/// Partition count of `topic`, or NotFound.
Result<int> PartitionCount(const KafkaConfig& config, const std::string& topic,
                           std::chrono::milliseconds timeout = std::chrono::seconds(10));

/// Reads `topic` from the beginning of every partition up to its end as of the call (its
/// high watermark), calling `on_message` in order within each partition. read_committed:
/// aborted messages are skipped, and a transaction still open at the end is waited for. Joins no group and commits
/// nothing. Stops at the first error `on_message` returns; Unavailable when the end is not reached within `timeout`.
Status ScanTopic(const KafkaConfig& config, const std::string& topic,
                 const std::function<Status(const InputMessage&)>& on_message,
                 std::chrono::milliseconds timeout = std::chrono::seconds(120));

struct ProducerOptions {
  bool idempotent = true;  // enable.idempotence: no duplicates or reordering on retries
  std::chrono::milliseconds linger{5};
  // Looked up at creation, so the first messages to them are not held back ~1 s while
  // librdkafka learns where they live.
  std::vector<std::string> topics;
  // Create() returns only once the idempotent producer holds its producer id (or after 10 s):
  // librdkafka often asks for it before it has a broker to ask, then asks again 500 ms later,
  // and every message sent meanwhile waits. For senders whose clock starts at creation (the
  // devices of `produce`). Costs a statistics report every 100 ms, unless --kafka sets one.
  bool await_producer_id = false;
};

/// Delivery accounting: every message sent is eventually acknowledged or failed.
struct ProducerStats {
  int64_t sent = 0;
  int64_t acknowledged = 0;
  int64_t failed = 0;
  std::string last_error;  // the most recent delivery failure, for the summary
};

/// An asynchronous Kafka producer. Send() queues; delivery reports update stats() as
/// Poll() or Flush() serve them. Not thread-safe.
class Producer {
 public:
  static Result<std::unique_ptr<Producer>> Create(const KafkaConfig& config, const ProducerOptions& options = {});
  ~Producer();
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

  /// Queues `message` for `topic`, blocking (and serving delivery reports) while the local
  /// queue is full. Errors are immediate refusals (unknown topic, message too large, fatal
  /// producer state); they count as failed.
  Status Send(const std::string& topic, const WireMessage& message);

  /// Serves delivery reports without blocking longer than `timeout`.
  void Poll(std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

  /// Waits until every queued message is acknowledged or failed, or `timeout` passes
  /// (Unavailable then, with the count still in flight).
  Status Flush(std::chrono::milliseconds timeout = std::chrono::seconds(60));

  const ProducerStats& stats() const;

 private:
  struct Impl;
  explicit Producer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace iotinfer::kafka
