// Bad input must never crash a service: thousands of deterministic random mutations of valid
// `images` and `inferences` messages, each either decoded into a record that round-trips or
// refused with a one-line InvalidInput reason. Under ./dev sanitize these also check that no
// mutation makes a decoder read or write out of bounds.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/image_message.h"
#include "core/inference_record.h"

namespace iotinfer {
namespace {

constexpr int kMutationsPerSeed = 3000;

class Mutator {
 public:
  explicit Mutator(uint32_t seed) : rng_(seed) {}

  size_t Below(size_t n) { return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  char AnyByte() { return static_cast<char>(Below(256)); }

  // One to three edits of the kinds that corrupt transports and careless clients produce.
  void Bytes(std::string& s, std::string_view alphabet = {}) {
    const size_t edits = 1 + Below(3);
    for (size_t e = 0; e < edits; ++e) {
      const size_t at = Below(s.size() + 1);
      const char c = alphabet.empty() ? AnyByte() : alphabet[Below(alphabet.size())];
      switch (Below(6)) {
        case 0:
          if (at < s.size()) s[at] = static_cast<char>(s[at] ^ (1 << Below(8)));
          break;
        case 1:
          if (at < s.size()) s[at] = c;
          break;
        case 2:
          s.insert(at, 1, c);
          break;
        case 3:
          s.erase(at, 1 + Below(8));
          break;
        case 4:
          s.resize(at);
          break;
        default:
          s.insert(at, s.substr(Below(s.size() + 1), Below(16)));
          break;
      }
    }
  }

  // A value some client might put in a numeric or shape header.
  std::string HeaderValue() {
    static const std::vector<std::string> kOdd = {"",
                                                  " ",
                                                  "-1",
                                                  "0",
                                                  "3 ",
                                                  " 3",
                                                  "+3",
                                                  "0x10",
                                                  "1e3",
                                                  "3.0",
                                                  "99999999999999999999",
                                                  "2147483648",
                                                  "-9223372036854775808",
                                                  "28x28",
                                                  "28x28x2",
                                                  "0x28x1",
                                                  "28x-28x1",
                                                  "100000x100000x1",
                                                  "4097x1x1",
                                                  "28x28x1x1",
                                                  "x28x1",
                                                  "28xx28x1",
                                                  "28x28x1\n",
                                                  "\xff\xfe",
                                                  std::string("2\0"
                                                              "8x28x1",
                                                              7)};
    if (Below(3) == 0) {
      std::string random(Below(24), ' ');
      for (char& c : random) c = AnyByte();
      return random;
    }
    return kOdd[Below(kOdd.size())];
  }

 private:
  std::mt19937 rng_;
};

void ExpectOneLineReason(const Error& error) {
  EXPECT_EQ(error.code(), Error::Code::kInvalidInput) << error.message();
  EXPECT_FALSE(error.message().empty());
  EXPECT_EQ(error.message().find('\n'), std::string::npos) << error.message();
}

ImageRecord Sample(int channels) {
  Image image{28, 28, channels, std::vector<uint8_t>(28 * 28 * static_cast<size_t>(channels))};
  for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = static_cast<uint8_t>(i * 37 % 251);
  return {"img-7", 5, std::string("Bag"), int64_t{1700000000000000}, std::move(image)};
}

// What a decoded record must satisfy, whatever input it came from.
void ExpectConsistent(const ImageRecord& record, const DecodeLimits& limits) {
  const Image& image = record.image;
  EXPECT_FALSE(record.id.empty());
  EXPECT_GE(record.producer_id, 0);
  EXPECT_TRUE(image.rows > 0 && image.cols > 0 && image.rows <= limits.max_side && image.cols <= limits.max_side)
      << image.rows << "x" << image.cols;
  EXPECT_TRUE(image.channels == 1 || image.channels == 3 || image.channels == 4) << image.channels;
  EXPECT_EQ(image.pixels.size(), static_cast<size_t>(image.rows) * image.cols * image.channels);
  // What was accepted can be sent on losslessly.
  auto again = EncodeImageMessage(record, {.encoding = ImageEncoding::kRaw});
  ASSERT_TRUE(again) << again.error().message();
  auto back = DecodeImageMessage(*again, limits);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->id, record.id);
  EXPECT_EQ(back->producer_id, record.producer_id);
  EXPECT_EQ(back->label, record.label);
  EXPECT_EQ(back->produced_at_us, record.produced_at_us);
  EXPECT_EQ(back->image.pixels, image.pixels);
}

class ImageMessageMutations : public ::testing::TestWithParam<std::tuple<ImageEncoding, int>> {};

TEST_P(ImageMessageMutations, DecodeOrRefuseWithAReasonNeverCrash) {
  const auto [encoding, channels] = GetParam();
  auto valid = EncodeImageMessage(Sample(channels), {.encoding = encoding});
  ASSERT_TRUE(valid) << valid.error().message();
  const DecodeLimits limits{.max_payload_bytes = 64 * 1024, .max_side = 512};
  ASSERT_TRUE(DecodeImageMessage(*valid, limits));

  Mutator mutate(static_cast<uint32_t>(1000 * static_cast<int>(encoding) + channels));
  int accepted = 0, refused = 0;
  for (int i = 0; i < kMutationsPerSeed; ++i) {
    WireMessage m = *valid;
    const size_t what = mutate.Below(10);
    if (what < 6) {
      mutate.Bytes(m.value);
    } else if (what < 8) {
      std::string& value = m.headers[mutate.Below(m.headers.size())].value;
      if (mutate.Below(2)) {
        value = mutate.HeaderValue();
      } else {
        mutate.Bytes(value);
      }
    } else if (what == 8) {
      m.headers.erase(m.headers.begin() + static_cast<std::ptrdiff_t>(mutate.Below(m.headers.size())));
    } else {
      m.key = mutate.HeaderValue();
    }
    const auto decoded = DecodeImageMessage(m, limits);
    if (decoded) {
      ++accepted;
      ExpectConsistent(*decoded, limits);
    } else {
      ++refused;
      ExpectOneLineReason(decoded.error());
    }
    if (HasFailure()) FAIL() << "mutation " << i << " of seed " << static_cast<int>(encoding) << "/" << channels;
  }
  // Both outcomes occur, or the mutations tried too little (or the decoder accepts anything).
  EXPECT_GT(accepted, 0);
  EXPECT_GT(refused, kMutationsPerSeed / 4);
}

INSTANTIATE_TEST_SUITE_P(ImageMessageTest, ImageMessageMutations,
                         ::testing::Values(std::tuple{ImageEncoding::kPng, 1}, std::tuple{ImageEncoding::kPng, 3},
                                           std::tuple{ImageEncoding::kJpeg, 3}, std::tuple{ImageEncoding::kRaw, 1}));

TEST(InferenceRecordMutations, DecodeOrRefuseWithAReasonNeverCrash) {
  const InferenceRecord sample{.id = "run-1-42",
                               .image_prediction = "Sneaker",
                               .actual_value = "Sandal",
                               .producer_id = 12,
                               .confidence = 0.75,
                               .model = "fmnist-cnn-f717b7aa",
                               .produced_at_us = 1700000000000000,
                               .inferred_at_us = 1700000000002500};
  const std::string valid = EncodeInferenceRecord(sample);
  ASSERT_TRUE(DecodeInferenceRecord(valid));
  Mutator mutate(42);
  int accepted = 0, refused = 0;
  for (int i = 0; i < 4 * kMutationsPerSeed; ++i) {
    std::string json = valid;
    // Half the edits use JSON's own characters, which get further into the parser.
    mutate.Bytes(json, mutate.Below(2) ? std::string_view(R"({}[]":,-.0123456789eEtrufalsn\ )") : std::string_view());
    const auto decoded = DecodeInferenceRecord(json);
    if (decoded) {
      ++accepted;
      EXPECT_FALSE(decoded->id.empty());
      EXPECT_GE(decoded->producer_id, 0);
      // An accepted record is written on as it was read.
      auto again = DecodeInferenceRecord(EncodeInferenceRecord(*decoded));
      ASSERT_TRUE(again) << again.error().message() << "\n" << json;
      EXPECT_EQ(*again, *decoded) << json;
    } else {
      ++refused;
      ExpectOneLineReason(decoded.error());
    }
    if (HasFailure()) FAIL() << "mutation " << i << ": " << json;
  }
  EXPECT_GT(accepted, 0);
  EXPECT_GT(refused, kMutationsPerSeed);
}

}  // namespace
}  // namespace iotinfer
