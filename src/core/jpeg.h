#pragma once

#include <string_view>

#include "core/error.h"
#include "core/image.h"

namespace iotinfer {

/// Decodes a baseline or progressive JPEG into 8-bit grayscale or RGB with libjpeg-turbo,
/// strictly: InvalidInput with a one-line reason when the frame header declares a side over
/// `max_side` (checked before any pixel memory is taken, so a few hundred bytes cannot ask for
/// gigabytes), when libjpeg reports the data corrupt (even where it would go on and fill the
/// rest with grey; JPEG has no checksum, so these reports are the only sign of damage), for
/// more than 100 progressive scans (each one re-reads the whole image), and for CMYK or other
/// colour spaces. Nothing is printed. `*over_side` (when given) says whether it failed for the
/// side limit.
Result<Image> DecodeJpeg(std::string_view payload, int max_side, bool* over_side = nullptr);

}  // namespace iotinfer
