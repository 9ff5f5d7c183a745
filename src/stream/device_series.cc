#include "stream/device_series.h"

#include <algorithm>
#include <string>

namespace iotinfer::stream {

std::vector<ops::MetricSpec> DeviceSeries::Specs() {
  using Kind = ops::MetricSpec::Kind;
  const std::vector<std::string> by_device = {"producer_id"};
  return {
      {Kind::kCounter,
       kImages,
       "images of the device counted (producer_id=\"other\": of the devices without a label)",
       {},
       by_device},
      {Kind::kCounter, kIncorrect, "misclassified labelled images of the device", {}, by_device},
      {Kind::kGauge, kErrorRate, "the device's error rate over the health window (other: pooled)", {}, by_device},
      {Kind::kGauge, kVerdict, "the device's verdict: 0 unknown, 1 healthy, 2 suspect, 3 faulty", {}, by_device},
  };
}

void DeviceSeries::Count(int producer, bool incorrect) {
  const auto it = labelled_.find(producer);
  Totals& totals = it == labelled_.end() ? other_ : it->second;
  ++totals.images;
  totals.incorrect += incorrect;
}

void DeviceSeries::Choose(const std::map<int, DeviceHealth>& verdicts,
                          const std::function<ProducerCounts(int)>& counted) {
  const size_t top = static_cast<size_t>(std::max(top_, 0));
  std::vector<const DeviceHealth*> ranked;
  ranked.reserve(verdicts.size());
  for (const auto& [producer, verdict] : verdicts) ranked.push_back(&verdict);
  const auto worse = [](const DeviceHealth* a, const DeviceHealth* b) { return WorseThan(*a, *b); };
  const size_t considered = std::min(ranked.size(), 2 * top);
  std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(considered), ranked.end(), worse);
  ranked.resize(considered);

  std::unordered_map<int, Totals> next;
  const auto grant = [&](int producer) {
    if (next.size() >= top || next.contains(producer)) return;
    if (const auto old = labelled_.find(producer); old != labelled_.end()) {
      next.emplace(producer, old->second);
      return;
    }
    const ProducerCounts so_far = counted(producer);
    next.emplace(producer, Totals{so_far.total, so_far.incorrect_count});
  };
  const size_t shown = std::min(ranked.size(), top);
  for (size_t i = 0; i < shown; ++i) {
    if (ranked[i]->verdict == Verdict::kSuspect || ranked[i]->verdict == Verdict::kFaulty) {
      grant(ranked[i]->producer_id);
    }
  }
  for (const DeviceHealth* d : ranked) {
    if (labelled_.contains(d->producer_id)) grant(d->producer_id);
  }
  for (size_t i = 0; i < shown; ++i) grant(ranked[i]->producer_id);
  labelled_ = std::move(next);
}

void DeviceSeries::Publish(ops::Endpoints& endpoints, const std::map<int, DeviceHealth>& verdicts) const {
  std::vector<ops::Series> images, incorrect, rates, kinds;
  int64_t other_labelled = 0, other_incorrect = 0;
  for (const auto& [producer, verdict] : verdicts) {
    if (!labelled_.contains(producer)) {
      other_labelled += verdict.labelled;
      other_incorrect += verdict.incorrect;
    }
  }
  for (const auto& [producer, totals] : labelled_) {
    std::vector<std::string> label = {std::to_string(producer)};
    images.push_back({label, static_cast<double>(totals.images)});
    incorrect.push_back({label, static_cast<double>(totals.incorrect)});
    if (const auto v = verdicts.find(producer); v != verdicts.end()) {
      rates.push_back({label, v->second.error_rate});
      kinds.push_back({label, static_cast<double>(static_cast<int>(v->second.verdict))});
    }
  }
  const std::vector<std::string> other = {kOther};
  images.push_back({other, static_cast<double>(other_.images)});
  incorrect.push_back({other, static_cast<double>(other_.incorrect)});
  rates.push_back(
      {other, other_labelled ? static_cast<double>(other_incorrect) / static_cast<double>(other_labelled) : 0.0});
  endpoints.SetSeries(kImages, images);
  endpoints.SetSeries(kIncorrect, incorrect);
  endpoints.SetSeries(kErrorRate, rates);
  endpoints.SetSeries(kVerdict, kinds);
}

}  // namespace iotinfer::stream
