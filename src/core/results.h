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

}  // namespace iotinfer
