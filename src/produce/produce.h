#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "core/error.h"
#include "core/image_message.h"
#include "core/topics.h"
#include "dataset/dataset.h"
#include "kafka/kafka.h"

namespace iotinfer::produce {

struct ProduceOptions {
  kafka::KafkaConfig kafka;
  std::string topic = topics::kImages;
  int partitions = 6;                     // used only when the topic has to be created
  int producers = 8;                      // simulated devices, producer_id 0..N-1; image i comes from device i % N
  int64_t images = 0;                     // total over all devices; 0: until `duration`
  std::chrono::milliseconds duration{0};  // 0: until `images`
  double rate = 0;                        // images per second over all devices; 0: unlimited
  dataset::DatasetOptions dataset;
  std::string faults;  // fault spec (dataset/faults.h)
  ImageEncoding format = ImageEncoding::kPng;
  // zlib level of the PNGs. 0 (stored) encodes a 28x28 image in about 2 us against 27 us at
  // level 1, for 885 bytes against 529: simulated devices share the pipeline's cores, real
  // ones compress on their own CPUs. With level 0 the produce -> infer pipeline on 2 cores runs
  // 25-45% faster than with level 1 (five runs, docs/bench-log.md).
  int png_compression = 0;
  // How long the devices' producer holds a partition's images to send them together. librdkafka
  // sends one partition per request and the broker's cost is per request: at 5,000 images/s
  // over 6 partitions the devices alone, sending at once, took the broker 0.075 ms of CPU an
  // image, lingering 5 ms 0.04. 0 suits devices that send a few images a second (lingering only
  // delays them); a few ms suit a gateway that forwards hundreds a second (docs/latency.md).
  std::chrono::milliseconds linger{0};
  uint64_t seed = 1;   // picks the images and drives the faults
  std::string run_id;  // image ids are "<run_id>-<producer>-<n>"; empty: random
};

struct ProduceProgress {
  int64_t target = 0;  // images to send; 0 when bounded by time
  int64_t sent = 0;
  int64_t acknowledged = 0;
  int64_t failed = 0;
  double seconds = 0;
  std::string run_id;
  std::string last_error;

  double images_per_second() const { return seconds > 0 ? acknowledged / seconds : 0; }
};

/// Sends labelled images from `producers` simulated devices to `topic` (created if missing)
/// with an idempotent producer, keys and headers as in docs/design.md. Calls `on_progress`
/// about every 200 ms. Returns the final counts once every message is acknowledged or failed;
/// an error only when nothing could start (bad options, dataset, faults or cluster).
/// Failed deliveries are counted in the result, not hidden: callers must check `failed`.
Result<ProduceProgress> Produce(const ProduceOptions& options,
                                const std::function<void(const ProduceProgress&)>& on_progress = {});

/// `iotinfer produce` as its command line gives it.
struct ProduceCommand {
  ProduceOptions options;
  std::string split = "test";   // train or test
  std::string format = "png";   // png, raw or jpeg
  double duration_seconds = 0;  // 0: until options.images
};

/// Produce as the command runs it: a live progress line while stderr is a terminal (logs and
/// pipes get only the summary), then a summary on stdout. InvalidInput for an unknown split or
/// format; Unavailable when any image was not delivered, with the last delivery error.
Status RunCommand(ProduceCommand command);

}  // namespace iotinfer::produce
