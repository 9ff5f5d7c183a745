#include "analytics/latency.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "chart/chart.h"
#include "core/inference_record.h"

namespace iotinfer::analytics {
namespace {

double NearestRank(const std::vector<double>& sorted, double p) {
  const size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

std::string Millis(double ms) { return ms < 10 ? fmt::format("{:.2f} ms", ms) : fmt::format("{:.0f} ms", ms); }

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
  std::error_code ec;
  std::filesystem::create_directories(options.out_dir, ec);
  if (ec) return std::unexpected(Error::Io(fmt::format("creating {}: {}", options.out_dir, ec.message())));
  std::vector<std::string> paths;
  for (const char* extension : {".png", ".svg"}) {
    paths.push_back((std::filesystem::path(options.out_dir) / (options.chart_name + extension)).string());
    TRY(chart::WriteChart(cdf, paths.back()));
  }
  return paths;
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
  s.max_ms = latencies_ms.back();
  s.mean_ms = std::accumulate(latencies_ms.begin(), latencies_ms.end(), 0.0) / static_cast<double>(s.count);
  s.sorted_ms = std::move(latencies_ms);
  return s;
}

Result<LatencyReport> ReportLatency(const LatencyOptions& options) {
  LatencyReport report;
  std::vector<double> samples;
  const std::string prefix = options.run_id.empty() ? "" : options.run_id + "-";
  TRY(kafka::ScanTopic(options.kafka, options.topic, [&](const kafka::InputMessage& in) -> Status {
    Result<InferenceRecord> record = DecodeInferenceRecord(in.message.value);
    if (!record) {
      ++report.invalid;
      return Ok();
    }
    if (!record->id.starts_with(prefix)) return Ok();
    ++report.records;
    if (!record->produced_at_us || record->inferred_at_us == 0) {
      ++report.without_times;
      return Ok();
    }
    samples.push_back(static_cast<double>(record->inferred_at_us - *record->produced_at_us) / 1000.0);
    return Ok();
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

}  // namespace iotinfer::analytics
