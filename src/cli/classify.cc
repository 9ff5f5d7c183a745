#include <cstdio>

#include "cli/commands.h"
#include "evaluate/calibrate.h"

namespace iotinfer::cli {
namespace {

void AddDatasetFlags(CLI::App& cmd, evaluate::EvaluationOptions& o, std::string& split) {
  cmd.add_option("--dataset", o.dataset.name, "fashion-mnist or cifar10")->capture_default_str();
  AddSplitFlags(cmd, o.dataset, split, o.limit);
}

void AddModelPathFlag(CLI::App& cmd, evaluate::EvaluationOptions& o) {
  cmd.add_option("--model", o.classifier.model_path, "ONNX model (default: the committed fmnist-cnn.onnx)")
      ->envname("IOTINFER_MODEL");
}

void AddModelFlags(CLI::App& cmd, evaluate::EvaluationOptions& o) {
  AddModelPathFlag(cmd, o);
  cmd.add_option("--threads", o.classifier.threads, "inference threads (0: one per core)")
      ->capture_default_str()
      ->check(NonNegative());
  AddEngineFlags(cmd, o.classifier);
  cmd.add_option("--batch", o.batch, "images per inference call")->capture_default_str()->check(Positive());
}

}  // namespace

void AddCalibrateCommand(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand(
      "calibrate",
      "Measure what --engine onednn-int8 needs on a dataset (by default its training split, not the images you "
      "evaluate on): the model's activation ranges, and how close a call must be to be classified again in float32");
  auto options = std::make_shared<evaluate::CalibrateOptions>();
  AddDatasetFlags(*cmd, options->evaluation, options->split);
  AddModelPathFlag(*cmd, options->evaluation);
  cmd->add_option("--out", options->out, "where to write it (default: the model's path with .int8.json)");
  cmd->callback([&action, options] {
    action = [options] {
      return evaluate::Calibrate(*options, [](const std::string& text) { std::fputs(text.c_str(), stdout); });
    };
  });
}

void AddClassifyCommand(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("classify",
                                 "Classify a labelled dataset and print accuracy, a per-class table and throughput");
  auto options = std::make_shared<evaluate::ClassifyOptions>();
  evaluate::EvaluationOptions& o = options->evaluation;
  AddDatasetFlags(*cmd, o, options->split);
  AddModelFlags(*cmd, o);
  cmd->add_option("--faults", o.faults, "fault profiles per producer, e.g. 3:noise=0.4,5:blur=1.5");
  cmd->add_option("--producers", o.producers, "spread images over N producers (image i -> producer i % N)")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--seed", o.seed, "seed for the fault profiles")->capture_default_str();
  cmd->callback([&action, options] { action = [options] { return PrintResult(evaluate::Classify(*options)); }; });
}

}  // namespace iotinfer::cli
