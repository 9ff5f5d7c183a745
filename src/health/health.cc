#include "health/health.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <type_traits>
#include <utility>

#include "core/text.h"

namespace iotinfer::health {
namespace {

// Kullback-Leibler divergence of Bernoulli(q) from Bernoulli(p), with 0 log 0 = 0.
double Divergence(double q, double p) {
  auto term = [](double a, double b) { return a > 0 ? a * std::log(a / b) : 0.0; };
  return term(q, p) + term(1 - q, 1 - p);
}

// Keeps p inside (0, 1), where the divergence is finite.
double Clamp(double p) { return std::clamp(p, 1e-12, 1 - 1e-12); }

double Rate(int64_t k, int64_t n) { return n > 0 ? static_cast<double>(k) / static_cast<double>(n) : 0.0; }

}  // namespace

double UpperTail(int64_t k, int64_t n, double p) {
  if (k <= 0 || p >= 1) return 1;
  if (k > n || p <= 0) return 0;
  // Each sum starts at one term, in logs (it may be far below the smallest double), and goes
  // away from the mode by the ratio of successive terms, which falls geometrically there: a few
  // dozen terms for any n. Above the mean that is the upper tail itself; at or below it, the
  // lower tail, whose complement is then at least about a half, so nothing is lost to rounding.
  auto log_term = [&](int64_t i) {
    return std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) +
           static_cast<double>(i) * std::log(p) + static_cast<double>(n - i) * std::log1p(-p);
  };
  const double odds = p / (1 - p);
  const double mean = static_cast<double>(n) * p;
  double term = 1, sum = 0;
  if (static_cast<double>(k) > mean) {
    for (int64_t i = k; i <= n && term >= sum * 1e-17; ++i) {
      sum += term;
      term *= static_cast<double>(n - i) / static_cast<double>(i + 1) * odds;
    }
    return std::min(1.0, std::exp(log_term(k) + std::log(sum)));
  }
  for (int64_t i = k - 1; i >= 0 && term >= sum * 1e-17; --i) {
    sum += term;
    term *= static_cast<double>(i) / static_cast<double>(n - i + 1) / odds;
  }
  return std::clamp(1 - std::exp(log_term(k - 1) + std::log(sum)), 0.0, 1.0);
}

std::pair<double, double> RateInterval(int64_t k, int64_t n, double alpha) {
  if (n <= 0) return {0, 1};
  const double q = Rate(k, n);
  const double limit = std::log(2 / alpha) / static_cast<double>(n);
  // The divergence grows monotonically away from q on either side: bisect each side for
  // where it reaches the limit.
  auto solve = [&](double inside, double outside) {
    if (Divergence(q, Clamp(outside)) <= limit) return outside;
    for (int i = 0; i < 60; ++i) {
      const double mid = (inside + outside) / 2;
      (Divergence(q, Clamp(mid)) <= limit ? inside : outside) = mid;
    }
    return inside;
  };
  return {solve(q, 0.0), solve(q, 1.0)};
}

