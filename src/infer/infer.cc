#include "infer/infer.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "core/clock.h"
#include "core/inference_record.h"
#include "kafka/service_loop.h"
#include "kafka/transactional_pipe.h"
#include "models/control.h"

namespace iotinfer::infer {
namespace {

// When an image reached the broker and this service, and when its batch closed.
struct StageTimes {
  std::optional<int64_t> appended_at, polled_at, batch_at;
};

StageTimes TimesOf(const kafka::InputMessage& in, int64_t batch_at) {
  return {.appended_at = in.appended_at_us(), .polled_at = in.received_at_us, .batch_at = batch_at};
}

kafka::OutputMessage InferenceOutput(const std::string& topic, const ImageRecord& image,
                                     const model::Prediction& prediction, const model::Classifier& classifier,
                                     int64_t inferred_at, const StageTimes& times) {
  const InferenceRecord record{.id = image.id,
                               .image_prediction = classifier.class_names()[prediction.label],
                               .actual_value = image.label,
                               .producer_id = image.producer_id,
                               .confidence = prediction.confidence,
                               .model = classifier.model_id(),
                               .produced_at_us = image.produced_at_us,
                               .inferred_at_us = inferred_at,
                               .appended_at_us = times.appended_at,
                               .polled_at_us = times.polled_at,
                               .batch_at_us = times.batch_at};
  return {topic, {std::to_string(image.producer_id), EncodeInferenceRecord(record), {{"id", image.id}}}};
}

// Each counter of the service with the total it follows.
const std::vector<ops::TotalCounter<InferStats>>& Counters() {
  static const std::vector<ops::TotalCounter<InferStats>> counters{
      {"iotinfer_infer_consumed_total", "image messages read from Kafka",
       [](const InferStats& s) { return s.consumed; }},
      {"iotinfer_infer_inferred_total", "images classified and published",
       [](const InferStats& s) { return s.inferred; }},
      {"iotinfer_infer_aborted_total", "Kafka transactions aborted (their batch read again)",
       [](const InferStats& s) { return s.aborted; }},
      {"iotinfer_infer_isolated_total",
       "messages that failed every batch holding them, found by splitting and dead-lettered alone",
       [](const InferStats& s) { return s.isolated; }},
      {"iotinfer_infer_rechecked_total",
       "close calls of the int8 engine classified again in float32 (of batches read again too)",
       [](const InferStats& s) { return s.rechecked; }},
      {"iotinfer_infer_model_swaps_total", "times another model version took over, between two batches",
       [](const InferStats& s) { return s.model_swaps; }},
      {"iotinfer_infer_shadowed_total", "images the shadow model classified too, in committed batches",
       [](const InferStats& s) { return s.shadowed; }},
  };
  return counters;
}

std::vector<ops::MetricSpec> InferMetrics() {
  using Kind = ops::MetricSpec::Kind;
  return ops::WithCounters(
      Counters(),
      {
          {Kind::kHistogram, "iotinfer_infer_batch_size", "messages per committed batch", ops::SizeBuckets()},
          {Kind::kHistogram, "iotinfer_infer_classify_seconds", "time to classify one batch", ops::SecondsBuckets()},
          {Kind::kHistogram, "iotinfer_infer_shadow_classify_seconds", "time the shadow model added to one batch",
           ops::SecondsBuckets()},
          {Kind::kHistogram, "iotinfer_infer_latency_seconds", "produced_at to inferred_at, per image",
           ops::SecondsBuckets()},
          {Kind::kGauge, "iotinfer_infer_lag", "messages in the assigned partitions not read yet", {}},
          {Kind::kGauge, "iotinfer_infer_partitions", "partitions assigned to this instance", {}},
          {Kind::kGauge, "iotinfer_infer_stuck_seconds", "how long commits have failed in a row", {}},
          {Kind::kCounter,
           "iotinfer_infer_dead_lettered_total",
           "messages sent to the dead-letter topic, by reason",
           {},
           {"reason"}},
          {Kind::kCounter,
           "iotinfer_infer_model_refused_total",
           "models that could not serve and were not taken, by reason",
           {},
           {"reason"}},
          {Kind::kGauge, "iotinfer_infer_model", "1 for the model version serving each role", {}, {"model", "role"}},
      });
}

// Publishes what changed since `last` to the endpoints.
void Publish(ops::Endpoints& endpoints, const InferStats& s, InferStats& last) {
  ops::AddGrowth(endpoints, Counters(), s, last);
  ops::AddGrowth(endpoints, "iotinfer_infer_dead_lettered_total", kafka::ReasonCodes(), s.dead_lettered_by_reason,
                 last.dead_lettered_by_reason);
  ops::AddGrowth(endpoints, "iotinfer_infer_model_refused_total", RefusalNames(), s.models_refused,
                 last.models_refused);
  if (s.model != last.model || s.shadow != last.shadow) {
    std::vector<ops::Series> models{{{s.model, "active"}, 1}};
    if (!s.shadow.empty()) models.push_back({{s.shadow, "shadow"}, 1});
    endpoints.SetSeries("iotinfer_infer_model", models);
  }
  if (s.batches > last.batches) endpoints.Observe("iotinfer_infer_batch_size", s.last_batch);
  endpoints.Set("iotinfer_infer_lag", static_cast<double>(s.lag));
  endpoints.Set("iotinfer_infer_partitions", s.partitions);
  endpoints.Set("iotinfer_infer_stuck_seconds", s.stuck_seconds);
  ops::SetConsumerReadiness(endpoints, s.partitions, true, s.stuck);
  last = s;
}

// Decodes `batch` on up to `threads` threads, in order. On this thread alone, decoding level-1
// PNGs (19% of perf's samples) held a 2-core machine to 24.5k images/s of backlog while the
// classifier used both cores; in parallel, 28-30k. Small batches stay on this thread: a
// thread start would cost more than it saves.
// Each image is brought to the network's size as soon as it is decoded: a batch of up to
// --batch-max images of up to 4096x4096 would otherwise all sit in memory at full size
// (2048 x 64 MB), and a device sending large images could run infer out of memory on every
// restart.
// An image ready to classify, or why it must be dead-lettered (`reason` is then set).
struct Decoded {
  Result<ImageRecord> record;
  kafka::DeadLetterReason reason = kafka::DeadLetterReason::kInvalidImage;
};

kafka::DeadLetterReason ReasonOf(ImageFault fault) {
  switch (fault) {
    case ImageFault::kInvalid:
      return kafka::DeadLetterReason::kInvalidImage;
    case ImageFault::kUndecodable:
      return kafka::DeadLetterReason::kUndecodableImage;
    case ImageFault::kTooLarge:
      return kafka::DeadLetterReason::kTooLarge;
  }
  return kafka::DeadLetterReason::kInvalidImage;
}

std::vector<Decoded> DecodeAll(const std::vector<kafka::InputMessage>& batch, const DecodeLimits& limits,
                               const model::Classifier& classifier) {
  constexpr size_t kPerThreadAtLeast = 64;
  const int threads = classifier.threads();
  std::vector<Decoded> decoded(batch.size());
  auto decode = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      Decoded& d = decoded[i];
      if (!batch[i].unreadable.empty()) {
        d.record = std::unexpected(Error::InvalidInput(batch[i].unreadable));
        d.reason = kafka::DeadLetterReason::kUnreadableRecord;
        continue;
      }
      ImageFault fault = ImageFault::kInvalid;
      d.record = DecodeImageMessage(batch[i].message, limits, &fault);
      if (!d.record) {
        d.reason = ReasonOf(fault);
        continue;
      }
      // Decoding checked the sides and the bytes, so an image the network cannot take is one
      // whose pixels are not what they should be.
      if (Status shaped = classifier.ToInputShape(d.record->image); !shaped) {
        d.record = std::unexpected(shaped.error());
        d.reason = kafka::DeadLetterReason::kUndecodableImage;
      }
    }
  };
  const size_t parts =
      std::clamp<size_t>(batch.size() / kPerThreadAtLeast, 1, static_cast<size_t>(std::max(threads, 1)));
  const size_t per_part = (batch.size() + parts - 1) / parts;
  std::vector<std::jthread> helpers;
  for (size_t begin = per_part; begin < batch.size(); begin += per_part) {
    helpers.emplace_back(decode, begin, std::min(batch.size(), begin + per_part));
  }
  decode(0, std::min(batch.size(), per_part));
  helpers.clear();  // joins, before `decoded` can be moved out
  return decoded;
}

