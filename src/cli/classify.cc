#include <fmt/format.h>

#include <chrono>
#include <cstdio>

#include "analytics/evaluation.h"
#include "cli/commands.h"
#include "model/calibration.h"

namespace iotinfer::cli {
namespace {

void AddDatasetFlags(CLI::App& cmd, analytics::EvaluationOptions& o, std::string& split) {
  cmd.add_option("--dataset", o.dataset.name, "fashion-mnist or cifar10")->capture_default_str();
  cmd.add_option("--data-dir", o.dataset.dir, "where the dataset files are (default: Debian's location)");
  cmd.add_option("--split", split, "train or test")->capture_default_str();
  cmd.add_option("--limit", o.limit, "only the first N images (0: all)")->capture_default_str()->check(NonNegative());
}

void AddModelPathFlag(CLI::App& cmd, analytics::EvaluationOptions& o) {
  cmd.add_option("--model", o.classifier.model_path, "ONNX model (default: the committed fmnist-cnn.onnx)")
      ->envname("IOTINFER_MODEL");
}

void AddModelFlags(CLI::App& cmd, analytics::EvaluationOptions& o) {
  AddModelPathFlag(cmd, o);
  cmd.add_option("--threads", o.classifier.threads, "inference threads (0: one per core)")
      ->capture_default_str()
      ->check(NonNegative());
  AddEngineFlags(cmd, o.classifier);
  cmd.add_option("--batch", o.batch, "images per inference call")->capture_default_str()->check(Positive());
}

Status RunEvaluation(analytics::EvaluationOptions& options, const std::string& split) {
  ASSIGN_OR_RETURN(options.dataset.split, dataset::ParseSplit(split));
  ASSIGN_OR_RETURN(analytics::EvaluationReport report, analytics::Evaluate(options));
  std::fputs(analytics::FormatReport(report).c_str(), stdout);
  return Ok();
}

struct CalibrateOptions {
  analytics::EvaluationOptions evaluation;  // its dataset, limit and classifier
  std::string split = "train";
  std::string out;
};

// How a calibration does on images it was not made from: int8's predictions with their
// rechecks against float32's, on up to 10,000 images of `held_out`.
Result<std::string> CheckCalibration(const analytics::EvaluationOptions& calibrated, dataset::Split held_out,
                                     const std::string& path) {
  analytics::EvaluationOptions o = calibrated;
  o.dataset.split = held_out;
  o.limit = 10000;
  o.batch = 256;
  o.classifier.threads = 0;
  o.classifier.engine = model::Engine::kOneDnn;
  ASSIGN_OR_RETURN(const analytics::EvaluationReport exact, analytics::Evaluate(o));
  o.classifier.engine = model::Engine::kOneDnnInt8;
  o.classifier.calibration_path = path;
  ASSIGN_OR_RETURN(const analytics::EvaluationReport int8, analytics::Evaluate(o));
  int64_t same = 0;
  for (size_t i = 0; i < exact.predictions.size(); ++i) same += exact.predictions[i] == int8.predictions[i];
  return fmt::format(
      "checked on {} {} images: int8 with its rechecks agrees with float32 on {} ({:.2f}%); {} ({:.1f}%) were close "
      "calls, classified again in float32\n",
      exact.images, dataset::SplitName(held_out), same, 100.0 * static_cast<double>(same) / exact.images,
      int8.rechecked, 100.0 * static_cast<double>(int8.rechecked) / exact.images);
}

Status RunCalibrate(CalibrateOptions& options) {
  analytics::EvaluationOptions& o = options.evaluation;
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
  for (const auto& [bits, margin] : calibration.recheck_margins)
    margins.push_back(fmt::format("{}-bit weights {:.3f}", bits, margin));
  fmt::print("calibrated {} on {} {} images in {:.1f} s: activation ranges {}; recheck margins {}\nwrote {}\n",
             classifier->model_id(), n, options.split, seconds, fmt::join(calibration.activation_ranges, ", "),
             fmt::join(margins, ", "), path);
  const dataset::Split held_out =
      o.dataset.split == dataset::Split::kTrain ? dataset::Split::kTest : dataset::Split::kTrain;
  auto checked = CheckCalibration(o, held_out, path);
  // The calibration stands without the check: some datasets ship one split only.
  std::fputs(checked ? checked->c_str() : fmt::format("not checked: {}\n", checked.error().message()).c_str(), stdout);
  return Ok();
}

}  // namespace

void AddCalibrateCommand(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand(
      "calibrate",
      "Measure what --engine onednn-int8 needs on a dataset (by default its training split, not the images you "
      "evaluate on): the model's activation ranges, and how close a call must be to be classified again in float32");
  auto options = std::make_shared<CalibrateOptions>();
  AddDatasetFlags(*cmd, options->evaluation, options->split);
  AddModelPathFlag(*cmd, options->evaluation);
  cmd->add_option("--out", options->out, "where to write it (default: the model's path with .int8.json)");
  cmd->callback([&action, options] { action = [options] { return RunCalibrate(*options); }; });
}

void AddClassifyCommand(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("classify",
                                 "Classify a labelled dataset and print accuracy, a per-class table and throughput");
  auto options = std::make_shared<analytics::EvaluationOptions>();
  auto split = std::make_shared<std::string>("test");
  AddDatasetFlags(*cmd, *options, *split);
  AddModelFlags(*cmd, *options);
  cmd->add_option("--faults", options->faults, "fault profiles per producer, e.g. 3:noise=0.4,5:blur=1.5");
  cmd->add_option("--producers", options->producers, "spread images over N producers (image i -> producer i % N)")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--seed", options->seed, "seed for the fault profiles")->capture_default_str();
  cmd->callback([&action, options, split] { action = [options, split] { return RunEvaluation(*options, *split); }; });
}

}  // namespace iotinfer::cli
