#pragma once

namespace iotinfer::topics {

/// The Kafka topics of the pipeline, in data-flow order (docs/design.md). Every service takes
/// its topics as options; these are the defaults they all agree on.
inline constexpr const char* kImages = "images";                           // produce -> infer
inline constexpr const char* kImagesDeadLetters = "images.dlq";            // infer's rejects
inline constexpr const char* kInferences = "inferences";                   // infer -> sink
inline constexpr const char* kInferencesShadow = "inferences.shadow";      // infer's candidate model -> models compare
inline constexpr const char* kInferencesDeadLetters = "inferences.dlq";    // sink's rejects
inline constexpr const char* kInferencesAccepted = "inferences.accepted";  // sink -> stream
inline constexpr const char* kProducerHealth = "producer-health";          // stream's verdicts on devices
inline constexpr const char* kModelControl = "model-control";  // compacted: the model version each infer group serves

}  // namespace iotinfer::topics
