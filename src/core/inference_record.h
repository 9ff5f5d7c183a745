#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.h"

namespace iotinfer {

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

}  // namespace iotinfer
