#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.h"

namespace iotinfer {

/// When `sink` handled a record, microseconds since the epoch: the broker's append time of
/// the `inferences` record (where the topic has LogAppendTime), when the sink's poll returned
/// it, when it sent the store write, and when the store acknowledged it (the record was stored).
struct SinkTimes {
  std::optional<int64_t> appended_at_us, polled_at_us, write_sent_at_us, stored_at_us;
  friend bool operator==(const SinkTimes&, const SinkTimes&) = default;
};

/// One record of the `inferences` topic (docs/design.md): what `infer` writes and what
/// `sink`, `stream` and `report` read.
struct InferenceRecord {
  std::string id;
  std::string image_prediction;             // class name
  std::optional<std::string> actual_value;  // class name; absent for unlabelled images
  int producer_id = 0;
  double confidence = 0;
  std::string model;
  std::optional<int64_t> produced_at_us;
  int64_t inferred_at_us = 0;
  // Where the time between produced_at and inferred_at went (docs/latency.md), microseconds
  // since the epoch, each absent where it is not known: the broker's append time of the
  // `images` record (only from a topic with message.timestamp.type=LogAppendTime), when
  // infer's poll returned it, and when its batch closed.
  std::optional<int64_t> appended_at_us, polled_at_us, batch_at_us;
  // Added by `sink` to the copy it publishes to inferences.accepted, never to the store.
  SinkTimes sink;

  bool incorrect() const { return actual_value && *actual_value != image_prediction; }
  friend bool operator==(const InferenceRecord&, const InferenceRecord&) = default;
};

/// The JSON value, fields in the order of the original schema: id, image_prediction,
/// actual_value, producer_id, then the extras.
std::string EncodeInferenceRecord(const InferenceRecord& record);

/// Parses and validates a JSON value. InvalidInput with a one-line reason (a dead-letter
/// reason) for anything but an object whose id is a non-empty string, image_prediction a
/// string, actual_value a string or null, producer_id an integer in [0, 2^31), and whose
/// optional extras have the documented types. Unknown fields are ignored (newer writers).
Result<InferenceRecord> DecodeInferenceRecord(std::string_view json);

/// `json`, a record DecodeInferenceRecord accepted, with the sink's stage times added as its
/// last fields. Cheaper than decoding and encoding it again, and it keeps whatever fields a
/// newer writer added.
std::string WithSinkTimes(std::string_view json, const SinkTimes& times);

}  // namespace iotinfer
