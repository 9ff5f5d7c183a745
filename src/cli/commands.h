#pragma once

#include <CLI/CLI.hpp>
#include <atomic>
#include <functional>

#include "analytics/spark_engine.h"
#include "core/error.h"
#include "kafka/kafka.h"
#include "model/classifier.h"
#include "store/store.h"

namespace iotinfer::cli {

/// What the parsed command line asked for; a subcommand's parse callback stores it here and
/// main runs it after parsing, so that errors reach one place that maps them to exit codes.
using Action = std::function<Status()>;

/// The librdkafka properties a command line gave, kept as given until ApplyKafkaProperties.
struct KafkaFlags {
  std::string config_file;              // --kafka-config: a properties file, applied first
  std::vector<std::string> properties;  // --kafka KEY=VALUE, each overriding the file
};

/// Checks for numeric flags with messages that say what is wrong ("--limit: must not be
/// negative, got -3"); CLI11's own range checks print a range up to 1.8e308.
const CLI::Validator& Positive();
const CLI::Validator& NonNegative();

/// --brokers, --kafka-config FILE and --kafka KEY=VALUE (repeatable), for every command that
/// talks to Kafka. ApplyKafkaProperties applies them to `config`, and can fail.
void AddKafkaFlags(CLI::App& cmd, kafka::KafkaConfig& config, KafkaFlags& flags);
Status ApplyKafkaProperties(const KafkaFlags& flags, kafka::KafkaConfig& config);

/// --engine auto|onednn|onednn-int8|opencv (model::Engine) and --calibration, for int8.
void AddEngineFlags(CLI::App& cmd, model::ClassifierOptions& options);

/// --store and --db, for every command that talks to a store.
void AddStoreFlags(CLI::App& cmd, store::StoreOptions& options);

/// --spark and --spark-mongo, for the commands with a Spark engine.
void AddSparkFlags(CLI::App& cmd, analytics::SparkOptions& options);

/// --http-port and --http-host: where a service serves /healthz, /readyz and /metrics
/// (port 0: not served).
void AddEndpointFlags(CLI::App& cmd, int& port, std::string& host);

/// Prints the account a command returned to stdout; an error goes on to main.
Status PrintResult(const Result<std::string>& text);

/// Installs SIGINT/SIGTERM handlers that set the returned flag, for services that finish and
/// commit their current batch before they exit.
const std::atomic<bool>& StopOnSignals();

void AddBatchCommand(CLI::App& app, Action& action);
void AddClassifyCommand(CLI::App& app, Action& action);
void AddCalibrateCommand(CLI::App& app, Action& action);
void AddDemoCommand(CLI::App& app, Action& action);
void AddProduceCommand(CLI::App& app, Action& action);
void AddInferCommand(CLI::App& app, Action& action);
void AddSinkCommand(CLI::App& app, Action& action);
void AddStreamCommand(CLI::App& app, Action& action);
void AddReportCommand(CLI::App& app, Action& action);

}  // namespace iotinfer::cli
