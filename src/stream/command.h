#pragma once

#include <atomic>
#include <string>
#include <string_view>
#include <vector>

#include "analytics/spark_engine.h"
#include "core/error.h"
#include "stream/stream.h"

namespace iotinfer::stream {

/// Who keeps the live count: this process (RunStream), or a Structured Streaming query on a
/// Spark cluster (analytics::RunSparkStream). Same results, same collections.
enum class Engine { kNative, kSpark };

/// "native" or "spark"; InvalidInput naming the known ones for anything else.
Result<Engine> ParseEngine(std::string_view name);

/// `iotinfer stream` as its command line gives it. `native` holds what both engines share
/// (store, topic, endpoints, the log period); the durations are text such as 10s, 500ms or 5m.
struct StreamCommand {
  std::string engine = "native";
  StreamOptions native;
  std::string window = "0";           // native: tumbling windows; at least 1s, or 0 for none
  std::string health_window = "10m";  // native: device verdicts over this window; 0 for none
  std::string health_every = "5s";
  analytics::SparkStreamOptions spark;
  std::string trigger = "1s";
  std::string spark_wait = "5m";
  std::vector<std::string> spark_kafka;  // KEY=VALUE properties of Spark's Kafka source
};

/// Runs the live count on the chosen engine until `stop`, with a line on stderr when it
/// starts (where it reads and writes) and one when it stops (its counters). InvalidInput for
/// a bad engine, duration or property, or a remote Spark server without a checkpoint
/// directory (a local one gets ./iotinfer-spark-checkpoint/NAME).
Status RunCommand(StreamCommand command, const std::atomic<bool>& stop);

/// `iotinfer report health`: the devices' latest verdicts as the stream stored them
/// (`producer_health`), a line of totals per verdict, then the `limit` worst devices (0: all)
/// as health::FormatVerdicts shows them.
Result<std::string> ReportHealth(const store::StoreOptions& options, int limit);

}  // namespace iotinfer::stream
