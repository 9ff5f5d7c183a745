#include "sink/sink.h"

#include <cstdio>

#include "cli/commands.h"
#include "kafka/service_loop.h"

namespace iotinfer::cli {
namespace {

struct SinkFlags {
  sink::SinkOptions options;
  KafkaFlags kafka;
  int flush_ms = 200;
  int retry_max_ms = 5000;
  int log_every_ms = 5000;
  int http_port = 0;
  std::string http_host = "127.0.0.1";
};

Status RunSinkCommand(SinkFlags& flags) {
  sink::SinkOptions& o = flags.options;
  TRY(ApplyKafkaProperties(flags.kafka, o.kafka));
  o.flush_interval = std::chrono::milliseconds(flags.flush_ms);
  o.retry_max = std::chrono::milliseconds(flags.retry_max_ms);
  o.log_every = std::chrono::milliseconds(flags.log_every_ms);
  if (flags.http_port > 0) o.endpoints = ops::EndpointOptions{.host = flags.http_host, .port = flags.http_port};
  // SIGINT/SIGTERM: the loop writes and commits its batch, then returns.
  const std::atomic<bool>& stop = StopOnSignals();
  const std::string name = kafka::ServiceLogName("sink", o.instance_id);
  std::fprintf(stderr, "%s: %s, group %s, %s -> %s database %s (dead letters: %s)\n", name.c_str(),
               o.kafka.Describe().c_str(), o.group.c_str(), o.input_topic.c_str(),
               store::RedactUri(o.store.uri).c_str(), o.store.database.c_str(), o.dlq_topic.c_str());
  ASSIGN_OR_RETURN(sink::SinkStats stats, sink::RunSink(o, stop));
  std::fprintf(stderr, "%s: stopped; %s\n", name.c_str(), sink::FormatStats(stats).c_str());
  return Ok();
}

}  // namespace

void AddSinkCommand(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("sink", "Write inference records into the store, exactly once: inferences -> images");
  auto flags = std::make_shared<SinkFlags>();
  sink::SinkOptions& o = flags->options;
  AddKafkaFlags(*cmd, o.kafka, flags->kafka);
  AddStoreFlags(*cmd, o.store);
  cmd->add_option("--group", o.group, "consumer group; instances in one group share the partitions")
      ->capture_default_str();
  cmd->add_option("--instance-id", o.instance_id,
                  "stable name of this replica for its transactions (default: host name and pid)")
      ->envname("IOTINFER_INSTANCE_ID");
  cmd->add_option("--input-topic", o.input_topic, "topic of inference records")->capture_default_str();
  cmd->add_option("--dlq-topic", o.dlq_topic, "dead-letter topic for invalid records")->capture_default_str();
  cmd->add_option("--accepted-topic", o.accepted_topic,
                  "topic each record that became a document is published to, what stream counts ('' for none)")
      ->capture_default_str();
  cmd->add_option("--partitions", o.partitions, "partitions for topics that have to be created")->capture_default_str();
  cmd->add_option("--batch-max", o.batch_max, "most records per bulk write")->capture_default_str()->check(Positive());
  cmd->add_option("--batch-max-bytes", o.batch_max_bytes, "most bytes of records per bulk write")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--flush-ms", flags->flush_ms, "longest a record waits for its batch to fill")
      ->capture_default_str()
      ->check(NonNegative());
  cmd->add_option("--retry-max-ms", flags->retry_max_ms, "longest wait between retries while the store is down")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--log-every-ms", flags->log_every_ms, "period of the counters log line (0: never)")
      ->capture_default_str()
      ->check(NonNegative());
  AddEndpointFlags(*cmd, flags->http_port, flags->http_host);
  cmd->callback([&action, flags] { action = [flags] { return RunSinkCommand(*flags); }; });
}

}  // namespace iotinfer::cli
