#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>

#include "kafka/kafka_internal.h"

namespace iotinfer::kafka {

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
    const auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (remaining.count() < 0) break;
    const Message m(rd_kafka_consumer_poll(consumer, static_cast<int>(remaining.count())));
    if (options.failed) {
      if (std::optional<Error> failed = options.failed()) return std::unexpected(std::move(*failed));
    }
    if (errors.stop) return std::unexpected(*errors.stop);
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
