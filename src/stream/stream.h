#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/topics.h"
#include "health/health.h"
#include "kafka/kafka.h"
#include "ops/endpoints.h"
#include "store/store.h"

namespace iotinfer::stream {

struct StreamOptions {
  kafka::KafkaConfig kafka;
  store::StoreOptions store;
  // The stream job: its consumer group, and the key of its saved state. Instances of one
  // group share the partitions; another group counts everything again, separately.
  std::string group = "iotinfer-stream";
  // What sink publishes: each record that became a document, once (sink/sink.h), so the
  // counts agree with batch's whatever ids devices reuse.
  std::string topic = topics::kInferencesAccepted;
  // While records flow, counts reach the store at least this often. 0: an update starts as
  // soon as the previous one ends and something was counted (what Spark's trigger 0 does
  // with micro-batches): the freshest results, for a store kept busy while records flow.
  std::chrono::milliseconds update_interval{500};
  // Tumbling windows by event time (produced_at, else inferred_at); 0: none.
  std::chrono::milliseconds window{0};
  // Windows each partition keeps (its newest ones): what bounds the state's size. A record
  // older than that still counts in the totals, but in no window ("late").
  int window_keep = 360;
  int max_batch = 10000;
  // While the store is unavailable, saves retry with backoff up to retry_max; consumption
  // waits meanwhile.
  std::chrono::milliseconds retry_initial{200};
  std::chrono::milliseconds retry_max{5000};
  std::chrono::milliseconds log_every{5000};  // 0: no periodic log line
  // /healthz, /readyz and /metrics (ops/endpoints.h); none when unset.
  std::optional<ops::EndpointOptions> endpoints;
  // Device health (docs/health.md): per producer, a verdict on the images counted over the
  // last health_window, judged every health_every; each change goes to health_topic (compacted,
  // keyed by producer) and to the log. 0: no verdicts.
  std::chrono::milliseconds health_window{std::chrono::minutes(10)};
  std::chrono::milliseconds health_every{5000};
  std::string health_topic = topics::kProducerHealth;  // empty: the log only
  health::Rule health;
  // With endpoints and verdicts: the devices that carry their own series on /metrics (the worst
  // ones; stream/device_series.h), the others summed into producer_id="other".
  int device_series = 100;
  // With endpoints: the dead-letter topics the dashboard follows.
  std::vector<std::string> dead_letter_topics = {topics::kImagesDeadLetters, topics::kInferencesDeadLetters};
};

struct StreamStats {
  int64_t consumed = 0;       // records read
  int64_t invalid = 0;        // values that are not inference records (the sink dead-letters them)
  int64_t late = 0;           // records too old for any kept window (counted in the totals)
  int64_t updates = 0;        // times the counts were saved and the results rewritten
  int64_t superseded = 0;     // saves refused because another instance had counted further
  int64_t store_retries = 0;  // writes that failed because the store was unavailable
  int64_t lag = 0;
  int partitions = 0;
  double last_update_ms = 0;    // how long the last save and results write took
  bool store_available = true;  // false from a write that found the store down until one succeeds
  int64_t health_changes = 0;   // verdicts that changed, each published
  int faulty = 0;               // devices judged faulty at the last look
  int suspect = 0;
  int http_port = 0;  // where the endpoints and the dashboard listen; 0: none
};

/// One line for logs.
std::string FormatStats(const StreamStats& stats);

/// Runs the live count until `stop` becomes true: consumes `topic` (read_committed) as a
/// member of `group` and keeps, per assigned partition, the per-producer counts (and window
/// counts) of every record before its next offset. At least every update_interval while
/// records flow, each changed partition's state (offset and counts together) is saved in one
/// single-document write, then `incorrect_inference_results` is rewritten as the sum over
/// every partition's saved state (and `incorrect_inference_windows` for the windows that
/// changed); an instance also rewrites them when other instances' saves changed the states
/// since it last wrote, so the results end up current whichever write lands last, and, a
/// few times a second while idle, puts its totals back if a late write of an instance that
/// has left set them back. An
/// assigned partition resumes from its saved state, so after a crash at any
/// point the counts end exact: records after the saved offset are counted once more, records
/// before it never. `on_progress` (optional) sees the counters after every update and when
/// the assigned partitions change, and while the store is found unavailable. With `endpoints`,
/// serves them for the whole run: ready while partitions are assigned and the store answers;
/// and the dashboard, a web page at "/" that follows the count live (stream/dashboard.h).
/// Errors: the store or Kafka cannot be used at start, or
/// where an assigned partition starts cannot be read from the store.
Result<StreamStats> RunStream(const StreamOptions& options, const std::atomic<bool>& stop,
                              const std::function<void(const StreamStats&)>& on_progress = {});

}  // namespace iotinfer::stream
