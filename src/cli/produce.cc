#include "produce/produce.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

#include "cli/commands.h"

namespace iotinfer::cli {
namespace {

struct ProduceFlags {
  produce::ProduceOptions options;
  KafkaFlags kafka;
  std::string split = "test";
  std::string format = "png";
  double duration_seconds = 0;
};

Result<ImageEncoding> ParseFormat(const std::string& format) {
  if (format == "png") return ImageEncoding::kPng;
  if (format == "raw") return ImageEncoding::kRaw;
  if (format == "jpeg") return ImageEncoding::kJpeg;
  return std::unexpected(Error::InvalidInput(fmt::format("unknown --format '{}' (known: png, raw, jpeg)", format)));
}

Status RunProduce(ProduceFlags& flags) {
  produce::ProduceOptions& o = flags.options;
  TRY(ApplyKafkaProperties(flags.kafka, o.kafka));
  ASSIGN_OR_RETURN(o.dataset.split, dataset::ParseSplit(flags.split));
  ASSIGN_OR_RETURN(o.format, ParseFormat(flags.format));
  o.duration = std::chrono::milliseconds(static_cast<int64_t>(flags.duration_seconds * 1000));

  // A live line on a terminal; logs and pipes get only the summary.
  const bool live = isatty(STDERR_FILENO);
  auto on_progress = [&](const produce::ProduceProgress& p) {
    if (!live) return;
    std::string target = p.target ? fmt::format("/{}", p.target) : "";
    std::fprintf(stderr, "\r\033[Ksent %lld%s  acknowledged %lld  failed %lld  %.0f images/s",
                 static_cast<long long>(p.sent), target.c_str(), static_cast<long long>(p.acknowledged),
                 static_cast<long long>(p.failed), p.images_per_second());
  };
  ASSIGN_OR_RETURN(produce::ProduceProgress result, produce::Produce(o, on_progress));
  if (live) std::fputs("\n", stderr);
  std::printf("run %s: sent %lld, acknowledged %lld, failed %lld to topic %s in %.2f s (%.0f images/s)\n",
              result.run_id.c_str(), static_cast<long long>(result.sent), static_cast<long long>(result.acknowledged),
              static_cast<long long>(result.failed), o.topic.c_str(), result.seconds, result.images_per_second());
  if (result.failed > 0 || result.acknowledged < result.sent) {
    return std::unexpected(
        Error::Unavailable(fmt::format("{} of {} images were not delivered (last error: {})",
                                       result.sent - result.acknowledged, result.sent, result.last_error)));
  }
  return Ok();
}

}  // namespace

void AddProduceCommand(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("produce", "Send labelled images from simulated IoT devices to Kafka");
  auto flags = std::make_shared<ProduceFlags>();
  produce::ProduceOptions& o = flags->options;
  AddKafkaFlags(*cmd, o.kafka, flags->kafka);
  cmd->add_option("--topic", o.topic, "topic to send to")->capture_default_str();
  cmd->add_option("--partitions", o.partitions, "partitions when the topic has to be created")->capture_default_str();
  cmd->add_option("--producers", o.producers, "number of simulated devices (producer_id 0..N-1)")
      ->capture_default_str();
  cmd->add_option("--images", o.images, "images to send in total (0: until --duration)")->capture_default_str();
  cmd->add_option("--duration", flags->duration_seconds, "seconds to send for (0: until --images)");
  cmd->add_option("--rate", o.rate, "images per second over all devices (0: unlimited)")->capture_default_str();
  cmd->add_option("--dataset", o.dataset.name, "fashion-mnist or cifar10")->capture_default_str();
  cmd->add_option("--data-dir", o.dataset.dir, "where the dataset files are (default: Debian's location)");
  cmd->add_option("--split", flags->split, "train or test")->capture_default_str();
  cmd->add_option("--faults", o.faults, "fault profiles per device, e.g. 3:noise=0.4,5:blur=1.5");
  cmd->add_option("--format", flags->format, "png, raw or jpeg")->capture_default_str();
  cmd->add_option("--png-compression", o.png_compression,
                  "zlib level of the PNGs, 0 (stored: cheapest to encode and decode) to 9 (smallest)")
      ->capture_default_str()
      ->check(CLI::Range(0, 9));
  cmd->add_option("--seed", o.seed, "picks the images and drives the faults")->capture_default_str();
  cmd->add_option("--run-id", o.run_id, "prefix of the image ids (default: random)");
  cmd->callback([&action, flags] { action = [flags] { return RunProduce(*flags); }; });
}

}  // namespace iotinfer::cli
