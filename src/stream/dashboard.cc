#include "stream/dashboard.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <utility>

#include "core/text.h"

namespace iotinfer::stream {
namespace {

using Json = nlohmann::ordered_json;

// Nearest-rank percentiles of a sample, in ms; null fields when it is empty.
Json Percentiles(std::vector<double> sample) {
  Json out = {{"n", sample.size()}};
  if (sample.empty()) return out;
  std::ranges::sort(sample);
  for (const auto& [name, q] : {std::pair{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}}) {
    const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sample.size())));
    out[name] = sample[std::clamp<size_t>(rank, 1, sample.size()) - 1];
  }
  out["max"] = sample.back();
  return out;
}

}  // namespace

std::vector<ops::Page> Dashboard::Pages(std::function<std::string()> state) {
  std::vector<ops::Page> pages;
  for (const EmbeddedFile& file : DashboardFiles()) {
    const std::string path = file.name == "index.html" ? "/" : "/static/" + std::string(file.name);
    pages.push_back({path, std::string(file.type), [bytes = file.bytes] { return std::string(bytes); }});
  }
  pages.push_back({"/api/state", "application/json", std::move(state)});
  return pages;
}

void Dashboard::Record(const InferenceRecord& record, int64_t counted_at_us) {
  if (!record.produced_at_us) return;
  const double inferred = static_cast<double>(record.inferred_at_us - *record.produced_at_us) / 1000;
  const double counted = static_cast<double>(counted_at_us - *record.produced_at_us) / 1000;
  if (inferred_ms_.size() < kSamples) {
    inferred_ms_.push_back(inferred);
    counted_ms_.push_back(counted);
    return;
  }
  inferred_ms_[next_sample_] = inferred;
  counted_ms_[next_sample_] = counted;
  next_sample_ = (next_sample_ + 1) % kSamples;
}

void Dashboard::SetDevices(const std::map<int, DeviceHealth>& verdicts,
                           const std::function<ProducerCounts(int)>& counted) {
  verdict_counts_.clear();
  fleet_rate_ = 0;
  std::vector<const DeviceHealth*> ranked;
  ranked.reserve(verdicts.size());
  for (const auto& [producer, h] : verdicts) {
    ++verdict_counts_[h.verdict];
    // The rate every device was judged against (health::Assess): that of the devices not
    // worse than it, not the fleet's plain pooled rate, which its faulty devices raise.
    if (h.verdict != Verdict::kUnknown) fleet_rate_ = h.fleet_rate;
    ranked.push_back(&h);
  }
  const size_t shown = std::min(devices_, ranked.size());
  std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(shown), ranked.end(),
                    [](const DeviceHealth* a, const DeviceHealth* b) { return WorseThan(*a, *b); });
  rows_.clear();
  for (size_t i = 0; i < shown; ++i) rows_.push_back({*ranked[i], counted(ranked[i]->producer_id)});
}

std::string Dashboard::Build(int64_t now_us, int64_t consumed, int64_t lag, int partitions,
                             const DeadLetterView& dead) {
  if (last_at_us_ != 0 && now_us > last_at_us_) {
    const double seconds = static_cast<double>(now_us - last_at_us_) / 1e6;
    throughput_.emplace_back(static_cast<double>(now_us) / 1e6,
                             static_cast<double>(consumed - last_consumed_) / seconds);
    if (throughput_.size() > kPoints) throughput_.pop_front();
  }
  last_at_us_ = now_us;
  last_consumed_ = consumed;

  Json devices = Json::array();
  for (const Row& r : rows_) {
    const DeviceHealth& h = r.health;
    devices.push_back({{"producer_id", h.producer_id},
                       {"verdict", VerdictName(h.verdict)},
                       {"labelled", h.labelled},
                       {"incorrect", h.incorrect},
                       {"error_rate", h.error_rate},
                       {"low", h.low},
                       {"high", h.high},
                       {"fleet_rate", h.fleet_rate},
                       {"images", r.totals.total},
                       {"incorrect_total", r.totals.incorrect_count}});
  }
  Json latest = Json::array();
  for (const DeadLetterView::Letter& l : dead.latest) {
    latest.push_back({{"topic", l.topic},
                      {"reason", l.reason},
                      {"error", l.error},
                      {"producer", l.producer},
                      {"failed_at", FormatUtc(l.failed_at_us)}});
  }
  int64_t judged = 0;
  for (const auto& [verdict, n] : verdict_counts_) judged += n;
  const auto count = [&](Verdict v) {
    const auto it = verdict_counts_.find(v);
    return it == verdict_counts_.end() ? int64_t{0} : it->second;
  };
  const Json doc = {
      {"group", group_},
      {"at", FormatUtc(now_us)},
      {"consumed", consumed},
      {"rate", throughput_.empty() ? 0.0 : throughput_.back().second},
      {"throughput", throughput_},
      {"lag", lag},
      {"partitions", partitions},
      {"latency", {{"inferred", Percentiles(inferred_ms_)}, {"counted", Percentiles(counted_ms_)}}},
      {"fleet",
       {{"devices", judged},
        {"faulty", count(Verdict::kFaulty)},
        {"suspect", count(Verdict::kSuspect)},
        {"healthy", count(Verdict::kHealthy)},
        {"unknown", count(Verdict::kUnknown)},
        {"rate", fleet_rate_}}},
      {"devices", devices},
      {"dead_letters", {{"watching", dead.watching}, {"by_reason", dead.by_reason}, {"latest", latest}}},
  };
  // Replaced, not thrown on: a device's reason text is outside input and may not be UTF-8.
  return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace iotinfer::stream
