#include "core/results.h"

#include <map>
#include <tuple>
#include <utility>

namespace iotinfer {

void ProducerCounts::Add(std::string_view prediction, const std::optional<std::string>& actual, int64_t count) {
  total += count;
  if (!actual) {
    unlabelled += count;
  } else if (IsIncorrect(prediction, actual)) {
    incorrect_count += count;
  }
}

ProducerCounts& ProducerCounts::operator+=(const ProducerCounts& other) {
  incorrect_count += other.incorrect_count;
  total += other.total;
  unlabelled += other.unlabelled;
  return *this;
}

ProducerResult ToResult(const ProducerCounts& c, int64_t computed_at_us) {
  const int64_t labelled = c.total - c.unlabelled;
  return {.producer_id = c.producer_id,
          .incorrect_count = c.incorrect_count,
          .total = c.total,
          .unlabelled = c.unlabelled,
          .error_rate = labelled ? static_cast<double>(c.incorrect_count) / static_cast<double>(labelled) : 0.0,
          .computed_at_us = computed_at_us};
}

std::vector<ProducerResult> PerProducer(std::span<const ConfusionCell> cells, int64_t computed_at_us) {
  std::map<int, ProducerCounts> by_producer;
  for (const ConfusionCell& cell : cells) {
    ProducerCounts& c = by_producer[cell.producer_id];
    c.producer_id = cell.producer_id;
    c.Add(cell.image_prediction, cell.actual_value, cell.count);
  }
  std::vector<ProducerResult> results;
  for (const auto& [id, c] : by_producer) results.push_back(ToResult(c, computed_at_us));
  return results;
}

namespace {
constexpr std::pair<Verdict, std::string_view> kVerdictNames[] = {{Verdict::kUnknown, "unknown"},
                                                                  {Verdict::kHealthy, "healthy"},
                                                                  {Verdict::kSuspect, "suspect"},
                                                                  {Verdict::kFaulty, "faulty"}};
}  // namespace

std::string_view VerdictName(Verdict verdict) {
  for (const auto& [v, name] : kVerdictNames) {
    if (v == verdict) return name;
  }
  return "unknown";
}

bool WorseThan(const DeviceHealth& a, const DeviceHealth& b) {
  return std::tuple(static_cast<int>(b.verdict), b.error_rate, a.producer_id) <
         std::tuple(static_cast<int>(a.verdict), a.error_rate, b.producer_id);
}

std::optional<Verdict> ParseVerdict(std::string_view name) {
  for (const auto& [v, n] : kVerdictNames) {
    if (n == name) return v;
  }
  return std::nullopt;
}

}  // namespace iotinfer
