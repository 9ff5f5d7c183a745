#include "models/models.h"

#include "cli/commands.h"

namespace iotinfer::cli {
namespace {

void AddControlTopicFlag(CLI::App& cmd, std::string& topic) {
  cmd.add_option("--control-topic", topic, "the compacted topic of model choices, which infer follows")
      ->capture_default_str();
}

void AddCompareCommand(CLI::App& models, Action& action) {
  auto* cmd = models.add_subcommand(
      "compare", "The active and the shadow model on the same labelled images, per device and overall (McNemar)");
  auto options = std::make_shared<models::CompareCommandOptions>();
  auto kafka = std::make_shared<KafkaFlags>();
  models::CompareOptions& o = options->compare;
  AddKafkaFlags(*cmd, o.kafka, *kafka);
  cmd->add_option("--inferences", o.inferences, "topic of the active models' inference records")->capture_default_str();
  cmd->add_option("--shadow", o.shadow, "topic of the shadow (candidate) models' inference records")
      ->capture_default_str();
  cmd->add_option("--active", o.active, "compare this active model version (default: the pair with most images)");
  cmd->add_option("--candidate", o.candidate, "with this candidate version (default: the pair with most images)");
  cmd->add_option("--alpha", o.alpha, "significance level, overall and (Holm-corrected) per device")
      ->capture_default_str();
  cmd->add_option("--devices", options->devices,
                  "devices in the table: the significant first, then by |c - b| (0: all)")
      ->capture_default_str()
      ->check(NonNegative());
  cmd->add_flag("--json", options->json, "print the whole comparison, every device, as one JSON object");
  cmd->add_option_function<std::string>(
         "--promote-if", [options](const std::string&) { options->promote = true; },
         "better: make the candidate the group's model when it is significantly better overall and worse on no device")
      ->check(CLI::IsMember({"better"}));
  cmd->add_option("--group", options->group, "the infer consumer group a promotion applies to")->capture_default_str();
  AddControlTopicFlag(*cmd, options->control_topic);
  cmd->callback([&action, options, kafka] {
    action = [options, kafka]() -> Status {
      TRY(options->compare.kafka.AddProperties(kafka->config_file, kafka->properties));
      return PrintResult(models::CompareText(*options));
    };
  });
}

void AddActivateCommand(CLI::App& models, Action& action) {
  auto* cmd = models.add_subcommand(
      "activate", "Make a model version the one an infer group serves; a rollback activates the previous one");
  auto options = std::make_shared<models::ActivateOptions>();
  auto kafka = std::make_shared<KafkaFlags>();
  AddKafkaFlags(*cmd, options->kafka, *kafka);
  cmd->add_option("model", options->model, "the model version, <model file stem>-<8 hex digits>")->required();
  cmd->add_option("--group", options->group, "the infer consumer group it applies to")->capture_default_str();
  cmd->add_option("--reason", options->reason, "why, for whoever reads `models status`");
  AddControlTopicFlag(*cmd, options->control_topic);
  cmd->callback([&action, options, kafka] {
    action = [options, kafka]() -> Status {
      TRY(options->kafka.AddProperties(kafka->config_file, kafka->properties));
      return PrintResult(models::ActivateText(*options));
    };
  });
}

void AddStatusCommand(CLI::App& models, Action& action) {
  auto* cmd = models.add_subcommand("status", "Each infer group's current model choice: version, when, by, why");
  auto options = std::make_shared<models::StatusOptions>();
  auto kafka = std::make_shared<KafkaFlags>();
  AddKafkaFlags(*cmd, options->kafka, *kafka);
  AddControlTopicFlag(*cmd, options->control_topic);
  cmd->callback([&action, options, kafka] {
    action = [options, kafka]() -> Status {
      TRY(options->kafka.AddProperties(kafka->config_file, kafka->properties));
      return PrintResult(models::StatusText(*options));
    };
  });
}

}  // namespace

void AddModelsCommand(CLI::App& app, Action& action) {
  auto* models = app.add_subcommand("models", "Model versions: compare the shadow with the active, promote, roll back");
  models->require_subcommand(1, 1);
  AddCompareCommand(*models, action);
  AddActivateCommand(*models, action);
  AddStatusCommand(*models, action);
}

}  // namespace iotinfer::cli
