#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "core/error.h"
#include "kafka/kafka.h"
#include "ops/endpoints.h"
#include "store/store.h"

namespace iotinfer::sink {

struct SinkOptions {
  kafka::KafkaConfig kafka;
  store::StoreOptions store;
  std::string group = "iotinfer-sink";
  // Names this instance for its Kafka transactions; see kafka::TransactionalId.
  std::string instance_id;
  std::string input_topic = "inferences";
  std::string dlq_topic = "inferences.dlq";
  int partitions = 6;  // for topics that have to be created
  // A batch is written when it holds batch_max records or flush_interval passed since its
  // first one: the first bounds memory and the write size, the second the latency.
  int batch_max = 5000;
  // And at most this many bytes of records: invalid records may be up to the topic's limit.
  size_t batch_max_bytes = 64 << 20;
  std::chrono::milliseconds flush_interval{200};
  // While the store is unavailable, retries back off from retry_initial, doubling up to
  // retry_max; consumption waits meanwhile, so memory stays at one batch.
  std::chrono::milliseconds retry_initial{200};
  std::chrono::milliseconds retry_max{5000};
  std::chrono::milliseconds log_every{5000};  // 0: no periodic log line
  // /healthz, /readyz and /metrics (ops/endpoints.h); none when unset.
  std::optional<ops::EndpointOptions> endpoints;
};

struct SinkStats {
  int64_t consumed = 0;
  int64_t inserted = 0;       // new documents
  int64_t replaced = 0;       // documents that existed (replays after a crash or rewind)
  int64_t dead_lettered = 0;  // invalid records, sent to dlq_topic with their reason
  int64_t batches = 0;
  int64_t store_retries = 0;  // writes that failed because the store was unavailable
  int64_t aborted = 0;        // Kafka transactions aborted and their batch read again
  int64_t isolated = 0;       // records that failed every batch holding them, dead-lettered alone
  // Set while commits keep failing (ServiceLoop): how long, and why; /readyz says so.
  double stuck_seconds = 0;
  std::string stuck;
  int last_batch = 0;
  double last_write_ms = 0;  // how long the last batch's store write took
  int64_t lag = 0;
  int partitions = 0;
  bool store_available = true;  // false from a failed write until one succeeds again
};

/// One line for logs: counters, last batch size and write time, lag, assigned partitions.
std::string FormatStats(const SinkStats& stats);

/// Runs the sink until `stop` becomes true: consumes `input_topic` (read_committed) as a
/// member of `group`, validates each record (core/inference_record.h), upserts the valid ones
/// by id in one bulk write per batch, and only then commits the batch's offsets, together with
/// its dead letters (invalid records, and records the store refuses, with the reason), in one
/// Kafka transaction. A crash at any point replays at most the uncommitted batch, whose
/// upserts rewrite the same documents: the store ends with one document per record.
/// While the store is unavailable the batch is retried with backoff and a log line; a stop
/// requested meanwhile returns without committing (the batch is read again on restart).
/// `on_progress` (optional) sees the counters after every committed batch and whenever the
/// number of assigned partitions changes, and when the store becomes unavailable. With
/// `endpoints`, serves them for the whole run: ready while partitions are assigned and the
/// store answers. Returns the final counters, or an error when the service cannot start or
/// its Kafka producer is fenced.
Result<SinkStats> RunSink(const SinkOptions& options, const std::atomic<bool>& stop,
                          const std::function<void(const SinkStats&)>& on_progress = {});

}  // namespace iotinfer::sink
