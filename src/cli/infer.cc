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
  cmd->add_option("--model", o.classifier.model_path,
                  "ONNX model (default: the committed one); with --model-dir, it serves until the directory "
                  "offers a model that can")
      ->envname("IOTINFER_MODEL");
  cmd->add_option("--model-dir", o.model_dir,
                  "directory of models, watched: its file `active` names the one that serves, else the newest "
                  "*.onnx does; a change is taken between two batches")
      ->envname("IOTINFER_MODEL_DIR");
  cmd->add_option("--model-active", o.model_active,
                  "the file naming the model of --model-dir that serves (default: DIR/active)");
  cmd->add_option("--model-control-topic", o.model_control_topic,
                  "compacted topic whose latest choice for --group names the version to serve (models activate); "
                  "empty: none")
      ->capture_default_str();
  AddDurationOption(*cmd, "--model-poll", o.model_poll, "how often --model-dir is looked at", "1s");
  cmd->add_option("--shadow-model", o.shadow_model,
                  "a candidate ONNX model that classifies the images too, to --shadow-topic (models compare)");
  cmd->add_option("--shadow-sample", o.shadow_sample, "share of the images the shadow model classifies, by image id")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0).description("0..1"));
  cmd->add_option("--shadow-topic", o.shadow_topic, "topic of the shadow model's records")->capture_default_str();
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
