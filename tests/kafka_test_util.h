#pragma once

// Helpers for tests against the real broker that the `kafka` ctest fixture starts.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "core/image_message.h"
#include "kafka/kafka.h"
#include "test_util.h"

namespace iotinfer::testing {

inline constexpr const char* kTestBrokers = "127.0.0.1:9092";

/// A topic (or group) name no other test run uses.
inline std::string UniqueTopic(const char* prefix) {
  return fmt::format("{}-{}", prefix, std::chrono::steady_clock::now().time_since_epoch().count());
}

/// A consumer of a group of its own (named after `group_prefix`) subscribed to `topic` from
/// its beginning, with `extra` properties; the caller closes and destroys it.
inline rd_kafka_t* SubscribeFromStart(const std::string& topic, const char* group_prefix, const std::string& brokers,
                                      const std::map<std::string, std::string>& extra = {}) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char error[512];
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), error, sizeof error);
  rd_kafka_conf_set(conf, "group.id", UniqueTopic(group_prefix).c_str(), error, sizeof error);
  rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", error, sizeof error);
  for (const auto& [key, value] : extra) rd_kafka_conf_set(conf, key.c_str(), value.c_str(), error, sizeof error);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof error);
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  return rk;
}

/// Reads messages of `topic` from the beginning until `expected` arrived or 60 s passed,
/// then goes on reading for `settle`, so that anything beyond `expected` (a duplicate) shows.
/// librdkafka's default isolation.level, read_committed, applies.
/// Each message with its timestamp in ms (the broker's append time where the topic has
/// LogAppendTime, as topics made by kafka::EnsureTopics do).
inline std::vector<std::pair<WireMessage, int64_t>> ReadAllTimed(
    const std::string& topic, size_t expected, std::chrono::milliseconds settle = std::chrono::milliseconds(0),
    const std::string& brokers = kTestBrokers) {
  rd_kafka_t* rk = SubscribeFromStart(topic, "reader", brokers);
  std::vector<std::pair<WireMessage, int64_t>> out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  auto settle_until = std::chrono::steady_clock::time_point::max();
  while (std::chrono::steady_clock::now() < std::min(deadline, settle_until)) {
    if (out.size() >= expected && settle_until == std::chrono::steady_clock::time_point::max()) {
      if (settle.count() == 0) break;
      settle_until = std::chrono::steady_clock::now() + settle;
    }
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 500);
    if (!m) continue;
    if (!m->err) {
      WireMessage w{{static_cast<const char*>(m->key), m->key_len}, {static_cast<const char*>(m->payload), m->len}, {}};
      rd_kafka_headers_t* headers = nullptr;
      if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name;
        const void* value;
        size_t size;
        for (size_t i = 0; !rd_kafka_header_get_all(headers, i, &name, &value, &size); ++i) {
          w.headers.push_back({name, {static_cast<const char*>(value), size}});
        }
      }
      out.emplace_back(std::move(w), rd_kafka_message_timestamp(m, nullptr));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return out;
}

inline std::vector<WireMessage> ReadAll(const std::string& topic, size_t expected,
                                        std::chrono::milliseconds settle = std::chrono::milliseconds(0),
                                        const std::string& brokers = kTestBrokers) {
  std::vector<WireMessage> out;
  for (auto& [message, timestamp] : ReadAllTimed(topic, expected, settle, brokers)) out.push_back(std::move(message));
  return out;
}

/// Writes `messages` with the project's producer, each to its topic, and fails the test unless
/// the broker acknowledged every one.
inline void WriteAll(const std::vector<kafka::OutputMessage>& messages) {
  auto producer = kafka::Producer::Create({});
  ASSERT_OK(producer);
  for (const auto& m : messages) ASSERT_OK((*producer)->Send(m.topic, m.message));
  ASSERT_OK((*producer)->Flush());
  ASSERT_EQ((*producer)->stats().acknowledged, static_cast<int64_t>(messages.size()));
}