// Whether the shadow classifies this image: the same answer for an image in every batch and on
// every replica, so that a batch read again, or moved to another replica, is sampled alike.
bool Shadowed(std::string_view id, double share) {
  if (share >= 1.0) return true;
  uint64_t hash = 14695981039346656037ull;  // FNV-1a: stable, unlike std::hash
  for (unsigned char c : id) hash = (hash ^ c) * 1099511628211ull;
  // FNV's top bits barely differ between ids that differ in their last characters (1,038 of
  // 3,000 sequential ids fell below one half): splitmix64's finalizer spreads every bit.
  hash = (hash ^ (hash >> 30)) * 0xbf58476d1ce4e5b9ull;
  hash = (hash ^ (hash >> 27)) * 0x94d049bb133111ebull;
  hash ^= hash >> 31;
  return static_cast<double>(hash >> 11) * 0x1p-53 < share;
}

// The version the control topic chose for this group, if any. Asked every few seconds by the
// model source, off the service's thread.
std::function<Result<std::optional<std::string>>()> ChosenVersion(const InferOptions& options) {
  if (options.model_control_topic.empty()) return {};
  return [kafka = options.kafka, topic = options.model_control_topic,
          group = options.group]() -> Result<std::optional<std::string>> {
    // Briefly: a service that stops waits for this read to end.
    ASSIGN_OR_RETURN(auto choices, models::ReadChoices(kafka, topic, nullptr, std::chrono::seconds(5)));
    const auto chosen = choices.find(group);
    if (chosen == choices.end()) return std::optional<std::string>();
    return std::optional<std::string>(chosen->second.model);
  };
}

