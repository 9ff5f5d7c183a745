#include "produce/produce.h"

#include "cli/commands.h"

namespace iotinfer::cli {

void AddProduceCommand(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("produce", "Send labelled images from simulated IoT devices to Kafka");
  auto command = std::make_shared<produce::ProduceCommand>();
  auto kafka = std::make_shared<KafkaFlags>();
  produce::ProduceOptions& o = command->options;
  AddKafkaFlags(*cmd, o.kafka, *kafka);
  cmd->add_option("--topic", o.topic, "topic to send to")->capture_default_str();
  cmd->add_option("--partitions", o.partitions, "partitions when the topic has to be created")->capture_default_str();
  cmd->add_option("--producers", o.producers, "number of simulated devices (producer_id 0..N-1)")
      ->capture_default_str();
  cmd->add_option("--images", o.images, "images to send in total (0: until --duration)")->capture_default_str();
  cmd->add_option("--duration", command->duration_seconds, "seconds to send for (0: until --images)");
  cmd->add_option("--rate", o.rate, "images per second over all devices (0: unlimited)")->capture_default_str();
  cmd->add_option("--dataset", o.dataset.name, "fashion-mnist or cifar10")->capture_default_str();
  cmd->add_option("--data-dir", o.dataset.dir, "where the dataset files are (default: Debian's location)");
  cmd->add_option("--split", command->split, "train or test")->capture_default_str();
  cmd->add_option("--faults", o.faults, "fault profiles per device, e.g. 3:noise=0.4,5:blur=1.5");
  cmd->add_option("--format", command->format, "png, raw or jpeg")->capture_default_str();
  cmd->add_option("--png-compression", o.png_compression,
                  "zlib level of the PNGs, 0 (stored: cheapest to encode and decode) to 9 (smallest)")
      ->capture_default_str()
      ->check(CLI::Range(0, 9));
  AddMillisOption(*cmd, "--linger-ms", o.linger,
                  "how long a partition's images may wait to leave together: 0 for devices that send a few a "
                  "second, a few ms for a gateway that forwards hundreds (fewer requests for the broker)")
      ->check(NonNegative());
  cmd->add_option("--seed", o.seed, "picks the images and drives the faults")->capture_default_str();
  cmd->add_option("--run-id", o.run_id, "prefix of the image ids (default: random)");
  cmd->callback([&action, command, kafka] {
    action = [command, kafka]() -> Status {
      TRY(command->options.kafka.AddProperties(kafka->config_file, kafka->properties));
      return produce::RunCommand(*command);
    };
  });
}

}  // namespace iotinfer::cli
