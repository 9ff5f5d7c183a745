#pragma once

#include <string_view>

#include "core/error.h"
#include "core/image.h"

namespace iotinfer {

/// Decodes a PNG into 8-bit grayscale, RGB or RGBA with libspng: grayscale stays one channel,
/// grayscale with alpha and any image with a tRNS chunk become RGBA, palettes are expanded,
/// 16-bit samples are scaled to 8 bits. InvalidInput with a one-line reason (libspng's) for a
/// side over `max_side` (read from IHDR before any pixel memory is taken), for more than 4 MiB
/// of ancillary chunks once inflated (a zTXt bomb), and for any damage:
/// PNG's CRCs and zlib's checksums cover every byte. Nothing is printed. `*over_side` (when
/// given) says whether it failed for the side limit.
Result<Image> DecodePng(std::string_view payload, int max_side, bool* over_side = nullptr);

}  // namespace iotinfer
