#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/image.h"
#include "core/labels.h"
#include "model/calibration.h"

namespace iotinfer::model {

/// What runs the network. OpenCV always loads and checks the model; oneDNN then runs it
/// about twice as fast per core (BENCHMARKS.md), for the layer types it supports here. oneDNN
/// in int8 is over twice as fast again. It needs a calibration (calibration.h), and it
/// classifies the close calls again in float32, so that its predictions are float32's
/// (model/MODEL.md, "int8"). kAuto is int8 when the model has a calibration, else float32 oneDNN.
enum class Engine { kAuto, kOpenCv, kOneDnn, kOneDnnInt8 };

/// "auto", "opencv", "onednn" or "onednn-int8"; InvalidInput naming the choices otherwise.
Result<Engine> ParseEngine(std::string_view name);
std::string_view EngineName(Engine engine);
/// Every engine's name, for command-line choices.
std::vector<std::string> EngineNames();

struct ClassifierOptions {
  std::string model_path;  // ONNX file; empty: DefaultModelPath()
  Engine engine = Engine::kAuto;
  // For kOneDnnInt8; empty: DefaultCalibrationPath(model_path). Given, kAuto means int8.
  std::string calibration_path;
  std::vector<std::string> class_names = ClassNames(kFashionMnistClasses);
  int threads = 0;  // worker replicas of the network; 0: one per hardware thread
  // The model's input geometry. Images of another shape are converted to it (see Classify).
  int input_rows = 28;
  int input_cols = 28;
  int input_channels = 1;
};

/// Why a model could not be loaded: what a service that swaps models reports.
enum class ModelFault {
  kUnreadable,    // missing, empty or corrupt file: not an ONNX network
  kIncompatible,  // a network, but not one mapping [1, C, H, W] to the classes
  kCalibration,   // int8 asked for, and its calibration is missing, broken or another model's
};

struct Prediction {
  int label = -1;          // index into class_names()
  float confidence = 0.f;  // softmax probability of `label`
};

/// Top-1 image classification with an ONNX model, loaded by OpenCV DNN and run by oneDNN
/// (OnednnNet) or by OpenCV itself.
///
/// The model takes float32 [N, C, H, W] raw pixel values (0..255) and returns [N, classes]
/// logits; any preprocessing beyond that is inside the model (see model/MODEL.md).
///
/// Parallelism is data-parallel: `threads` single-threaded replicas of the network each run a
/// slice of the batch. For these small networks that beats OpenCV's intra-layer threading
/// (measured in docs/bench-log.md). Create() therefore sets OpenCV's process-wide thread count
/// to 1. Not thread-safe: one Classify() call at a time per Classifier.
class Classifier {
 public:
  /// Loads the model and checks it by running one image: a missing or corrupt file, or a
  /// network that does not map [1, C, H, W] to [1, class_names.size()], gives an error naming
  /// the file and the problem; `fault`, when given, is set to its kind.
  static Result<std::unique_ptr<Classifier>> Create(const ClassifierOptions& options, ModelFault* fault = nullptr);
  ~Classifier();
  Classifier(const Classifier&) = delete;
  Classifier& operator=(const Classifier&) = delete;

  /// Classifies `images` (any batch size, including 0) into `out`, which must have the same
  /// size. Images whose shape differs from the model's input are converted: colour to grey,
  /// then resized (area interpolation when shrinking). An image with no pixels or a channel
  /// count other than 1, 3 or 4 gives InvalidInput and leaves `out` unspecified.
  Status Classify(std::span<const ImageView> images, std::span<Prediction> out);

  /// Converts `image` in place as Classify() would (colour to grey, then resized), so that a
  /// service can keep its images at the network's size from decoding on: a batch of large
  /// images then never sits in memory at full size. Classifying the result gives the same
  /// prediction as classifying the original. InvalidInput as for Classify().
  Status ToInputShape(Image& image) const;

  /// A calibration for int8 from `images`, on one thread: the activation ranges of the
  /// float32 network, then the recheck margins (calibration.h) of int8 nets with 7- and 8-bit
  /// weights calibrated with them. FailedPrecondition unless the engine is kOneDnn.
  Result<Calibration> Calibrate(std::span<const ImageView> images);

  /// Images the int8 engine classified again in float32 since Create().
  uint64_t rechecked() const;
  const std::vector<std::string>& class_names() const;
  /// "<file stem>-<first 8 hex digits of the file's SHA-256>", e.g. "fmnist-cnn-1a2b3c4d".
  const std::string& model_id() const;
  int threads() const;
  /// What runs the network: never kAuto.
  Engine engine() const;

 private:
  struct Impl;
  explicit Classifier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// The version a model file would have as model_id(), without loading the network. NotFound
/// or InvalidInput (empty) as Create.
Result<std::string> ModelId(const std::string& path);

/// The instruction set oneDNN runs the network with here (OnednnNet::Isa()): "avx2",
/// "avx512_core_vnni", ... The int8 engine's speed, and its weights' bits, depend on it.
std::string_view OnednnIsa();

/// The committed model: $prefix/share/iotinfer/fmnist-cnn.onnx next to an installed binary,
/// else model/fmnist-cnn.onnx in the source tree the binary was built from.
std::string DefaultModelPath();

}  // namespace iotinfer::model