std::string Canonical(const std::string& path) {
  std::error_code ec;
  const std::filesystem::path resolved = std::filesystem::canonical(path, ec);
  return ec ? path : resolved.string();
}

}  // namespace

std::string FormatStats(const InferStats& s) {
  return fmt::format(
      "consumed {} inferred {} dead-lettered {} batches {} (last {}) aborted {} isolated {} lag {} partitions {} "
      "rechecked {} model {}{}",
      s.consumed, s.inferred, s.dead_lettered, s.batches, s.last_batch, s.aborted, s.isolated, s.lag, s.partitions,
      s.rechecked, s.model, s.shadow.empty() ? "" : fmt::format(" shadow {} ({} images)", s.shadow, s.shadowed));
}

Result<InferStats> RunInfer(const InferOptions& options, const std::atomic<bool>& stop,
                            const std::function<void(const InferStats&)>& on_progress) {
  const std::string log_name = kafka::ServiceLogName("infer", options.instance_id);
  std::vector<std::string> known_models;
  std::unique_ptr<model::Classifier> shadow;
  if (!options.shadow_model.empty()) {
    model::ClassifierOptions o = options.classifier;
    o.model_path = Canonical(options.shadow_model);
    o.calibration_path.clear();
    ASSIGN_OR_RETURN(shadow, model::Classifier::Create(o));
    known_models.push_back(o.model_path);  // so that it can be promoted
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ModelSource> models, ModelSource::Start({.classifier = options.classifier,
                                                                            .model_dir = options.model_dir,
                                                                            .active_file = options.model_active,
                                                                            .known_models = known_models,
                                                                            .chosen_version = ChosenVersion(options),
                                                                            .poll = options.model_poll,
                                                                            .log = kafka::StderrLog(log_name)}));
  std::unique_ptr<model::Classifier> classifier = models->TakeNext();
  std::fprintf(stderr, "%s: model %s on %s, %d threads%s\n", log_name.c_str(), classifier->model_id().c_str(),
               std::string(model::EngineName(classifier->engine())).c_str(), classifier->threads(),
               shadow ? fmt::format("; shadow model {} on {} of the images, to {}", shadow->model_id(),
                                    options.shadow_sample, options.shadow_topic)
                            .c_str()
                      : "");
  std::vector<kafka::TopicSpec> topics{{options.input_topic, options.partitions},
                                       {options.output_topic, options.partitions},
                                       {options.dlq_topic, options.partitions}};
  std::vector<std::string> outputs_to{options.output_topic, options.dlq_topic};
  if (shadow) {
    topics.push_back({options.shadow_topic, options.partitions});
    outputs_to.push_back(options.shadow_topic);
  }
  TRY(kafka::EnsureTopics(options.kafka, topics));
  ASSIGN_OR_RETURN(auto pipe, kafka::TransactionalPipe::Create(
                                  {.kafka = options.kafka,
                                   .group = options.group,
                                   .input_topics = {options.input_topic},
                                   .output_topics = outputs_to,
                                   .transactional_id = kafka::TransactionalId(options.group, options.instance_id),
                                   .alternate_producers = true,
                                   .max_batch = options.batch_max,
                                   .max_batch_bytes = options.batch_max_bytes,
                                   .max_wait = options.batch_wait,
                                   .log = kafka::StderrLog(log_name)}));
  ASSIGN_OR_RETURN(std::unique_ptr<ops::Endpoints> endpoints,
                   ops::StartIfAsked("infer", options.endpoints, InferMetrics()));
  InferStats published;
  auto report = [&](const InferStats& s) {
    if (endpoints) Publish(*endpoints, s, published);
    if (on_progress) on_progress(s);
  };
  InferStats stats{.model = classifier->model_id(), .shadow = shadow ? shadow->model_id() : ""};
  int64_t rechecked_before = 0;  // by the models that served before this one
  kafka::ServiceLoop<InferStats> loop(
      *pipe, stats, {.name = log_name, .log_every = options.log_every, .dlq_topic = options.dlq_topic}, stop, report);
  std::vector<ImageRecord> records;
  std::vector<StageTimes> times;  // of each record
  std::vector<ImageView> views;
  std::vector<model::Prediction> predictions;
  std::vector<kafka::OutputMessage> outputs;
  std::vector<ImageView> shadow_views;
  std::vector<size_t> shadow_records;
  std::vector<model::Prediction> shadow_predictions;
  while (!stop.load()) {
    if (endpoints) endpoints->Beat();
    // Between two transactions: every batch is classified, and committed, by one model.
    if (std::unique_ptr<model::Classifier> next = models->TakeNext()) {
      std::fprintf(stderr, "%s: now serving model %s (was %s)\n", log_name.c_str(), next->model_id().c_str(),
                   classifier->model_id().c_str());
      rechecked_before += static_cast<int64_t>(classifier->rechecked());
      classifier = std::move(next);
      stats.model = classifier->model_id();
      stats.model_swaps++;
    }
    stats.models_refused = models->refused();
    ASSIGN_OR_RETURN(std::vector<kafka::InputMessage> batch, loop.Poll());
    if (batch.empty()) continue;
    const int64_t batch_at = NowMicros();

    records.clear();
    times.clear();
    outputs.clear();
    kafka::ReasonCounts dead{};
    std::vector<Decoded> decoded = DecodeAll(batch, options.limits, *classifier);
    for (size_t i = 0; i < batch.size(); ++i) {
      if (decoded[i].record) {
        records.push_back(std::move(*decoded[i].record));
        times.push_back(TimesOf(batch[i], batch_at));
      } else {
        outputs.push_back(kafka::DeadLetter(options.dlq_topic, batch[i], decoded[i].reason,
                                            decoded[i].record.error().message(),
                                            pipe->max_message_bytes(options.dlq_topic)));
        dead[kafka::ReasonIndex(decoded[i].reason)]++;
      }
    }
    views.clear();
    for (const auto& r : records) views.push_back(r.image.view());
    predictions.resize(records.size());
    const auto classify_start = std::chrono::steady_clock::now();
    if (Status classified = classifier->Classify(views, predictions); !classified) {
      // Decoding validated every image, so this is a model failure: stop rather than lose data.
      return std::unexpected(classified.error());
    }
    const auto classify_end = std::chrono::steady_clock::now();
    shadow_views.clear();
    shadow_records.clear();
    if (shadow && shadow->model_id() != classifier->model_id()) {  // once promoted, it would only repeat
      for (size_t i = 0; i < records.size(); ++i) {
        if (Shadowed(records[i].id, options.shadow_sample)) {
          shadow_views.push_back(views[i]);
          shadow_records.push_back(i);
        }
      }
      shadow_predictions.resize(shadow_views.size());
      if (Status classified = shadow->Classify(shadow_views, shadow_predictions); !classified) {
        // A candidate must never cost the active model's records: it goes, they go on.
        std::fprintf(stderr, "%s: shadow model %s failed (%s); going on without it\n", log_name.c_str(),
                     shadow->model_id().c_str(), classified.error().message().c_str());
        shadow.reset();
        stats.shadow.clear();
        shadow_records.clear();
      }
    }
    const auto shadow_end = std::chrono::steady_clock::now();
    const int64_t inferred_at = NowMicros();
    for (size_t i = 0; i < records.size(); ++i) {
      outputs.push_back(
          InferenceOutput(options.output_topic, records[i], predictions[i], *classifier, inferred_at, times[i]));
    }
    for (size_t s = 0; s < shadow_records.size(); ++s) {
      outputs.push_back(InferenceOutput(options.shadow_topic, records[shadow_records[s]], shadow_predictions[s],
                                        *shadow, inferred_at, times[shadow_records[s]]));
    }
    const double classify_seconds = std::chrono::duration<double>(classify_end - classify_start).count();
    const double shadow_seconds = std::chrono::duration<double>(shadow_end - classify_end).count();
    ASSIGN_OR_RETURN(kafka::Outcome outcome, loop.Commit(batch, outputs));
    if (outcome != kafka::Outcome::kCommitted) continue;  // read again, or its one message dead-lettered
    if (endpoints) {
      endpoints->Observe("iotinfer_infer_classify_seconds", classify_seconds);
      if (!shadow_records.empty()) endpoints->Observe("iotinfer_infer_shadow_classify_seconds", shadow_seconds);
      for (const auto& r : records) {
        if (r.produced_at_us) {
          endpoints->Observe("iotinfer_infer_latency_seconds",
                             static_cast<double>(inferred_at - *r.produced_at_us) / 1e6);
        }
      }
    }
    stats.inferred += static_cast<int64_t>(records.size());
    stats.rechecked = rechecked_before + static_cast<int64_t>(classifier->rechecked());
    stats.shadowed += static_cast<int64_t>(shadow_records.size());
    kafka::CountDeadLetters(stats, dead);
    loop.Committed(batch.size());
  }
  loop.Finish();
  return stats;
}

Status RunCommand(const InferOptions& options, const std::atomic<bool>& stop) {
  const std::string name = kafka::ServiceLogName("infer", options.instance_id);
  std::fprintf(stderr, "%s: %s, group %s, %s -> %s (dead letters: %s)\n", name.c_str(),
               options.kafka.Describe().c_str(), options.group.c_str(), options.input_topic.c_str(),
               options.output_topic.c_str(), options.dlq_topic.c_str());
  ASSIGN_OR_RETURN(const InferStats stats, RunInfer(options, stop));
  std::fprintf(stderr, "%s: stopped; %s\n", name.c_str(), FormatStats(stats).c_str());
  return Ok();
}

}  // namespace iotinfer::infer
