#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace iotinfer {

/// The question the whole system answers per device: an inference is incorrect when its
/// record is labelled and the prediction differs from the label. An unlabelled record is never
/// incorrect; it counts towards the producer's total only.
inline bool IsIncorrect(std::string_view prediction, const std::optional<std::string>& actual) {
  return actual.has_value() && *actual != prediction;
}

/// Documents per (producer, predicted class, true class): the confusion matrix of each
/// producer, from which every per-producer count follows. `actual_value` is empty for
/// unlabelled records.
struct ConfusionCell {
  int producer_id = 0;
  std::string image_prediction;
  std::optional<std::string> actual_value;
  int64_t count = 0;
  friend bool operator==(const ConfusionCell&, const ConfusionCell&) = default;
};

/// One document of `incorrect_inference_results`.
struct ProducerResult {
  int producer_id = 0;
  int64_t incorrect_count = 0;
  int64_t total = 0;       // every record of the producer, labelled or not
  int64_t unlabelled = 0;  // records without actual_value: never incorrect
  double error_rate = 0;   // incorrect_count / labelled records (0 when none)
  int64_t computed_at_us = 0;
  friend bool operator==(const ProducerResult&, const ProducerResult&) = default;
};

/// The additive part of a producer's result: counts over partitions and windows sum up.
struct ProducerCounts {
  int producer_id = 0;
  int64_t incorrect_count = 0;
  int64_t total = 0;
  int64_t unlabelled = 0;

  /// Counts `count` records predicted `prediction` whose true class is `actual`.
  void Add(std::string_view prediction, const std::optional<std::string>& actual, int64_t count = 1);
  ProducerCounts& operator+=(const ProducerCounts& other);
  friend bool operator==(const ProducerCounts&, const ProducerCounts&) = default;
};

/// `counts` with its error rate: incorrect over labelled records (0 when none is labelled).
ProducerResult ToResult(const ProducerCounts& counts, int64_t computed_at_us);

/// Per-producer counts from confusion cells, sorted by producer_id.
std::vector<ProducerResult> PerProducer(std::span<const ConfusionCell> cells, int64_t computed_at_us);

/// One document of `incorrect_inference_windows`: a producer's result in one window.
struct WindowResult {
  int64_t window_start_us = 0;
  int64_t window_end_us = 0;
  ProducerResult result;
  friend bool operator==(const WindowResult&, const WindowResult&) = default;
};

/// What the fleet's evidence says of one device (docs/health.md).
enum class Verdict {
  kUnknown,  // too few labelled images in the window for a verdict
  kHealthy,  // not significantly worse than the fleet
  kSuspect,  // worse than the fleet at the suspect level, not (yet) at the faulty one
  kFaulty,   // significantly worse than the fleet at the faulty level
};
/// "unknown", "healthy", "suspect", "faulty".
std::string_view VerdictName(Verdict verdict);
/// The verdict VerdictName names; nullopt for any other text.
std::optional<Verdict> ParseVerdict(std::string_view name);

/// One device's verdict and the evidence for it: one document of `producer_health` (the
/// latest per device) and one record of the producer-health topic.
struct DeviceHealth {
  int producer_id = 0;
  Verdict verdict = Verdict::kUnknown;
  int64_t labelled = 0;  // labelled images of the device in the window
  int64_t incorrect = 0;
  double error_rate = 0;     // incorrect / labelled (0 when none)
  double low = 0, high = 1;  // an interval for the device's true error rate
  double fleet_rate = 0;     // what the device was judged against
  double p_value = 1;        // of its error count under the fleet's rate
  int64_t window_ms = 0;     // the sliding window the counts are over
  int64_t judged_at_us = 0;
  friend bool operator==(const DeviceHealth&, const DeviceHealth&) = default;
};

/// Whether `a` comes before `b` when devices are listed worst first: by verdict (faulty first),
/// then error rate; the producer_id breaks ties, so that the same verdicts always order alike.
bool WorseThan(const DeviceHealth& a, const DeviceHealth& b);

}  // namespace iotinfer
