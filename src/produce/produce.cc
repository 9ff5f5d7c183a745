#include "produce/produce.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <thread>

#include "core/clock.h"
#include "dataset/faults.h"

namespace iotinfer::produce {
namespace {

using Clock = std::chrono::steady_clock;

std::string RandomRunId() {
  std::random_device device;
  return fmt::format("{:08x}", device());
}

Status Validate(const ProduceOptions& o) {
  if (o.producers < 1) return std::unexpected(Error::InvalidInput("--producers must be at least 1"));
  if (o.images < 0 || o.rate < 0 || o.duration.count() < 0 || o.linger.count() < 0) {
    return std::unexpected(Error::InvalidInput("--images, --rate, --duration and --linger-ms must not be negative"));
  }
  if (o.images == 0 && o.duration.count() == 0) {
    return std::unexpected(Error::InvalidInput("give --images or --duration (or both)"));
  }
  if (o.topic.empty()) return std::unexpected(Error::InvalidInput("--topic must not be empty"));
  return Ok();
}

}  // namespace

Result<ProduceProgress> Produce(const ProduceOptions& options,
                                const std::function<void(const ProduceProgress&)>& on_progress) {
  TRY(Validate(options));
  ASSIGN_OR_RETURN(dataset::FaultPlan plan, dataset::FaultPlan::Parse(options.faults));
  ASSIGN_OR_RETURN(dataset::Dataset data, dataset::Load(options.dataset));
  if (data.size() == 0) return std::unexpected(Error::InvalidInput("the dataset has no images"));
  TRY(kafka::EnsureTopics(options.kafka, {{options.topic, options.partitions}}));
  ASSIGN_OR_RETURN(auto producer, kafka::Producer::Create(options.kafka, {.linger = options.linger,
                                                                          .topics = {options.topic},
                                                                          .await_producer_id = true}));

  // A seeded shuffle: devices see varied images, and the same seed sends the same ones.
  std::vector<uint32_t> order(data.size());
  std::iota(order.begin(), order.end(), 0u);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(options.seed));
  std::vector<std::vector<dataset::Fault>> faults(options.producers);
  for (int p = 0; p < options.producers; ++p) faults[p] = plan.For(p);

  ProduceProgress progress;
  progress.target = options.images;
  progress.run_id = options.run_id.empty() ? RandomRunId() : options.run_id;
  const auto start = Clock::now();
  auto next_report = start;
  auto refresh = [&] {
    const kafka::ProducerStats& stats = producer->stats();
    progress.sent = stats.sent;
    progress.acknowledged = stats.acknowledged;
    progress.failed = stats.failed;
    progress.last_error = stats.last_error;
    progress.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  };

  for (int64_t i = 0; options.images == 0 || i < options.images; ++i) {
    auto now = Clock::now();
    if (options.duration.count() && now - start >= options.duration) break;
    if (options.rate > 0) {
      // Pace against the start time, not the previous send, so the average rate holds.
      auto due = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(i / options.rate));
      // Sleeps, neither spinning (a poll takes whole milliseconds, and at thousands of images
      // a second the gaps are shorter: the busy loop took the devices 0.14 ms of CPU an image,
      // away from the pipeline they feed) nor waking for each delivery report as a poll with a
      // timeout does (the reports wait for the next send's poll). And wakes at most once a
      // millisecond, sending what is due within it: a wake-up an image cost the devices more
      // CPU in context switches than their sending. An image leaves at most kWakeEvery early;
      // the average rate holds.
      constexpr auto kWakeEvery = std::chrono::milliseconds(1);
      while ((now = Clock::now()) + kWakeEvery <= due) std::this_thread::sleep_until(due);
    }
    const int producer_id = static_cast<int>(i % options.producers);
    const uint32_t index = order[static_cast<size_t>(i) % order.size()];
    ImageRecord record{fmt::format("{}-{}-{}", progress.run_id, producer_id, i), producer_id,
                       data.class_names[data.labels[index]], NowMicros(), Image::CopyOf(data.image(index))};
    dataset::ApplyFaults(faults[producer_id], options.seed, producer_id, static_cast<uint64_t>(i), record.image);
    ASSIGN_OR_RETURN(WireMessage message, EncodeImageMessage(record, {.encoding = options.format,
                                                                      .png_compression = options.png_compression}));
    if (dataset::CorruptsMessage(faults[producer_id], options.seed, producer_id, static_cast<uint64_t>(i))) {
      message.value.resize(message.value.size() / 2);
    }
    // A refused send is already counted as failed; going on keeps the other devices' data.
    (void)producer->Send(options.topic, message);
    producer->Poll();
    if (on_progress && Clock::now() >= next_report) {
      refresh();
      on_progress(progress);
      next_report = Clock::now() + std::chrono::milliseconds(200);
    }
  }
  Status flushed = producer->Flush(std::chrono::seconds(120));
  refresh();
  if (!flushed && progress.last_error.empty()) progress.last_error = flushed.error().message();
  if (on_progress) on_progress(progress);
  return progress;
}

namespace {

Result<ImageEncoding> ParseFormat(const std::string& format) {
  if (format == "png") return ImageEncoding::kPng;
  if (format == "raw") return ImageEncoding::kRaw;
  if (format == "jpeg") return ImageEncoding::kJpeg;
  return std::unexpected(Error::InvalidInput(fmt::format("unknown --format '{}' (known: png, raw, jpeg)", format)));
}

}  // namespace

Status RunCommand(ProduceCommand command) {
  ProduceOptions& o = command.options;
  ASSIGN_OR_RETURN(o.dataset.split, dataset::ParseSplit(command.split));
  ASSIGN_OR_RETURN(o.format, ParseFormat(command.format));
  o.duration = std::chrono::milliseconds(static_cast<int64_t>(command.duration_seconds * 1000));

  const bool live = isatty(STDERR_FILENO);
  auto on_progress = [&](const ProduceProgress& p) {
    if (!live) return;
    std::string target = p.target ? fmt::format("/{}", p.target) : "";
    std::fprintf(stderr, "\r\033[Ksent %lld%s  acknowledged %lld  failed %lld  %.0f images/s",
                 static_cast<long long>(p.sent), target.c_str(), static_cast<long long>(p.acknowledged),
                 static_cast<long long>(p.failed), p.images_per_second());
  };
  ASSIGN_OR_RETURN(const ProduceProgress result, Produce(o, on_progress));
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

}  // namespace iotinfer::produce
