#include "core/png.h"

#include <fmt/format.h>
#include <spng.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace iotinfer {
namespace {

struct CtxFree {
  void operator()(spng_ctx* ctx) const { spng_ctx_free(ctx); }
};

// Ancillary chunks (text, ICC profiles) are kept in memory, compressed ones inflated: without
// a bound, a 400 KB zTXt chunk took 400 MB and 1.6 s. libpng, which OpenCV used, stops at 8 MB.
constexpr size_t kMaxAncillaryBytes = 4 << 20;

Error Corrupt(int code) {
  if (code == SPNG_ECHUNK_LIMITS) {
    return Error::InvalidInput(
        fmt::format("PNG with more than {} MiB of ancillary data (text, ICC profile)", kMaxAncillaryBytes >> 20));
  }
  return Error::InvalidInput(fmt::format("corrupt PNG: {}", spng_strerror(code)));
}

}  // namespace

Result<Image> DecodePng(std::string_view payload, int max_side, bool* over_side) {
  if (over_side) *over_side = false;
  std::unique_ptr<spng_ctx, CtxFree> ctx(spng_ctx_new(0));
  if (!ctx) return std::unexpected(Error::Internal("libspng could not allocate a decoder"));
  if (int rc = spng_set_png_buffer(ctx.get(), payload.data(), payload.size()); rc != 0) {
    return std::unexpected(Corrupt(rc));
  }
  if (int rc = spng_set_chunk_limits(ctx.get(), payload.size(), kMaxAncillaryBytes); rc != 0) {
    return std::unexpected(Error::Internal(fmt::format("libspng: {}", spng_strerror(rc))));
  }
  spng_ihdr ihdr{};
  if (int rc = spng_get_ihdr(ctx.get(), &ihdr); rc != 0) return std::unexpected(Corrupt(rc));
  if (ihdr.width > static_cast<uint32_t>(max_side) || ihdr.height > static_cast<uint32_t>(max_side)) {
    if (over_side) *over_side = true;
    return std::unexpected(Error::InvalidInput(
        fmt::format("PNG of {}x{} exceeds the side limit of {}", ihdr.height, ihdr.width, max_side)));
  }
  spng_trns trns{};
  // Reads the chunks before the image data: the first damage found there is the reason (after
  // it the decoder only says it is in a non-recoverable state).
  const int trns_rc = spng_get_trns(ctx.get(), &trns);
  if (trns_rc != 0 && trns_rc != SPNG_ECHUNKAVAIL) return std::unexpected(Corrupt(trns_rc));
  const bool transparent = trns_rc == 0;
  const bool gray = ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE && !transparent;
  // The wire format has no two-channel images: grayscale with alpha goes to RGBA.
  const bool alpha = transparent || ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA ||
                     ihdr.color_type == SPNG_COLOR_TYPE_TRUECOLOR_ALPHA;
  // libspng makes G8 of grayscale up to 8 bits only; 16-bit grayscale comes as it is stored.
  const bool gray16 = gray && ihdr.bit_depth == 16;
  const int format = gray16 ? SPNG_FMT_PNG : gray ? SPNG_FMT_G8 : alpha ? SPNG_FMT_RGBA8 : SPNG_FMT_RGB8;
  size_t size = 0;
  if (int rc = spng_decoded_image_size(ctx.get(), format, &size); rc != 0) return std::unexpected(Corrupt(rc));
  std::vector<uint8_t> decoded(size);
  if (int rc = spng_decode_image(ctx.get(), decoded.data(), size, format, transparent ? SPNG_DECODE_TRNS : 0);
      rc != 0) {
    return std::unexpected(Corrupt(rc));
  }
  Image image{static_cast<int>(ihdr.height), static_cast<int>(ihdr.width), gray ? 1 : alpha ? 4 : 3, {}};
  if (gray16) {
    // SPNG_FMT_PNG is host-endian; v * 255 / 65535, rounded, as OpenCV scales 16 bits to 8.
    image.pixels.resize(size / 2);
    for (size_t i = 0; i < image.pixels.size(); ++i) {
      uint16_t v = 0;
      std::memcpy(&v, decoded.data() + 2 * i, 2);
      image.pixels[i] = static_cast<uint8_t>((uint32_t{v} * 255 + 32767) / 65535);
    }
  } else {
    image.pixels = std::move(decoded);
  }
  return image;
}

}  // namespace iotinfer
