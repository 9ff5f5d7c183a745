#include "models/models.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/text.h"

namespace iotinfer::models {
namespace {

using Json = nlohmann::ordered_json;

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Percent(int64_t part, int64_t whole) {
  return whole > 0 ? fmt::format("{:.2f}%", 100.0 * static_cast<double>(part) / static_cast<double>(whole)) : "-";
}

std::string Plural(int64_t n, std::string_view one, std::string_view many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

// How the way to a version is written on the command line, with the flags that differ from
// the defaults.
std::string ActivateCommand(const std::string& model, const std::string& group, const std::string& control_topic) {
  std::string command = "iotinfer models activate " + model;
  if (group != kDefaultGroup) command += " --group " + group;
  if (control_topic != topics::kModelControl) command += " --control-topic " + control_topic;
  return command;
}

// A choice's time; one written without `at` has none.
std::string When(const ModelChoice& choice) { return choice.at_us > 0 ? FormatUtc(choice.at_us) : "(unknown)"; }

std::string Describe(const ModelChoice& choice) {
  return fmt::format("{}, since {} by {}", choice.model, When(choice), choice.by.empty() ? "(unknown)" : choice.by);
}

// Significant devices first (worse before better), then by how far apart the models are on it.
bool ShownBefore(const DeviceComparison& a, const DeviceComparison& b) {
  auto rank = [](const DeviceComparison& d) {
    return d.difference == Difference::kWorse ? 0 : d.difference == Difference::kBetter ? 1 : 2;
  };
  const int64_t gap_a = std::abs(a.counts.c - a.counts.b), gap_b = std::abs(b.counts.c - b.counts.b);
  return std::tuple(rank(a), -gap_a, a.adjusted_p, a.producer_id) <
         std::tuple(rank(b), -gap_b, b.adjusted_p, b.producer_id);
}

std::string Row(const std::string& name, const PairedCounts& c, double p, std::optional<double> adjusted,
                Difference difference) {
  std::string row = fmt::format("{:<12}{:>10}{:>10}{:>11}{:>9}{:>9}{:>11.3g}{:>11}  {}", name, c.images,
                                Percent(c.active_correct, c.images), Percent(c.candidate_correct, c.images), c.b, c.c,
                                p, adjusted ? fmt::format("{:.3g}", *adjusted) : "", DifferenceName(difference));
  row.erase(row.find_last_not_of(' ') + 1);
  return row + "\n";
}

Json CountsJson(const PairedCounts& c) {
  auto accuracy = [&](int64_t correct) {
    return c.images > 0 ? Json(static_cast<double>(correct) / static_cast<double>(c.images)) : Json(nullptr);
  };
  return {{"images", c.images},
          {"active_correct", c.active_correct},
          {"candidate_correct", c.candidate_correct},
          {"active_accuracy", accuracy(c.active_correct)},
          {"candidate_accuracy", accuracy(c.candidate_correct)},
          {"b", c.b},
          {"c", c.c}};
}

Json ComparisonJson(const Comparison& comparison, const CompareOptions& o) {
  const Judgement& j = comparison.judgement;
  Json json{{"active", comparison.active},
            {"candidate", comparison.candidate},
            {"active_topic", o.inferences},
            {"shadow_topic", o.shadow},
            {"alpha", j.alpha},
            {"decision", DecisionName(j.decision)},
            {"summary", j.summary}};
  Json overall = CountsJson(j.overall);
  overall["p_value"] = j.p_value;
  json["overall"] = std::move(overall);
  json["devices_tested"] = j.devices_tested;
  Json devices = Json::array();
  for (const DeviceComparison& d : j.devices) {
    Json device{{"producer_id", d.producer_id}};
    device.update(CountsJson(d.counts));
    device["p_value"] = d.p_value;
    device["holm_p"] = d.adjusted_p;
    device["difference"] = d.difference == Difference::kNone ? Json(nullptr) : Json(DifferenceName(d.difference));
    devices.push_back(std::move(device));
  }
  json["devices"] = std::move(devices);
  Json pairs = Json::array();
  for (const ModelPair& p : comparison.pairs) {
    pairs.push_back(
        {{"active", p.active}, {"candidate", p.candidate}, {"labelled", p.labelled}, {"unlabelled", p.unlabelled}});
  }
  json["pairs"] = std::move(pairs);
  json["records"] = {{"active", comparison.active_records},
                     {"shadow", comparison.shadow_records},
                     {"active_unpaired", comparison.active_unpaired},
                     {"shadow_unpaired", comparison.shadow_unpaired},
                     {"undecodable", comparison.undecodable}};
  return json;
}

struct Promotion {
  bool written = false;
  std::string message;
};

Result<Promotion> PromoteIfBetter(const Comparison& comparison, const CompareCommandOptions& options) {
  const Judgement& j = comparison.judgement;
  if (j.decision != Decision::kBetter) {
    return Promotion{.message = fmt::format("not promoted: the decision is {}, not better", DecisionName(j.decision))};
  }
  const kafka::KafkaConfig& kafka = options.compare.kafka;
  ASSIGN_OR_RETURN(const auto choices, ReadChoices(kafka, options.control_topic));
  if (const auto it = choices.find(options.group); it != choices.end()) {
    const ModelChoice& current = it->second;
    if (current.model == comparison.candidate) {
      return Promotion{.message =
                           fmt::format("not promoted: group {} already serves {}", options.group, Describe(current))};
    }
    if (current.model != comparison.active) {
      return Promotion{.message = fmt::format(
                           "not promoted: group {}'s choice is {}, not the active model compared ({}); compare the "
                           "candidate with the model the group serves",
                           options.group, Describe(current), comparison.active)};
    }
  }
  TRY(WriteChoice(kafka, options.control_topic,
                  {.group = options.group,
                   .model = comparison.candidate,
                   .at_us = NowMicros(),
                   .by = "models compare --promote-if better",
                   .reason = fmt::format("better than {}: {}", comparison.active, j.summary)}));
  return Promotion{.written = true,
                   .message = fmt::format("promoted: group {} now serves {} ({}); to roll back: {}", options.group,
                                          comparison.candidate, options.control_topic,
                                          ActivateCommand(comparison.active, options.group, options.control_topic))};
}

}  // namespace

std::string FormatComparison(const Comparison& comparison, const CompareOptions& o, int devices_shown) {
  const Judgement& j = comparison.judgement;
  std::string out;
  if (comparison.active.empty()) {
    out += fmt::format("no image of {} was also classified in {}\n", o.shadow, o.inferences);
  } else {
    out += fmt::format("active     {}  ({})\n", comparison.active, o.inferences);
    out += fmt::format("candidate  {}  ({})\n", comparison.candidate, o.shadow);
    const ModelPair& pair = comparison.pairs.front();
    out += fmt::format("paired     {} classified by both ({} unlabelled, not compared)\n",
                       Plural(pair.labelled, "labelled image", "labelled images"), pair.unlabelled);
  }
  out += fmt::format(
      "records    {} of {} and {} of {} read; unpaired: {} and {}; {} undecodable or without a model "
      "version\n",
      comparison.active_records, o.inferences, comparison.shadow_records, o.shadow, comparison.active_unpaired,
      comparison.shadow_unpaired, comparison.undecodable);
  if (comparison.pairs.size() > 1) {
    out += "other pairs (compare one with --active and --candidate):\n";
    for (size_t i = 1; i < comparison.pairs.size(); ++i) {
      const ModelPair& p = comparison.pairs[i];
      out += fmt::format("  {} -> {}  {}\n", p.active, p.candidate,
                         Plural(p.labelled, "labelled image", "labelled images"));
    }
  }
  if (!comparison.active.empty()) {
    out += fmt::format("\n{:<12}{:>10}{:>10}{:>11}{:>9}{:>9}{:>11}{:>11}  {}\n", "device", "images", "active",
                       "candidate", "b", "c", "p-value", "Holm p", "difference");
    const Difference overall = j.p_value < j.alpha && j.overall.b != j.overall.c
                                   ? (j.overall.c > j.overall.b ? Difference::kBetter : Difference::kWorse)
                                   : Difference::kNone;
    out += Row("all", j.overall, j.p_value, std::nullopt, overall);
    std::vector<const DeviceComparison*> devices;
    for (const DeviceComparison& d : j.devices) devices.push_back(&d);
    const size_t shown =
        devices_shown <= 0 ? devices.size() : std::min(devices.size(), static_cast<size_t>(devices_shown));
    std::partial_sort(devices.begin(), devices.begin() + static_cast<ptrdiff_t>(shown), devices.end(),
                      [](const auto* a, const auto* b) { return ShownBefore(*a, *b); });
    for (size_t i = 0; i < shown; ++i) {
      const DeviceComparison& d = *devices[i];
      out += Row(std::to_string(d.producer_id), d.counts, d.p_value,
                 d.counts.b + d.counts.c > 0 ? std::optional(d.adjusted_p) : std::nullopt, d.difference);
    }
    out += fmt::format("{}, {} tested (b + c > 0; Holm's correction is over those)",
                       Plural(static_cast<int64_t>(devices.size()), "device", "devices"), j.devices_tested);
    if (shown < devices.size()) {
      const auto significant = std::count_if(devices.begin() + static_cast<ptrdiff_t>(shown), devices.end(),
                                             [](const auto* d) { return d->difference != Difference::kNone; });
      out += fmt::format("; {} more not shown, {} of them significant (--devices 0 or --json lists all)",
                         devices.size() - shown, significant);
    }
    out += "\n\n";
  }
  out += fmt::format("decision   {}: {}\n", DecisionName(j.decision), j.summary);
  return out;
}

Result<std::string> CompareText(const CompareCommandOptions& options) {
  if (options.devices < 0) {
    return std::unexpected(Error::InvalidInput(fmt::format("--devices must not be negative, got {}", options.devices)));
  }
  if (options.promote && options.group.empty()) return std::unexpected(Error::InvalidInput("--group is empty"));
  ASSIGN_OR_RETURN(const Comparison comparison, Compare(options.compare));
  std::optional<Promotion> promotion;
  if (options.promote) {
    ASSIGN_OR_RETURN(promotion, PromoteIfBetter(comparison, options));
  }
  if (options.json) {
    Json json = ComparisonJson(comparison, options.compare);
    if (promotion) {
      json["promotion"] = {{"group", options.group},
                           {"control_topic", options.control_topic},
                           {"written", promotion->written},
                           {"message", promotion->message}};
    }
    return json.dump(2) + "\n";
  }
  std::string out = FormatComparison(comparison, options.compare, options.devices);
  if (promotion) out += promotion->message + "\n";
  return out;
}

Result<std::string> ActivateText(const ActivateOptions& options) {
  const ModelChoice choice{.group = options.group,
                           .model = options.model,
                           .at_us = NowMicros(),
                           .by = "models activate",
                           .reason = options.reason};
  // Checked before anything is read, so that a typo costs no round trip.
  TRY(CheckChoice(choice));
  ASSIGN_OR_RETURN(const auto choices, ReadChoices(options.kafka, options.control_topic));
  TRY(WriteChoice(options.kafka, options.control_topic, choice));
  std::string out = fmt::format("group {} now serves {} ({})\n", options.group, options.model, options.control_topic);
  const auto before = choices.find(options.group);
  if (before == choices.end()) {
    out += "before: no choice (the group served the model it was started with)\n";
  } else if (before->second.model == options.model) {
    out += fmt::format("before: the same version, {}\n", Describe(before->second));
  } else {
    out += fmt::format("before: {}\nto go back: {}\n", Describe(before->second),
                       ActivateCommand(before->second.model, options.group, options.control_topic));
  }
  return out;
}

Result<std::string> StatusText(const StatusOptions& options) {
  int skipped = 0;
  ASSIGN_OR_RETURN(const auto choices, ReadChoices(options.kafka, options.control_topic, &skipped));
  std::string out =
      fmt::format("{}: {}", options.control_topic,
                  choices.empty() ? "no choice" : Plural(static_cast<int64_t>(choices.size()), "group", "groups"));
  if (skipped > 0) out += fmt::format(" ({} skipped: not a valid choice)", Plural(skipped, "record", "records"));
  out += "\n";
  for (const auto& [group, choice] : choices) {
    out += fmt::format("\n{}\n  model   {}\n  since   {}\n  by      {}\n", group, choice.model, When(choice),
                       choice.by.empty() ? "(unknown)" : choice.by);
    if (!choice.reason.empty()) out += fmt::format("  reason  {}\n", choice.reason);
  }
  return out;
}

}  // namespace iotinfer::models
