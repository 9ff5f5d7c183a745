#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/results.h"

namespace iotinfer::health {

/// How verdicts are reached; docs/health.md explains each choice.
struct Rule {
  int64_t min_labelled = 300;    // labelled images in the window before any verdict
  double excess = 0;             // faulty: the error rate exceeds the fleet's by more than this
  double faulty_alpha = 1e-4;    // family-wise error of the faulty verdicts, over the devices assessed
  double suspect_alpha = 1e-2;   // family-wise error of the suspect verdicts
  double interval_alpha = 0.05;  // the shown interval covers the device's rate with 1 - this
};

/// One device's labelled images in the window, and how many of them were misclassified.
struct Counts {
  int producer_id = 0;
  int64_t labelled = 0;
  int64_t incorrect = 0;
};

/// Judges every device of `window` against the fleet's error rate, in the order given.
///
/// The fleet's rate is the pooled rate of the devices not found worse than it: starting from
/// all of them, devices significantly above the current rate are set aside and the rate is
/// pooled again from the rest, until nothing changes. A healthy fleet's rate is then its
/// plain pooled rate, and a fleet whose devices are mostly faulty is still judged against the
/// ones that are not.
///
/// A device's p-value against a rate p0 is the exact one-sided binomial tail P(X >= k), so
/// that no verdict rests on a normal approximation of a small count. Bonferroni's correction divides each alpha by the
/// number of devices with a verdict, so that in a fleet of a million devices the chance of any false verdict stays at
/// alpha. Suspect: p-value against the fleet's rate under suspect_alpha / m; faulty: against the fleet's rate plus
/// `excess`, under faulty_alpha / m.
std::vector<DeviceHealth> Assess(std::span<const Counts> window, const Rule& rule = {});

/// P(X >= k) for X ~ Binomial(n, p), to double precision (0 when below the smallest double).
double UpperTail(int64_t k, int64_t n, double p);

/// The rates p that the Chernoff bound of the binomial tails, exp(-n KL(k/n || p)), does not
/// reject at `alpha` on either side: an interval for the true rate of a device that
/// misclassified k of n images, in closed form and a little wider than the exact one.
std::pair<double, double> RateInterval(int64_t k, int64_t n, double alpha);

/// Per-device counts over a sliding window of event time, and the verdicts they lead to: what
/// the live count keeps to tell which devices are failing now, not over all time. The window
/// slides in `slices` steps; memory is one entry per device and slice that saw images.
/// Not thread-safe.
class Tracker {
 public:
  explicit Tracker(std::chrono::milliseconds window, Rule rule = {}, int slices = 10);

  /// Counts one image of `producer_id`, read from `source` (a Kafka partition), at `time_us`
  /// (µs since the epoch): the counter's own clock, when the image was counted, since devices'
  /// clocks cannot be trusted to place it in a window. An unlabelled image counts for nothing
  /// here; one older than the window neither.
  void Add(int producer_id, int source, int64_t time_us, bool labelled, bool incorrect);

  /// Drops, unreported, the devices last counted from `source`: a partition given to another
  /// counter, who judges them from now on.
  void Forget(int source);

  /// Slides the window to end at `now_us`, judges every device with images in it, and returns
  /// the verdicts that changed since the last call (a device whose images all left the window
  /// changes to unknown, once), judged at `now_us`.
  std::vector<DeviceHealth> Update(int64_t now_us);

  /// The last Update's verdicts, by producer_id.
  const std::map<int, DeviceHealth>& current() const { return current_; }

 private:
  struct Tally {
    int64_t labelled = 0;
    int64_t incorrect = 0;
  };
  int64_t slice_us_;
  int slices_;
  Rule rule_;
  std::map<int64_t, std::unordered_map<int, Tally>> slices_by_start_;  // slice start -> device
  std::unordered_map<int, Tally> in_window_;                           // the sum over the slices
  int64_t newest_start_ = 0;
  std::map<int, DeviceHealth> current_;
  std::unordered_map<int, int> source_of_;  // device -> where its last image came from
};

/// One verdict as the producer-health topic carries it: a JSON object with the device, its
/// verdict, window counts, error rate and interval, the fleet's rate, the p-value, the window
/// and when it was judged (`judged_at`, ISO 8601 UTC).
std::string ToJson(const DeviceHealth& verdict);

/// A verdict read back from the topic; nullopt for a value that is not one (a topic is
/// outside input).
std::optional<DeviceHealth> FromJson(std::string_view json);

/// Verdicts as people read them: the faulty first, then suspect, by error rate, one line each;
/// only the `limit` worst (0: all), and a line saying how many more there are.
std::string FormatVerdicts(std::span<const DeviceHealth> verdicts, size_t limit = 0);

}  // namespace iotinfer::health
