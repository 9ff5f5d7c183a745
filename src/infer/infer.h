#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "core/error.h"
#include "core/image_message.h"
#include "core/topics.h"
#include "infer/model_source.h"
#include "kafka/dead_letter.h"
#include "kafka/kafka.h"
#include "model/classifier.h"
#include "ops/endpoints.h"

namespace iotinfer::infer {

struct InferOptions {
  kafka::KafkaConfig kafka;
  std::string group = "iotinfer-infer";
  // Names this instance for its Kafka transactions. Give each replica a stable one (a pod
  // name, say): a restarted instance then fences its crashed predecessor at once instead of
  // readers waiting for the old transaction to time out. Empty: host name and process id.
  std::string instance_id;
  std::string input_topic = topics::kImages;
  std::string output_topic = topics::kInferences;
  std::string dlq_topic = topics::kImagesDeadLetters;
  int partitions = 6;  // for topics that have to be created
  // An upper bound: batches are what arrived within batch_wait, so a large bound costs no
  // latency at moderate rates, and under a backlog it spreads each transaction's fixed cost
  // (about 19 ms on the local broker) over more images. Drain rate of a backlog on 2 cores,
  // FP32: 14.5k/s at 512, 20.7k/s at 1024, 24.5k/s at 2048, 28.7k/s at 4096 (2026-11-26).
  int batch_max = 2048;
  // And a batch holds at most this many bytes of messages: 2,048 images of 900 KB would
  // otherwise be 1.8 GB. Decoded images are brought to the network's size at once, so what
  // the batch holds is its messages.
  size_t batch_max_bytes = 64 << 20;
  // How long a batch waits for more images once its first has come. Under a backlog batches
  // fill to batch_max whatever it is. 2 ms measured best for device-to-stored latency at
  // 1,000 images/s (p50 17 against 20 ms, p99 43-46 against 50-65 ms with 0; docs/latency.md):
  // the transactions are as many either way, since one commit takes longer than the wait. A
  // longer wait makes fewer, larger transactions at moderate rates, which saves the broker
  // CPU at the cost of that wait in latency.
  std::chrono::milliseconds batch_wait{2};
  // The engine, threads and shape of every model; its model_path serves when there is no
  // model_dir, and while the directory offers none that can (ModelSourceOptions).
  model::ClassifierOptions classifier;
  // A directory whose active model serves, swapped between transactions when it changes.
  std::string model_dir;
  std::string model_active;  // the file naming the model that serves; empty: model_dir/active
  std::chrono::milliseconds model_poll{1000};
  // The compacted topic whose latest choice for `group` names the version to serve, outranking
  // model_dir (`iotinfer models activate`, `models compare --promote-if better`); the version
  // must be one of the files infer knows: model_dir's, the model's, the shadow's. Empty: none.
  std::string model_control_topic = topics::kModelControl;
  // A candidate model that classifies a sample of the images too, its records going to
  // shadow_topic in the same transaction as the active model's: `models compare` pairs them.
  std::string shadow_model;
  std::string shadow_topic = topics::kInferencesShadow;
  double shadow_sample = 1.0;  // the share of images the shadow classifies, chosen by image id
  DecodeLimits limits;
  std::chrono::milliseconds log_every{5000};  // 0: no periodic log line
  // /healthz, /readyz and /metrics (ops/endpoints.h); none when unset.
  std::optional<ops::EndpointOptions> endpoints;
};

struct InferStats {
  int64_t consumed = 0;
  int64_t inferred = 0;
  int64_t dead_lettered = 0;
  // dead_lettered by the reason each dead letter's `reason` header says (kafka::ReasonIndex).
  kafka::ReasonCounts dead_lettered_by_reason{};
  int64_t batches = 0;
  int64_t aborted = 0;   // transactions aborted and retried
  int64_t isolated = 0;  // messages that failed every batch holding them, dead-lettered alone
  // Set while commits keep failing (ServiceLoop): how long, and why; /readyz says so.
  double stuck_seconds = 0;
  std::string stuck;
  int64_t rechecked = 0;  // close calls the int8 engine classified again in float32
  std::string model;      // the version serving
  std::string shadow;     // the shadow's version; empty without one
  int64_t model_swaps = 0;
  RefusalCounts models_refused{};  // by ModelRefusal
  int64_t shadowed = 0;            // images the shadow classified, in committed batches
  int last_batch = 0;
  int64_t lag = 0;
  int partitions = 0;
};

/// One line for logs: counters, last batch size, lag, assigned partitions.
std::string FormatStats(const InferStats& stats);

/// Runs the inference service until `stop` becomes true: consumes `input_topic` as a member
/// of `group`, classifies valid images in batches and writes one JSON record per image to
/// `output_topic` (docs/design.md), and sends every message that fails decoding to
/// `dlq_topic` with an `error` header. Outputs and input offsets commit in one transaction
/// per batch, so each image yields exactly one record even across crashes and rebalances.
/// `on_progress` (optional) sees the counters after every committed batch and whenever the
/// number of assigned partitions changes (so a caller can tell when the service is ready).
/// With `endpoints`, serves them for the whole run: ready while partitions are assigned;
/// metrics include each image's produce-to-inference latency. Returns the final
/// counters after finishing and committing the current batch, or an error when the service
/// cannot start or its producer is fenced.
Result<InferStats> RunInfer(const InferOptions& options, const std::atomic<bool>& stop,
                            const std::function<void(const InferStats&)>& on_progress = {});

/// RunInfer as `iotinfer infer` runs it: a line on stderr saying where it reads and writes
/// (secrets masked), and one with its final counters when it stops.
Status RunCommand(const InferOptions& options, const std::atomic<bool>& stop);

}  // namespace iotinfer::infer
