#pragma once

#include <string>

#include "core/error.h"
#include "core/topics.h"
#include "kafka/kafka.h"
#include "models/compare.h"
#include "models/control.h"

namespace iotinfer::models {

/// `iotinfer models compare`: Compare, printed, and optionally acted on.
struct CompareCommandOptions {
  CompareOptions compare;
  int devices = 20;      // rows of the printed device table: the significant first, then by |c - b|; 0: all
  bool json = false;     // the whole comparison as one JSON object instead, every device in it
  bool promote = false;  // --promote-if better
  std::string group = kDefaultGroup;                  // the infer group a promotion applies to
  std::string control_topic = topics::kModelControl;  // where it is written
};

/// `comparison` of the topics `options` names, as `models compare` prints it: the models and
/// topics, how many records were paired, the overall row and `devices_shown` device rows (the
/// significant first, then by |c - b|; 0: all), and the decision with its reason.
std::string FormatComparison(const Comparison& comparison, const CompareOptions& options, int devices_shown);

/// The comparison as a table (or JSON): the models and topics, how many records were paired,
/// the overall and per-device accuracies, b, c, p-values and Holm-adjusted ones, and the
/// decision with its reason. With `promote`, when the decision is kBetter, a ModelChoice of the
/// candidate is written for the group (by "models compare --promote-if better", the reason
/// the summary) and the text says so; otherwise it says why nothing was written: the decision,
/// the candidate already being the group's choice, or the group's choice being a model other
/// than the active one compared (the comparison says nothing of that one). Errors as Compare's,
/// InvalidInput for a bad --devices or group, and WriteChoice's.
Result<std::string> CompareText(const CompareCommandOptions& options);

/// `iotinfer models activate`: also the rollback, to the version served before.
struct ActivateOptions {
  kafka::KafkaConfig kafka;
  std::string model;  // a model version (IsModelId)
  std::string group = kDefaultGroup;
  std::string reason;
  std::string control_topic = topics::kModelControl;
};

/// Writes a choice of `model` for the group (by "models activate") and says what the group's
/// choice was before, so that the way back is on the screen. InvalidInput for a bad model id,
/// group or reason; errors as ReadChoices' and WriteChoice's.
Result<std::string> ActivateText(const ActivateOptions& options);

/// `iotinfer models status`.
struct StatusOptions {
  kafka::KafkaConfig kafka;
  std::string control_topic = topics::kModelControl;
};

/// Each group's current choice, one block each (model, when, by, reason), and how many records
/// of the topic were skipped as invalid. A topic that does not exist holds no choice.
Result<std::string> StatusText(const StatusOptions& options);

}  // namespace iotinfer::models
