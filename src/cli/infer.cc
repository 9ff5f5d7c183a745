#include "infer/infer.h"

#include "cli/commands.h"

namespace iotinfer::cli {

void AddInferCommand(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("infer", "Run the exactly-once inference service: images -> inferences");
  auto options = std::make_shared<infer::InferOptions>();
  auto service = std::make_shared<ServiceFlags>();
  infer::InferOptions& o = *options;
  AddServiceFlags(*cmd, o.kafka, o.log_every, *service);
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
  AddMillisOption(*cmd, "--batch-wait-ms", o.batch_wait, "how long a batch may wait to fill")->check(NonNegative());
  cmd->add_option("--threads", o.classifier.threads, "inference threads (0: one per core)")
      ->capture_default_str()
      ->check(NonNegative());
  AddEngineFlags(*cmd, o.classifier);
  cmd->add_option("--model", o.classifier.model_path, "ONNX model (default: the committed one)")
      ->envname("IOTINFER_MODEL");
  cmd->add_option("--max-payload-bytes", o.limits.max_payload_bytes, "larger images are dead-lettered")
      ->capture_default_str()
      ->check(Positive());
  cmd->callback([&action, options, service] {
    action = [options, service]() -> Status {
      TRY(service->ApplyTo(options->kafka, options->endpoints));
      return infer::RunCommand(*options, StopOnSignals());
    };
  });
}

}  // namespace iotinfer::cli