std::vector<DeviceHealth> Assess(std::span<const Counts> window, const Rule& rule) {
  std::vector<DeviceHealth> out;
  out.reserve(window.size());
  int64_t judged = 0;
  for (const Counts& c : window) {
    DeviceHealth a{.producer_id = c.producer_id, .labelled = c.labelled, .incorrect = c.incorrect};
    a.error_rate = Rate(c.incorrect, c.labelled);
    std::tie(a.low, a.high) = RateInterval(c.incorrect, c.labelled, rule.interval_alpha);
    if (c.labelled >= rule.min_labelled) {
      a.verdict = Verdict::kHealthy;
      ++judged;
    }
    out.push_back(a);
  }
  if (judged == 0) return out;

  const double m = static_cast<double>(judged);
  auto worse = [&](const DeviceHealth& a, double p0, double alpha) {
    return UpperTail(a.incorrect, a.labelled, p0) < alpha / m;
  };
  // The fleet's rate, pooled from the devices not significantly worse than it.
  std::vector<bool> set_aside(out.size(), false);
  double fleet = 0;
  for (bool changed = true; changed;) {
    int64_t labelled = 0, incorrect = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      if (out[i].verdict == Verdict::kUnknown || set_aside[i]) continue;
      labelled += out[i].labelled;
      incorrect += out[i].incorrect;
    }
    // A fleet that has made no error yet is taken to err on half an image of its count: against
    // a rate of exactly 0, a device's first error would be infinitely significant.
    fleet = incorrect > 0 ? Rate(incorrect, labelled) : 0.5 / static_cast<double>(labelled);
    changed = false;
    for (size_t i = 0; i < out.size(); ++i) {
      if (out[i].verdict == Verdict::kUnknown || set_aside[i] || !worse(out[i], fleet, rule.suspect_alpha)) continue;
      set_aside[i] = changed = true;
    }
  }

  for (DeviceHealth& a : out) {
    a.fleet_rate = fleet;
    if (a.verdict == Verdict::kUnknown) continue;
    a.p_value = UpperTail(a.incorrect, a.labelled, fleet);
    if (worse(a, fleet + rule.excess, rule.faulty_alpha)) {
      a.verdict = Verdict::kFaulty;
    } else if (a.p_value < rule.suspect_alpha / m) {
      a.verdict = Verdict::kSuspect;
    }
  }
  return out;
}

Tracker::Tracker(std::chrono::milliseconds window, Rule rule, int slices)
    : slice_us_(std::max<int64_t>(
          1, std::chrono::duration_cast<std::chrono::microseconds>(window).count() / std::max(1, slices))),
      slices_(std::max(1, slices)),
      rule_(rule) {}

void Tracker::Add(int producer_id, int source, int64_t time_us, bool labelled, bool incorrect) {
  source_of_[producer_id] = source;
  if (!labelled) return;
  const int64_t start = time_us - ((time_us % slice_us_) + slice_us_) % slice_us_;
  if (start <= newest_start_ - slices_ * slice_us_) return;  // older than the window
  newest_start_ = std::max(newest_start_, start);
  Tally& slice = slices_by_start_[start][producer_id];
  Tally& sum = in_window_[producer_id];
  ++slice.labelled;
  ++sum.labelled;
  slice.incorrect += incorrect;
  sum.incorrect += incorrect;
}

void Tracker::Forget(int source) {
  std::vector<int> gone;
  for (const auto& [producer, from] : source_of_) {
    if (from == source) gone.push_back(producer);
  }
  for (int producer : gone) {
    source_of_.erase(producer);
    in_window_.erase(producer);
    current_.erase(producer);
    for (auto& [start, slice] : slices_by_start_) slice.erase(producer);
  }
}

std::vector<DeviceHealth> Tracker::Update(int64_t now_us) {
  // The window is the `slices_` slices up to the one holding now (or the newest image's, if
  // the clock was set back).
  const int64_t now_start = now_us - ((now_us % slice_us_) + slice_us_) % slice_us_;
  newest_start_ = std::max(newest_start_, now_start);
  const int64_t oldest_kept = newest_start_ - (slices_ - 1) * slice_us_;
  while (!slices_by_start_.empty() && slices_by_start_.begin()->first < oldest_kept) {
    for (const auto& [producer, tally] : slices_by_start_.begin()->second) {
      Tally& sum = in_window_[producer];
      sum.labelled -= tally.labelled;
      sum.incorrect -= tally.incorrect;
      if (sum.labelled == 0) in_window_.erase(producer);
    }
    slices_by_start_.erase(slices_by_start_.begin());
  }

  std::vector<Counts> window;
  window.reserve(in_window_.size());
  for (const auto& [producer, sum] : in_window_) window.push_back({producer, sum.labelled, sum.incorrect});
  std::vector<DeviceHealth> changed;
  std::map<int, DeviceHealth> next;
  for (DeviceHealth& a : Assess(window, rule_)) {
    a.window_ms = slice_us_ * slices_ / 1000;
    a.judged_at_us = now_us;
    auto before = current_.find(a.producer_id);
    if (before == current_.end() ? a.verdict != Verdict::kUnknown : before->second.verdict != a.verdict) {
      changed.push_back(a);
    }
    next.emplace(a.producer_id, std::move(a));
  }
  for (const auto& [producer, a] : current_) {
    if (next.contains(producer) || a.verdict == Verdict::kUnknown) continue;
    DeviceHealth gone{.producer_id = producer,
                      .verdict = Verdict::kUnknown,
                      .window_ms = slice_us_ * slices_ / 1000,
                      .judged_at_us = now_us};
    changed.push_back(gone);
  }
  current_ = std::move(next);
  return changed;
}

