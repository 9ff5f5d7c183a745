#pragma once

#include <memory>
#include <opencv2/dnn.hpp>
#include <span>

#include "core/error.h"

namespace iotinfer::model {

/// An ONNX classifier of the shape iotinfer trains (convolutions, each optionally followed by
/// a ReLU, then a flatten and one fully connected layer) run by oneDNN in FP32, with the
/// weights OpenCV has loaded: the Classifier's default engine. oneDNN's direct convolutions
/// reach about twice OpenCV 4.6's images/s per core on this model (BENCHMARKS.md, inference
/// section). Runs on the calling thread alone (it sets that
/// thread's OpenMP thread count to 1). Not thread-safe: one Forward() at a time.
class OnednnNet {
 public:
  /// From `net` as cv::dnn::readNetFromONNX loaded it, for inputs of [N, channels, rows,
  /// cols]. InvalidInput naming the first layer it cannot run: another layer type, a branch,
  /// a leaky ReLU, a grouped, dilated or auto-padded convolution.
  static Result<std::unique_ptr<OnednnNet>> FromOpenCv(cv::dnn::Net& net, int channels, int rows, int cols);
  ~OnednnNet();
  OnednnNet(const OnednnNet&) = delete;
  OnednnNet& operator=(const OnednnNet&) = delete;

  /// The logits [n, classes()] of `input`, float32 [n, C, H, W] (n = input.size() / (C*H*W)).
  Status Forward(std::span<const float> input, std::span<float> logits);
  int classes() const;

 private:
  struct Impl;
  explicit OnednnNet(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace iotinfer::model
