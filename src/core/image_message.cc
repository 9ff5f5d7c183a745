#include "core/image_message.h"

#include <fmt/format.h>

#include <charconv>
#include <cstring>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/jpeg.h"
#include "core/png.h"

namespace iotinfer {
namespace {

constexpr size_t kMaxIdBytes = 256;
constexpr size_t kMaxLabelBytes = 64;
constexpr uint8_t kPngSignature[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
constexpr uint8_t kJpegSignature[] = {0xff, 0xd8, 0xff};

template <typename Int>
std::optional<Int> ParseDecimal(std::string_view text) {
  Int value{};
  if (text.empty()) return std::nullopt;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Header values end up in logs and dead-letter reasons: keep them short and printable.
std::string Quote(std::string_view text) {
  std::string out = "'";
  for (char c : text.substr(0, 40)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (text.size() > 40) out += "...";
  return out + "'";
}

bool HasPrefix(std::string_view data, std::span<const uint8_t> prefix) {
  return data.size() >= prefix.size() && std::memcmp(data.data(), prefix.data(), prefix.size()) == 0;
}

// Well-formed UTF-8 (Unicode's table 3-7: no overlong forms, surrogates or code points past
// U+10FFFF) without control characters. Ids and labels go on into JSON inference records and
// BSON documents, whose encoders refuse anything else.
bool IsPrintable(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    const unsigned char c = *p++;
    if (c < 0x80) {
      if (c < 0x20) return false;
      continue;
    }
    int more = 0;
    unsigned char low = 0x80, high = 0xbf;  // the range of the byte after the first
    if (c >= 0xc2 && c <= 0xdf) {
      more = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      more = 2;
      if (c == 0xe0) low = 0xa0;
      if (c == 0xed) high = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      more = 3;
      if (c == 0xf0) low = 0x90;
      if (c == 0xf4) high = 0x8f;
    } else {
      return false;
    }
    if (end - p < more || *p < low || *p > high) return false;
    for (++p, --more; more > 0; ++p, --more) {
      if (*p < 0x80 || *p > 0xbf) return false;
    }
  }
  return true;
}

// OpenCV encodes three- and four-channel images from BGR(A); the wire format is RGB(A).
cv::Mat SwapRedBlue(const cv::Mat& image) {
  cv::Mat out;
  if (image.channels() == 3) {
    cv::cvtColor(image, out, cv::COLOR_BGR2RGB);
  } else if (image.channels() == 4) {
    cv::cvtColor(image, out, cv::COLOR_BGRA2RGBA);
  } else {
    out = image;
  }
  return out;
}

// Both decoders check the header's sides before taking pixel memory, refuse damaged data and
// print nothing. OpenCV's imdecode did neither of the first two for JPEG, wrote libpng's and
// libjpeg's complaints to stderr, and said only "cannot decode".
Result<Image> DecodeCompressed(std::string_view payload, ImageEncoding encoding, const DecodeLimits& limits,
                               bool* over_side) {
  if (encoding == ImageEncoding::kJpeg) {
    if (!HasPrefix(payload, kJpegSignature)) {
      return std::unexpected(Error::InvalidInput("payload is not a JPEG (bad signature)"));
    }
    return DecodeJpeg(payload, limits.max_side, over_side);
  }
  if (!HasPrefix(payload, kPngSignature))
    return std::unexpected(Error::InvalidInput("payload is not a PNG (bad signature)"));
  return DecodePng(payload, limits.max_side, over_side);
}

}  // namespace

const std::string* WireMessage::FindHeader(std::string_view name) const {
  for (const auto& header : headers) {
    if (header.name == name) return &header.value;
  }
  return nullptr;
}

std::string_view ContentType(ImageEncoding encoding) {
  switch (encoding) {
    case ImageEncoding::kPng:
      return "image/png";
    case ImageEncoding::kJpeg:
      return "image/jpeg";
    case ImageEncoding::kRaw:
      return "application/x-raw-u8";
  }
  return "";
}

std::string ShapeString(int rows, int cols, int channels) { return fmt::format("{}x{}x{}", rows, cols, channels); }

Result<Image> ParseShape(std::string_view shape) {
  int dims[3];
  size_t start = 0;
  for (int i = 0; i < 3; ++i) {
    size_t end = i < 2 ? shape.find('x', start) : shape.size();
    if (end == std::string_view::npos) break;
    auto value = ParseDecimal<int>(shape.substr(start, end - start));
    if (!value || *value <= 0) break;
    dims[i] = *value;
    start = end + 1;
    if (i == 2) {
      if (dims[2] != 1 && dims[2] != 3 && dims[2] != 4) {
        return std::unexpected(
            Error::InvalidInput(fmt::format("shape {} has {} channels; expected 1, 3 or 4", Quote(shape), dims[2])));
      }
      return Image{dims[0], dims[1], dims[2], {}};
    }
  }
  return std::unexpected(Error::InvalidInput(fmt::format("shape {} is not HxWxC", Quote(shape))));
}

Result<WireMessage> EncodeImageMessage(const ImageRecord& record, const EncodeOptions& options) {
  const Image& image = record.image;
  if (image.channels != 1 && image.channels != 3 && image.channels != 4) {
    return std::unexpected(Error::InvalidInput(fmt::format("cannot encode an image with {} channels", image.channels)));
  }
  if (image.rows <= 0 || image.cols <= 0 || image.pixels.size() != image.view().size_bytes()) {
    return std::unexpected(Error::InvalidInput(fmt::format(
        "image {} has {} bytes of pixels", ShapeString(image.rows, image.cols, image.channels), image.pixels.size())));
  }
  WireMessage message;
  message.key = std::to_string(record.producer_id);
  if (options.encoding == ImageEncoding::kRaw) {
    message.value.assign(image.pixels.begin(), image.pixels.end());
  } else {
    cv::Mat mat(image.rows, image.cols, CV_8UC(image.channels), const_cast<uint8_t*>(image.pixels.data()));
    std::vector<uint8_t> encoded;
    std::vector<int> params = options.encoding == ImageEncoding::kPng
                                  ? std::vector<int>{cv::IMWRITE_PNG_COMPRESSION, options.png_compression}
                                  : std::vector<int>{cv::IMWRITE_JPEG_QUALITY, options.jpeg_quality};
    const char* ext = options.encoding == ImageEncoding::kPng ? ".png" : ".jpg";
    try {
      if (!cv::imencode(ext, SwapRedBlue(mat), encoded, params)) {
        return std::unexpected(Error::Internal(fmt::format("{} encoder failed", ext)));
      }
    } catch (const cv::Exception& e) {
      return std::unexpected(Error::Internal(fmt::format("{} encoder failed: {}", ext, e.err)));
    }
    message.value.assign(encoded.begin(), encoded.end());
  }
  auto add = [&](std::string_view name, std::string value) {
    message.headers.push_back({std::string(name), std::move(value)});
  };
  add(image_headers::kId, record.id);
  add(image_headers::kProducerId, message.key);
  add(image_headers::kContentType, std::string(ContentType(options.encoding)));
  add(image_headers::kShape, ShapeString(image.rows, image.cols, image.channels));
  if (record.label) add(image_headers::kLabel, *record.label);
  if (record.produced_at_us) add(image_headers::kProducedAt, std::to_string(*record.produced_at_us));
  return message;
}

Result<ImageRecord> DecodeImageMessage(const WireMessage& message, const DecodeLimits& limits, ImageFault* fault) {
  // The checks go headers first, then the payload: each step says which kind its failures are.
  ImageFault kind = ImageFault::kInvalid;
  auto fail = [&](Error error) {
    if (fault) *fault = kind;
    return std::unexpected(std::move(error));
  };
  auto invalid = [&](std::string reason) { return fail(Error::InvalidInput(std::move(reason))); };
  ImageRecord record;

  const std::string* id = message.FindHeader(image_headers::kId);
  if (!id || id->empty()) return invalid("missing header 'id'");
  if (id->size() > kMaxIdBytes || !IsPrintable(*id))
    return invalid(fmt::format("header 'id' {} is too long, not printable or not UTF-8", Quote(*id)));
  record.id = *id;

  const std::string* producer = message.FindHeader(image_headers::kProducerId);
  if (!producer) return invalid("missing header 'producer_id'");
  auto producer_id = ParseDecimal<int>(*producer);
  if (!producer_id || *producer_id < 0)
    return invalid(fmt::format("header 'producer_id' {} is not a non-negative decimal integer", Quote(*producer)));
  if (!message.key.empty() && message.key != *producer) {
    return invalid(fmt::format("key {} does not match header 'producer_id' {}", Quote(message.key), Quote(*producer)));
  }
  record.producer_id = *producer_id;

  if (const std::string* label = message.FindHeader(image_headers::kLabel)) {
    if (label->empty() || label->size() > kMaxLabelBytes || !IsPrintable(*label)) {
      return invalid(fmt::format("header 'label' {} is empty, too long, not printable or not UTF-8", Quote(*label)));
    }
    record.label = *label;
  }
  if (const std::string* produced_at = message.FindHeader(image_headers::kProducedAt)) {
    auto us = ParseDecimal<int64_t>(*produced_at);
    if (!us || *us < 0)
      return invalid(fmt::format("header 'produced-at' {} is not microseconds since the epoch", Quote(*produced_at)));
    record.produced_at_us = *us;
  }

  const std::string* content_type = message.FindHeader(image_headers::kContentType);
  if (!content_type) return invalid("missing header 'content-type'");
  const std::string_view payload = message.value;
  if (payload.empty()) {
    kind = ImageFault::kUndecodable;
    return invalid("empty payload");
  }
  if (payload.size() > limits.max_payload_bytes) {
    kind = ImageFault::kTooLarge;
    return invalid(
        fmt::format("payload of {} bytes exceeds the limit of {}", payload.size(), limits.max_payload_bytes));
  }

  const std::string* shape_header = message.FindHeader(image_headers::kShape);
  std::optional<Image> shape;
  if (shape_header) {
    Result<Image> parsed = ParseShape(*shape_header);
    if (!parsed) return fail(parsed.error());
    shape = std::move(*parsed);
    if (shape->rows > limits.max_side || shape->cols > limits.max_side) {
      kind = ImageFault::kTooLarge;
      return invalid(fmt::format("shape {} exceeds the side limit of {}", *shape_header, limits.max_side));
    }
  }

  if (*content_type == ContentType(ImageEncoding::kRaw)) {
    if (!shape) return invalid("raw image without header 'shape'");
    kind = ImageFault::kUndecodable;
    if (shape->view().size_bytes() != payload.size()) {
      return invalid(fmt::format("shape {} needs {} bytes, payload has {}", *shape_header, shape->view().size_bytes(),
                                 payload.size()));
    }
    record.image = std::move(*shape);
    record.image.pixels.assign(payload.begin(), payload.end());
  } else if (*content_type == ContentType(ImageEncoding::kPng) || *content_type == ContentType(ImageEncoding::kJpeg)) {
    auto encoding = *content_type == ContentType(ImageEncoding::kPng) ? ImageEncoding::kPng : ImageEncoding::kJpeg;
    kind = ImageFault::kUndecodable;
    bool over_side = false;
    Result<Image> decoded = DecodeCompressed(payload, encoding, limits, &over_side);
    if (!decoded) {
      if (over_side) kind = ImageFault::kTooLarge;
      return fail(decoded.error());
    }
    record.image = std::move(*decoded);
    const Image& got = record.image;
    if (shape && (shape->rows != got.rows || shape->cols != got.cols || shape->channels != got.channels)) {
      return invalid(fmt::format("shape header {} disagrees with the decoded image {}", *shape_header,
                                 ShapeString(got.rows, got.cols, got.channels)));
    }
  } else {
    return invalid(fmt::format("unsupported content-type {}", Quote(*content_type)));
  }
  return record;
}

}  // namespace iotinfer
