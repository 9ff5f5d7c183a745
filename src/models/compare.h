#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/topics.h"
#include "kafka/kafka.h"

namespace iotinfer::models {

/// The exact two-sided McNemar test of two models on the same images: of the b + c images on
/// which exactly one of them is right, b went to the active model and c to the candidate; if
/// they are equally good each such image is a fair coin, and
/// p = min(1, 2 P(X <= min(b, c))) for X ~ Binomial(b + c, 1/2); 1 when b + c = 0. Summed in
/// logs (health::UpperTail), so b + c of millions is exact and quick.
double McNemarP(int64_t b, int64_t c);

/// Holm's step-down adjustment, in the order of `p`: the smallest family-wise level at which
/// Holm–Bonferroni rejects each hypothesis. With p sorted, p(1) <= ... <= p(m), the k-th is
/// max over j <= k of min(1, (m - j + 1) p(j)); a hypothesis is rejected at level alpha when its
/// adjusted value is below alpha.
std::vector<double> HolmAdjust(std::span<const double> p);

/// Two models' outcomes on the same labelled images.
struct PairedCounts {
  int64_t images = 0;
  int64_t active_correct = 0;
  int64_t candidate_correct = 0;
  int64_t b = 0;  // the active model right, the candidate wrong
  int64_t c = 0;  // the active model wrong, the candidate right

  void Add(bool active_right, bool candidate_right);
  PairedCounts& operator+=(const PairedCounts& other);
  friend bool operator==(const PairedCounts&, const PairedCounts&) = default;
};

/// Where a significant difference points: the candidate better (c > b) or worse (b > c).
enum class Difference { kNone, kBetter, kWorse };
std::string_view DifferenceName(Difference difference);  // "", "better", "worse"

struct DeviceComparison {
  int producer_id = 0;
  PairedCounts counts;
  double p_value = 1;     // McNemarP(b, c)
  double adjusted_p = 1;  // Holm's, over the devices tested; 1 for a device not tested
  Difference difference = Difference::kNone;
};

enum class Decision {
  kBetter,          // promote: better overall, worse on no device
  kWorseOnDevices,  // better overall, but significantly worse on some device
  kNoDifference,    // no significant difference overall
  kWorse,           // significantly worse overall
  kNoData,          // no labelled image that both models classified
};
std::string_view DecisionName(Decision decision);  // "better", "worse-on-devices", "no-difference", "worse", "no-data"

struct Judgement {
  double alpha = 0.05;
  PairedCounts overall;
  double p_value = 1;                     // McNemarP of the overall counts
  std::vector<DeviceComparison> devices;  // every device given, by producer id
  int devices_tested = 0;                 // devices with b + c > 0: the Holm family
  Decision decision = Decision::kNoData;
  std::string summary;  // one line that says why
};

/// The promotion rule. Overall: the McNemar test of the devices' summed counts; the candidate is
/// significantly better when p < alpha and c > b (worse when b > c). Per device: the McNemar
/// test of its own counts, for every device with b + c > 0 (m devices), Holm-adjusted over those
/// m, so that in a fleet of many devices the chance of flagging any device by chance alone
/// stays below alpha; a device is significantly worse (better) when its adjusted p < alpha and
/// b > c (c > b). The decision is kBetter, the one that promotes, only when the candidate is
/// significantly better overall AND significantly worse on no device.
Judgement Judge(const std::map<int, PairedCounts>& by_device, double alpha);

/// What `iotinfer models compare` reads.
struct CompareOptions {
  kafka::KafkaConfig kafka;
  std::string inferences = topics::kInferences;    // the active models' records
  std::string shadow = topics::kInferencesShadow;  // the candidates' records
  std::string active;                              // compare only this active model (empty: the pair with most images)
  std::string candidate;                           // and only this candidate
  double alpha = 0.05;
};

/// One (active model, candidate model) pair found in the topics, and its paired images.
struct ModelPair {
  std::string active, candidate;
  int64_t labelled = 0;    // paired images with a label: those compared
  int64_t unlabelled = 0;  // paired images without one
};

struct Comparison {
  std::string active, candidate;  // the pair compared; empty when none was found
  Judgement judgement;
  std::vector<ModelPair> pairs;                      // every pair found, most labelled images first
  int64_t active_records = 0, shadow_records = 0;    // read (of the chosen models, when given)
  int64_t active_unpaired = 0, shadow_unpaired = 0;  // of them, those whose id the other topic lacks
  int64_t undecodable = 0;  // records of either topic that are no inference record, or whose `model` is no version
};

/// Reads the shadow topic, then the active one, each to its end as of the read (kafka::ScanTopic,
/// read_committed: aborted transactions are not counted), joins their records by image id and
/// judges the chosen pair. Records whose id only one topic holds are counted, not compared; an
/// id's second record in the active topic is not paired again. Memory: one small entry (model,
/// outcome) per shadow record not yet paired, plus one set of counts per (pair, device).
/// InvalidInput for a bad model id or alpha; NotFound for a topic that does not exist or a
/// chosen pair that is not in the topics (the message lists those that are); Unavailable when
/// the cluster cannot be read.
Result<Comparison> Compare(const CompareOptions& options);

}  // namespace iotinfer::models
