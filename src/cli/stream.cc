#include "stream/stream.h"

#include <fmt/format.h>

#include <charconv>
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "spark/client.h"

namespace iotinfer::cli {
namespace {

struct StreamFlags {
  stream::StreamOptions options;
  std::string engine = "native";
  analytics::SparkStreamOptions spark;
  std::vector<std::string> spark_kafka_properties;
  std::string trigger = "1s";
  std::string spark_wait = "5m";
  int http_port = 0;
  std::string http_host = "127.0.0.1";
  KafkaFlags kafka;
  int update_ms = 500;
  std::string window = "0";
  int retry_max_ms = 5000;
  int log_every_ms = 5000;
};

// "10s", "500ms", "2m", "1h"; a bare number is seconds.
Result<std::chrono::milliseconds> ParseDuration(const std::string& text) {
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  const std::string_view unit(end, text.data() + text.size());
  double ms_per_unit = 0;
  if (unit.empty() || unit == "s") ms_per_unit = 1000;
  if (unit == "ms") ms_per_unit = 1;
  if (unit == "m" || unit == "min") ms_per_unit = 60'000;
  if (unit == "h") ms_per_unit = 3'600'000;
  if (ec != std::errc() || ms_per_unit == 0 || value < 0) {
    return std::unexpected(
        Error::InvalidInput(fmt::format("'{}' is not a duration such as 10s, 500ms, 5m or 1h", text)));
  }
  return std::chrono::milliseconds(static_cast<int64_t>(value * ms_per_unit));
}

// The Spark engine: the same counts, kept by a Structured Streaming query on the cluster.
Status RunSparkStreamCommand(StreamFlags& flags) {
  analytics::SparkStreamOptions& o = flags.spark;
  o.store = flags.options.store;
  if (flags.http_port > 0) o.endpoints = ops::EndpointOptions{.host = flags.http_host, .port = flags.http_port};
  o.brokers = flags.options.kafka.brokers;
  o.topic = flags.options.topic;
  o.progress_every = std::chrono::milliseconds(flags.log_every_ms > 0 ? flags.log_every_ms : 5000);
  ASSIGN_OR_RETURN(o.trigger, ParseDuration(flags.trigger));
  ASSIGN_OR_RETURN(o.server_wait, ParseDuration(flags.spark_wait));
  for (const std::string& property : flags.spark_kafka_properties) {
    const size_t eq = property.find('=');
    if (eq == std::string::npos || eq == 0) {
      return std::unexpected(Error::InvalidInput(fmt::format("--spark-kafka '{}': expected KEY=VALUE", property)));
    }
    o.kafka[property.substr(0, eq)] = property.substr(eq + 1);
  }
  ASSIGN_OR_RETURN(const spark::Endpoint endpoint, spark::ParseEndpoint(o.spark.url));
  if (o.checkpoint.empty()) {
    // A local server shares this file system; a cluster needs a path all its nodes reach.
    if (endpoint.host != "127.0.0.1" && endpoint.host != "localhost" && endpoint.host != "[::1]") {
      return std::unexpected(Error::InvalidInput(
          "--checkpoint is required with a remote Spark server: a directory its driver and executors share"));
    }
    o.checkpoint = (std::filesystem::absolute("iotinfer-spark-checkpoint") / o.query_name).string();
  }
  const std::atomic<bool>& stop = StopOnSignals();
  std::fprintf(stderr, "stream: Spark at %s, %s from %s -> %s database %s, checkpoint %s, trigger %s\n",
               endpoint.Describe().c_str(), o.topic.c_str(), o.brokers.c_str(), store::RedactUri(o.store.uri).c_str(),
               o.store.database.c_str(), o.checkpoint.c_str(), flags.trigger.c_str());
  auto log_progress = [](const analytics::SparkStreamStats& s) {
    std::fprintf(stderr, "stream: %s\n", analytics::FormatStats(s).c_str());
  };
  ASSIGN_OR_RETURN(analytics::SparkStreamStats stats,
                   flags.log_every_ms > 0 ? analytics::RunSparkStream(o, stop, log_progress)
                                          : analytics::RunSparkStream(o, stop));
  std::fprintf(stderr, "stream: Spark query %s stopped; %s\n", stats.query_id.c_str(),
               analytics::FormatStats(stats).c_str());
  return Ok();
}

Status RunStreamCommand(StreamFlags& flags) {
  if (flags.engine == "spark") return RunSparkStreamCommand(flags);
  if (flags.engine != "native") {
    return std::unexpected(
        Error::InvalidInput(fmt::format("unknown engine '{}': expected native or spark", flags.engine)));
  }
  stream::StreamOptions& o = flags.options;
  TRY(ApplyKafkaProperties(flags.kafka, o.kafka));
  ASSIGN_OR_RETURN(o.window, ParseDuration(flags.window));
  if (o.window.count() > 0 && o.window < std::chrono::seconds(1)) {
    return std::unexpected(Error::InvalidInput("--window must be at least 1s"));
  }
  o.update_interval = std::chrono::milliseconds(flags.update_ms);
  o.retry_max = std::chrono::milliseconds(flags.retry_max_ms);
  o.log_every = std::chrono::milliseconds(flags.log_every_ms);
  if (flags.http_port > 0) o.endpoints = ops::EndpointOptions{.host = flags.http_host, .port = flags.http_port};
  // SIGINT/SIGTERM: the loop saves what it counted, rewrites the results, then returns.
  const std::atomic<bool>& stop = StopOnSignals();
  const std::string updates = flags.update_ms ? fmt::format("every {} ms", flags.update_ms) : "back to back";
  std::fprintf(stderr, "stream: %s, group %s, %s -> %s database %s, updates %s%s\n", o.kafka.Describe().c_str(),
               o.group.c_str(), o.topic.c_str(), store::RedactUri(o.store.uri).c_str(), o.store.database.c_str(),
               updates.c_str(), o.window.count() ? fmt::format(", windows of {}", flags.window).c_str() : "");
  ASSIGN_OR_RETURN(stream::StreamStats stats, stream::RunStream(o, stop));
  std::fprintf(stderr, "stream: stopped; %s\n", stream::FormatStats(stats).c_str());
  return Ok();
}

}  // namespace

void AddStreamCommand(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand(
      "stream", "Keep incorrect_inference_results live from Kafka: inferences -> per-producer counts, exact after crashes");
  auto flags = std::make_shared<StreamFlags>();
  stream::StreamOptions& o = flags->options;
  AddKafkaFlags(*cmd, o.kafka, flags->kafka);
  AddStoreFlags(*cmd, o.store);
  cmd->add_option("--group", o.group, "consumer group, and the name of the saved state; instances share partitions")
      ->capture_default_str();
  cmd->add_option("--topic", o.topic, "topic of the records sink stored (its --accepted-topic)")->capture_default_str();
  cmd->add_option("--update-ms", flags->update_ms,
                  "longest time between store updates while records flow (0: back to back, freshest)")
      ->capture_default_str()
      ->check(NonNegative());
  cmd->add_option("--window", flags->window,
                  "tumbling windows by event time, e.g. 10s or 1m, kept in incorrect_inference_windows (0: none)")
      ->capture_default_str();
  cmd->add_option("--window-keep", o.window_keep, "newest windows kept per partition")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--batch-max", o.max_batch, "most records per poll")->capture_default_str()->check(Positive());
  cmd->add_option("--retry-max-ms", flags->retry_max_ms, "longest wait between retries while the store is down")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--log-every-ms", flags->log_every_ms, "period of the counters log line (0: never)")
      ->capture_default_str()
      ->check(NonNegative());
  AddEndpointFlags(*cmd, flags->http_port, flags->http_host);
  cmd->add_option("--engine", flags->engine,
                  "native (this process counts) or spark (a Structured Streaming query on a Spark cluster)")
      ->capture_default_str();
  AddSparkFlags(*cmd, flags->spark.spark);
  cmd->add_option("--checkpoint", flags->spark.checkpoint,
                  "spark: the query's checkpoint directory, on the Spark server's file system; a restart with it "
                  "goes on where the last run stopped (default with a local server: ./iotinfer-spark-checkpoint/NAME)");
  cmd->add_option("--query-name", flags->spark.query_name, "spark: the streaming query's name")->capture_default_str();
  cmd->add_option("--trigger", flags->trigger, "spark: micro-batch interval, e.g. 1s or 500ms (0: back to back)")
      ->capture_default_str();
  cmd->add_option("--spark-wait", flags->spark_wait,
                  "spark: how long to wait, not ready, for a Spark Connect server that does not answer yet, e.g. "
                  "5m (0: give up after one try)")
      ->capture_default_str();
  cmd->add_option("--spark-kafka", flags->spark_kafka_properties,
                  "spark: a Kafka (Java client) property for Spark's Kafka source, KEY=VALUE (repeatable)");
  cmd->callback([&action, flags] { action = [flags] { return RunStreamCommand(*flags); }; });
}

}  // namespace iotinfer::cli
