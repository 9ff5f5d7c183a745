#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace iotinfer {

/// A non-owning view of an 8-bit image stored row-major, channels interleaved (HxWxC).
/// The viewed bytes must outlive the view.
struct ImageView {
  int rows = 0;
  int cols = 0;
  int channels = 0;
  std::span<const uint8_t> pixels;

  size_t size_bytes() const { return static_cast<size_t>(rows) * cols * channels; }
};

/// An owning 8-bit image, row-major, channels interleaved (HxWxC).
struct Image {
  int rows = 0;
  int cols = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;

  ImageView view() const { return {rows, cols, channels, pixels}; }
  static Image CopyOf(const ImageView& view) {
    return {view.rows, view.cols, view.channels, {view.pixels.begin(), view.pixels.end()}};
  }
};

/// "28x28x1".
std::string ShapeString(int rows, int cols, int channels);

}  // namespace iotinfer
