#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "core/error.h"
#include "kafka/kafka.h"

namespace iotinfer::models {

/// The consumer group `iotinfer infer` joins when given none: the group a choice applies to
/// when the operator names none.
inline constexpr const char* kDefaultGroup = "iotinfer-infer";

/// Whether `text` is a model version as model::Classifier::model_id writes it: "<stem>-<8 hex>",
/// the stem (the model file's name without its extension) 1 to 200 bytes of letters, digits,
/// '.', '_', '+' and '-', the hex the first 8 lowercase digits of the file's SHA-256
/// ("fmnist-cnn-1a2b3c4d").
bool IsModelId(std::string_view text);

/// Ok for a model version (IsModelId); InvalidInput saying what one looks like otherwise.
Status CheckModelId(std::string_view text);

/// One decision about which model version an infer group serves: a record of the compacted
/// control topic (topics::kModelControl), keyed by `group`, whose latest record per key is the
/// group's current choice.
struct ModelChoice {
  std::string group;   // the infer consumer group it applies to (record key)
  std::string model;   // model version, Classifier::model_id form "<stem>-<8 hex>"
  int64_t at_us = 0;   // when it was decided, µs since the epoch
  std::string by;      // who decided: "models activate", "models compare --promote-if better", ...
  std::string reason;  // free text, e.g. the comparison's summary
  friend bool operator==(const ModelChoice&, const ModelChoice&) = default;
};

/// The record's value, a JSON object:
/// {"group":"iotinfer-infer","model":"fmnist-cnn-1a2b3c4d","at":1764151200000000,"by":"...","reason":"..."}.
/// `group` is repeated from the key for people reading the topic; the key is what counts.
std::string EncodeChoice(const ModelChoice& choice);

/// A record of the control topic, its key the group. InvalidInput, with a one-line reason, for
/// a value that is not a JSON object, a missing `model`, an `at` that is not an integer, a `by`
/// or `reason` that is not a string, or a choice CheckChoice refuses. `at`, `by` and `reason`
/// may be missing; unknown fields are ignored.
Result<ModelChoice> DecodeChoice(std::string_view key, std::string_view value);

/// InvalidInput, with a one-line reason, for a choice DecodeChoice would refuse: an empty group,
/// a model that is no model version, a control character in the group, `by` or `reason`.
Status CheckChoice(const ModelChoice& choice);

/// Creates `topic` if it is missing (1 partition, cleanup.policy=compact) and writes `choice`
/// keyed by its group, returning once the broker acknowledged it (idempotent producer, acks=all).
/// InvalidInput for a choice CheckChoice refuses (nothing is written); Unavailable when
/// the cluster cannot be reached or does not acknowledge in time.
Status WriteChoice(const kafka::KafkaConfig& config, const std::string& topic, const ModelChoice& choice);

/// Reads `topic` from its beginning to its end as of the call (kafka::ScanTopic, read_committed):
/// the latest valid choice per group, by offset. A record with an empty value is a tombstone
/// and removes its group's choice; records that do not decode are skipped, and counted in
/// `*skipped` when it is not null. A topic that does not exist holds no choice: an empty map.
/// Unavailable when the cluster cannot be read.
/// Unavailable too when the end is not reached within `timeout`.
Result<std::map<std::string, ModelChoice>> ReadChoices(const kafka::KafkaConfig& config, const std::string& topic,
                                                       int* skipped = nullptr,
                                                       std::chrono::milliseconds timeout = std::chrono::seconds(120));

}  // namespace iotinfer::models
