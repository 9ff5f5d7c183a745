#pragma once

#include <functional>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <opencv2/dnn.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace iotinfer::model {

/// An ONNX classifier of the shape iotinfer trains (convolutions, each optionally followed by
/// a ReLU, then a flatten and one fully connected layer) run by oneDNN, with the weights
/// OpenCV has loaded: in FP32, or mostly in int8 (the Classifier's default engine runs both:
/// int8, and FP32 for its close calls). oneDNN's
/// direct convolutions reach about twice OpenCV 4.6's images/s per core on this model in FP32,
/// and int8 about twice that again (BENCHMARKS.md, inference section). Runs on the calling
/// thread alone (it sets that thread's OpenMP thread count to 1). Not thread-safe: one
/// Forward() at a time.
class OnednnNet {
 public:
  /// From `net` as cv::dnn::readNetFromONNX loaded it, for inputs of [N, channels, rows,
  /// cols]. InvalidInput naming the first layer it cannot run: another layer type, a branch,
  /// a leaky ReLU, a grouped, dilated or auto-padded convolution.
  ///
  /// With `int8_ranges` (ActivationRanges() over representative images), every layer but the
  /// first convolution runs in int8: s8 weights scaled per output channel, activations in u8
  /// after a ReLU (s8 otherwise) scaled to span their convolution's range, float32 logits.
  /// InvalidInput if the count is wrong or a range is not a positive number.
  ///
  /// `weight_bits` sets the weights' precision: 8, each output channel's weights spanning 8
  /// bits; 7, for CPUs without VNNI, where two weights' products share a 16-bit sum: 8 bits
  /// too, but the largest sum of such a pair spans them (so each has at least 7 bits).
  /// 0 means NativeWeightBits().
  static Result<std::unique_ptr<OnednnNet>> FromOpenCv(cv::dnn::Net& net, int channels, int rows, int cols,
                                                       std::span<const float> int8_ranges = {}, int weight_bits = 0);
  /// 8 where the CPU multiplies u8 by s8 exactly in 32 bits (VNNI); 7 elsewhere, where
  /// oneDNN's 16-bit pair sums could saturate with plain 8-bit weights. Both compute exact
  /// integer sums, so a net with given `weight_bits` gives the same logits on either kind of
  /// CPU, up to the rounding of its scales (about 0.02 logits at most on the training set).
  static int NativeWeightBits();
  /// oneDNN's effective instruction set: the CPU's best, or less where ONEDNN_MAX_CPU_ISA caps
  /// it. "avx2", "avx2_vnni", "avx512_core", "avx512_core_vnni", "avx512_core_bf16",
  /// "avx512_core_amx", or "other" (SSE4.1, AVX, Xeon Phi).
  static std::string_view Isa();
  ~OnednnNet();
  OnednnNet(const OnednnNet&) = delete;
  OnednnNet& operator=(const OnednnNet&) = delete;

  /// The logits [n, classes()] of `input`, float32 [n, C, H, W] (n = input.size() / (C*H*W)).
  Status Forward(std::span<const float> input, std::span<float> logits);
  /// Calibration for int8: the largest |value| each convolution outputs over `input`, in
  /// order. FailedPrecondition on an int8 net.
  Result<std::vector<float>> ActivationRanges(std::span<const float> input);
  /// What runs each step of a batch of `n` images (n >= 1), in order: oneDNN's name for each
  /// primitive's implementation ("jit:avx2", "jit_uni_int8:avx2", "reorder jit:uni", ...).
  /// Builds that batch size's plan if it has none yet. For tests and benchmarks: a name that
  /// starts with "ref" is a reference kernel, hundreds of times slower than the JIT ones.
  Result<std::vector<std::string>> Implementations(int n);
  int classes() const;
  bool int8() const;

 private:
  struct Impl;
  explicit OnednnNet(std::unique_ptr<Impl> impl);
  size_t ImageSize() const;
  Status Run(std::span<const float> input, std::span<float> logits,
             const std::function<void(const std::vector<dnnl::memory>&)>& observe);
  std::unique_ptr<Impl> impl_;
};

}  // namespace iotinfer::model