/// Writes each (partition, message) of `messages` to `topic` in one transaction and aborts it:
/// records a read_committed reader must never see.
inline void ProduceAbortedTransaction(const std::string& topic,
                                      const std::vector<std::pair<int32_t, WireMessage>>& messages,
                                      const std::string& brokers = kTestBrokers) {
  char error[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), error, sizeof error);
  rd_kafka_conf_set(conf, "transactional.id", UniqueTopic("aborted-txn").c_str(), error, sizeof error);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error);
  ASSERT_NE(rk, nullptr) << error;
  ASSERT_EQ(rd_kafka_init_transactions(rk, 30000), nullptr);
  ASSERT_EQ(rd_kafka_begin_transaction(rk), nullptr);
  for (const auto& [partition, m] : messages) {
    ASSERT_EQ(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
                                RD_KAFKA_V_KEY(m.key.data(), m.key.size()),
                                RD_KAFKA_V_VALUE(const_cast<char*>(m.value.data()), m.value.size()),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  rd_kafka_flush(rk, 10000);
  ASSERT_EQ(rd_kafka_abort_transaction(rk, 30000), nullptr);
  rd_kafka_destroy(rk);
}

/// How many messages `topic`'s partitions 0..partitions-1 hold (high minus low watermark,
/// summed; aborted transactions' records and markers count too), or -1 when a watermark cannot
/// be read.
inline int64_t TopicMessageCount(const std::string& topic, int partitions, const std::string& brokers = kTestBrokers) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char error[512];
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), error, sizeof error);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error);
  int64_t count = 0;
  for (int p = 0; p < partitions && count >= 0; ++p) {
    int64_t low = -1, high = -1;
    if (rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      count = -1;
    } else {
      count += high - low;
    }
  }
  rd_kafka_destroy(rk);
  return count;
}

/// Where each image of `topic` sits, id -> "partition@offset", read from its "id" header to
/// the partitions' ends; payloads are dropped as they arrive, so a topic of gigabytes can be
/// read. For the message of a test that finds images missing from a topic.
inline std::map<std::string, std::string> ImagePositions(const std::string& topic,
                                                         const std::string& brokers = kTestBrokers) {
  rd_kafka_t* rk = SubscribeFromStart(topic, "positions", brokers, {{"enable.partition.eof", "true"}});
  std::map<std::string, std::string> positions;
  std::map<int32_t, bool> at_end;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
  while (std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 500);
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      at_end[m->partition] = true;
    } else if (!m->err) {
      at_end[m->partition] = false;
      rd_kafka_headers_t* headers = nullptr;
      const void* value = nullptr;
      size_t size = 0;
      if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR &&
          rd_kafka_header_get_last(headers, "id", &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        positions[std::string(static_cast<const char*>(value), size)] = fmt::format("{}@{}", m->partition, m->offset);
      }
    }
    rd_kafka_message_destroy(m);
    rd_kafka_topic_partition_list_t* assigned = nullptr;
    const bool done = rd_kafka_assignment(rk, &assigned) == RD_KAFKA_RESP_ERR_NO_ERROR && assigned->cnt > 0 &&
                      static_cast<size_t>(assigned->cnt) == at_end.size() &&
                      std::all_of(at_end.begin(), at_end.end(), [](const auto& e) { return e.second; });
    if (assigned) rd_kafka_topic_partition_list_destroy(assigned);
    if (done) break;
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return positions;
}

/// "partition: committed/end" for each partition of `topic`, from `group`'s committed offsets
/// and the broker's high watermarks: what a test prints when a consumer group fell short.
inline std::string GroupProgress(const std::string& group, const std::string& topic, int partitions,
                                 const std::string& brokers = kTestBrokers) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char error[512];
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), error, sizeof error);
  rd_kafka_conf_set(conf, "group.id", group.c_str(), error, sizeof error);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof error);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
  std::string progress;
  if (rd_kafka_committed(rk, list, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) progress = "(committed offsets unknown) ";
  for (int p = 0; p < partitions; ++p) {
    int64_t low = -1, high = -1;
    rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high, 10000);
    // A log start above 0 means records were deleted (retention) rather than never written.
    const std::string start = low > 0 ? fmt::format(" (from {})", low) : "";
    progress += fmt::format("[{}] {}/{}{} ", p, list->elems[p].offset, high, start);
  }
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_destroy(rk);
  return progress;
}

}  // namespace iotinfer::testing
