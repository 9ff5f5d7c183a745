#pragma once

// The int8 engine's first convolution on AVX2 CPUs, done by OnednnNet in place of oneDNN's
// float32 one and the quantization after it; not for use elsewhere.

#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace iotinfer::model {

/// A float32 convolution over one channel (the pixels), with a ReLU, whose output is quantized
/// to u8 NHWC for the int8 layers as it is computed: the float32 output is never stored. Sums
/// in the order oneDNN 2.6's AVX2 kernel does (bias first, then taps row by row), so its bytes
/// are those of that kernel followed by QuantizeToNhwcU8.
class PixelConvolution {
 public:
  struct Shape {
    int64_t rows = 0, cols = 0;                // of the input
    int64_t kernel_rows = 0, kernel_cols = 0;  // weights [outputs, 1, kernel_rows, kernel_cols]
    int64_t stride_rows = 1, stride_cols = 1;
    int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
    int64_t outputs = 0;  // channels, a multiple of 16
  };

  /// Output (u8) = round-half-even(clamp(max(0, convolution + bias) * factor, 0, 255)), as
  /// QuantizeToNhwcU8 rounds. nullopt where this CPU lacks AVX2 or FMA (see
  /// CanQuantizeToNhwcU8), the outputs are no multiple of 16, or the shape has no output.
  static std::optional<PixelConvolution> Make(const Shape& shape, std::span<const float> weights,
                                              std::span<const float> bias, float factor);

  int64_t out_rows() const { return out_rows_; }
  int64_t out_cols() const { return out_cols_; }
  /// `n` images from `src` ([n, 1, rows, cols]) into `dst` ([n, out_rows, out_cols, outputs]).
  /// Not thread-safe (a scratch buffer per object).
  void Run(const float* src, int64_t n, uint8_t* dst);

 private:
  // One vector register's worth: 8 channels. Aligned, so that no load splits a cache line.
  struct alignas(32) Lanes {
    float values[8];
  };
  Shape shape_;
  int64_t out_rows_ = 0, out_cols_ = 0;
  int64_t stride_ = 0;  // of the padded image's rows
  float factor_ = 0.f;  // the quantization's
  // [first, last) output rows and columns whose windows lie inside the image.
  std::pair<int64_t, int64_t> inner_rows_, inner_cols_;
  std::vector<Lanes> weights_;  // [group of 16 channels][tap][8-channel block]
  std::vector<Lanes> bias_;     // [group][block]
  // The image with its padding, so that a window's corner may lie in the padding; the passes
  // skip the padding's taps as oneDNN does.
  std::vector<float> padded_;
};

}  // namespace iotinfer::model
