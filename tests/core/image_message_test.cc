#include "core/image_message.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <zlib.h>

#include <cstdlib>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

#include "core/inference_record.h"
#include "test_util.h"

namespace iotinfer {
namespace {

using ::testing::HasSubstr;

Image Gradient(int rows, int cols, int channels) {
  Image image{rows, cols, channels, std::vector<uint8_t>(static_cast<size_t>(rows) * cols * channels)};
  for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = static_cast<uint8_t>((i * 7 + i / 5) % 256);
  return image;
}

ImageRecord Record(Image image) {
  return {"img-42", 3, std::string("Sneaker"), int64_t{1700000000123456}, std::move(image)};
}

WireMessage Encoded(ImageEncoding encoding, Image image = Gradient(28, 28, 1)) {
  auto message = EncodeImageMessage(Record(std::move(image)), {.encoding = encoding});
  EXPECT_TRUE(message) << message.error().message();
  return *message;
}

void SetHeader(WireMessage& m, std::string_view name, std::string value) {
  for (auto& h : m.headers) {
    if (h.name == name) {
      h.value = std::move(value);
      return;
    }
  }
  m.headers.push_back({std::string(name), std::move(value)});
}

void RemoveHeader(WireMessage& m, std::string_view name) {
  std::erase_if(m.headers, [&](const auto& h) { return h.name == name; });
}

class LosslessRoundTrip : public ::testing::TestWithParam<std::tuple<ImageEncoding, int>> {};

TEST_P(LosslessRoundTrip, DecodesExactlyWhatWasEncoded) {
  auto [encoding, channels] = GetParam();
  Image original = Gradient(28, 31, channels);
  WireMessage message = Encoded(encoding, original);
  EXPECT_EQ(message.key, "3");
  EXPECT_EQ(*message.FindHeader("content-type"), ContentType(encoding));
  EXPECT_EQ(*message.FindHeader("shape"), ShapeString(28, 31, channels));
  EXPECT_EQ(*message.FindHeader("produced-at"), "1700000000123456");

  auto decoded = DecodeImageMessage(message);
  ASSERT_OK(decoded);
  EXPECT_EQ(decoded->id, "img-42");
  EXPECT_EQ(decoded->producer_id, 3);
  EXPECT_EQ(decoded->label, "Sneaker");
  EXPECT_EQ(decoded->produced_at_us, 1700000000123456);
  EXPECT_EQ(decoded->image.rows, 28);
  EXPECT_EQ(decoded->image.cols, 31);
  EXPECT_EQ(decoded->image.channels, channels);
  EXPECT_EQ(decoded->image.pixels, original.pixels);  // also proves RGB order survives PNG's BGR
}

INSTANTIATE_TEST_SUITE_P(ImageMessageTest, LosslessRoundTrip,
                         ::testing::Combine(::testing::Values(ImageEncoding::kRaw, ImageEncoding::kPng),
                                            ::testing::Values(1, 3, 4)));

// Every zlib level is a PNG the decoder takes; stored (0) is largest, 9 smallest.
TEST(ImageMessageTest, PngCompressionLevelsDecodeToTheSamePixels) {
  Image original = Gradient(28, 28, 1);
  std::vector<size_t> sizes;
  for (int level : {0, 1, 9}) {
    auto message = EncodeImageMessage(Record(original), {.encoding = ImageEncoding::kPng, .png_compression = level});
    ASSERT_OK(message);
    auto decoded = DecodeImageMessage(*message);
    ASSERT_OK(decoded);
    EXPECT_EQ(decoded->image.pixels, original.pixels) << "level " << level;
    sizes.push_back(message->value.size());
  }
  EXPECT_GT(sizes[0], original.pixels.size());  // stored: the pixels and the filter bytes
  EXPECT_LT(sizes[2], sizes[0]);
}

TEST(ImageMessageTest, JpegRoundTripIsCloseAndKeepsColourOrder) {
  Image red{16, 16, 3, {}};
  for (int i = 0; i < 16 * 16; ++i) red.pixels.insert(red.pixels.end(), {220, 20, 30});
  auto decoded = DecodeImageMessage(Encoded(ImageEncoding::kJpeg, red));
  ASSERT_OK(decoded);
  ASSERT_EQ(decoded->image.pixels.size(), red.pixels.size());
  for (size_t i = 0; i < red.pixels.size(); ++i) EXPECT_NEAR(decoded->image.pixels[i], red.pixels[i], 8) << i;
}

TEST(ImageMessageTest, LabelAndProducedAtAreOptional) {
  WireMessage m = Encoded(ImageEncoding::kRaw);
  RemoveHeader(m, "label");
  RemoveHeader(m, "produced-at");
  auto decoded = DecodeImageMessage(m);
  ASSERT_OK(decoded);
  EXPECT_FALSE(decoded->label);
  EXPECT_FALSE(decoded->produced_at_us);
}

// Ids and labels go on into JSON records and BSON documents, whose encoders throw on bytes
// that are not UTF-8 (what the image_message fuzzer found): refused here, with the reason.
TEST(ImageMessageTest, IdsAndLabelsMustBeUtf8) {
  for (const std::string bad : {"\xff", "\xed\xa0\x80", "\xc0\xaf", "ok\xe2\x82"}) {
    for (const char* header : {"id", "label"}) {
      WireMessage m = Encoded(ImageEncoding::kRaw);
      SetHeader(m, header, bad);
      auto decoded = DecodeImageMessage(m);
      ASSERT_FALSE(decoded) << header;
      EXPECT_THAT(decoded.error().message(), ::testing::HasSubstr("not UTF-8"));
    }
  }
  WireMessage m = Encoded(ImageEncoding::kRaw);
  SetHeader(m, "id", "r\xc3\xa9-\xf0\x9f\x93\xb7");
  auto decoded = DecodeImageMessage(m);
  ASSERT_OK(decoded);
  EXPECT_NO_THROW(EncodeInferenceRecord({.id = decoded->id, .image_prediction = "Bag", .producer_id = 1}));
}

TEST(ImageMessageTest, EmptyKeyIsAcceptedFromClientsThatSendNone) {
  WireMessage m = Encoded(ImageEncoding::kPng);
  m.key.clear();
  EXPECT_TRUE(DecodeImageMessage(m));
}

TEST(ImageMessageTest, EncodeRejectsImagesItCannotRepresent) {
  EXPECT_FALSE(EncodeImageMessage(Record(Image{2, 2, 2, std::vector<uint8_t>(8)})));
  EXPECT_FALSE(EncodeImageMessage(Record(Image{2, 2, 1, std::vector<uint8_t>(3)})));
}

struct RejectCase {
  std::string name;
  ImageEncoding encoding;
  std::function<void(WireMessage&)> mutate;
  std::string reason;
  ImageFault fault = ImageFault::kInvalid;  // what infer's dead letter's reason code is made of
};

void PrintTo(const RejectCase& c, std::ostream* os) { *os << c.name; }

class Rejects : public ::testing::TestWithParam<RejectCase> {};

TEST_P(Rejects, WithAOneLineReason) {
  const RejectCase& c = GetParam();
  WireMessage m = Encoded(c.encoding);
  c.mutate(m);
  ImageFault fault = c.fault == ImageFault::kInvalid ? ImageFault::kTooLarge : ImageFault::kInvalid;
  auto decoded = DecodeImageMessage(m, {.max_payload_bytes = 4096, .max_side = 512}, &fault);
  ASSERT_FALSE(decoded) << c.name << " was accepted";
  EXPECT_EQ(fault, c.fault) << c.name;
  EXPECT_EQ(decoded.error().code(), Error::Code::kInvalidInput);
  EXPECT_THAT(decoded.error().message(), HasSubstr(c.reason));
  EXPECT_EQ(decoded.error().message().find('\n'), std::string::npos);
}

std::string Be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

// Rewrites the frame header's height and width (baseline SOF0, as OpenCV writes).
void SetJpegSides(std::string& jpeg, uint32_t rows, uint32_t cols) {
  const size_t sof = jpeg.find("\xff\xc0");
  ASSERT_NE(sof, std::string::npos);
  jpeg.replace(sof + 5, 4, Be32(rows << 16 | cols));
}

std::string ProgressiveJpeg() {
  const Image image = Gradient(28, 28, 1);
  std::vector<uint8_t> out;
  cv::imencode(".jpg", cv::Mat(28, 28, CV_8U, const_cast<uint8_t*>(image.pixels.data())), out,
               {cv::IMWRITE_JPEG_PROGRESSIVE, 1});
  return {out.begin(), out.end()};
}

INSTANTIATE_TEST_SUITE_P(
    ImageMessageTest, Rejects,
    ::testing::Values(
        RejectCase{"MissingId", ImageEncoding::kRaw, [](auto& m) { RemoveHeader(m, "id"); }, "missing header 'id'"},
        RejectCase{"EmptyId", ImageEncoding::kRaw, [](auto& m) { SetHeader(m, "id", ""); }, "missing header 'id'"},
        RejectCase{"MissingProducer", ImageEncoding::kRaw, [](auto& m) { RemoveHeader(m, "producer_id"); },
                   "missing header 'producer_id'"},
        RejectCase{"NonNumericProducer", ImageEncoding::kRaw,
                   [](auto& m) {
                     SetHeader(m, "producer_id", "three");
                     m.key = "three";
                   },
                   "'three' is not"},
        RejectCase{"NegativeProducer", ImageEncoding::kRaw,
                   [](auto& m) {
                     SetHeader(m, "producer_id", "-1");
                     m.key.clear();
                   },
                   "'-1' is not"},
        RejectCase{"ProducerWithTrailingJunk", ImageEncoding::kRaw, [](auto& m) { SetHeader(m, "producer_id", "3x"); },
                   "'3x' is not"},
        RejectCase{"KeyDisagrees", ImageEncoding::kRaw, [](auto& m) { m.key = "4"; }, "key '4' does not match"},
        RejectCase{"MissingContentType", ImageEncoding::kRaw, [](auto& m) { RemoveHeader(m, "content-type"); },
                   "missing header 'content-type'"},
        RejectCase{"UnknownContentType", ImageEncoding::kPng,
                   [](auto& m) { SetHeader(m, "content-type", "image/gif"); }, "unsupported content-type 'image/gif'"},
        RejectCase{"EmptyPayload", ImageEncoding::kRaw, [](auto& m) { m.value.clear(); }, "empty payload",
                   ImageFault::kUndecodable},
        RejectCase{"OversizedPayload", ImageEncoding::kRaw, [](auto& m) { m.value.assign(5000, 'x'); },
                   "5000 bytes exceeds the limit of 4096", ImageFault::kTooLarge},
        RejectCase{"RawWithoutShape", ImageEncoding::kRaw, [](auto& m) { RemoveHeader(m, "shape"); },
                   "raw image without header 'shape'"},
        RejectCase{"RawShapeMismatch", ImageEncoding::kRaw, [](auto& m) { SetHeader(m, "shape", "28x28x3"); },
                   "needs 2352 bytes, payload has 784", ImageFault::kUndecodable},
        RejectCase{"MalformedShape", ImageEncoding::kRaw, [](auto& m) { SetHeader(m, "shape", "28by28"); },
                   "is not HxWxC"},
        RejectCase{"TwoChannelShape", ImageEncoding::kRaw, [](auto& m) { SetHeader(m, "shape", "28x14x2"); },
                   "has 2 channels"},
        RejectCase{"ShapeOverSideLimit", ImageEncoding::kRaw, [](auto& m) { SetHeader(m, "shape", "1x784x1"); },
                   "exceeds the side limit of 512", ImageFault::kTooLarge},
        RejectCase{"PngNotAPng", ImageEncoding::kPng, [](auto& m) { m.value = "GIF89a not a png at all"; },
                   "not a PNG (bad signature)", ImageFault::kUndecodable},
        RejectCase{"PngTruncated", ImageEncoding::kPng, [](auto& m) { m.value.resize(m.value.size() / 2); },
                   "corrupt PNG", ImageFault::kUndecodable},
        RejectCase{"PngCorruptData", ImageEncoding::kPng,
                   [](auto& m) {
                     for (size_t i = 40; i < m.value.size() - 12; ++i) m.value[i] = static_cast<char>(i * 31);
                   },
                   "corrupt PNG", ImageFault::kUndecodable},
        RejectCase{"PngBomb", ImageEncoding::kPng, [](auto& m) { m.value.replace(16, 8, Be32(100000) + Be32(100000)); },
                   "exceeds the side limit", ImageFault::kTooLarge},
        RejectCase{"PngShapeDisagrees", ImageEncoding::kPng, [](auto& m) { SetHeader(m, "shape", "32x32x1"); },
                   "disagrees with the decoded image 28x28x1", ImageFault::kUndecodable},
        RejectCase{"JpegNotAJpeg", ImageEncoding::kJpeg, [](auto& m) { m.value[0] = 'x'; }, "not a JPEG",
                   ImageFault::kUndecodable},
        RejectCase{"JpegTruncated", ImageEncoding::kJpeg, [](auto& m) { m.value.resize(20); }, "corrupt JPEG",
                   ImageFault::kUndecodable},
        RejectCase{"JpegBomb", ImageEncoding::kJpeg, [](auto& m) { SetJpegSides(m.value, 30000, 30000); },
                   "JPEG of 30000x30000 exceeds the side limit of 512", ImageFault::kTooLarge},
        // libjpeg itself would fill the lost part with grey and carry on.
        RejectCase{"JpegCorruptData", ImageEncoding::kJpeg,
                   [](auto& m) { m.value.erase(m.value.find("\xff\xda") + 20, 60); }, "corrupt JPEG: Corrupt JPEG data",
                   ImageFault::kUndecodable},
        RejectCase{"EmptyLabel", ImageEncoding::kRaw, [](auto& m) { SetHeader(m, "label", ""); }, "header 'label'"},
        RejectCase{"ControlCharsInLabel", ImageEncoding::kRaw, [](auto& m) { SetHeader(m, "label", "a\nb"); },
                   "header 'label'"},
        RejectCase{"BadProducedAt", ImageEncoding::kRaw, [](auto& m) { SetHeader(m, "produced-at", "yesterday"); },
                   "header 'produced-at' 'yesterday'"}),
    [](const auto& param_info) { return param_info.param.name; });

// Cameras write 16-bit PNGs; the wire format carries 8 bits, v * 255 / 65535 rounded.
TEST(ImageMessageTest, SixteenBitPngsDecodeToEightBits) {
  for (const int channels : {1, 3}) {
    cv::Mat deep(5, 7, CV_16UC(channels));
    for (int i = 0; i < deep.rows * deep.cols * channels; ++i)
      deep.ptr<uint16_t>()[i] = static_cast<uint16_t>(i * 1543);
    std::vector<uint8_t> png;
    ASSERT_TRUE(cv::imencode(".png", deep, png));
    WireMessage m = Encoded(ImageEncoding::kPng);
    m.value.assign(png.begin(), png.end());
    SetHeader(m, "shape", ShapeString(5, 7, channels));
    auto decoded = DecodeImageMessage(m);
    ASSERT_OK(decoded);
    ASSERT_EQ(decoded->image.channels, channels);
    ASSERT_EQ(decoded->image.pixels.size(), static_cast<size_t>(5 * 7 * channels));
    // OpenCV stores BGR; the wire format is RGB. Either scaling (rounded or high byte) is off by 1 at most.
    for (int i = 0; i < 5 * 7 * channels; ++i) {
      const int pixel = i / channels, c = channels == 3 ? 2 - i % 3 : 0;
      const double expected = deep.ptr<uint16_t>()[pixel * channels + c] / 257.0;
      EXPECT_NEAR(decoded->image.pixels[i], expected, 1.0) << channels << " channels, sample " << i;
    }
  }
}

// A few hundred bytes that declare 30000x30000 pixels: decoded first and checked after, as
// OpenCV would, they take 0.9 GB (2.7 GB in colour) and seconds. A pod's memory limit would kill the service, and the
// restarted one would read the same message again.
TEST(ImageMessageTest, AJpegBombIsRefusedBeforeItsPixelsAreAllocated) {
  WireMessage m = Encoded(ImageEncoding::kJpeg);
  SetJpegSides(m.value, 30000, 30000);
  const long before = iotinfer::testing::MaxRssMiB();
  auto decoded = DecodeImageMessage(m);
  ASSERT_FALSE(decoded);
  EXPECT_THAT(decoded.error().message(), HasSubstr("exceeds the side limit of 4096"));
  EXPECT_LT(iotinfer::testing::MaxRssMiB() - before, 256) << "MiB";
}

std::string PngChunk(const std::string& type, const std::string& data) {
  std::string chunk = Be32(static_cast<uint32_t>(data.size())) + type + data;
  const auto crc = crc32(0, reinterpret_cast<const Bytef*>(chunk.data() + 4), static_cast<uInt>(chunk.size() - 4));
  return chunk + Be32(static_cast<uint32_t>(crc));
}

// A zTXt chunk of 128 KB that inflates to 128 MB, in a valid 28x28 PNG: libspng keeps
// ancillary chunks inflated in memory unless told a limit.
TEST(ImageMessageTest, APngWithACompressedTextBombIsRefused) {
  WireMessage m = Encoded(ImageEncoding::kPng);
  std::string deflated;
  {
    const std::string text(128 << 20, 'a');
    uLongf size = compressBound(static_cast<uLong>(text.size()));
    deflated.resize(size);
    ASSERT_EQ(compress2(reinterpret_cast<Bytef*>(deflated.data()), &size, reinterpret_cast<const Bytef*>(text.data()),
                        static_cast<uLong>(text.size()), 9),
              Z_OK);
    deflated.resize(size);
  }
  const size_t after_ihdr = 8 + 25;  // signature, then IHDR's length, type, 13 bytes and CRC
  m.value.insert(after_ihdr, PngChunk("zTXt", std::string("Comment\0\0", 9) + deflated));
  const long before = iotinfer::testing::MaxRssMiB();
  auto decoded = DecodeImageMessage(m);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error().message(), "PNG with more than 4 MiB of ancillary data (text, ICC profile)");
  EXPECT_LT(iotinfer::testing::MaxRssMiB() - before, 32) << "MiB";
}

// Each progressive scan makes the decoder go over the whole image again; a small payload
// could hold thousands.
TEST(ImageMessageTest, JpegWithTooManyScansIsRefused) {
  WireMessage m = Encoded(ImageEncoding::kJpeg);
  m.value = ProgressiveJpeg();
  ASSERT_OK(DecodeImageMessage(m));
  const size_t last_scan = m.value.rfind("\xff\xda"), end = m.value.rfind("\xff\xd9");
  const std::string scan = m.value.substr(last_scan, end - last_scan);
  for (int i = 0; i < 120; ++i) m.value.insert(end, scan);
  auto decoded = DecodeImageMessage(m);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error().message(), "JPEG with more than 100 scans");
}

}  // namespace
}  // namespace iotinfer
