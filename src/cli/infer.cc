#include "infer/infer.h"

#include <cstdio>

#include "cli/commands.h"
#include "kafka/service_loop.h"

namespace iotinfer::cli {
namespace {

struct InferFlags {
  infer::InferOptions options;
  KafkaFlags kafka;
  int batch_wait_ms = 20;
  int log_every_ms = 5000;
  int http_port = 0;
  std::string http_host = "127.0.0.1";
};

Status RunInferCommand(InferFlags& flags) {
  infer::InferOptions& o = flags.options;
  TRY(ApplyKafkaProperties(flags.kafka, o.kafka));
  o.batch_wait = std::chrono::milliseconds(flags.batch_wait_ms);
  o.log_every = std::chrono::milliseconds(flags.log_every_ms);
  if (flags.http_port > 0) o.endpoints = ops::EndpointOptions{.host = flags.http_host, .port = flags.http_port};
  // SIGINT/SIGTERM: the loop finishes and commits its batch, then returns.
  const std::atomic<bool>& stop = StopOnSignals();
  const std::string name = kafka::ServiceLogName("infer", o.instance_id);
  std::fprintf(stderr, "%s: %s, group %s, %s -> %s (dead letters: %s)\n", name.c_str(), o.kafka.Describe().c_str(),
               o.group.c_str(), o.input_topic.c_str(), o.output_topic.c_str(), o.dlq_topic.c_str());
  ASSIGN_OR_RETURN(infer::InferStats stats, infer::RunInfer(o, stop));
  std::fprintf(stderr, "%s: stopped; %s\n", name.c_str(), infer::FormatStats(stats).c_str());
  return Ok();
}

}  // namespace

void AddInferCommand(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("infer", "Run the exactly-once inference service: images -> inferences");
  auto flags = std::make_shared<InferFlags>();
  infer::InferOptions& o = flags->options;
  AddKafkaFlags(*cmd, o.kafka, flags->kafka);
  cmd->add_option("--group", o.group, "consumer group; instances in one group share the partitions")
      ->capture_default_str();
  cmd->add_option("--instance-id", o.instance_id,
                  "stable name of this replica for its transactions (default: host name and pid)")
      ->envname("IOTINFER_INSTANCE_ID");
  cmd->add_option("--input-topic", o.input_topic, "topic of images")->capture_default_str();
  cmd->add_option("--output-topic", o.output_topic, "topic of inference records")->capture_default_str();
  cmd->add_option("--dlq-topic", o.dlq_topic, "dead-letter topic for undecodable messages")->capture_default_str();
  cmd->add_option("--partitions", o.partitions, "partitions for topics that have to be created")->capture_default_str();
  cmd->add_option("--batch-max", o.batch_max, "largest batch")->capture_default_str()->check(Positive());
  cmd->add_option("--batch-max-bytes", o.batch_max_bytes, "most bytes of messages in a batch")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--batch-wait-ms", flags->batch_wait_ms, "how long a batch may wait to fill")
      ->capture_default_str()
      ->check(NonNegative());
  cmd->add_option("--threads", o.classifier.threads, "inference threads (0: one per core)")
      ->capture_default_str()
      ->check(NonNegative());
  AddEngineFlags(*cmd, o.classifier);
  cmd->add_option("--model", o.classifier.model_path, "ONNX model (default: the committed one)")
      ->envname("IOTINFER_MODEL");
  cmd->add_option("--max-payload-bytes", o.limits.max_payload_bytes, "larger images are dead-lettered")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--log-every-ms", flags->log_every_ms, "period of the counters log line (0: never)")
      ->capture_default_str()
      ->check(NonNegative());
  AddEndpointFlags(*cmd, flags->http_port, flags->http_host);
  cmd->callback([&action, flags] { action = [flags] { return RunInferCommand(*flags); }; });
}

}  // namespace iotinfer::cli
