#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/image.h"

namespace iotinfer::dataset {

/// Ways a simulated device degrades its images. Strength units:
///   noise   additive Gaussian noise, standard deviation as a fraction of full scale (0..2]
///   blur    Gaussian blur, sigma in pixels (0..20]
///   rotate  rotation by an angle drawn uniformly from [-strength, +strength] degrees (0..180]
///   occlude a black square covering `strength` of the image area at a random place (0..1)
///   dead    a fraction (0..1] of the sensor's pixels stuck dark; which pixels depends only on
///           the seed and the producer, like a real sensor's defects
///   corrupt a fraction (0..1] of the device's messages sent damaged, their payload cut short
///           (a flaky link, a full buffer): not a change of pixels, so ApplyFaults leaves it to
///           the sender (CorruptsMessage), and the pipeline dead-letters those messages
enum class FaultKind { kNoise, kBlur, kRotate, kOcclude, kDeadPixels, kCorrupt };

struct Fault {
  FaultKind kind;
  double strength;

  bool operator==(const Fault&) const = default;
};

std::string_view FaultName(FaultKind kind);

/// Which producers get which faults, parsed from a spec such as "3:noise=0.4,5:blur=1.5".
/// Items are comma-separated `PRODUCERS:KIND=STRENGTH`; PRODUCERS is an id, a range `2-4`, or
/// `*` for all. Several items may name the same producer; its faults apply in spec order.
class FaultPlan {
 public:
  /// An empty spec gives an empty plan. Malformed items, unknown kinds and out-of-range
  /// strengths give InvalidInput naming the item.
  static Result<FaultPlan> Parse(std::string_view spec);

  /// The faults for `producer_id`, in application order; empty for a healthy producer.
  std::vector<Fault> For(int producer_id) const;

  bool empty() const { return rules_.empty(); }

 private:
  struct Rule {
    int first;
    int last;
    Fault fault;
  };
  std::vector<Rule> rules_;
};

/// Applies `faults` to `image` in place. Deterministic: the same (seed, producer_id, sequence)
/// gives the same pixels, whatever else ran before, so producers are reproducible in parallel.
void ApplyFaults(std::span<const Fault> faults, uint64_t seed, int producer_id, uint64_t sequence, Image& image);

/// Whether the message of (seed, producer_id, sequence) goes out damaged under `faults`'
/// corrupt fault, if any. Deterministic, as ApplyFaults is.
bool CorruptsMessage(std::span<const Fault> faults, uint64_t seed, int producer_id, uint64_t sequence);

}  // namespace iotinfer::dataset
