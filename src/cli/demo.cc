#include "demo/demo.h"

#include "cli/commands.h"

namespace iotinfer::cli {

void AddDemoCommand(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand(
      "demo",
      "The whole pipeline in one process: devices -> Kafka -> inference -> store, live count, batch count, "
      "charts (no servers needed)");
  auto options = std::make_shared<demo::DemoOptions>();
  auto kafka = std::make_shared<KafkaFlags>();
  demo::DemoOptions& o = *options;
  cmd->add_option("--brokers", o.kafka.brokers, "Kafka bootstrap servers (default: an in-process mock cluster)")
      ->envname("IOTINFER_BROKERS");
  cmd->add_option("--kafka-config", kafka->config_file,
                  "a file of librdkafka KEY=VALUE lines (# comments), e.g. SASL/TLS settings for real servers");
  cmd->add_option("--kafka", kafka->properties, "any librdkafka property as KEY=VALUE (repeatable)");
  cmd->add_option("--images", o.images, "images to send, over all devices")->capture_default_str()->check(Positive());
  cmd->add_option("--producers", o.producers, "simulated devices")->capture_default_str()->check(Positive());
  cmd->add_option("--rate", o.rate, "images/s over all devices (0: unlimited)")->capture_default_str();
  cmd->add_option("--faults", o.faults, "fault profiles per device")->capture_default_str();
  cmd->add_option("--seed", o.seed, "seed for image choice and faults")->capture_default_str();
  cmd->add_option("--threads", o.classifier.threads, "inference threads (0: one per core)")
      ->capture_default_str()
      ->check(NonNegative());
  cmd->add_option("--shadow-model", o.shadow_model,
                  "a candidate model run beside the active one; the demo ends with their comparison per device");
  cmd->add_option("--model", o.classifier.model_path, "ONNX model (default: the committed one)")
      ->envname("IOTINFER_MODEL");
  cmd->add_option("--out", o.out_dir, "directory for charts, CSV files and the default SQLite store")
      ->capture_default_str();
  // No environment variables here, unlike other commands: the demo empties its store, and
  // must never pick up a production one from IOTINFER_STORE/IOTINFER_DB.
  cmd->add_option("--store", o.store.uri, "store to use, and empty first (default: sqlite:<out>/iotinfer.db)");
  cmd->add_option("--db", o.store.database, "MongoDB database, emptied first")->capture_default_str();
  cmd->add_option("--http-port", o.http_port,
                  "the live count's dashboard and metrics on 127.0.0.1 (0: a free port, printed; -1: none)")
      ->capture_default_str()
      ->check(CLI::Range(-1, 65535));
  AddDurationOption(*cmd, "--linger", o.linger,
                    "keep the dashboard up this long once everything is counted, e.g. 10m (Ctrl-C ends it sooner)",
                    "0");
  cmd->callback([&action, options, kafka] {
    action = [options, kafka]() -> Status {
      TRY(options->kafka.AddProperties(kafka->config_file, kafka->properties));
      static const std::atomic<bool> never{false};
      // Signals stop only a linger: during the run, Ctrl-C ends the demo at once, as before.
      return demo::RunCommand(*options, options->linger.count() > 0 ? StopOnSignals() : never);
    };
  });
}

}  // namespace iotinfer::cli
