#include "models/compare.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <set>
#include <unordered_map>
#include <utility>

#include "core/inference_record.h"
#include "health/health.h"
#include "models/control.h"

namespace iotinfer::models {
namespace {

// Reading a topic to its end must end: generous, as `inferences` can hold millions of records.
constexpr std::chrono::minutes kReadTimeout{30};
// The devices a summary names at most.
constexpr size_t kNamedDevices = 5;

// A record's outcome: -1 unlabelled, 0 wrong, 1 right.
int8_t Outcome(const InferenceRecord& record) {
  if (!record.actual_value) return -1;
  return *record.actual_value == record.image_prediction ? 1 : 0;
}

std::string Join(const std::set<std::string>& names) {
  if (names.empty()) return "none";
  std::string out;
  for (const std::string& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

std::string Summary(const Judgement& j) {
  const PairedCounts& o = j.overall;
  switch (j.decision) {
    case Decision::kNoData:
      return "no labelled image was classified by both models";
    case Decision::kNoDifference:
      return fmt::format(
          "no significant difference overall: the candidate is right on {} images the active model gets wrong and "
          "wrong on {} it gets right (p = {:.3g}, not below {})",
          o.c, o.b, j.p_value, j.alpha);
    case Decision::kWorse:
      return fmt::format(
          "the candidate is significantly worse overall: wrong on {} images the active model gets right, right on {} "
          "it gets wrong (p = {:.3g} < {})",
          o.b, o.c, j.p_value, j.alpha);
    case Decision::kBetter:
      return fmt::format(
          "the candidate is significantly better overall: right on {} images the active model gets wrong, wrong on {} "
          "it gets right (p = {:.3g} < {}), and significantly worse on none of the {} devices tested (Holm)",
          o.c, o.b, j.p_value, j.alpha, j.devices_tested);
    case Decision::kWorseOnDevices: {
      std::vector<const DeviceComparison*> worse;
      for (const DeviceComparison& d : j.devices) {
        if (d.difference == Difference::kWorse) worse.push_back(&d);
      }
      std::ranges::sort(worse, [](const auto* a, const auto* b) { return a->adjusted_p < b->adjusted_p; });
      std::string named;
      for (size_t i = 0; i < std::min(worse.size(), kNamedDevices); ++i) {
        named += fmt::format("{}{} (b {}, c {}, Holm p {:.3g})", i ? ", " : "", worse[i]->producer_id,
                             worse[i]->counts.b, worse[i]->counts.c, worse[i]->adjusted_p);
      }
      if (worse.size() > kNamedDevices) named += fmt::format(" and {} more", worse.size() - kNamedDevices);
      return fmt::format(
          "the candidate is significantly better overall (c {} > b {}, p = {:.3g} < {}) but significantly worse on {} "
          "of the {} devices tested (Holm): device {}",
          o.c, o.b, j.p_value, j.alpha, worse.size(), j.devices_tested, named);
    }
  }
  return "";
}

}  // namespace

double McNemarP(int64_t b, int64_t c) {
  const int64_t n = b + c, k = std::min(b, c);
  if (n <= 0) return 1;
  // P(X <= k) = P(X >= n - k) for a fair coin; above the mean, UpperTail sums that tail itself.
  return std::min(1.0, 2 * health::UpperTail(n - k, n, 0.5));
}

std::vector<double> HolmAdjust(std::span<const double> p) {
  std::vector<size_t> order(p.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::ranges::stable_sort(order, [&](size_t a, size_t b) { return p[a] < p[b]; });
  std::vector<double> adjusted(p.size());
  double running = 0;
  for (size_t rank = 0; rank < order.size(); ++rank) {
    running = std::max(running, std::min(1.0, static_cast<double>(p.size() - rank) * p[order[rank]]));
    adjusted[order[rank]] = running;
  }
  return adjusted;
}

void PairedCounts::Add(bool active_right, bool candidate_right) {
  images++;
  active_correct += active_right;
  candidate_correct += candidate_right;
  b += active_right && !candidate_right;
  c += !active_right && candidate_right;
}

PairedCounts& PairedCounts::operator+=(const PairedCounts& other) {
  images += other.images;
  active_correct += other.active_correct;
  candidate_correct += other.candidate_correct;
  b += other.b;
  c += other.c;
  return *this;
}

std::string_view DifferenceName(Difference difference) {
  switch (difference) {
    case Difference::kNone:
      return "";
    case Difference::kBetter:
      return "better";
    case Difference::kWorse:
      return "worse";
  }
  return "";
}

std::string_view DecisionName(Decision decision) {
  switch (decision) {
    case Decision::kBetter:
      return "better";
    case Decision::kWorseOnDevices:
      return "worse-on-devices";
    case Decision::kNoDifference:
      return "no-difference";
    case Decision::kWorse:
      return "worse";
    case Decision::kNoData:
      return "no-data";
  }
  return "";
}

Judgement Judge(const std::map<int, PairedCounts>& by_device, double alpha) {
  Judgement j{.alpha = alpha};
  std::vector<double> tested_p;
  std::vector<size_t> tested;
  for (const auto& [producer, counts] : by_device) {
    j.overall += counts;
    DeviceComparison& d = j.devices.emplace_back(
        DeviceComparison{.producer_id = producer, .counts = counts, .p_value = McNemarP(counts.b, counts.c)});
    if (counts.b + counts.c > 0) {
      tested.push_back(j.devices.size() - 1);
      tested_p.push_back(d.p_value);
    }
  }
  j.devices_tested = static_cast<int>(tested.size());
  const std::vector<double> adjusted = HolmAdjust(tested_p);
  bool worse_somewhere = false;
  for (size_t i = 0; i < tested.size(); ++i) {
    DeviceComparison& d = j.devices[tested[i]];
    d.adjusted_p = adjusted[i];
    if (d.adjusted_p < alpha && d.counts.b != d.counts.c) {
      d.difference = d.counts.c > d.counts.b ? Difference::kBetter : Difference::kWorse;
      worse_somewhere = worse_somewhere || d.difference == Difference::kWorse;
    }
  }
  j.p_value = McNemarP(j.overall.b, j.overall.c);
  if (j.overall.images == 0) {
    j.decision = Decision::kNoData;
  } else if (j.p_value >= alpha || j.overall.b == j.overall.c) {
    j.decision = Decision::kNoDifference;
  } else if (j.overall.b > j.overall.c) {
    j.decision = Decision::kWorse;
  } else {
    j.decision = worse_somewhere ? Decision::kWorseOnDevices : Decision::kBetter;
  }
  j.summary = Summary(j);
  return j;
}

Result<Comparison> Compare(const CompareOptions& options) {
  if (!(options.alpha > 0 && options.alpha < 1)) {
    return std::unexpected(
        Error::InvalidInput(fmt::format("--alpha must be above 0 and below 1, got {}", options.alpha)));
  }
  for (const auto& [flag, model] : {std::pair{"--active", &options.active}, {"--candidate", &options.candidate}}) {
    if (Status checked = CheckModelId(*model); !model->empty() && !checked) {
      return std::unexpected(checked.error().WithContext(flag));
    }
  }
  // Model versions are kept once each; records refer to them by number.
  std::vector<std::string> names;
  std::unordered_map<std::string, int32_t> numbers;
  auto number = [&](const std::string& model) {
    auto [it, added] = numbers.try_emplace(model, static_cast<int32_t>(names.size()));
    if (added) names.push_back(model);
    return it->second;
  };
  Comparison out;
  std::set<std::string> active_models, shadow_models;
  auto decode = [&](const kafka::InputMessage& in) -> std::optional<InferenceRecord> {
    Result<InferenceRecord> record =
        in.unreadable.empty() ? DecodeInferenceRecord(in.message.value) : std::unexpected(Error::InvalidInput(""));
    // A `model` that is no version cannot be promoted, and is outside text not to be printed.
    if (!record || !IsModelId(record->model)) {
      out.undecodable++;
      return std::nullopt;
    }
    return *std::move(record);
  };

  struct Shadowed {
    int32_t model;
    int8_t outcome;
  };
  std::unordered_map<std::string, Shadowed> shadowed;
  TRY(kafka::ScanTopic(
      options.kafka, options.shadow,
      [&](const kafka::InputMessage& in) -> Status {
        std::optional<InferenceRecord> record = decode(in);
        if (!record) return Ok();
        shadow_models.insert(record->model);
        if (!options.candidate.empty() && record->model != options.candidate) return Ok();
        out.shadow_records++;
        shadowed.insert_or_assign(std::move(record->id), Shadowed{number(record->model), Outcome(*record)});
        return Ok();
      },
      kReadTimeout));

  struct PairData {
    std::map<int, PairedCounts> devices;
    int64_t labelled = 0, unlabelled = 0;
  };
  std::map<std::pair<int32_t, int32_t>, PairData> pairs;
  TRY(kafka::ScanTopic(
      options.kafka, options.inferences,
      [&](const kafka::InputMessage& in) -> Status {
        std::optional<InferenceRecord> record = decode(in);
        if (!record) return Ok();
        active_models.insert(record->model);
        if (!options.active.empty() && record->model != options.active) return Ok();
        out.active_records++;
        const auto it = shadowed.find(record->id);
        if (it == shadowed.end()) {
          out.active_unpaired++;
          return Ok();
        }
        PairData& pair = pairs[{number(record->model), it->second.model}];
        const int8_t active = Outcome(*record), candidate = it->second.outcome;
        if (active < 0 || candidate < 0) {
          pair.unlabelled++;
        } else {
          pair.labelled++;
          pair.devices[record->producer_id].Add(active == 1, candidate == 1);
        }
        // Paired once: a second record of the id is unpaired, and memory shrinks as pairs form.
        shadowed.erase(it);
        return Ok();
      },
      kReadTimeout));
  out.shadow_unpaired = static_cast<int64_t>(shadowed.size());

  for (const auto& [models, data] : pairs) {
    out.pairs.push_back(ModelPair{.active = names[static_cast<size_t>(models.first)],
                                  .candidate = names[static_cast<size_t>(models.second)],
                                  .labelled = data.labelled,
                                  .unlabelled = data.unlabelled});
  }
  std::ranges::sort(out.pairs, [](const ModelPair& a, const ModelPair& b) {
    return std::tie(b.labelled, b.unlabelled, a.active, a.candidate) <
           std::tie(a.labelled, a.unlabelled, b.active, b.candidate);
  });
  if (out.pairs.empty() && (!options.active.empty() || !options.candidate.empty())) {
    return std::unexpected(
        Error::NotFound(fmt::format("no image was classified by both {} and {}; {} holds records of {}; {} of {}",
                                    options.active.empty() ? "an active model" : "active model " + options.active,
                                    options.candidate.empty() ? "a candidate" : "candidate " + options.candidate,
                                    options.inferences, Join(active_models), options.shadow, Join(shadow_models))));
  }
  std::map<int, PairedCounts> devices;
  if (!out.pairs.empty()) {
    out.active = out.pairs.front().active;
    out.candidate = out.pairs.front().candidate;
    devices = std::move(pairs.at({numbers.at(out.active), numbers.at(out.candidate)}).devices);
  }
  out.judgement = Judge(devices, options.alpha);
  return out;
}

}  // namespace iotinfer::models
