#pragma once

#include <fmt/format.h>

#include <initializer_list>

#include "core/image.h"
#include "fuzz/check.h"

namespace iotinfer::fuzz {

/// A decoded image is what its header says and no larger than the limit.
inline void CheckImage(const Image& image, int max_side, std::initializer_list<int> channels) {
  const std::string shape =
      fmt::format("{}x{}x{} with {} bytes", image.rows, image.cols, image.channels, image.pixels.size());
  FUZZ_CHECK(image.rows >= 1 && image.rows <= max_side && image.cols >= 1 && image.cols <= max_side, shape);
  bool known = false;
  for (int c : channels) known = known || image.channels == c;
  FUZZ_CHECK(known, shape);
  FUZZ_CHECK(image.pixels.size() == image.view().size_bytes(), shape);
}

}  // namespace iotinfer::fuzz
