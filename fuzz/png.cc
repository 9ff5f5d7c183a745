// libFuzzer target: DecodePng (libspng) on the input as it is.
#include "core/png.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/image_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr int kMaxSide = 4096;  // DecodeLimits' default
  auto image = iotinfer::DecodePng({reinterpret_cast<const char*>(data), size}, kMaxSide);
  if (image) {
    iotinfer::fuzz::CheckImage(*image, kMaxSide, {1, 3, 4});
  } else {
    iotinfer::fuzz::CheckRejection(image.error());
  }
  return 0;
}
