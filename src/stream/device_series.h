#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <unordered_map>
#include <vector>

#include "core/results.h"
#include "ops/endpoints.h"

namespace iotinfer::stream {

/// The per-device series of the stream's /metrics, with a bounded number of them, so that a
/// fleet of a million devices cannot blow up Prometheus: only the `top` worst devices (by
/// verdict, then window error rate) carry their own `producer_id` label, and all others share
/// the series `producer_id="other"`. A labelled device keeps its label while it stays among
/// the 2 x `top` worst, so that healthy devices near the boundary do not churn series; a
/// suspect or faulty device among the `top` worst always gets one. A device without a verdict
/// any more (its images left the window, or its partition moved away) loses its label.
/// Not thread-safe.
class DeviceSeries {
 public:
  static constexpr const char* kImages = "iotinfer_producer_images_total";
  static constexpr const char* kIncorrect = "iotinfer_producer_incorrect_total";
  static constexpr const char* kErrorRate = "iotinfer_producer_error_rate";
  static constexpr const char* kVerdict = "iotinfer_producer_verdict";
  static constexpr const char* kOther = "other";

  /// The specs of the four metrics, for ops::Endpoints::Start.
  static std::vector<ops::MetricSpec> Specs();

  explicit DeviceSeries(int top) : top_(top) {}

  /// Counts one record of `producer`.
  void Count(int producer, bool incorrect);

  /// Chooses the labelled devices from the latest verdicts. A device that gets its label
  /// starts its counters at `counted(producer)`, its counts so far, so that its series reads
  /// as its total; "other" counts what devices without a label add meanwhile, and so never
  /// falls (a device's history is not moved out of it).
  void Choose(const std::map<int, DeviceHealth>& verdicts, const std::function<ProducerCounts(int)>& counted);

  /// Sets the four metrics' series on `endpoints`: per labelled device its counters, window
  /// error rate and verdict (0 unknown, 1 healthy, 2 suspect, 3 faulty); for "other" the counters
  /// and the pooled window error rate of the devices without a label (no verdict).
  void Publish(ops::Endpoints& endpoints, const std::map<int, DeviceHealth>& verdicts) const;

  size_t labelled() const { return labelled_.size(); }

 private:
  struct Totals {
    int64_t images = 0;
    int64_t incorrect = 0;
  };
  int top_;
  std::unordered_map<int, Totals> labelled_;
  Totals other_;
};

}  // namespace iotinfer::stream
