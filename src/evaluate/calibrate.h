#pragma once

#include <functional>
#include <string>

#include "core/error.h"
#include "evaluate/evaluation.h"

namespace iotinfer::evaluate {

/// `iotinfer classify`: evaluates the model on a labelled split and formats the report.
struct ClassifyOptions {
  EvaluationOptions evaluation;
  std::string split = "test";  // train or test
};
Result<std::string> Classify(ClassifyOptions options);

/// `iotinfer calibrate`: what --engine onednn-int8 needs, measured on a dataset split.
struct CalibrateOptions {
  EvaluationOptions evaluation;  // its dataset, limit and model path
  // By default the training split: the images a model is evaluated on stay unseen.
  std::string split = "train";
  std::string out;  // default: the model's path with .int8.json
};

/// Measures the model's activation ranges and recheck margins in float32 on the split's
/// images, writes the calibration file, then checks it on up to 10,000 images of the other
/// split: how often int8 with its rechecks agrees with float32. `print` gets each part of the
/// account as it is known. The calibration stands when the check cannot run (a dataset that
/// ships one split only); `print` then says why it was not checked.
Status Calibrate(CalibrateOptions options, const std::function<void(const std::string&)>& print);

}  // namespace iotinfer::evaluate
