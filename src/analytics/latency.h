#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/topics.h"
#include "kafka/kafka.h"

namespace iotinfer::analytics {

/// Produce-to-infer latency distribution, in milliseconds.
struct LatencySummary {
  int64_t count = 0;
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, max_ms = 0, mean_ms = 0;
  std::vector<double> sorted_ms;  // every sample, ascending: the CDF
};

/// Nearest-rank percentiles of `latencies_ms` (any order). All zero when it is empty.
LatencySummary SummarizeLatency(std::vector<double> latencies_ms);

struct LatencyOptions {
  kafka::KafkaConfig kafka;
  std::string topic = topics::kInferences;
  std::string run_id;  // only records whose id starts with "<run_id>-"; empty: all
  std::string out_dir = ".";
  std::string chart_name = "latency-cdf";  // writes <out_dir>/<chart_name>.png and .svg
};

struct LatencyReport {
  LatencySummary latency;
  int64_t records = 0;              // records of the run read
  int64_t without_times = 0;        // records with no produced_at (or no inferred_at): not in the summary
  int64_t invalid = 0;              // values that are not inference records
  std::vector<std::string> charts;  // paths written
};

/// Reads `topic` to its current end (read_committed), takes inferred_at - produced_at of
/// every record of the run and writes the CDF chart. Errors: the topic is missing or
/// unreadable, the charts cannot be written. No records with times is not an error: the
/// summary is then empty and no chart is written.
Result<LatencyReport> ReportLatency(const LatencyOptions& options);

/// The report as lines for a terminal.
std::string FormatLatency(const LatencyReport& report);

}  // namespace iotinfer::analytics