std::string ToJson(const DeviceHealth& a) {
  const nlohmann::ordered_json doc = {
      {"producer_id", a.producer_id},
      {"verdict", VerdictName(a.verdict)},
      {"labelled", a.labelled},
      {"incorrect", a.incorrect},
      {"error_rate", a.error_rate},
      {"interval", {a.low, a.high}},
      {"fleet_rate", a.fleet_rate},
      {"p_value", a.p_value},
      {"window_seconds", static_cast<double>(a.window_ms) / 1000},
      {"judged_at", FormatUtc(a.judged_at_us)},
  };
  return doc.dump();
}

std::optional<DeviceHealth> FromJson(std::string_view json) {
  const nlohmann::json doc = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return std::nullopt;
  const auto verdict_name = doc.find("verdict");
  const auto producer = doc.find("producer_id");
  if (verdict_name == doc.end() || !verdict_name->is_string() || producer == doc.end() ||
      !producer->is_number_integer()) {
    return std::nullopt;
  }
  const std::optional<Verdict> verdict = ParseVerdict(verdict_name->get<std::string>());
  if (!verdict) return std::nullopt;
  DeviceHealth a{.producer_id = producer->get<int>(), .verdict = *verdict};
  auto number = [&](const char* key, auto& field) {
    const auto it = doc.find(key);
    if (it != doc.end() && it->is_number()) field = it->get<std::remove_reference_t<decltype(field)>>();
  };
  number("labelled", a.labelled);
  number("incorrect", a.incorrect);
  number("error_rate", a.error_rate);
  number("fleet_rate", a.fleet_rate);
  number("p_value", a.p_value);
  double window_seconds = 0;
  number("window_seconds", window_seconds);
  a.window_ms = std::llround(window_seconds * 1000);
  if (const auto interval = doc.find("interval"); interval != doc.end() && interval->is_array() &&
                                                  interval->size() == 2 && (*interval)[0].is_number() &&
                                                  (*interval)[1].is_number()) {
    a.low = (*interval)[0].get<double>();
    a.high = (*interval)[1].get<double>();
  }
  if (const auto at = doc.find("judged_at"); at != doc.end() && at->is_string()) {
    a.judged_at_us = ParseUtc(at->get<std::string>()).value_or(0);
  }
  return a;
}

std::string FormatVerdicts(std::span<const DeviceHealth> verdicts, size_t limit) {
  const size_t shown = limit == 0 ? verdicts.size() : std::min(limit, verdicts.size());
  std::vector<DeviceHealth> worst(shown);
  std::ranges::partial_sort_copy(verdicts, worst, WorseThan);
  std::string out = fmt::format("{:>11}  {:<8} {:>10}  {:<15} {:>9} {:>9}\n", "producer_id", "verdict", "error rate",
                                "interval", "labelled", "fleet");
  for (const DeviceHealth& a : worst) {
    out += fmt::format("{:>11}  {:<8} {:>9.1f}%  {:>5.1f}%-{:>5.1f}%   {:>9} {:>8.1f}%\n", a.producer_id,
                       VerdictName(a.verdict), 100 * a.error_rate, 100 * a.low, 100 * a.high, a.labelled,
                       100 * a.fleet_rate);
  }
  if (shown < verdicts.size()) out += fmt::format("({} more)\n", verdicts.size() - shown);
  return out;
}

}  // namespace iotinfer::health
