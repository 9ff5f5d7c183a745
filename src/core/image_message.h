#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/image.h"

namespace iotinfer {

/// A message as it travels through a topic: key, value and headers, transport-agnostic.
struct WireMessage {
  struct Header {
    std::string name;
    std::string value;
  };
  std::string key;
  std::string value;
  std::vector<Header> headers;

  /// The first header named `name`, or nullptr.
  const std::string* FindHeader(std::string_view name) const;
};

/// Header names and content types of the `images` topic (docs/design.md).
namespace image_headers {
inline constexpr std::string_view kId = "id";
inline constexpr std::string_view kProducerId = "producer_id";
inline constexpr std::string_view kContentType = "content-type";
inline constexpr std::string_view kShape = "shape";
inline constexpr std::string_view kLabel = "label";
inline constexpr std::string_view kProducedAt = "produced-at";
}  // namespace image_headers

enum class ImageEncoding { kPng, kJpeg, kRaw };

/// "image/png", "image/jpeg", "application/x-raw-u8".
std::string_view ContentType(ImageEncoding encoding);

/// One labelled (or unlabelled) image from one producer. Three-channel pixels are RGB.
struct ImageRecord {
  std::string id;
  int producer_id = 0;
  std::optional<std::string> label;
  std::optional<int64_t> produced_at_us;
  Image image;
};

struct EncodeOptions {
  ImageEncoding encoding = ImageEncoding::kPng;
  int jpeg_quality = 95;
  int png_compression = 1;  // 0..9; 1 is ~5x faster than the default 3 on 28x28 images
};

/// Encodes `record` as an `images` message: key = producer_id, value = encoded pixels,
/// headers as in docs/design.md. Fails only for an image with no pixels, a channel count
/// other than 1, 3 or 4, or an encoder failure.
Result<WireMessage> EncodeImageMessage(const ImageRecord& record, const EncodeOptions& options = {});

struct DecodeLimits {
  size_t max_payload_bytes = 1 << 20;  // larger values are rejected before decoding
  int max_side = 4096;                 // rows and cols, checked before decompression
};

/// What was wrong with a message DecodeImageMessage rejected, in three kinds a dead letter's
/// reason code can tell apart (its error message says the rest).
enum class ImageFault {
  kInvalid,      // a header or the key breaks the wire format (missing, malformed, disagreeing)
  kUndecodable,  // the payload is not the image the headers say: empty, corrupt, wrong encoding or size
  kTooLarge,     // over DecodeLimits: the payload's bytes, or the sides in `shape` or the image's header
};

/// Decodes and validates an `images` message. Every malformed input yields
/// Error::InvalidInput with a one-line reason (these become dead-letter reasons): missing or
/// empty `id`, missing or non-numeric `producer_id`, a key that disagrees with it, unknown
/// content type, empty or oversized payload, raw payload whose size does not match `shape`,
/// corrupt or mislabelled PNG/JPEG, a `shape` header that disagrees with the decoded image,
/// bad `label` or `produced-at`; and sets `*fault` (when given) to its kind. Never throws.
Result<ImageRecord> DecodeImageMessage(const WireMessage& message, const DecodeLimits& limits = {},
                                       ImageFault* fault = nullptr);

/// Parses "HxWxC" (positive integers, C in 1, 3, 4); error otherwise.
Result<Image> ParseShape(std::string_view shape);

}  // namespace iotinfer
