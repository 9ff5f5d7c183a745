#include "dlq/dlq.h"

#include "cli/commands.h"

namespace iotinfer::cli {
namespace {

void AddSelectionFlags(CLI::App& cmd, dlq::Selection& selection, bool by_letter) {
  if (by_letter) {
    cmd.add_option("--reason", selection.reasons,
                   "only letters of this reason code (repeatable), or unknown for letters without one");
    cmd.add_option("--producer", selection.producers, "only letters of this producer id (repeatable), or unknown");
  }
  cmd.add_option("--since", selection.since,
                 "only letters that failed at or after: 2026-11-26[T10:00[:00]][Z] (UTC), or a duration ago (2h)");
  cmd.add_option("--until", selection.until, "only letters that failed before (as --since)");
}

void AddStatsCommand(CLI::App& dlq, Action& action) {
  auto* cmd = dlq.add_subcommand("stats", "Dead letters counted by reason, by producer and over time");
  auto options = std::make_shared<dlq::StatsOptions>();
  auto kafka = std::make_shared<KafkaFlags>();
  AddKafkaFlags(*cmd, options->kafka, *kafka);
  cmd->add_option("--topic", options->topics, "dead-letter topic (repeatable; default: images.dlq and inferences.dlq)");
  cmd->add_option("--bucket", options->bucket, "time per row of the count over time (10m, 1h, 24h)")
      ->capture_default_str();
  AddSelectionFlags(*cmd, options->selection, false);
  cmd->callback([&action, options, kafka] {
    action = [options, kafka]() -> Status {
      TRY(options->kafka.AddProperties(kafka->config_file, kafka->properties));
      return PrintResult(dlq::StatsText(*options));
    };
  });
}

void AddShowCommand(CLI::App& dlq, Action& action) {
  auto* cmd = dlq.add_subcommand("show", "The newest dead letters, one block each, their text escaped");
  auto options = std::make_shared<dlq::ShowOptions>();
  auto kafka = std::make_shared<KafkaFlags>();
  AddKafkaFlags(*cmd, options->kafka, *kafka);
  cmd->add_option("--topic", options->topics, "dead-letter topic (repeatable; default: images.dlq and inferences.dlq)");
  AddSelectionFlags(*cmd, options->selection, true);
  cmd->add_option("--limit", options->limit, "most letters shown, newest first")
      ->capture_default_str()
      ->check(Positive());
  cmd->callback([&action, options, kafka] {
    action = [options, kafka]() -> Status {
      TRY(options->kafka.AddProperties(kafka->config_file, kafka->properties));
      return PrintResult(dlq::ShowText(*options));
    };
  });
}

void AddReplayCommand(CLI::App& dlq, Action& action) {
  auto* cmd =
      dlq.add_subcommand("replay", "Send dead letters back to the topic they came from, exactly once over every run");
  auto options = std::make_shared<dlq::ReplayOptions>();
  auto kafka = std::make_shared<KafkaFlags>();
  AddKafkaFlags(*cmd, options->kafka, *kafka);
  cmd->add_option("--topic", options->topic, "dead-letter topic")->capture_default_str();
  AddSelectionFlags(*cmd, options->selection, true);
  cmd->add_option("--to", options->to, "topic to send them to (default: the one each letter's source header names)");
  cmd->add_flag("--dry-run", options->dry_run, "say what would be replayed; send and create nothing");
  cmd->callback([&action, options, kafka] {
    action = [options, kafka]() -> Status {
      TRY(options->kafka.AddProperties(kafka->config_file, kafka->properties));
      return PrintResult(dlq::ReplayText(*options));
    };
  });
}

}  // namespace

void AddDlqCommand(CLI::App& app, Action& action) {
  auto* dlq = app.add_subcommand("dlq", "The dead-letter topics: counts, letters, replay");
  dlq->require_subcommand(1, 1);
  AddStatsCommand(*dlq, action);
  AddShowCommand(*dlq, action);
  AddReplayCommand(*dlq, action);
}

}  // namespace iotinfer::cli
