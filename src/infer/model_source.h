#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "model/classifier.h"

namespace iotinfer::infer {

/// Why a model was not taken: the `reason` label of iotinfer_infer_model_refused_total.
enum class ModelRefusal {
  kUnreadable,      // missing, empty or corrupt file
  kIncompatible,    // a network of another input shape or class count
  kCalibration,     // int8 wanted, and its calibration is missing, broken or another model's
  kUnknownVersion,  // a version was chosen that no known file has
};
inline constexpr size_t kModelRefusals = 4;
using RefusalCounts = std::array<int64_t, kModelRefusals>;

/// "unreadable", "incompatible", "calibration", "unknown-version".
std::string_view RefusalName(ModelRefusal refusal);
/// Every refusal's name, in enum order.
const std::array<std::string_view, kModelRefusals>& RefusalNames();

struct ModelSourceOptions {
  // The engine, threads, classes and input shape every model must serve with. Its model_path
  // (and calibration_path) is the model to serve when there is no model_dir.
  model::ClassifierOptions classifier;
  // A directory of models, *.onnx, each with its int8 calibration beside it as
  // <stem>.int8.json where the engine wants one. The model that serves is the file DIR/active
  // names (a file name in DIR, or a version), else the most recently modified model. Symbolic
  // links are followed, so a flipped link, and a Kubernetes ConfigMap or volume update (whose
  // entries link into a directory the kubelet replaces), are a new model. Names starting with a
  // dot are not models.
  std::string model_dir;
  // The file naming the model that serves; empty: DIR/active. Elsewhere, it can change apart
  // from the models: a chart's ConfigMap beside a volume of models.
  std::string active_file;
  // Further files a chosen version may name: the shadow model, so that it can be promoted.
  std::vector<std::string> known_models;
  // The version an operator chose (models::ReadChoices on the control topic), nullopt while
  // none was (or it was withdrawn). A choice outranks the directory. When asking fails, the last
  // answer stands: a broker that is down must not turn a promotion back.
  std::function<Result<std::optional<std::string>>()> chosen_version;
  std::chrono::milliseconds choice_poll{5000};  // how often chosen_version is asked
  // How often the directory, and the choice, are looked at. A changed file is loaded once it
  // has looked the same on two looks in a row, so that a model being copied in is not read
  // half-written.
  std::chrono::milliseconds poll{1000};
  std::function<void(const std::string&)> log;
};

/// Which model a service serves, and the next one, loaded and checked on a thread of its own so
/// that the service never waits for a load: the service takes it between two batches
/// (TakeNext), so no batch mixes models. A model that cannot serve (ModelRefusal) is refused
/// with a log line that says why, and the current one keeps serving; a refused file is tried
/// again once it changes.
class ModelSource {
 public:
  /// Loads the model that should serve now, on this thread: the chosen version if it can
  /// serve, else the directory's model, else options.classifier's. An error when none can: no
  /// service runs without a model. Watches from then on when there is a directory or a choice.
  static Result<std::unique_ptr<ModelSource>> Start(ModelSourceOptions options);
  ~ModelSource();
  ModelSource(const ModelSource&) = delete;
  ModelSource& operator=(const ModelSource&) = delete;

  /// The model to serve from now on, or null when it has not changed: the first call returns
  /// the one Start loaded. Never blocks on a load.
  std::unique_ptr<model::Classifier> TakeNext();

  /// Models refused so far, by ModelRefusal.
  RefusalCounts refused() const;

 private:
  struct Impl;
  explicit ModelSource(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace iotinfer::infer
