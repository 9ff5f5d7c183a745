#include "evaluate/calibrate.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "model/calibration.h"

namespace iotinfer::evaluate {
namespace {

// How a calibration does on images it was not made from: int8's predictions with their
// rechecks against float32's, on up to 10,000 images of `held_out`.
Result<std::string> CheckCalibration(const EvaluationOptions& calibrated, dataset::Split held_out,
                                     const std::string& path) {
  EvaluationOptions o = calibrated;
  o.dataset.split = held_out;
  o.limit = 10000;
  o.batch = 256;
  o.classifier.threads = 0;
  o.classifier.engine = model::Engine::kOneDnn;
  ASSIGN_OR_RETURN(const EvaluationReport exact, Evaluate(o));
  o.classifier.engine = model::Engine::kOneDnnInt8;
  o.classifier.calibration_path = path;
  ASSIGN_OR_RETURN(const EvaluationReport int8, Evaluate(o));
  int64_t same = 0;
  for (size_t i = 0; i < exact.predictions.size(); ++i) same += exact.predictions[i] == int8.predictions[i];
  return fmt::format(
      "checked on {} {} images: int8 with its rechecks agrees with float32 on {} ({:.2f}%); {} ({:.1f}%) were close "
      "calls, classified again in float32\n",
      exact.images, dataset::SplitName(held_out), same, 100.0 * static_cast<double>(same) / exact.images,
      int8.rechecked, 100.0 * static_cast<double>(int8.rechecked) / exact.images);
}

}  // namespace

Result<std::string> Classify(ClassifyOptions options) {
  ASSIGN_OR_RETURN(options.evaluation.dataset.split, dataset::ParseSplit(options.split));
  ASSIGN_OR_RETURN(const EvaluationReport report, Evaluate(options.evaluation));
  return FormatReport(report);
}

Status Calibrate(CalibrateOptions options, const std::function<void(const std::string&)>& print) {
  EvaluationOptions& o = options.evaluation;
  ASSIGN_OR_RETURN(o.dataset.split, dataset::ParseSplit(options.split));
  ASSIGN_OR_RETURN(const dataset::Dataset data, dataset::Load(o.dataset));
  if (o.classifier.model_path.empty()) o.classifier.model_path = model::DefaultModelPath();
  o.classifier.engine = model::Engine::kOneDnn;
  o.classifier.threads = 1;
  o.classifier.class_names = data.class_names;
  ASSIGN_OR_RETURN(auto classifier, model::Classifier::Create(o.classifier));
  const size_t n = o.limit > 0 ? std::min<size_t>(o.limit, data.size()) : data.size();
  if (n == 0) return std::unexpected(Error::InvalidInput(fmt::format("{} has no images to calibrate on", data.name)));
  std::vector<ImageView> images;
  for (size_t i = 0; i < n; ++i) images.push_back(data.image(i));
  const auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(model::Calibration calibration, classifier->Calibrate(images));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  calibration.images = fmt::format("{} {} ({} images)", data.name, options.split, n);
  const std::string path = options.out.empty() ? model::DefaultCalibrationPath(o.classifier.model_path) : options.out;
  TRY(model::WriteCalibration(path, calibration));
  std::vector<std::string> margins;
  for (const auto& [bits, margin] : calibration.recheck_margins) {
    margins.push_back(bits == 7 ? fmt::format("paired weights (CPUs without VNNI) {:.3f}", margin)
                                : fmt::format("{}-bit weights {:.3f}", bits, margin));
  }
  print(fmt::format("calibrated {} on {} {} images in {:.1f} s: activation ranges {}; recheck margins {}\nwrote {}\n",
                    classifier->model_id(), n, options.split, seconds, fmt::join(calibration.activation_ranges, ", "),
                    fmt::join(margins, ", "), path));
  const dataset::Split held_out =
      o.dataset.split == dataset::Split::kTrain ? dataset::Split::kTest : dataset::Split::kTrain;
  auto checked = CheckCalibration(o, held_out, path);
  // The calibration stands without the check: some datasets ship one split only.
  print(checked ? *checked : fmt::format("not checked: {}\n", checked.error().message()));
  return Ok();
}

}  // namespace iotinfer::evaluate
