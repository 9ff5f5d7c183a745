#include "cli/commands.h"
#include "stream/command.h"

namespace iotinfer::cli {

void AddStreamCommand(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand(
      "stream",
      "Keep incorrect_inference_results live from Kafka: inferences -> per-producer counts, exact after crashes");
  auto command = std::make_shared<stream::StreamCommand>();
  auto service = std::make_shared<ServiceFlags>();
  stream::StreamOptions& o = command->native;
  AddServiceFlags(*cmd, o.kafka, o.log_every, *service);
  AddStoreFlags(*cmd, o.store);
  cmd->add_option("--group", o.group, "consumer group, and the name of the saved state; instances share partitions")
      ->capture_default_str();
  cmd->add_option("--topic", o.topic, "topic of the records sink stored (its --accepted-topic)")->capture_default_str();
  AddMillisOption(*cmd, "--update-ms", o.update_interval,
                  "longest time between store updates while records flow (0: back to back, freshest)")
      ->check(NonNegative());
  cmd->add_option("--window", command->window,
                  "tumbling windows by event time, e.g. 10s or 1m, kept in incorrect_inference_windows (0: none)")
      ->capture_default_str();
  cmd->add_option("--health-window", command->health_window,
                  "device verdicts (healthy, suspect, faulty; docs/health.md) over this sliding window, e.g. 10m "
                  "(0: none)")
      ->capture_default_str();
  cmd->add_option("--health-every", command->health_every, "how often the devices are judged, e.g. 5s")
      ->capture_default_str();
  cmd->add_option("--health-topic", o.health_topic,
                  "compacted topic each changed verdict goes to, keyed by producer_id ('' for the log only)")
      ->capture_default_str();
  cmd->add_option("--health-min-labelled", o.health.min_labelled,
                  "labelled images of a device in the window before it gets a verdict")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--metrics-devices", o.device_series,
                  "devices with their own iotinfer_producer_* series on /metrics (the worst ones); the rest are "
                  "summed into producer_id=\"other\"")
      ->capture_default_str()
      ->check(NonNegative());
  cmd->add_option("--dlq-topic", o.dead_letter_topics,
                  "a dead-letter topic the dashboard follows (repeatable; default: images.dlq and inferences.dlq)");
  cmd->add_option("--window-keep", o.window_keep, "newest windows kept per partition")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--batch-max", o.max_batch, "most records per poll")->capture_default_str()->check(Positive());
  AddMillisOption(*cmd, "--retry-max-ms", o.retry_max, "longest wait between retries while the store is down")
      ->check(Positive());
  cmd->add_option("--engine", command->engine,
                  "native (this process counts) or spark (a Structured Streaming query on a Spark cluster)")
      ->capture_default_str();
  AddSparkFlags(*cmd, command->spark.spark);
  cmd->add_option("--checkpoint", command->spark.checkpoint,
                  "spark: the query's checkpoint directory, on the Spark server's file system; a restart with it "
                  "goes on where the last run stopped (default with a local server: ./iotinfer-spark-checkpoint/NAME)");
  cmd->add_option("--query-name", command->spark.query_name, "spark: the streaming query's name")
      ->capture_default_str();
  cmd->add_option("--trigger", command->trigger, "spark: micro-batch interval, e.g. 1s or 500ms (0: back to back)")
      ->capture_default_str();
  cmd->add_option("--spark-wait", command->spark_wait,
                  "spark: how long to wait, not ready, for a Spark Connect server that does not answer yet, e.g. "
                  "5m (0: give up after one try)")
      ->capture_default_str();
  cmd->add_option("--spark-kafka", command->spark_kafka,
                  "spark: a Kafka (Java client) property for Spark's Kafka source, KEY=VALUE (repeatable)");
  cmd->callback([&action, command, service] {
    action = [command, service]() -> Status {
      TRY(service->ApplyTo(command->native.kafka, command->native.endpoints));
      // SIGINT/SIGTERM: the loop saves what it counted, rewrites the results, then returns.
      return stream::RunCommand(*command, StopOnSignals());
    };
  });
}

}  // namespace iotinfer::cli
