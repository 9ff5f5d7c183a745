#include <unistd.h>

#include <atomic>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cli/commands.h"
#include "core/text.h"

namespace {

// Exit codes: 0 success, 2 what only the caller can mend (flags, files, data, credentials and
// rights), 1 anything else.
int ExitCode(const iotinfer::Error& error) {
  using Code = iotinfer::Error::Code;
  const Code code = error.code();
  return code == Code::kInvalidInput || code == Code::kNotFound || code == Code::kPermissionDenied ? 2 : 1;
}

std::atomic<bool> g_stop{false};

// The first signal asks for a clean stop (services finish and commit their batch); a second
// one, when that stop takes too long for whoever is waiting, ends the process at once, with
// the shell's code for death by that signal. Nothing is lost either way: uncommitted work is
// redone after a restart.
extern "C" void RequestStop(int signal) {
  if (!g_stop.exchange(true)) return;
  static constexpr char kMessage[] = "second signal: exiting without a clean stop\n";
  (void)!write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
  _exit(128 + signal);
}

}  // namespace

namespace iotinfer::cli {

const std::atomic<bool>& StopOnSignals() {
  std::signal(SIGINT, RequestStop);
  std::signal(SIGTERM, RequestStop);
  // A closed terminal or SSH session: stop cleanly rather than die mid-batch (and, with
  // --engine spark, leave the query running on the cluster).
  std::signal(SIGHUP, RequestStop);
  return g_stop;
}

namespace {

CLI::Validator NumberCheck(bool zero_allowed) {
  return CLI::Validator(
      [zero_allowed](std::string& text) -> std::string {
        double value = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (ec != std::errc() || end != text.data() + text.size()) return "expected a number, got '" + text + "'";
        if (value < 0 || (!zero_allowed && value == 0)) {
          return std::string(zero_allowed ? "must not be negative" : "must be positive") + ", got " + text;
        }
        return "";
      },
      zero_allowed ? "NONNEGATIVE" : "POSITIVE");
}

}  // namespace

const CLI::Validator& Positive() {
  static const CLI::Validator check = NumberCheck(false);
  return check;
}

const CLI::Validator& NonNegative() {
  static const CLI::Validator check = NumberCheck(true);
  return check;
}

void AddEngineFlags(CLI::App& cmd, model::ClassifierOptions& options) {
  cmd.add_option_function<std::string>(
         "--engine", [&options](const std::string& name) { options.engine = model::ParseEngine(name).value(); },
         "what runs the network: auto (default: onednn-int8 when the model has a calibration, else onednn), "
         "onednn-int8 (about twice as fast as float32; close calls are classified again in float32), onednn "
         "(float32) or opencv (any model OpenCV loads)")
      ->check(CLI::IsMember(model::EngineNames()));
  cmd.add_option("--calibration", options.calibration_path,
                 "for onednn-int8: the file `iotinfer calibrate` wrote (default: the model's path with .int8.json; "
                 "given, auto means onednn-int8)")
      ->envname("IOTINFER_CALIBRATION");
}

void AddSplitFlags(CLI::App& cmd, dataset::DatasetOptions& dataset, std::string& split, size_t& limit) {
  cmd.add_option("--data-dir", dataset.dir, "where the dataset files are (default: Debian's location)");
  cmd.add_option("--split", split, "train or test")->capture_default_str();
  cmd.add_option("--limit", limit, "only the first N images (0: all)")->capture_default_str()->check(NonNegative());
}

void AddStoreFlags(CLI::App& cmd, store::StoreOptions& options) {
  cmd.add_option("--store", options.uri, "sqlite:PATH or mongodb://[user:password@]host[:port][/?options]")
      ->envname("IOTINFER_STORE")
      ->capture_default_str();
  cmd.add_option("--db", options.database, "MongoDB database (team5_vm3_db: the original deployment's)")
      ->envname("IOTINFER_DB")
      ->capture_default_str();
  cmd.add_option("--store-password-file", options.password_file,
                 "a file holding the password of the --store URI's user (a mounted Secret, say), so that it is "
                 "on no command line; or set IOTINFER_STORE_PASSWORD")
      ->envname("IOTINFER_STORE_PASSWORD_FILE");
  // The environment only: a flag would put the password where `ps` shows it.
  if (const char* password = std::getenv("IOTINFER_STORE_PASSWORD")) options.password = password;
}

void AddSparkFlags(CLI::App& cmd, analytics::SparkOptions& options) {
  cmd.add_option("--spark", options.url,
                 "Spark Connect server for --engine spark: sc://HOST[:PORT][/;use_ssl=true] (its token: "
                 "--spark-token-file, off the command line)")
      ->envname("IOTINFER_SPARK")
      ->capture_default_str();
  cmd.add_option("--spark-token-file", options.token_file,
                 "a file holding the Spark Connect server's token (a mounted Secret, say); or set IOTINFER_SPARK_TOKEN")
      ->envname("IOTINFER_SPARK_TOKEN_FILE");
  if (const char* token = std::getenv("IOTINFER_SPARK_TOKEN")) options.token = token;
  cmd.add_option("--spark-ca", options.ca_file,
                 "PEM CA certificates the Spark Connect server's certificate must chain to (implies TLS)")
      ->envname("IOTINFER_SPARK_CA");
  cmd.add_option("--spark-mongo", options.mongo_uri,
                 "the MongoDB URI as Spark's executors reach it (default: --store)");
  cmd.add_option("--spark-partitions", options.read_partitions,
                 "ranges of images Spark reads in parallel: about the cluster's cores on a real MongoDB, 1 on "
                 "FerretDB")
      ->capture_default_str()
      ->check(Positive());
}

void AddKafkaFlags(CLI::App& cmd, kafka::KafkaConfig& config, KafkaFlags& flags) {
  cmd.add_option("--brokers", config.brokers, "Kafka bootstrap servers")
      ->envname("IOTINFER_BROKERS")
      ->capture_default_str();
  cmd.add_option("--kafka-config", flags.config_file,
                 "a file of librdkafka KEY=VALUE lines (# comments), e.g. SASL/TLS settings from a Secret")
      ->envname("IOTINFER_KAFKA_CONFIG");
  cmd.add_option("--kafka", flags.properties,
                 "any librdkafka property as KEY=VALUE (repeatable, wins over --kafka-config), e.g. for SASL/TLS; "
                 "consumer.KEY or producer.KEY reaches only that kind of client");
}

Status PrintResult(const Result<std::string>& text) {
  if (!text) return std::unexpected(text.error());
  std::fputs(text->c_str(), stdout);
  return Ok();
}

void AddServiceFlags(CLI::App& cmd, kafka::KafkaConfig& config, std::chrono::milliseconds& log_every,
                     ServiceFlags& flags) {
  AddKafkaFlags(cmd, config, flags.kafka);
  cmd.add_option("--http-port", flags.http_port, "serve /healthz, /readyz and /metrics on this port (0: not served)")
      ->envname("IOTINFER_HTTP_PORT")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd.add_option("--http-host", flags.http_host, "address for --http-port (0.0.0.0 in a container)")
      ->envname("IOTINFER_HTTP_HOST")
      ->capture_default_str();
  AddMillisOption(cmd, "--log-every-ms", log_every, "period of the counters log line (0: never)")->check(NonNegative());
}

Status ServiceFlags::ApplyTo(kafka::KafkaConfig& config, std::optional<ops::EndpointOptions>& endpoints) const {
  TRY(config.AddProperties(kafka.config_file, kafka.properties));
  if (http_port > 0) endpoints = ops::EndpointOptions{.host = http_host, .port = http_port};
  return Ok();
}

CLI::Option* AddMillisOption(CLI::App& cmd, const std::string& name, std::chrono::milliseconds& value,
                             const std::string& help) {
  return cmd
      .add_option_function<int64_t>(
          name, [&value](int64_t ms) { value = std::chrono::milliseconds(ms); }, help)
      ->default_str(std::to_string(value.count()));
}

CLI::Option* AddDurationOption(CLI::App& cmd, const std::string& name, std::chrono::milliseconds& value,
                               const std::string& help, const std::string& default_text) {
  return cmd
      .add_option_function<std::string>(
          name,
          [&value, name](const std::string& text) {
            Result<std::chrono::milliseconds> parsed = ParseDuration(text);
            if (!parsed) throw CLI::ValidationError(name, parsed.error().message());
            value = *parsed;
          },
          help)
      ->default_str(default_text);
}

}  // namespace iotinfer::cli

