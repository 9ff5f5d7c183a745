#include "sink/sink.h"

#include "cli/commands.h"

namespace iotinfer::cli {

void AddSinkCommand(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("sink", "Write inference records into the store, exactly once: inferences -> images");
  auto options = std::make_shared<sink::SinkOptions>();
  auto service = std::make_shared<ServiceFlags>();
  sink::SinkOptions& o = *options;
  AddServiceFlags(*cmd, o.kafka, o.log_every, *service);
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
  AddMillisOption(*cmd, "--flush-ms", o.flush_interval, "longest a record waits for its batch to fill")
      ->check(NonNegative());
  AddMillisOption(*cmd, "--commit-interval-ms", o.commit_interval,
                  "least time between the starts of two commits (documents are stored before theirs)")
      ->check(NonNegative());
  AddMillisOption(*cmd, "--retry-max-ms", o.retry_max, "longest wait between retries while the store is down")
      ->check(Positive());
  cmd->callback([&action, options, service] {
    action = [options, service]() -> Status {
      TRY(service->ApplyTo(options->kafka, options->endpoints));
      return sink::RunCommand(*options, StopOnSignals());
    };
  });
}

}  // namespace iotinfer::cli
