#include "stream/command.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/text.h"
#include "spark/client.h"

namespace iotinfer::stream {
namespace {

// The Spark engine: the same counts, kept by a Structured Streaming query on the cluster.
Status RunSpark(StreamCommand& command, const std::atomic<bool>& stop) {
  analytics::SparkStreamOptions& o = command.spark;
  const StreamOptions& shared = command.native;
  o.store = shared.store;
  o.endpoints = shared.endpoints;
  o.brokers = shared.kafka.brokers;
  o.topic = shared.topic;
  o.progress_every = shared.log_every.count() > 0 ? shared.log_every : std::chrono::milliseconds(5000);
  ASSIGN_OR_RETURN(o.trigger, ParseDuration(command.trigger));
  ASSIGN_OR_RETURN(o.server_wait, ParseDuration(command.spark_wait));
  for (const std::string& property : command.spark_kafka) {
    ASSIGN_OR_RETURN(auto key_value, ParseKeyValue(property, "--spark-kafka"));
    o.kafka[key_value.first] = key_value.second;
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
  std::fprintf(stderr, "stream: Spark at %s, %s from %s -> %s database %s, checkpoint %s, trigger %s\n",
               endpoint.Describe().c_str(), o.topic.c_str(), o.brokers.c_str(), store::RedactUri(o.store.uri).c_str(),
               o.store.database.c_str(), o.checkpoint.c_str(), command.trigger.c_str());
  auto log_progress = [](const analytics::SparkStreamStats& s) {
    std::fprintf(stderr, "stream: %s\n", analytics::FormatStats(s).c_str());
  };
  ASSIGN_OR_RETURN(analytics::SparkStreamStats stats, shared.log_every.count() > 0
                                                          ? analytics::RunSparkStream(o, stop, log_progress)
                                                          : analytics::RunSparkStream(o, stop));
  std::fprintf(stderr, "stream: Spark query %s stopped; %s\n", stats.query_id.c_str(),
               analytics::FormatStats(stats).c_str());
  return Ok();
}

Status RunNative(StreamCommand& command, const std::atomic<bool>& stop) {
  StreamOptions& o = command.native;
  ASSIGN_OR_RETURN(o.window, ParseDuration(command.window));
  if (o.window.count() > 0 && o.window < std::chrono::seconds(1)) {
    return std::unexpected(Error::InvalidInput("--window must be at least 1s"));
  }
  ASSIGN_OR_RETURN(o.health_window, ParseDuration(command.health_window));
  ASSIGN_OR_RETURN(o.health_every, ParseDuration(command.health_every));
  if (o.health_window.count() > 0 && o.health_window < std::chrono::seconds(10)) {
    return std::unexpected(Error::InvalidInput("--health-window must be at least 10s"));
  }
  if (o.health_every < std::chrono::milliseconds(100)) {
    return std::unexpected(Error::InvalidInput("--health-every must be at least 100ms"));
  }
  const std::string updates =
      o.update_interval.count() ? fmt::format("every {} ms", o.update_interval.count()) : "back to back";
  std::fprintf(stderr, "stream: %s, group %s, %s -> %s database %s, updates %s%s\n", o.kafka.Describe().c_str(),
               o.group.c_str(), o.topic.c_str(), store::RedactUri(o.store.uri).c_str(), o.store.database.c_str(),
               updates.c_str(), o.window.count() ? fmt::format(", windows of {}", command.window).c_str() : "");
  ASSIGN_OR_RETURN(StreamStats stats, RunStream(o, stop));
  std::fprintf(stderr, "stream: stopped; %s\n", FormatStats(stats).c_str());
  return Ok();
}

// The flags given for the other engine than the one chosen: said at start rather than ignored
// in silence (a deployment that sets them for every service must still run, so not an error).
std::vector<std::string> UnusedFlags(Engine engine, const StreamCommand& c) {
  const StreamCommand defaults;
  const StreamOptions& o = c.native;
  const StreamOptions& d = defaults.native;
  std::vector<std::string> unused;
  auto note = [&](bool given, const char* flag) {
    if (given) unused.emplace_back(flag);
  };
  if (engine == Engine::kSpark) {
    note(!o.kafka.properties.empty(), "--kafka/--kafka-config (Spark's Kafka source takes --spark-kafka)");
    note(o.group != d.group, "--group");
    note(c.window != defaults.window, "--window");
    note(o.window_keep != d.window_keep, "--window-keep");
    note(o.update_interval != d.update_interval, "--update-ms (Spark's is --trigger)");
    note(o.max_batch != d.max_batch, "--batch-max");
    note(o.retry_max != d.retry_max, "--retry-max-ms");
    note(c.spark.spark.read_partitions != defaults.spark.spark.read_partitions, "--spark-partitions (batch's only)");
    note(c.health_window != defaults.health_window || c.health_every != defaults.health_every ||
             o.health_topic != d.health_topic || o.health.min_labelled != d.health.min_labelled,
         "the --health-* flags (device verdicts are the native engine's)");
    note(o.device_series != d.device_series, "--metrics-devices");
    note(o.dead_letter_topics != d.dead_letter_topics, "--dlq-topic");
  } else {
    note(!c.spark.checkpoint.empty(), "--checkpoint");
    note(c.spark.query_name != defaults.spark.query_name, "--query-name");
    note(c.trigger != defaults.trigger, "--trigger");
    note(c.spark_wait != defaults.spark_wait, "--spark-wait");
    note(!c.spark_kafka.empty(), "--spark-kafka");
  }
  return unused;
}

}  // namespace

Result<Engine> ParseEngine(std::string_view name) {
  if (name == "native") return Engine::kNative;
  if (name == "spark") return Engine::kSpark;
  return std::unexpected(Error::InvalidInput(fmt::format("unknown engine '{}': expected native or spark", name)));
}

Status RunCommand(StreamCommand command, const std::atomic<bool>& stop) {
  ASSIGN_OR_RETURN(const Engine engine, ParseEngine(command.engine));
  if (const std::vector<std::string> unused = UnusedFlags(engine, command); !unused.empty()) {
    std::fprintf(stderr, "stream: the %s engine does not use %s\n", command.engine.c_str(),
                 fmt::format("{}", fmt::join(unused, ", ")).c_str());
  }
  return engine == Engine::kSpark ? RunSpark(command, stop) : RunNative(command, stop);
}

Result<std::string> ReportHealth(const store::StoreOptions& options, int limit) {
  ASSIGN_OR_RETURN(std::unique_ptr<store::Store> store, store::Store::Open(options));
  ASSIGN_OR_RETURN(const std::vector<DeviceHealth> verdicts, store->ReadHealth());
  if (verdicts.empty()) {
    return std::string(
        "no device verdicts stored yet: iotinfer stream (native engine) judges devices and stores "
        "each verdict that changes\n");
  }
  std::map<Verdict, int64_t> by_verdict;
  int64_t newest_us = 0;
  for (const DeviceHealth& h : verdicts) {
    ++by_verdict[h.verdict];
    newest_us = std::max(newest_us, h.judged_at_us);
  }
  return fmt::format("{} devices: {} faulty, {} suspect, {} healthy, {} unknown (latest change {})\n\n{}",
                     verdicts.size(), by_verdict[Verdict::kFaulty], by_verdict[Verdict::kSuspect],
                     by_verdict[Verdict::kHealthy], by_verdict[Verdict::kUnknown], FormatUtc(newest_us),
                     health::FormatVerdicts(verdicts, static_cast<size_t>(std::max(limit, 0))));
}

}  // namespace iotinfer::stream
