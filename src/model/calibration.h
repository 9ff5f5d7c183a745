#pragma once

#include <string>
#include <vector>

#include "core/error.h"

namespace iotinfer::model {

/// What an int8 classifier needs beyond the model: the largest |value| each convolution
/// outputs over representative images (OnednnNet::ActivationRanges). `iotinfer calibrate`
/// writes it as JSON next to the model, e.g. model/fmnist-cnn.int8.json:
///   {"model": "fmnist-cnn-f717b7aa", "images": "fashion-mnist train (60000 images)",
///    "activation_ranges": [3.45, 2.14, 4.28]}
struct Calibration {
  std::string model_id;  // Classifier::model_id() of the model it was made for
  std::string images;    // what it was calibrated on, for people
  std::vector<float> activation_ranges;
};

/// `model_path` with its extension replaced by ".int8.json".
std::string DefaultCalibrationPath(const std::string& model_path);

/// NotFound for a missing file, InvalidInput naming the file and the problem otherwise.
Result<Calibration> ReadCalibration(const std::string& path);
Status WriteCalibration(const std::string& path, const Calibration& calibration);

}  // namespace iotinfer::model
