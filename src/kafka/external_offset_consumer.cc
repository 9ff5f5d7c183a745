#include "kafka/external_offset_consumer.h"

#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include <optional>

#include "kafka/kafka_internal.h"

namespace iotinfer::kafka {

struct ExternalOffsetConsumer::Impl {
  ExternalOffsetConsumerOptions options;
  StartOffsets start_offsets;
  OnRevoke on_revoke;
  Handle consumer;
  std::set<TopicPartition> assigned;
  std::optional<Error> failed;  // from start_offsets, reported by the next Poll
  ErrorListener errors;

  static std::vector<PartitionId> Ids(const rd_kafka_topic_partition_list_t* list) {
    std::vector<PartitionId> ids;
    for (int i = 0; i < list->cnt; ++i) ids.push_back({list->elems[i].topic, list->elems[i].partition});
    return ids;
  }

  static void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
                          void* opaque) {
    auto* impl = static_cast<Impl*>(opaque);
    const std::vector<PartitionId> ids = Ids(partitions);
    if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      if (impl->on_revoke) impl->on_revoke(ids);
      ApplyRebalance(rk, err, partitions, impl->assigned, impl->options.log);
      return;
    }
    Result<std::map<PartitionId, int64_t>> starts = impl->start_offsets(ids);
    if (!starts) {
      // Taking the partitions without knowing where to start would count records twice or
      // not at all; the member keeps none and Poll reports why.
      impl->failed = starts.error();
      const PartitionList none(rd_kafka_topic_partition_list_new(0));
      ApplyRebalance(rk, err, none.get(), impl->assigned, impl->options.log);
      return;
    }
    for (int i = 0; i < partitions->cnt; ++i) {
      auto it = starts->find(ids[static_cast<size_t>(i)]);
      partitions->elems[i].offset = it == starts->end() ? RD_KAFKA_OFFSET_BEGINNING : it->second;
    }
    ApplyRebalance(rk, err, partitions, impl->assigned, impl->options.log);
  }
};

ExternalOffsetConsumer::ExternalOffsetConsumer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ExternalOffsetConsumer::~ExternalOffsetConsumer() { Close(); }

Result<std::unique_ptr<ExternalOffsetConsumer>> ExternalOffsetConsumer::Create(
    const ExternalOffsetConsumerOptions& options, StartOffsets start_offsets, OnRevoke on_revoke) {
  if (options.max_batch < 1) return std::unexpected(Error::InvalidInput("batch size must be at least 1"));
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->start_offsets = std::move(start_offsets);
  impl->on_revoke = std::move(on_revoke);
  KafkaConfig config = options.kafka;
  // Positions come from the caller; nothing may be stored or committed behind its back.
  config.properties.try_emplace("enable.auto.offset.store", "false");
  ASSIGN_OR_RETURN(impl->consumer, SubscribeGroupMember(config, options.group, options.topics, &Impl::OnRebalance,
                                                        &RecordErrorsOf<Impl>, impl.get()));
  return std::unique_ptr<ExternalOffsetConsumer>(new ExternalOffsetConsumer(std::move(impl)));
}

Result<std::vector<InputMessage>> ExternalOffsetConsumer::Poll(std::chrono::milliseconds idle) {
  Impl& impl = *impl_;
  std::vector<InputMessage> batch;
  const FillBatchOptions fill{
      .max_batch = impl.options.max_batch,
      .max_batch_bytes = impl.options.max_batch_bytes,
      .max_wait = impl.options.max_wait,
      // The batch may wait for more only within `idle`: the caller's next deadline (the
      // stream's update) must not slip.
      .fill_wait = FillWait::kWithinIdle,
      .failed = [&]() -> std::optional<Error> {
        if (!impl.failed) return std::nullopt;
        return impl.failed->WithContext("finding where assigned partitions start");
      },
      // A rebalance inside this poll may have taken the partition away since it was fetched.
      .keep = [&](const TopicPartition& tp) { return impl.assigned.contains(tp); },
  };
  TRY(FillBatch(impl.consumer.get(), impl.errors, idle, fill, batch));
  return batch;
}

Status ExternalOffsetConsumer::Seek(const PartitionId& partition, int64_t offset) {
  if (const rd_kafka_resp_err_t err =
          SeekAndWait(impl_->consumer.get(), partition.topic, partition.partition, offset)) {
    return std::unexpected(FromKafka(err, fmt::format("seeking {} [{}]", partition.topic, partition.partition)));
  }
  return Ok();
}

void ExternalOffsetConsumer::CommitForMonitoring(const std::map<PartitionId, int64_t>& next) {
  if (next.empty()) return;
  PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(next.size())));
  for (const auto& [id, offset] : next) {
    rd_kafka_topic_partition_list_add(list.get(), id.topic.c_str(), id.partition)->offset = offset;
  }
  rd_kafka_commit(impl_->consumer.get(), list.get(), /*async=*/1);
}

std::vector<PartitionId> ExternalOffsetConsumer::assigned() const {
  std::vector<PartitionId> ids;
  for (const auto& [topic, partition] : impl_->assigned) ids.push_back({topic, partition});
  return ids;
}

int64_t ExternalOffsetConsumer::lag() const { return Lag(impl_->consumer.get(), impl_->assigned); }

void ExternalOffsetConsumer::Close() {
  if (impl_ && impl_->consumer) {
    rd_kafka_consumer_close(impl_->consumer.get());
    impl_->consumer.reset();
  }
}

}  // namespace iotinfer::kafka
