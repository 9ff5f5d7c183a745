#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include <map>

#include "kafka/kafka.h"
#include "kafka/kafka_internal.h"

namespace iotinfer::kafka {

Status ScanTopic(const KafkaConfig& config, const std::string& topic,
                 const std::function<Status(const InputMessage&)>& on_message, std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(int partitions, PartitionCount(config, topic));
  ASSIGN_OR_RETURN(Conf conf, MakeConf(config, ClientRole::kConsumer));
  char errstr[512];
  // A group id is required by the consumer API even though nothing joins or commits.
  for (const auto& [key, value] : {std::pair{"group.id", "iotinfer-scan"},
                                   {"enable.auto.commit", "false"},
                                   {"enable.auto.offset.store", "false"},
                                   {"enable.partition.eof", "true"},
                                   {"isolation.level", "read_committed"}}) {
    if (rd_kafka_conf_set(conf.get(), key, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
      return std::unexpected(Error::Internal(errstr));
    }
  }
  ErrorListener errors;  // declared first: the consumer's callback writes it until the end
  ErrorListener::Attach(conf.get(), &errors);
  ASSIGN_OR_RETURN(Handle consumer, MakeHandle(RD_KAFKA_CONSUMER, std::move(conf)));
  // The end is each partition's high watermark now. Under read_committed the consumer
  // reaches it only once the transactions below it are resolved: commit_transaction returns
  // before the markers are written, so the first EOF can come too early to be the end.
  // The watermarks are asked with read_uncommitted: a read_committed handle gets the last
  // stable offset instead, which stays at an unresolved transaction's first message (offset
  // 0 on a fresh topic) until its markers land, and the scan would end before it began.
  ASSIGN_OR_RETURN(Conf watermark_conf, MakeConf(config, ClientRole::kConsumer));
  for (const auto& [key, value] : {std::pair{"group.id", "iotinfer-scan"}, {"isolation.level", "read_uncommitted"}}) {
    if (rd_kafka_conf_set(watermark_conf.get(), key, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
      return std::unexpected(Error::Internal(errstr));
    }
  }
  ASSIGN_OR_RETURN(Handle watermarks, MakeHandle(RD_KAFKA_CONSUMER, std::move(watermark_conf)));
  std::map<int32_t, int64_t> end;
  PartitionList list(rd_kafka_topic_partition_list_new(partitions));
  for (int p = 0; p < partitions; ++p) {
    int64_t low = 0, high = 0;
    if (auto err = rd_kafka_query_watermark_offsets(watermarks.get(), topic.c_str(), p, &low, &high, 10000); err) {
      return std::unexpected(FromKafka(err, fmt::format("reading the end of {} [{}]", topic, p)));
    }
    if (high > low) {
      end[p] = high;
      rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
  }
  if (end.empty()) return Ok();
  if (auto err = rd_kafka_assign(consumer.get(), list.get()); err) {
    return std::unexpected(FromKafka(err, "assigning " + topic));
  }
  auto finish = [&](int32_t partition) {
    end.erase(partition);
    PartitionList one(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(one.get(), topic.c_str(), partition);
    rd_kafka_pause_partitions(consumer.get(), one.get());
  };
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Status status = Ok();
  while (status && !end.empty()) {
    if (std::chrono::steady_clock::now() > deadline) {
      status = std::unexpected(
          Error::Unavailable(fmt::format("scanning {}: {} of {} partitions not read to the end in {} ms", topic,
                                         end.size(), partitions, timeout.count())));
      break;
    }
    const Message m(rd_kafka_consumer_poll(consumer.get(), 200));
    if (errors.stop) {
      status = std::unexpected(*errors.stop);
      break;
    }
    if (!m) continue;
    auto it = end.find(m->partition);
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (it != end.end() && m->offset >= it->second) finish(m->partition);
    } else if (m->err) {
      Error error = StopError(consumer.get(), m.get()).value_or(FromKafka(m->err, "scanning " + topic));
      if (error.code() != Error::Code::kUnavailable) status = std::unexpected(std::move(error));
    } else if (it != end.end() && m->offset < it->second) {
      status = on_message(Convert(m.get()));
      if (m->offset + 1 >= it->second) finish(m->partition);
    }
  }
  rd_kafka_consumer_close(consumer.get());
  return status;
}

}  // namespace iotinfer::kafka
