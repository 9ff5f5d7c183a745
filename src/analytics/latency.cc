#include "analytics/latency.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>

#include "chart/chart.h"
#include "core/inference_record.h"

namespace iotinfer::analytics {
namespace {

double NearestRank(const std::vector<double>& sorted, double p) {
  const size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

std::string Millis(double ms) { return ms < 10 ? fmt::format("{:.2f} ms", ms) : fmt::format("{:.0f} ms", ms); }

// Writes `chart` as <out_dir>/<chart_name>.png and .svg.
Result<std::vector<std::string>> WriteCharts(const auto& chart, const LatencyOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(options.out_dir, ec);
  if (ec) return std::unexpected(Error::Io(fmt::format("creating {}: {}", options.out_dir, ec.message())));
  std::vector<std::string> paths;
  for (const char* extension : {".png", ".svg"}) {
    paths.push_back((std::filesystem::path(options.out_dir) / (options.chart_name + extension)).string());
    TRY(chart::WriteChart(chart, paths.back()));
  }
  return paths;
}

// A log axis cannot show 0; a clock that stepped backwards between two hosts can even give
// negative latencies. Those samples count, and are drawn at the smallest positive value.
chart::Series CdfSeries(const LatencySummary& s) {
  constexpr size_t kMaxPoints = 2000;  // enough for a smooth line, small enough for the SVG
  const double floor_ms = 1e-3;
  chart::Series series{.name = fmt::format("{} records", s.count), .x = {}, .y = {}};
  const size_t n = s.sorted_ms.size();
  const size_t step = std::max<size_t>(1, n / kMaxPoints);
  for (size_t i = 0; i < n; i += step) {
    series.x.push_back(std::max(s.sorted_ms[i], floor_ms));
    series.y.push_back(static_cast<double>(i + 1) / static_cast<double>(n));
  }
  series.x.push_back(std::max(s.sorted_ms.back(), floor_ms));
  series.y.push_back(1.0);
  return series;
}

Result<std::vector<std::string>> WriteCdf(const LatencySummary& s, const LatencyOptions& options) {
  chart::LineChart cdf{
      .title = fmt::format("Produce-to-infer latency, {} images{}", s.count,
                           options.run_id.empty() ? "" : fmt::format(" (run {})", options.run_id)),
      .x_label = "latency (ms, log scale)",
      .y_label = "fraction of images",
      .series = {CdfSeries(s)},
      .markers = {{std::max(s.p50_ms, 1e-3), "p50 " + Millis(s.p50_ms)},
                  {std::max(s.p90_ms, 1e-3), "p90 " + Millis(s.p90_ms)},
                  {std::max(s.p99_ms, 1e-3), "p99 " + Millis(s.p99_ms)}},
      .log_x = true,
      .y_min = 0.0,
      .y_max = 1.0,
  };
  return WriteCharts(cdf, options);
}

// A record's times in the order they happen; stage i lies between times i and i + 1.
constexpr size_t kTimes = 9;
using Stages = std::array<double, kTimes - 1>;

std::array<std::optional<int64_t>, kTimes> Timeline(const InferenceRecord& r) {
  return {r.produced_at_us,
          r.appended_at_us,
          r.polled_at_us,
          r.batch_at_us,
          r.inferred_at_us > 0 ? std::optional<int64_t>(r.inferred_at_us) : std::nullopt,
          r.sink.appended_at_us,
          r.sink.polled_at_us,
          r.sink.write_sent_at_us,
          r.sink.stored_at_us};
}

constexpr std::array<const char*, kTimes - 1> kStageNames = {"device to broker",
                                                             "broker to infer's poll",
                                                             "batch wait",
                                                             "decode + classify",
                                                             "infer's writes to inferences",
                                                             "commit, to the sink's poll",
                                                             "sink batch wait",
                                                             "store write"};

double Ms(int64_t from_us, int64_t to_us) { return static_cast<double>(to_us - from_us) / 1000.0; }

// Each stage's mean over the records (sorted by end-to-end latency, first) within half a
// percent of the ranks around percentile p.
std::vector<double> MeansAround(const std::vector<std::pair<double, Stages>>& sorted, double p) {
  const double n = static_cast<double>(sorted.size());
  const auto rank = [&](double q) { return static_cast<size_t>(std::clamp(std::ceil(q * n), 1.0, n)) - 1; };
  const size_t first = rank(p - 0.005), last = rank(p + 0.005);
  std::vector<double> means(kTimes - 1, 0.0);
  for (size_t i = first; i <= last; ++i) {
    for (size_t s = 0; s < means.size(); ++s) means[s] += sorted[i].second[s];
  }
  for (double& m : means) m /= static_cast<double>(last - first + 1);
  return means;
}

Result<std::vector<std::string>> WriteStagesChart(const StagesReport& r, const LatencyOptions& options) {
  chart::BarChart bars{
      .title = fmt::format("Device to stored, {} images{}: p50 {}, p99 {}", r.end_to_end.count,
                           options.run_id.empty() ? "" : fmt::format(" (run {})", options.run_id),
                           Millis(r.end_to_end.p50_ms), Millis(r.end_to_end.p99_ms)),
      .x_label = "records around the end-to-end percentile",
      .y_label = "mean time per stage (ms)",
      .categories = {"p50", "p99"},
      .bars = {},
      .stacked = true,
  };
  for (size_t s = 0; s < r.stages.size(); ++s) {
    // A stage measured across two clocks can come out a little below zero; a bar cannot.
    bars.bars.push_back(
        {.name = r.stages[s].name, .x = {}, .y = {std::max(r.at_p50_ms[s], 0.0), std::max(r.at_p99_ms[s], 0.0)}});
  }
  return WriteCharts(bars, options);
}

nlohmann::ordered_json SummaryJson(const LatencySummary& s) {
  return {{"count", s.count},     {"p50_ms", s.p50_ms}, {"p90_ms", s.p90_ms},  {"p99_ms", s.p99_ms},
          {"p999_ms", s.p999_ms}, {"max_ms", s.max_ms}, {"mean_ms", s.mean_ms}};
}

}  // namespace

LatencySummary SummarizeLatency(std::vector<double> latencies_ms) {
  LatencySummary s;
  if (latencies_ms.empty()) return s;
  std::sort(latencies_ms.begin(), latencies_ms.end());
  s.count = static_cast<int64_t>(latencies_ms.size());
  s.p50_ms = NearestRank(latencies_ms, 0.50);
  s.p90_ms = NearestRank(latencies_ms, 0.90);
  s.p99_ms = NearestRank(latencies_ms, 0.99);
  s.p999_ms = NearestRank(latencies_ms, 0.999);
  s.max_ms = latencies_ms.back();
  s.mean_ms = std::accumulate(latencies_ms.begin(), latencies_ms.end(), 0.0) / static_cast<double>(s.count);
  s.sorted_ms = std::move(latencies_ms);
  return s;
}

namespace {

// Reads `options.topic` to its end and hands `on_record` each record of the run; counts the
// run's records and the values that are not records.
Status ScanRun(const LatencyOptions& options, int64_t& records, int64_t& invalid,
               const std::function<void(const InferenceRecord&)>& on_record) {
  const std::string prefix = options.run_id.empty() ? "" : options.run_id + "-";
  return kafka::ScanTopic(options.kafka, options.topic, [&](const kafka::InputMessage& in) -> Status {
    Result<InferenceRecord> record = DecodeInferenceRecord(in.message.value);
    if (!record) {
      ++invalid;
      return Ok();
    }
    if (!record->id.starts_with(prefix)) return Ok();
    ++records;
    on_record(*record);
    return Ok();
  });
}

}  // namespace

Result<LatencyReport> ReportLatency(const LatencyOptions& options) {
  LatencyReport report;
  std::vector<double> samples;
  TRY(ScanRun(options, report.records, report.invalid, [&](const InferenceRecord& record) {
    if (!record.produced_at_us || record.inferred_at_us == 0) {
      ++report.without_times;
      return;
    }
    samples.push_back(static_cast<double>(record.inferred_at_us - *record.produced_at_us) / 1000.0);
  }));
  report.latency = SummarizeLatency(std::move(samples));
  if (report.latency.count > 0) {
    ASSIGN_OR_RETURN(report.charts, WriteCdf(report.latency, options));
  }
  return report;
}

std::string FormatLatency(const LatencyReport& r) {
  const LatencySummary& s = r.latency;
  std::string out;
  if (s.count == 0) {
    out = fmt::format("no records with produce and inference times ({} records read)\n", r.records);
  } else {
    out = fmt::format("produce-to-infer latency over {} images: p50 {}  p90 {}  p99 {}  max {}  (mean {})\n", s.count,
                      Millis(s.p50_ms), Millis(s.p90_ms), Millis(s.p99_ms), Millis(s.max_ms), Millis(s.mean_ms));
  }
  if (r.without_times > 0) out += fmt::format("{} records without produced_at are not counted\n", r.without_times);
  if (r.invalid > 0) out += fmt::format("{} values were not inference records and were skipped\n", r.invalid);
  for (const auto& path : r.charts) out += fmt::format("chart: {}\n", path);
  return out;
}

Result<StagesReport> ReportLatencyStages(const LatencyOptions& options) {
  StagesReport report;
  std::array<std::vector<double>, kTimes - 1> stage_ms;
  std::vector<double> end_to_end;
  std::vector<std::pair<double, Stages>> complete;  // end to end, and each stage
  TRY(ScanRun(options, report.records, report.invalid, [&](const InferenceRecord& record) {
    const auto times = Timeline(record);
    for (size_t s = 0; s + 1 < kTimes; ++s) {
      if (times[s] && times[s + 1]) stage_ms[s].push_back(Ms(*times[s], *times[s + 1]));
    }
    if (times.front() && times.back()) {
      end_to_end.push_back(Ms(*times.front(), *times.back()));
      report.first_produced_at_us =
          end_to_end.size() == 1 ? *times.front() : std::min(report.first_produced_at_us, *times.front());
      report.last_stored_at_us = std::max(report.last_stored_at_us, *times.back());
    }
    if (std::ranges::all_of(times, [](const auto& t) { return t.has_value(); })) {
      Stages stages{};
      for (size_t s = 0; s + 1 < kTimes; ++s) stages[s] = Ms(*times[s], *times[s + 1]);
      complete.emplace_back(Ms(*times.front(), *times.back()), stages);
    }
  }));
  report.complete = static_cast<int64_t>(complete.size());
  report.end_to_end = SummarizeLatency(std::move(end_to_end));
  for (size_t s = 0; s + 1 < kTimes; ++s) {
    report.stages.push_back({.name = kStageNames[s], .latency = SummarizeLatency(std::move(stage_ms[s]))});
  }
  if (!complete.empty()) {
    std::ranges::sort(complete, {}, [](const auto& c) { return c.first; });
    report.at_p50_ms = MeansAround(complete, 0.50);
    report.at_p99_ms = MeansAround(complete, 0.99);
    ASSIGN_OR_RETURN(report.charts, WriteStagesChart(report, options));
  }
  return report;
}

std::string FormatLatencyStages(const StagesReport& r) {
  if (r.end_to_end.count == 0) {
    return fmt::format(
        "no records with produce and store times ({} records read; is this the topic sink publishes what it "
        "stored to?)\n",
        r.records);
  }
  constexpr std::string_view kRow = "{:<29} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n";
  std::string out =
      fmt::format(fmt::runtime(kRow), "stage", "records", "p50", "p90", "p99", "p99.9", "max", "at p50", "at p99");
  auto row = [&](const std::string& name, const LatencySummary& s, const std::string& at50, const std::string& at99) {
    out += fmt::format(fmt::runtime(kRow), name, s.count, Millis(s.p50_ms), Millis(s.p90_ms), Millis(s.p99_ms),
                       Millis(s.p999_ms), Millis(s.max_ms), at50, at99);
  };
  for (size_t s = 0; s < r.stages.size(); ++s) {
    const bool broken_down = !r.at_p50_ms.empty();
    row(r.stages[s].name, r.stages[s].latency, broken_down ? Millis(r.at_p50_ms[s]) : "-",
        broken_down ? Millis(r.at_p99_ms[s]) : "-");
  }
  row("device to stored", r.end_to_end, "", "");
  out += fmt::format(
      "{} records read, {} with every time. The stages' percentiles do not add up to the end-to-end ones; "
      "'at p50' and 'at p99' do: each stage's mean over the records around that end-to-end percentile.\n",
      r.records, r.complete);
  if (r.complete == 0) {
    out +=
        "No record has every time: the append times need topics with message.timestamp.type=LogAppendTime "
        "(docs/latency.md).\n";
  }
  if (r.invalid > 0) out += fmt::format("{} values were not inference records and were skipped\n", r.invalid);
  for (const auto& path : r.charts) out += fmt::format("chart: {}\n", path);
  return out;
}

std::string LatencyStagesJson(const StagesReport& r) {
  nlohmann::ordered_json json{{"records", r.records},
                              {"complete", r.complete},
                              {"end_to_end", SummaryJson(r.end_to_end)},
                              {"first_produced_at_us", r.first_produced_at_us},
                              {"last_stored_at_us", r.last_stored_at_us},
                              {"stages", nlohmann::ordered_json::array()},
                              {"charts", r.charts}};
  for (size_t s = 0; s < r.stages.size(); ++s) {
    nlohmann::ordered_json stage{{"name", r.stages[s].name}};
    stage.update(SummaryJson(r.stages[s].latency));
    if (!r.at_p50_ms.empty()) {
      stage["at_p50_ms"] = r.at_p50_ms[s];
      stage["at_p99_ms"] = r.at_p99_ms[s];
    }
    json["stages"].push_back(std::move(stage));
  }
  return json.dump() + "\n";
}

}  // namespace iotinfer::analytics
