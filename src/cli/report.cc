#include "analytics/commands.h"
#include "cli/commands.h"
#include "stream/command.h"

namespace iotinfer::cli {
namespace {

void AddLatencyCommand(CLI::App& report, Action& action) {
  auto* cmd = report.add_subcommand(
      "latency",
      "Produce-to-infer latency percentiles of the inferences topic, and its CDF chart (PNG and SVG); with --stages, "
      "each stage from device to store, from what sink stored");
  auto options = std::make_shared<analytics::LatencyOptions>();
  auto kafka = std::make_shared<KafkaFlags>();
  analytics::LatencyOptions& o = *options;
  AddKafkaFlags(*cmd, o.kafka, *kafka);
  cmd->add_option("--topic", o.topic, "topic with inference records")->capture_default_str();
  cmd->add_option("--run", o.run_id, "only the images of this produce run (its run id); default: all");
  cmd->add_option("--out", o.out_dir, "directory for the charts")->capture_default_str();
  cmd->add_option("--chart-name", o.chart_name,
                  "chart file name without extension (default: latency-cdf, with "
                  "--stages latency-stages)");
  auto* topic = cmd->get_option("--topic");
  auto* chart_name = cmd->get_option("--chart-name");
  auto* stages =
      cmd->add_flag("--stages", o.stages,
                    "per-stage percentiles (device to broker, broker to infer, batch wait, classify, writes, commit, "
                    "sink, store write) and a stacked chart of them, read from --topic inferences.accepted by default");
  cmd->add_flag("--json", o.json, "one JSON object instead of the table")->needs(stages);
  cmd->callback([&action, options, kafka, topic, chart_name] {
    if (options->stages && topic->count() == 0) options->topic = topics::kInferencesAccepted;
    if (options->stages && chart_name->count() == 0) options->chart_name = "latency-stages";
    action = [options, kafka]() -> Status {
      TRY(options->kafka.AddProperties(kafka->config_file, kafka->properties));
      return PrintResult(analytics::ReportLatencyText(*options));
    };
  });
}

struct ResultsFlags {
  store::StoreOptions store;
  bool windows = false;
};

void AddResultsCommand(CLI::App& report, Action& action) {
  auto* cmd = report.add_subcommand(
      "results", "The per-producer table of incorrect_inference_results (written by batch or stream)");
  auto flags = std::make_shared<ResultsFlags>();
  AddStoreFlags(*cmd, flags->store);
  cmd->add_flag("--windows", flags->windows, "the per-window counts of stream --window instead");
  cmd->callback([&action, flags] {
    action = [flags] { return PrintResult(analytics::ReportResults(flags->store, flags->windows)); };
  });
}

struct HealthFlags {
  store::StoreOptions store;
  int limit = 50;
};

void AddHealthCommand(CLI::App& report, Action& action) {
  auto* cmd = report.add_subcommand(
      "health", "Each device's latest verdict (healthy, suspect, faulty) as stream stored it in producer_health");
  auto flags = std::make_shared<HealthFlags>();
  AddStoreFlags(*cmd, flags->store);
  cmd->add_option("--limit", flags->limit, "show the N worst devices; 0: all")
      ->capture_default_str()
      ->check(NonNegative());
  cmd->callback(
      [&action, flags] { action = [flags] { return PrintResult(stream::ReportHealth(flags->store, flags->limit)); }; });
}

}  // namespace

void AddReportCommand(CLI::App& app, Action& action) {
  auto* report = app.add_subcommand("report", "Reports over what the pipeline produced");
  report->require_subcommand(1, 1);
  AddLatencyCommand(*report, action);
  AddResultsCommand(*report, action);
  AddHealthCommand(*report, action);
}

}  // namespace iotinfer::cli
