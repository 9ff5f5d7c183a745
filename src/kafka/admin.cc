#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <array>
#include <iterator>
#include <map>
#include <thread>

#include "kafka/kafka.h"
#include "kafka/kafka_internal.h"

namespace iotinfer::kafka {
namespace {

// An admin client and the errors it must stop on.
struct Admin {
  ErrorListener errors;  // the client's opaque: it must outlive the client
  Handle rk;
};

Result<std::unique_ptr<Admin>> MakeAdmin(const KafkaConfig& config) {
  ASSIGN_OR_RETURN(Conf conf, MakeConf(config, ClientRole::kProducer));  // an admin client is a producer handle
  auto admin = std::make_unique<Admin>();
  ErrorListener::Attach(conf.get(), &admin->errors);
  ASSIGN_OR_RETURN(admin->rk, MakeHandle(RD_KAFKA_PRODUCER, std::move(conf)));
  return admin;
}

// Partition counts of the cluster's topics that answer without error; with `led`, only of
// those whose every partition has a leader. Asked in short slices of `timeout`, so that a
// cluster refusing the client's credentials says so at once, rather than as a timeout.
Result<std::map<std::string, int>> TopicPartitions(Admin& admin, std::chrono::milliseconds timeout, bool led = false) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const rd_kafka_metadata_t* answer = nullptr;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    const auto slice = std::clamp(left, std::chrono::milliseconds(1), std::chrono::milliseconds(500));
    const rd_kafka_resp_err_t err =
        rd_kafka_metadata(admin.rk.get(), 1, nullptr, &answer, static_cast<int>(slice.count()));
    if (!err) break;
    // Serves the error callback, and paces the retries of an error that came at once.
    rd_kafka_poll(admin.rk.get(), err == RD_KAFKA_RESP_ERR__TIMED_OUT ? 0 : 100);
    if (admin.errors.stop) return std::unexpected(*admin.errors.stop);
    // Anything else is asked again until the deadline: a broker of the bootstrap list that is
    // down fails the request at once (__TRANSPORT) while the others could answer it.
    if (left <= slice) return std::unexpected(FromKafka(err, "reading topic metadata"));
  }
  const Metadata metadata(answer);
  std::map<std::string, int> partitions;
  for (int i = 0; i < metadata->topic_cnt; ++i) {
    const rd_kafka_metadata_topic_t& topic = metadata->topics[i];
    const auto leaderless = [](const rd_kafka_metadata_partition_t& p) { return p.err || p.leader < 0; };
    if (topic.err || (led && std::any_of(topic.partitions, topic.partitions + topic.partition_cnt, leaderless))) {
      continue;
    }
    partitions[topic.topic] = topic.partition_cnt;
  }
  return partitions;
}

// Asks the cluster to create `topics` and waits for its answer.
Status CreateTopics(rd_kafka_t* rk, const std::vector<TopicSpec>& topics, std::chrono::milliseconds timeout) {
  std::vector<NewTopic> requests;
  std::array<char, 512> error{};
  for (const auto& spec : topics) {
    NewTopic topic(
        rd_kafka_NewTopic_new(spec.name.c_str(), spec.partitions, spec.replication_factor, error.data(), error.size()));
    if (!topic) return std::unexpected(Error::InvalidInput(fmt::format("topic {}: {}", spec.name, error.data())));
    std::map<std::string, std::string> configs = spec.configs;
    // The broker's append time, not the producer's: a device with a wrong clock must not have
    // its records deleted at once by time-based retention, and the latency report's stages
    // need the time each record reached the broker (docs/latency.md).
    configs.try_emplace("message.timestamp.type", "LogAppendTime");
    for (const auto& [name, value] : configs) {
      if (rd_kafka_NewTopic_set_config(topic.get(), name.c_str(), value.c_str())) {
        return std::unexpected(Error::InvalidInput(fmt::format("topic {}: config {}={}", spec.name, name, value)));
      }
    }
    requests.push_back(std::move(topic));
  }
  const Queue queue(rd_kafka_queue_new(rk));
  const AdminOptions options(rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS));
  rd_kafka_AdminOptions_set_operation_timeout(options.get(), static_cast<int>(timeout.count()), error.data(),
                                              error.size());
  std::vector<rd_kafka_NewTopic_t*> pointers = Pointers(requests);
  rd_kafka_CreateTopics(rk, pointers.data(), pointers.size(), options.get(), queue.get());
  const Event event(rd_kafka_queue_poll(queue.get(), static_cast<int>(timeout.count()) + 1000));
  if (!event) return std::unexpected(Error::Unavailable("creating topics: no answer from the cluster"));
  if (auto request_err = rd_kafka_event_error(event.get()); request_err) {
    return std::unexpected(FromKafka(request_err, "creating topics"));
  }
  size_t count = 0;
  const rd_kafka_topic_result_t** results =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event.get()), &count);
  for (size_t i = 0; i < count; ++i) {
    auto err = rd_kafka_topic_result_error(results[i]);
    // Another process may have created it between our look and our request: that is fine.
    if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      return std::unexpected(FromKafka(err, fmt::format("creating topic {}", rd_kafka_topic_result_name(results[i]))));
    }
  }
  return Ok();
}

}  // namespace

Status EnsureTopics(const KafkaConfig& config, const std::vector<TopicSpec>& topics,
                    std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(std::unique_ptr<Admin> admin, MakeAdmin(config));
  // A topic that exists but errs here, or lacks a leader for a partition, is asked for again
  // (TOPIC_ALREADY_EXISTS is fine below) and waited for like a new one: another process may
  // have created it a moment ago, and its first writes would be as much at risk as ours.
  ASSIGN_OR_RETURN(auto existing, TopicPartitions(*admin, timeout, /*led=*/true));
  std::vector<TopicSpec> missing;
  std::copy_if(topics.begin(), topics.end(), std::back_inserter(missing),
               [&](const TopicSpec& t) { return !existing.contains(t.name); });
  if (missing.empty()) return Ok();
  TRY(CreateTopics(admin->rk.get(), missing, timeout));
  // The controller has the topics now, but the broker that answers metadata may not yet: a
  // caller's next PartitionCount or subscribe would miss them. And each partition must have its
  // leader, or the first writes to it fail and wait to be retried. (Before 2.3, librdkafka's
  // idempotent producer could then count a failed first batch as "implicitly acked" by the next
  // one's success and lose it: two of 4,096 images were lost so. ./dev builds 2.12.1.)
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    ASSIGN_OR_RETURN(existing, TopicPartitions(*admin, timeout, /*led=*/true));
    if (std::all_of(topics.begin(), topics.end(), [&](const TopicSpec& t) { return existing.contains(t.name); })) {
      return Ok();
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return std::unexpected(
          Error::Unavailable("created topics do not show in the cluster's metadata with a leader for each partition"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Result<int> PartitionCount(const KafkaConfig& config, const std::string& topic, std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(std::unique_ptr<Admin> admin, MakeAdmin(config));
  ASSIGN_OR_RETURN(auto partitions, TopicPartitions(*admin, timeout));
  auto it = partitions.find(topic);
  if (it == partitions.end()) return std::unexpected(Error::NotFound(fmt::format("topic {} does not exist", topic)));
  return it->second;
}

}  // namespace iotinfer::kafka
