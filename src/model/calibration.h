#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/error.h"

namespace iotinfer::model {

/// What an int8 classifier needs beyond the model. `iotinfer calibrate` writes it as JSON next
/// to the model, e.g. model/fmnist-cnn.int8.json:
///   {"model": "fmnist-cnn-f717b7aa", "images": "fashion-mnist train (60000 images)",
///    "activation_ranges": [3.45, 2.14, 4.28], "recheck_margins": {"7": 0.43, "8": 0.46}}
struct Calibration {
  std::string model_id;  // Classifier::model_id() of the model it was made for
  std::string images;    // what it was calibrated on, for people
  // The largest |value| each convolution outputs over the images (OnednnNet::ActivationRanges).
  std::vector<float> activation_ranges;
  // By weight bits (OnednnNet::NativeWeightBits: 8, or 7 for the paired weights of CPUs
  // without VNNI): an image whose int8 top logit leads the next
  // by less than this is classified again in float32. Twice the largest amount by which int8
  // moved any logit relative to the top one over the images, so that a lead above it cannot be
  // an artefact of int8 (Classifier::Calibrate). 0: never again.
  std::map<int, float> recheck_margins;
};

/// `model_path` with its extension replaced by ".int8.json".
std::string DefaultCalibrationPath(const std::string& model_path);

/// NotFound for a missing file, InvalidInput naming the file and the problem otherwise.
Result<Calibration> ReadCalibration(const std::string& path);
Status WriteCalibration(const std::string& path, const Calibration& calibration);

}  // namespace iotinfer::model
