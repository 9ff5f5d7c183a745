#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>

#include "core/clock.h"
#include "kafka/kafka_internal.h"

namespace iotinfer::kafka {

InputMessage Convert(const rd_kafka_message_t* m) {
  InputMessage in;
  in.topic = rd_kafka_topic_name(m->rkt);
  in.partition = m->partition;
  in.offset = m->offset;
  rd_kafka_timestamp_type_t type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
  in.timestamp_ms = rd_kafka_message_timestamp(m, &type);
  in.log_append_time = type == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME;
  in.received_at_us = NowMicros();
  if (m->key) in.message.key.assign(static_cast<const char*>(m->key), m->key_len);
  if (m->payload) in.message.value.assign(static_cast<const char*>(m->payload), m->len);
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name;
    const void* value;
    size_t size;
    for (size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
      in.message.headers.push_back({name, value ? std::string(static_cast<const char*>(value), size) : std::string()});
    }
  }
  return in;
}

std::optional<InputMessage> Unreadable(const rd_kafka_message_t* m) {
  if (!m->rkt || (m->err != RD_KAFKA_RESP_ERR__BAD_MSG && m->err != RD_KAFKA_RESP_ERR__BAD_COMPRESSION)) {
    return std::nullopt;
  }
  InputMessage in{.topic = rd_kafka_topic_name(m->rkt), .partition = m->partition, .offset = m->offset};
  in.unreadable = fmt::format("the Kafka client could not read the record at {}[{}] offset {}: {}: {}", in.topic,
                              in.partition, in.offset, rd_kafka_err2str(m->err), rd_kafka_message_errstr(m));
  return in;
}

void ApplyRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
                    std::set<TopicPartition>& assigned, const std::function<void(const std::string&)>& log) {
  const bool cooperative = std::string_view(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
  const bool assigning = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
  for (int i = 0; i < partitions->cnt; ++i) {
    const TopicPartition tp{partitions->elems[i].topic, partitions->elems[i].partition};
    if (assigning) {
      assigned.insert(tp);
    } else {
      assigned.erase(tp);
    }
  }
  if (cooperative) {
    const KafkaError ignored(assigning ? rd_kafka_incremental_assign(rk, partitions)
                                       : rd_kafka_incremental_unassign(rk, partitions));
  } else {
    rd_kafka_assign(rk, assigning ? partitions : nullptr);
  }
  if (log) {
    std::string line = fmt::format("{} {} partition(s):", assigning ? "assigned" : "revoked", partitions->cnt);
    for (int i = 0; i < partitions->cnt; ++i) {
      line += fmt::format(" {}[{}]", partitions->elems[i].topic, partitions->elems[i].partition);
    }
    log(line);
  }
}

rd_kafka_resp_err_t SeekAndWait(rd_kafka_t* consumer, const std::string& topic, int32_t partition, int64_t offset) {
  const Topic handle(rd_kafka_topic_new(consumer, topic.c_str(), nullptr));
  if (!handle) return rd_kafka_last_error();
  return rd_kafka_seek(handle.get(), partition, offset, 10000);
}

Result<Handle> SubscribeGroupMember(const KafkaConfig& config, const std::string& group,
                                    const std::vector<std::string>& topics, RebalanceCallback on_rebalance,
                                    ErrorCallback on_error, void* opaque) {
  if (topics.empty()) return std::unexpected(Error::InvalidInput("no topics to consume"));
  KafkaConfig member = config;
  for (auto [key, value] : {std::pair{"group.id", group},
                            {"enable.auto.commit", "false"},
                            {"auto.offset.reset", "earliest"},
                            {"isolation.level", "read_committed"},
                            // A crashed member's partitions wait this long for a new owner; the
                            // 45 s default is long, and heartbeats run on librdkafka's own thread.
                            {"session.timeout.ms", "10000"},
                            // Prefetch bounded in bytes: librdkafka's 64 MiB queue plus 50 MiB
                            // fetches would be most of a service's memory with large messages.
                            {"queued.max.messages.kbytes", "16384"},
                            {"fetch.max.bytes", "16777216"}}) {
    member.properties.try_emplace(key, value);
  }
  ASSIGN_OR_RETURN(Conf conf, MakeConf(member, ClientRole::kConsumer));
  rd_kafka_conf_set_rebalance_cb(conf.get(), on_rebalance);
  rd_kafka_conf_set_error_cb(conf.get(), on_error);
  rd_kafka_conf_set_opaque(conf.get(), opaque);
  ASSIGN_OR_RETURN(Handle consumer, MakeHandle(RD_KAFKA_CONSUMER, std::move(conf)));
  rd_kafka_poll_set_consumer(consumer.get());
  PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(topics.size())));
  for (const auto& topic : topics) rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  if (auto err = rd_kafka_subscribe(consumer.get(), list.get())) return std::unexpected(FromKafka(err, "subscribing"));
  return consumer;
}

