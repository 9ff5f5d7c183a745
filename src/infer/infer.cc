#include "infer/infer.h"

#include <fmt/format.h>

#include "core/inference_record.h"
#include "kafka/service_loop.h"
#include "kafka/transactional_pipe.h"

namespace iotinfer::infer {
namespace {

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

kafka::OutputMessage InferenceOutput(const std::string& topic, const ImageRecord& image,
                                     const model::Prediction& prediction, const model::Classifier& classifier,
                                     int64_t inferred_at) {
  const InferenceRecord record{.id = image.id,
                               .image_prediction = classifier.class_names()[prediction.label],
                               .actual_value = image.label,
                               .producer_id = image.producer_id,
                               .confidence = prediction.confidence,
                               .model = classifier.model_id(),
                               .produced_at_us = image.produced_at_us,
                               .inferred_at_us = inferred_at};
  return {topic, {std::to_string(image.producer_id), EncodeInferenceRecord(record), {{"id", image.id}}}};
}

}  // namespace

std::string FormatStats(const InferStats& s) {
  return fmt::format("consumed {} inferred {} dead-lettered {} batches {} (last {}) aborted {} lag {} partitions {}",
                     s.consumed, s.inferred, s.dead_lettered, s.batches, s.last_batch, s.aborted, s.lag, s.partitions);
}

Result<InferStats> RunInfer(const InferOptions& options, const std::atomic<bool>& stop,
                            const std::function<void(const InferStats&)>& on_progress) {
  ASSIGN_OR_RETURN(auto classifier, model::Classifier::Create(options.classifier));
  TRY(kafka::EnsureTopics(options.kafka, {{options.input_topic, options.partitions},
                                          {options.output_topic, options.partitions},
                                          {options.dlq_topic, options.partitions}}));
  ASSIGN_OR_RETURN(auto pipe, kafka::TransactionalPipe::Create(
                                  {.kafka = options.kafka,
                                   .group = options.group,
                                   .input_topics = {options.input_topic},
                                   .output_topics = {options.output_topic, options.dlq_topic},
                                   .transactional_id = kafka::TransactionalId(options.group, options.instance_id),
                                   .max_batch = options.batch_max,
                                   .max_wait = options.batch_wait}));
  InferStats stats;
  kafka::ServiceLoop<InferStats> loop(*pipe, stats, "infer", options.log_every, on_progress);
  std::vector<ImageRecord> records;
  std::vector<ImageView> views;
  std::vector<model::Prediction> predictions;
  std::vector<kafka::OutputMessage> outputs;
  while (!stop.load()) {
    ASSIGN_OR_RETURN(std::vector<kafka::InputMessage> batch, loop.Poll());
    if (batch.empty()) continue;

    records.clear();
    outputs.clear();
    int64_t dead = 0;
    for (const auto& in : batch) {
      auto record = DecodeImageMessage(in.message, options.limits);
      if (record) {
        records.push_back(std::move(*record));
      } else {
        outputs.push_back(kafka::DeadLetter(options.dlq_topic, in, record.error().message()));
        ++dead;
      }
    }
    views.clear();
    for (const auto& r : records) views.push_back(r.image.view());
    predictions.resize(records.size());
    if (Status classified = classifier->Classify(views, predictions); !classified) {
      // Decoding validated every image, so this is a model failure: stop rather than lose data.
      return std::unexpected(classified.error());
    }
    const int64_t inferred_at = NowMicros();
    for (size_t i = 0; i < records.size(); ++i) {
      outputs.push_back(InferenceOutput(options.output_topic, records[i], predictions[i], *classifier, inferred_at));
    }
    ASSIGN_OR_RETURN(bool committed, loop.Commit(batch, outputs));
    if (!committed) continue;  // aborted and rewound: the batch comes again
    stats.inferred += static_cast<int64_t>(records.size());
    stats.dead_lettered += dead;
    loop.Committed(batch.size());
  }
  loop.Finish();
  return stats;
}

}  // namespace iotinfer::infer
