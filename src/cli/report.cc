#include <cstdio>

#include "analytics/batch.h"
#include "analytics/latency.h"
#include "cli/commands.h"

namespace iotinfer::cli {
namespace {

struct LatencyFlags {
  analytics::LatencyOptions options;
  KafkaFlags kafka;
};

Status RunLatency(LatencyFlags& flags) {
  TRY(ApplyKafkaProperties(flags.kafka, flags.options.kafka));
  ASSIGN_OR_RETURN(analytics::LatencyReport report, analytics::ReportLatency(flags.options));
  std::fputs(analytics::FormatLatency(report).c_str(), stdout);
  return Ok();
}

void AddLatencyCommand(CLI::App& report, Action& action) {
  auto* cmd = report.add_subcommand(
      "latency", "Produce-to-infer latency percentiles of the inferences topic, and its CDF chart (PNG and SVG)");
  auto flags = std::make_shared<LatencyFlags>();
  analytics::LatencyOptions& o = flags->options;
  AddKafkaFlags(*cmd, o.kafka, flags->kafka);
  cmd->add_option("--topic", o.topic, "topic with inference records")->capture_default_str();
  cmd->add_option("--run", o.run_id, "only the images of this produce run (its run id); default: all");
  cmd->add_option("--out", o.out_dir, "directory for the charts")->capture_default_str();
  cmd->add_option("--chart-name", o.chart_name, "chart file name without extension")->capture_default_str();
  cmd->callback([&action, flags] { action = [flags] { return RunLatency(*flags); }; });
}

struct ResultsFlags {
  store::StoreOptions store;
  bool windows = false;
};

Status RunResults(const ResultsFlags& flags) {
  ASSIGN_OR_RETURN(std::unique_ptr<store::Store> store, store::Store::Open(flags.store));
  if (!flags.windows) {
    ASSIGN_OR_RETURN(std::vector<ProducerResult> results, store->ReadResults());
    std::fputs(analytics::FormatResults(results).c_str(), stdout);
    return Ok();
  }
  ASSIGN_OR_RETURN(std::vector<WindowResult> windows, store->ReadWindowResults());
  std::fputs(analytics::FormatWindows(windows).c_str(), stdout);
  return Ok();
}

void AddResultsCommand(CLI::App& report, Action& action) {
  auto* cmd = report.add_subcommand(
      "results", "The per-producer table of incorrect_inference_results (written by batch or stream)");
  auto flags = std::make_shared<ResultsFlags>();
  AddStoreFlags(*cmd, flags->store);
  cmd->add_flag("--windows", flags->windows, "the per-window counts of stream --window instead");
  cmd->callback([&action, flags] { action = [flags] { return RunResults(*flags); }; });
}

}  // namespace

void AddReportCommand(CLI::App& app, Action& action) {
  auto* report = app.add_subcommand("report", "Reports over what the pipeline produced");
  report->require_subcommand(1, 1);
  AddLatencyCommand(*report, action);
  AddResultsCommand(*report, action);
}

}  // namespace iotinfer::cli
