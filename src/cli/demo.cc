#include "demo/demo.h"

#include <cstdio>

#include "cli/commands.h"

namespace iotinfer::cli {
namespace {

struct DemoFlags {
  demo::DemoOptions options;
  KafkaFlags kafka;
};

Status RunDemoCommand(DemoFlags& flags) {
  TRY(ApplyKafkaProperties(flags.kafka, flags.options.kafka));
  ASSIGN_OR_RETURN(demo::DemoReport report, demo::RunDemo(flags.options, [](const std::string& line) {
                     std::fprintf(stderr, "demo: %s\n", line.c_str());
                   }));
  std::fputs(demo::FormatDemo(report).c_str(), stdout);
  return Ok();
}

}  // namespace

void AddDemoCommand(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand(
      "demo", "The whole pipeline in one process: devices -> Kafka -> inference -> store, live count, batch count, "
      "charts (no servers needed)");
  auto flags = std::make_shared<DemoFlags>();
  demo::DemoOptions& o = flags->options;
  cmd->add_option("--brokers", o.kafka.brokers, "Kafka bootstrap servers (default: an in-process mock cluster)")
      ->envname("IOTINFER_BROKERS");
  cmd->add_option("--kafka", flags->kafka.properties, "any librdkafka property as KEY=VALUE (repeatable)");
  cmd->add_option("--images", o.images, "images to send, over all devices")->capture_default_str()->check(Positive());
  cmd->add_option("--producers", o.producers, "simulated devices")->capture_default_str()->check(Positive());
  cmd->add_option("--rate", o.rate, "images/s over all devices (0: unlimited)")->capture_default_str();
  cmd->add_option("--faults", o.faults, "fault profiles per device")->capture_default_str();
  cmd->add_option("--seed", o.seed, "seed for image choice and faults")->capture_default_str();
  cmd->add_option("--threads", o.classifier.threads, "inference threads (0: one per core)")
      ->capture_default_str()
      ->check(NonNegative());
  cmd->add_option("--model", o.classifier.model_path, "ONNX model (default: the committed one)")
      ->envname("IOTINFER_MODEL");
  cmd->add_option("--out", o.out_dir, "directory for charts, CSV files and the default SQLite store")
      ->capture_default_str();
  // No environment variables here, unlike other commands: the demo empties its store, and
  // must never pick up a production one from IOTINFER_STORE/IOTINFER_DB.
  cmd->add_option("--store", o.store.uri, "store to use, and empty first (default: sqlite:<out>/iotinfer.db)");
  cmd->add_option("--db", o.store.database, "MongoDB database, emptied first")->capture_default_str();
  cmd->callback([&action, flags] { action = [flags] { return RunDemoCommand(*flags); }; });
}

}  // namespace iotinfer::cli
