#include "analytics/commands.h"
#include "cli/commands.h"

namespace iotinfer::cli {

void AddBatchCommand(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand(
      "batch", "Count incorrect inferences per producer from the store: incorrect_inference_results, CSV and charts");
  auto command = std::make_shared<analytics::BatchCommand>();
  analytics::BatchOptions& o = command->options;
  AddStoreFlags(*cmd, o.store);
  cmd->add_option("--engine", command->engine,
                  "native (documents stream through iotinfer), mongo (the store aggregates: a MongoDB pipeline, "
                  "or GROUP BY on SQLite; alias pushdown) or spark (a Spark cluster, through Spark Connect and "
                  "the MongoDB connector)")
      ->capture_default_str();
  AddSparkFlags(*cmd, o.spark);
  cmd->add_option("--out", o.out_dir, "directory for results.csv, confusion.csv and the charts (\"\": none)")
      ->capture_default_str();
  cmd->callback(
      [&action, command] { action = [command] { return analytics::RunBatchCommand(*command, StopOnSignals); }; });
}

}  // namespace iotinfer::cli
