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
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0, mean_ms = 0;
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
  bool stages = false;                     // ReportLatencyStages instead of ReportLatency
  bool json = false;                       // the stages as JSON
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

/// One stage of a record's way from the device to the store, between two of its times
/// (docs/latency.md).
struct StageLatency {
  std::string name;        // e.g. "batch wait"
  LatencySummary latency;  // over the records that carry both of the stage's times
};

struct StagesReport {
  int64_t records = 0;        // records of the run read
  int64_t complete = 0;       // records with every stage time
  int64_t invalid = 0;        // values that are not inference records
  LatencySummary end_to_end;  // produced_at to stored_at
  // The first produced_at and the last stored_at of those records: what the run's throughput
  // is measured over.
  int64_t first_produced_at_us = 0, last_stored_at_us = 0;
  std::vector<StageLatency> stages;
  // Each stage's mean over the complete records whose end-to-end latency lies within half a
  // percent of the ranks around its p50 and its p99: unlike the stages' own percentiles, these
  // add up to (about) that end-to-end latency, so they show where a typical and a slow record's
  // time went. Empty without complete records.
  std::vector<double> at_p50_ms, at_p99_ms;
  std::vector<std::string> charts;  // paths written
};

/// Reads `options.topic` (inferences.accepted: the records `sink` stored, with its own times
/// added) to its end, read_committed, and summarises each stage of the run's records, writes
/// a stacked bar chart of the stages at p50 and p99. Errors as ReportLatency's.
Result<StagesReport> ReportLatencyStages(const LatencyOptions& options);

/// The stages as a table for a terminal, or as one JSON object (for benchmarks).
std::string FormatLatencyStages(const StagesReport& report);
std::string LatencyStagesJson(const StagesReport& report);

}  // namespace iotinfer::analytics
