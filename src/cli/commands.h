#pragma once

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "analytics/spark_engine.h"
#include "core/error.h"
#include "dataset/dataset.h"
#include "kafka/kafka.h"
#include "model/classifier.h"
#include "ops/endpoints.h"
#include "store/store.h"

namespace iotinfer::cli {

/// What the parsed command line asked for; a subcommand's parse callback stores it here and
/// main runs it after parsing, so that errors reach one place that maps them to exit codes.
using Action = std::function<Status()>;

/// The librdkafka properties a command line gave, kept as given: KafkaConfig::AddProperties
/// applies them when the command runs, so that an unreadable file is the command's error
/// (exit code 2) rather than the parser's.
struct KafkaFlags {
  std::string config_file;              // --kafka-config: a properties file, applied first
  std::vector<std::string> properties;  // --kafka KEY=VALUE, each overriding the file
};

/// What every long-running service (infer, sink, stream) takes besides its own flags.
struct ServiceFlags {
  KafkaFlags kafka;
  int http_port = 0;  // 0: no endpoints
  std::string http_host = "127.0.0.1";

  /// Puts the flags into a service's options.
  Status ApplyTo(kafka::KafkaConfig& config, std::optional<ops::EndpointOptions>& endpoints) const;
};

/// Checks for numeric flags with messages that say what is wrong ("--limit: must not be
/// negative, got -3"); CLI11's own range checks print a range up to 1.8e308.
const CLI::Validator& Positive();
const CLI::Validator& NonNegative();

/// --brokers, --kafka-config FILE and --kafka KEY=VALUE (repeatable), for every command that
/// talks to Kafka.
void AddKafkaFlags(CLI::App& cmd, kafka::KafkaConfig& config, KafkaFlags& flags);

/// The flags every service shares, declared once: the Kafka flags, --http-port and
/// --http-host (where /healthz, /readyz and /metrics are served), and --log-every-ms.
void AddServiceFlags(CLI::App& cmd, kafka::KafkaConfig& config, std::chrono::milliseconds& log_every,
                     ServiceFlags& flags);

/// A flag in milliseconds, bound straight to a duration, its default shown in --help.
CLI::Option* AddMillisOption(CLI::App& cmd, const std::string& name, std::chrono::milliseconds& value,
                             const std::string& help);

/// A flag in people's durations (10s, 500ms, 5m: ParseDuration), bound to a duration; a bad
/// one is refused as CLI11 refuses any bad flag.
CLI::Option* AddDurationOption(CLI::App& cmd, const std::string& name, std::chrono::milliseconds& value,
                               const std::string& help, const std::string& default_text);

/// --engine auto|onednn|onednn-int8|opencv (model::Engine) and --calibration, for int8.
void AddEngineFlags(CLI::App& cmd, model::ClassifierOptions& options);

/// --data-dir, --split and --limit, for the commands that read a labelled dataset. The split
/// stays text, parsed when the command runs, so that a bad one is the command's error (exit 2).
void AddSplitFlags(CLI::App& cmd, dataset::DatasetOptions& dataset, std::string& split, size_t& limit);

/// --store and --db, for every command that talks to a store.
void AddStoreFlags(CLI::App& cmd, store::StoreOptions& options);

/// --spark and --spark-mongo, for the commands with a Spark engine.
void AddSparkFlags(CLI::App& cmd, analytics::SparkOptions& options);

/// Prints the account a command returned to stdout; an error goes on to main.
Status PrintResult(const Result<std::string>& text);

/// Installs SIGINT/SIGTERM handlers that set the returned flag, for services that finish and
/// commit their current batch before they exit.
const std::atomic<bool>& StopOnSignals();

void AddAugmentCommand(CLI::App& app, Action& action);
void AddBatchCommand(CLI::App& app, Action& action);
void AddClassifyCommand(CLI::App& app, Action& action);
void AddCalibrateCommand(CLI::App& app, Action& action);
void AddDemoCommand(CLI::App& app, Action& action);
void AddDlqCommand(CLI::App& app, Action& action);
void AddModelsCommand(CLI::App& app, Action& action);
void AddProduceCommand(CLI::App& app, Action& action);
void AddInferCommand(CLI::App& app, Action& action);
void AddSinkCommand(CLI::App& app, Action& action);
void AddStreamCommand(CLI::App& app, Action& action);
void AddReportCommand(CLI::App& app, Action& action);

}  // namespace iotinfer::cli
