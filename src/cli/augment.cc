#include "dataset/augment.h"

#include "cli/commands.h"

namespace iotinfer::cli {

void AddAugmentCommand(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand(
      "augment",
      "Write augmented copies of a Fashion-MNIST split for training (model/train.py --augment): each image through "
      "one or two of the fault profiles at random strengths, exactly as a faulty device sends it");
  auto options = std::make_shared<dataset::AugmentFilesOptions>();
  AddSplitFlags(*cmd, options->dataset, options->split, options->limit);
  cmd->add_option("--copies", options->augment.copies, "augmented copies of each image")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--seed", options->augment.seed, "seed of the faults drawn")->capture_default_str();
  cmd->add_option("--second-fault", options->augment.second_fault_probability,
                  "probability that an image gets a second fault of another kind")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--out", options->out_dir, "directory for the idx files (created if missing)")->required();
  cmd->callback([&action, options] { action = [options] { return PrintResult(dataset::WriteAugmented(*options)); }; });
}

}  // namespace iotinfer::cli
