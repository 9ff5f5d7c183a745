#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/inference_record.h"
#include "core/results.h"
#include "ops/endpoints.h"

namespace iotinfer {

/// A file built into the binary (cmake/Embed.cmake).
struct EmbeddedFile {
  std::string_view name;
  std::string_view type;
  std::string_view bytes;
};

}  // namespace iotinfer

namespace iotinfer::stream {

/// The page, its script and style, and the vendored chart library with its licence.
std::span<const EmbeddedFile> DashboardFiles();

/// The dead letters the dashboard shows: counts by reason code, and the latest few.
struct DeadLetterView {
  struct Letter {
    std::string topic;
    std::string reason;  // a reason code
    std::string error;   // the full message: text from outside, escaped by the page
    std::string producer;
    int64_t failed_at_us = 0;
  };
  std::map<std::string, int64_t> by_reason;
  std::deque<Letter> latest;  // newest first
  bool watching = false;      // false while no dead-letter topic exists yet
};

/// What the stream's web page shows, built by the stream's loop and read by the server's
/// threads as one JSON document (`/api/state`, and each server-sent event of `/api/events`):
/// throughput over time, latency percentiles, lag, the devices' verdicts (the worst first),
/// and the dead letters. Not thread-safe: the stream gives the endpoints each document built.
class Dashboard {
 public:
  /// `devices`: rows of the device table, the worst devices by verdict then error rate.
  explicit Dashboard(std::string group, size_t devices = 100) : group_(std::move(group)), devices_(devices) {}

  /// The pages to serve (the page at "/", its files under "/static/", the state at
  /// "/api/state"), and the event path; `state` gives the latest document.
  static std::vector<ops::Page> Pages(std::function<std::string()> state);
  static constexpr const char* kEventsPath = "/api/events";

  /// A record counted at `counted_at_us`: its latencies (device to inference, device to the
  /// live count) join a sample of the latest ones.
  void Record(const InferenceRecord& record, int64_t counted_at_us);

  /// The device table's rows from the latest verdicts; `counted` gives a device's totals.
  void SetDevices(const std::map<int, DeviceHealth>& verdicts, const std::function<ProducerCounts(int)>& counted);

  /// The document at `now_us`, with the stream's counters; it also adds a throughput point.
  std::string Build(int64_t now_us, int64_t consumed, int64_t lag, int partitions, const DeadLetterView& dead);

 private:
  struct Row {
    DeviceHealth health;
    ProducerCounts totals;
  };
  std::string group_;
  size_t devices_;
  std::vector<Row> rows_;
  std::map<Verdict, int64_t> verdict_counts_;
  double fleet_rate_ = 0;
  // The latest latencies, in ms: a ring of kSamples.
  static constexpr size_t kSamples = 4096;
  std::vector<double> inferred_ms_, counted_ms_;
  size_t next_sample_ = 0;
  // Throughput: (time, records/s) per document, the last kPoints.
  static constexpr size_t kPoints = 600;
  std::deque<std::pair<double, double>> throughput_;
  int64_t last_at_us_ = 0, last_consumed_ = 0;
};

}  // namespace iotinfer::stream
