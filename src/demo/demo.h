#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "analytics/batch.h"
#include "analytics/latency.h"
#include "core/error.h"
#include "health/health.h"
#include "infer/infer.h"
#include "kafka/kafka.h"
#include "model/classifier.h"
#include "models/compare.h"
#include "produce/produce.h"
#include "sink/sink.h"
#include "store/store.h"
#include "stream/stream.h"

namespace iotinfer::demo {

/// Eight devices: two healthy, the others each with a fault, one with two, so that their
/// error rates differ from ~7% to ~60% (measured with `iotinfer classify --faults`); device 3
/// also sends 2% of its messages damaged, for the dead-letter topic.
inline constexpr const char* kDefaultFaults =
    "1:noise=0.08,2:blur=1.0,3:rotate=20,3:corrupt=0.02,4:occlude=0.2,5:dead=0.1,6:noise=0.15,6:blur=1.4";

struct DemoOptions {
  // Empty brokers: an in-process mock cluster (librdkafka's), so no server is needed.
  kafka::KafkaConfig kafka{.brokers = "", .properties = {}};
  int partitions = 6;
  int producers = 8;
  int64_t images = 20000;
  double rate = 0;  // images/s over all devices; 0: as fast as they go
  std::string faults = kDefaultFaults;
  uint64_t seed = 1;
  model::ClassifierOptions classifier;
  // A candidate model run as infer's shadow; the demo then compares it with the active model,
  // per device (models::Compare). Empty: none.
  std::string shadow_model;
  std::string out_dir = "iotinfer-demo";
  // Empty: a SQLite file in out_dir. The demo starts by emptying this store, so the default
  // MongoDB database is its own.
  store::StoreOptions store{.uri = "", .database = "iotinfer_demo"};
  // How long the pipeline may go without progress before the demo gives up.
  std::chrono::milliseconds stall_timeout{60000};
  // The stream's endpoints and dashboard, on 127.0.0.1 (0: a free port). Negative: none.
  int http_port = 0;
  // How long the stream keeps serving its dashboard once everything is counted, before the
  // demo ends (stop ends it sooner).
  std::chrono::milliseconds linger{0};
};

struct DemoReport {
  std::string brokers;  // what it ran on
  bool embedded = false;
  produce::ProduceProgress produced;
  infer::InferStats inferred;
  sink::SinkStats sunk;
  stream::StreamStats streamed;
  std::vector<ProducerResult> stream_results;  // what the live count held at the end
  analytics::BatchReport batch;
  analytics::LatencyReport latency;
  std::vector<int> healthy_producers;            // the devices without faults, whose accuracy is the model's
  std::vector<DeviceHealth> verdicts;            // the stream's latest verdict on each device
  std::string dashboard;                         // its address, when served
  std::optional<models::Comparison> comparison;  // with a shadow model: it against the active one
  models::CompareOptions compared;               // the topics compared
  double seconds = 0;
};

/// Runs the whole pipeline on `options.kafka` (or the mock cluster) and `options.store`:
/// infer, sink and stream run as threads (each its own consumer group, as separate
/// processes would) while the devices send, until every image is inferred, stored and
/// counted; then batch recounts from the store, which must agree with the live count (an
/// Internal error when not), and latency is reported. Sink and stream read the inferences
/// topic from its beginning (fresh groups each run), so on a real cluster the counts cover
/// every earlier run's records too. `on_log` (optional) gets progress lines, among them the
/// dashboard's address. With a linger, the stream serves until it passed or `linger_stop` is true.
Result<DemoReport> RunDemo(const DemoOptions& options, const std::function<void(const std::string&)>& on_log = {},
                           const std::atomic<bool>* linger_stop = nullptr);

std::string FormatDemo(const DemoReport& report);

/// RunDemo as `iotinfer demo` runs it: its log lines on stderr, the report on stdout.
Status RunCommand(const DemoOptions& options, const std::atomic<bool>& stop);

}  // namespace iotinfer::demo
