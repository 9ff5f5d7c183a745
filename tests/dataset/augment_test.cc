#include "dataset/augment.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include "test_util.h"

namespace iotinfer::dataset {
namespace {

using iotinfer::testing::TempDir;
using ::testing::HasSubstr;

// The first `n` Fashion-MNIST test images.
Dataset FirstTestImages(size_t n) {
  static const Dataset test = *LoadFashionMnist(kFashionMnistDefaultDir, Split::kTest);
  Dataset out = test;
  out.labels.resize(n);
  out.pixels.resize(n * out.image_bytes());
  return out;
}

const StrengthRange& RangeOf(FaultKind kind) {
  for (const auto& range : kAugmentRanges) {
    if (range.kind == kind) return range;
  }
  ADD_FAILURE() << "no range for " << FaultName(kind);
  return kAugmentRanges[0];
}

TEST(AugmentTest, DrawsEveryKindWithinItsRangeAndSometimesTwo) {
  const AugmentOptions options{.seed = 7};
  std::map<FaultKind, int> kinds;
  std::set<int> producers;
  int two = 0;
  constexpr int kDraws = 10000;
  for (uint64_t image = 0; image < kDraws; ++image) {
    const AugmentDraw draw = DrawAugmentation(options, image);
    ASSERT_GE(draw.faults.size(), 1u);
    ASSERT_LE(draw.faults.size(), 2u);
    if (draw.faults.size() == 2) {
      EXPECT_NE(draw.faults[0].kind, draw.faults[1].kind) << image;
      ++two;
    }
    for (const Fault& fault : draw.faults) {
      const StrengthRange& range = RangeOf(fault.kind);
      EXPECT_GE(fault.strength, range.low) << FaultName(fault.kind);
      EXPECT_LE(fault.strength, range.high) << FaultName(fault.kind);
      ++kinds[fault.kind];
    }
    EXPECT_EQ(draw.sequence, image);
    producers.insert(draw.producer_id);
  }
  // Uniform over the five kinds, a quarter of the images with a second fault.
  ASSERT_EQ(kinds.size(), 5u);
  for (const auto& [kind, count] : kinds) EXPECT_NEAR(count, kDraws * 1.25 / 5, 300) << FaultName(kind);
  EXPECT_NEAR(two, kDraws / 4, 300);
  EXPECT_GT(producers.size(), kDraws * 0.99);  // dead pixels fall elsewhere on each image
  EXPECT_TRUE(DrawAugmentation({.second_fault_probability = 0}, 3).faults.size() == 1);
}

// The demo's faults (demo.h kDefaultFaults) lie inside the ranges, with room beyond them.
TEST(AugmentTest, RangesCoverTheDemosFaults) {
  const std::pair<FaultKind, double> demo[] = {
      {FaultKind::kNoise, 0.08}, {FaultKind::kNoise, 0.15},  {FaultKind::kBlur, 1.0},      {FaultKind::kBlur, 1.4},
      {FaultKind::kRotate, 20},  {FaultKind::kOcclude, 0.2}, {FaultKind::kDeadPixels, 0.1}};
  for (const auto& [kind, strength] : demo) {
    EXPECT_LT(RangeOf(kind).low, strength) << FaultName(kind);
    EXPECT_GT(RangeOf(kind).high, strength * 1.2) << FaultName(kind);
  }
}

TEST(AugmentTest, CopiesAreWhatDevicesSendAndDeterministic) {
  const Dataset data = FirstTestImages(50);
  const AugmentOptions options{.copies = 3, .seed = 11};
  auto augmented = Augment(data, options);
  ASSERT_OK(augmented);
  ASSERT_EQ(augmented->size(), 150u);
  EXPECT_EQ(augmented->rows, 28);
  EXPECT_EQ(augmented->class_names, data.class_names);
  int changed = 0;
  for (size_t image = 0; image < augmented->size(); ++image) {
    const size_t original = image % data.size();
    EXPECT_EQ(augmented->labels[image], data.labels[original]) << image;
    Image expected = Image::CopyOf(data.image(original));
    const AugmentDraw draw = DrawAugmentation(options, image);
    ApplyFaults(draw.faults, options.seed, draw.producer_id, draw.sequence, expected);
    const ImageView got = augmented->image(image);
    ASSERT_TRUE(std::ranges::equal(got.pixels, expected.pixels)) << image;
    changed += !std::ranges::equal(got.pixels, data.image(original).pixels);
  }
  EXPECT_GT(changed, 140);  // weak faults on a black corner may change nothing

  auto again = Augment(data, options);
  ASSERT_OK(again);
  EXPECT_EQ(again->pixels, augmented->pixels);
  auto other = Augment(data, {.copies = 3, .seed = 12});
  ASSERT_OK(other);
  EXPECT_NE(other->pixels, augmented->pixels);
  EXPECT_EQ(other->labels, augmented->labels);
}

TEST(AugmentTest, RefusesBadOptions) {
  const Dataset data = FirstTestImages(2);
  auto none = Augment(data, {.copies = 0});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), Error::Code::kInvalidInput);
  EXPECT_THAT(none.error().message(), HasSubstr("copies must be at least 1"));
  auto probability = Augment(data, {.second_fault_probability = 1.5});
  ASSERT_FALSE(probability);
  EXPECT_THAT(probability.error().message(), HasSubstr("must be in [0, 1], got 1.5"));
}

TEST(AugmentTest, WrittenFilesLoadBackAsTheCopies) {
  TempDir dir;
  AugmentFilesOptions options;
  options.split = "test";
  options.augment = {.copies = 2, .seed = 5};
  options.limit = 300;
  options.out_dir = dir.file("aug");
  auto text = WriteAugmented(options);
  ASSERT_OK(text);
  EXPECT_THAT(*text, HasSubstr("wrote 600 images (2 copies of 300 fashion-mnist test images, seed 5)"));
  EXPECT_THAT(*text, HasSubstr("have two faults"));

  auto loaded = LoadFashionMnist(dir.file("aug"), Split::kTest);
  ASSERT_OK(loaded);
  auto expected = Augment(FirstTestImages(300), options.augment);
  ASSERT_OK(expected);
  EXPECT_EQ(loaded->rows, 28);
  EXPECT_EQ(loaded->cols, 28);
  EXPECT_EQ(loaded->labels, expected->labels);
  EXPECT_EQ(loaded->pixels, expected->pixels);
  EXPECT_FALSE(std::filesystem::exists(dir.file("aug/t10k-images-idx3-ubyte.gz.tmp")));

  std::ifstream provenance(dir.file("aug/augment.json"));
  const std::string json{std::istreambuf_iterator<char>(provenance), std::istreambuf_iterator<char>()};
  for (const char* field : {R"("split": "test")", R"("source_images": 300)", R"("copies": 2)", R"("seed": 5)",
                            R"("second_fault_probability": 0.25)", R"("rotate": [5, 40])"}) {
    EXPECT_THAT(json, HasSubstr(field));
  }
}

}  // namespace
}  // namespace iotinfer::dataset
