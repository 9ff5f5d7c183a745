#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "core/error.h"
#include "core/topics.h"
#include "kafka/dead_letter.h"
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
  std::string input_topic = topics::kInferences;
  std::string dlq_topic = topics::kInferencesDeadLetters;
  // Where each record that became a document is published (what `stream` counts); empty:
  // nowhere.
  std::string accepted_topic = topics::kInferencesAccepted;
  int partitions = 6;  // for topics that have to be created
  // A batch is written when it holds batch_max records or flush_interval passed since its
  // first one: the first bounds memory and the write size, the second the latency. 0: a
  // batch is what has come by then, which is what serves latency (docs/latency.md).
  int batch_max = 5000;
  // And at most this many bytes of records: invalid records may be up to the topic's limit.
  size_t batch_max_bytes = 64 << 20;
  std::chrono::milliseconds flush_interval{0};
  // A commit starts at most this often. Documents are stored before their commit, so waiting
  // for one delays only the records' publication to accepted_topic (what `stream` counts) and
  // the offsets (a restart writes again at most this long's records, which find themselves
  // stored); each transaction costs the broker the same whatever it holds, so fewer spare the
  // CPU that every stage shares (docs/latency.md). 0: each as soon as the last one is done.
  std::chrono::milliseconds commit_interval{50};
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
  int64_t replayed = 0;       // records found stored from the same offset (a batch read again)
  int64_t duplicates = 0;     // records whose id was stored from elsewhere with the same device fields
  int64_t conflicts = 0;      // records whose id was stored with other device fields (dead-lettered)
  int64_t dead_lettered = 0;  // records sent to dlq_topic with their reason
  // dead_lettered by the reason each dead letter's `reason` header says (kafka::ReasonIndex).
  kafka::ReasonCounts dead_lettered_by_reason{};
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
/// member of `group`, validates each record (core/inference_record.h), writes the valid ones
/// in one bulk write per batch, first write wins (Store::InsertFirst), and only then commits
/// the batch's offsets, together with its dead letters (invalid records, records the store
/// refuses and ids reused for other device fields, with the reason) and the records that
/// became documents (to `accepted_topic`), in one Kafka transaction. A crash at any point
/// replays at most the uncommitted batch, whose records find themselves stored from their own
/// offsets and are published again: the store ends with one document per id, and
/// `accepted_topic` holds each document's record once (what makes `stream` agree with
/// `batch`). A device's retry of an id (same device fields) is counted, not published.
/// While a commit is in flight, the batches that come are validated and written already, and
/// committed together once it is done (a failed commit has them read again too), so that a
/// record does not wait for the commit of the batch before its own to be stored.
/// While the store is unavailable the batch is retried with backoff and a log line; a stop
/// requested meanwhile returns without committing (the batch is read again on restart).
/// `on_progress` (optional) sees the counters after every committed batch and whenever the
/// number of assigned partitions changes, and when the store becomes unavailable. With
/// `endpoints`, serves them for the whole run: ready while partitions are assigned and the
/// store answers. Returns the final counters, or an error when the service cannot start or
/// its Kafka producer is fenced.
Result<SinkStats> RunSink(const SinkOptions& options, const std::atomic<bool>& stop,
                          const std::function<void(const SinkStats&)>& on_progress = {});

/// RunSink as `iotinfer sink` runs it: a line on stderr saying where it reads and writes
/// (secrets masked), and one with its final counters when it stops.
Status RunCommand(const SinkOptions& options, const std::atomic<bool>& stop);

}  // namespace iotinfer::sink