int64_t Lag(rd_kafka_t* consumer, const std::set<TopicPartition>& assigned) {
  int64_t lag = 0;
  for (const auto& [topic, partition] : assigned) {
    int64_t low = 0, high = 0;
    if (rd_kafka_get_watermark_offsets(consumer, topic.c_str(), partition, &low, &high)) continue;
    PartitionList position(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(position.get(), topic.c_str(), partition);
    rd_kafka_position(consumer, position.get());
    if (position->elems[0].offset < 0) continue;
    lag += std::max<int64_t>(0, high - position->elems[0].offset);
  }
  return lag;
}

Status FillBatch(rd_kafka_t* consumer, const ErrorListener& errors, std::chrono::milliseconds idle,
                 const FillBatchOptions& options, std::vector<InputMessage>& batch) {
  using Clock = std::chrono::steady_clock;
  Clock::time_point deadline = Clock::now() + idle;
  auto start_filling = [&] {
    const Clock::time_point filled = Clock::now() + options.max_wait;
    deadline = options.fill_wait == FillWait::kFromFirst ? filled : std::min(deadline, filled);
  };
  auto keep = [&](const TopicPartition& tp) { return !options.keep || options.keep(tp); };
  size_t bytes = 0;
  while (static_cast<int>(batch.size()) < options.max_batch && bytes < options.max_batch_bytes) {
    const Clock::duration left = deadline - Clock::now();
    // Past the deadline, a batch still takes what the client holds already, without waiting:
    // with no wait at all, a batch is exactly what had come (and a caller that may not wait,
    // idle 0, still gets what is there).
    const bool overdue = left <= Clock::duration::zero();
    const auto wait = overdue ? std::chrono::milliseconds(0) : std::chrono::ceil<std::chrono::milliseconds>(left);
    const Message m(rd_kafka_consumer_poll(consumer, static_cast<int>(wait.count())));
    if (!m && overdue) break;
    if (options.failed) {
      if (std::optional<Error> failed = options.failed()) return std::unexpected(std::move(*failed));
    }
    if (errors.stop) return std::unexpected(*errors.stop);
    if (!m && options.interrupted && options.interrupted()) break;
    if (!m) continue;
    if (m->err) {
      if (std::optional<Error> stop = StopError(consumer, m.get())) return std::unexpected(std::move(*stop));
      // The consumer moves past a record it could not read: the caller dead-letters or counts
      // where it was, so that committing past it loses nothing unseen.
      if (std::optional<InputMessage> unreadable = Unreadable(m.get())) {
        if (options.log) options.log(fmt::format("consumer: {}", unreadable->unreadable));
        if (batch.empty() && options.fill_wait == FillWait::kFromFirst) start_filling();
        if (keep({unreadable->topic, unreadable->partition})) batch.push_back(std::move(*unreadable));
        continue;
      }
      // Anything else is transient (connection, coordinator, leadership): librdkafka retries.
      if (options.log && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        const std::string where =
            m->rkt ? fmt::format("{}[{}] at offset {}: ", rd_kafka_topic_name(m->rkt), m->partition, m->offset) : "";
        options.log(fmt::format("consumer: {}{}", where, rd_kafka_err2str(m->err)));
      }
      continue;
    }
    if (batch.empty()) start_filling();
    if (keep({rd_kafka_topic_name(m->rkt), m->partition})) {
      batch.push_back(Convert(m.get()));
      bytes += WireSize(batch.back().message);
    }
  }
  return Ok();
}

}  // namespace iotinfer::kafka