int main(int argc, char** argv) {
  // A closed stdout or stderr pipe (`iotinfer stream | head`) must not kill a service
  // outright: the stream, sink or Spark query would be left without its orderly stop. Writes
  // then fail quietly and SIGINT/SIGTERM still stop it cleanly.
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"iotinfer: machine-learning inference on streams of IoT images, and per-device analysis of it"};
  app.require_subcommand(1, 1);
  app.set_version_flag("--version", "iotinfer 0.1.0");
  iotinfer::cli::Action action;
  iotinfer::cli::AddClassifyCommand(app, action);
  iotinfer::cli::AddCalibrateCommand(app, action);
  iotinfer::cli::AddAugmentCommand(app, action);
  iotinfer::cli::AddDemoCommand(app, action);
  iotinfer::cli::AddProduceCommand(app, action);
  iotinfer::cli::AddInferCommand(app, action);
  iotinfer::cli::AddSinkCommand(app, action);
  iotinfer::cli::AddBatchCommand(app, action);
  iotinfer::cli::AddStreamCommand(app, action);
  iotinfer::cli::AddReportCommand(app, action);
  iotinfer::cli::AddDlqCommand(app, action);
  iotinfer::cli::AddModelsCommand(app, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version end here with 0; every flag CLI11 refuses (unknown, missing, out of
    // range) is bad input, whose exit code is 2 whatever CLI11 numbers it.
    return app.exit(e) == 0 ? 0 : 2;
  }

  iotinfer::Status status = action();
  if (!status) {
    std::fprintf(stderr, "iotinfer: %s\n", status.error().message().c_str());
    return ExitCode(status.error());
  }
  return 0;
}
