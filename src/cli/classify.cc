#include <cstdio>

#include "analytics/evaluation.h"
#include "cli/commands.h"

namespace iotinfer::cli {
namespace {

void AddDatasetFlags(CLI::App& cmd, analytics::EvaluationOptions& o, std::string& split) {
  cmd.add_option("--dataset", o.dataset.name, "fashion-mnist or cifar10")->capture_default_str();
  cmd.add_option("--data-dir", o.dataset.dir, "where the dataset files are (default: Debian's location)");
  cmd.add_option("--split", split, "train or test")->capture_default_str();
  cmd.add_option("--limit", o.limit, "classify only the first N images (0: all)")->capture_default_str();
}

void AddModelFlags(CLI::App& cmd, analytics::EvaluationOptions& o) {
  cmd.add_option("--model", o.classifier.model_path, "ONNX model (default: the committed fmnist-cnn.onnx)")
      ->envname("IOTINFER_MODEL");
  cmd.add_option("--threads", o.classifier.threads, "inference threads (0: one per core)")->capture_default_str();
  AddEngineFlag(cmd, o.classifier.engine);
  cmd.add_option("--batch", o.batch, "images per inference call")->capture_default_str()->check(CLI::PositiveNumber);
}

Status RunEvaluation(analytics::EvaluationOptions& options, const std::string& split) {
  ASSIGN_OR_RETURN(options.dataset.split, dataset::ParseSplit(split));
  ASSIGN_OR_RETURN(analytics::EvaluationReport report, analytics::Evaluate(options));
  std::fputs(analytics::FormatReport(report).c_str(), stdout);
  return Ok();
}

}  // namespace

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
      ->check(CLI::PositiveNumber);
  cmd->add_option("--seed", options->seed, "seed for the fault profiles")->capture_default_str();
  cmd->callback([&action, options, split] { action = [options, split] { return RunEvaluation(*options, *split); }; });
}

}  // namespace iotinfer::cli
