// libFuzzer target: DecodeImageMessage on an `images` message whose headers, key and value all
// come from the input, then what `infer` does with a decoded record. Layout, as
// FuzzedDataProvider reads it (fuzz/make_corpus.py writes it):
//   last byte         which parts are present: bit 0 id, 1 producer_id, 2 content-type, 3 shape,
//                     4 label, 5 produced-at, 6 key, 7 an extra header (name and value fuzzed)
//                     placed first, so that it can shadow a real one
//   the byte before   the content type, modulo 4: image/png, image/jpeg, application/x-raw-u8,
//                     or a fuzzed string
//   from the front    the present strings: extra name, extra value, id, producer_id,
//                     content-type (when fuzzed), shape, label, produced-at, key; each ends
//                     with a backslash and one other byte (a doubled backslash is one backslash)
//   the rest          the value
// Checked: a rejection is InvalidInput with a one-line reason; a decoded image is the size its
// header says; the record survives a PNG encode and decode unchanged; the inference record
// `infer` would write for it encodes (no exception) and decodes to the same record.
#include "core/image_message.h"

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>

#include "core/inference_record.h"
#include "fuzz/image_checks.h"

namespace iotinfer::fuzz {
namespace {

constexpr size_t kMaxString = 512;

WireMessage MessageFrom(FuzzedDataProvider& input) {
  const auto present = input.ConsumeIntegral<uint8_t>();
  const auto content_type = input.ConsumeIntegral<uint8_t>() % 4;
  auto has = [&](int bit) { return (present >> bit & 1) != 0; };
  WireMessage message;
  auto add = [&](std::string_view name, std::string value) {
    message.headers.push_back({std::string(name), std::move(value)});
  };
  if (has(7)) {
    std::string name = input.ConsumeRandomLengthString(kMaxString);
    add(name, input.ConsumeRandomLengthString(kMaxString));
  }
  if (has(0)) add(image_headers::kId, input.ConsumeRandomLengthString(kMaxString));
  if (has(1)) add(image_headers::kProducerId, input.ConsumeRandomLengthString(kMaxString));
  if (has(2)) {
    static constexpr ImageEncoding kEncodings[] = {ImageEncoding::kPng, ImageEncoding::kJpeg, ImageEncoding::kRaw};
    add(image_headers::kContentType, content_type < 3 ? std::string(ContentType(kEncodings[content_type]))
                                                      : input.ConsumeRandomLengthString(kMaxString));
  }
  if (has(3)) add(image_headers::kShape, input.ConsumeRandomLengthString(kMaxString));
  if (has(4)) add(image_headers::kLabel, input.ConsumeRandomLengthString(kMaxString));
  if (has(5)) add(image_headers::kProducedAt, input.ConsumeRandomLengthString(kMaxString));
  if (has(6)) message.key = input.ConsumeRandomLengthString(kMaxString);
  message.value = input.ConsumeRemainingBytesAsString();
  return message;
}

void CheckPngRoundTrip(const ImageRecord& record) {
  auto encoded = EncodeImageMessage(record, {.encoding = ImageEncoding::kPng});
  FUZZ_CHECK(encoded.has_value(), "a decoded image does not encode: " + encoded.error().message());
  // A PNG of the decoded pixels may be larger than the payload that carried them.
  auto decoded = DecodeImageMessage(*encoded, {.max_payload_bytes = SIZE_MAX});
  FUZZ_CHECK(decoded.has_value(), "a decoded image, encoded again, does not decode: " + decoded.error().message());
  FUZZ_CHECK(decoded->id == record.id && decoded->producer_id == record.producer_id && decoded->label == record.label &&
                 decoded->produced_at_us == record.produced_at_us,
             "headers changed in a PNG round trip");
  const Image& a = record.image;
  const Image& b = decoded->image;
  FUZZ_CHECK(a.rows == b.rows && a.cols == b.cols && a.channels == b.channels && a.pixels == b.pixels,
             "pixels changed in a PNG round trip");
}

// As infer/infer.cc builds it.
void CheckInferenceRecord(const ImageRecord& image) {
  const InferenceRecord record{.id = image.id,
                               .image_prediction = "Bag",
                               .actual_value = image.label,
                               .producer_id = image.producer_id,
                               .confidence = 0.5,
                               .model = "fuzz",
                               .produced_at_us = image.produced_at_us,
                               .inferred_at_us = 1};
  std::string json;
  try {
    json = EncodeInferenceRecord(record);
  } catch (const std::exception& e) {
    Fail(__FILE__, __LINE__, "EncodeInferenceRecord", std::string("threw for a decoded image message: ") + e.what());
  }
  auto decoded = DecodeInferenceRecord(json);
  FUZZ_CHECK(decoded.has_value(),
             "the inference record of a decoded image does not decode: " + decoded.error().message());
  FUZZ_CHECK(*decoded == record, "the inference record of a decoded image changed in a round trip: " + json);
}

}  // namespace
}  // namespace iotinfer::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace iotinfer;
  FuzzedDataProvider input(data, size);
  const WireMessage message = fuzz::MessageFrom(input);
  const DecodeLimits limits;
  auto record = DecodeImageMessage(message, limits);
  if (!record) {
    fuzz::CheckRejection(record.error());
    return 0;
  }
  FUZZ_CHECK(record->id == *message.FindHeader(image_headers::kId), "id");
  fuzz::CheckImage(record->image, limits.max_side, {1, 3, 4});
  fuzz::CheckPngRoundTrip(*record);
  fuzz::CheckInferenceRecord(*record);
  return 0;
}
