#include "dataset/faults.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "dataset/dataset.h"
#include "test_util.h"

namespace iotinfer::dataset {
namespace {

using ::testing::HasSubstr;

Image Sample() {
  static const Dataset data = *LoadFashionMnist(kFashionMnistDefaultDir, Split::kTest);
  return Image::CopyOf(data.image(0));
}

int Changed(const Image& a, const Image& b) {
  int n = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) n += a.pixels[i] != b.pixels[i];
  return n;
}

TEST(FaultPlanTest, ParsesTheIssueExample) {
  auto plan = FaultPlan::Parse("3:noise=0.4,5:blur=1.5");
  ASSERT_OK(plan);
  EXPECT_EQ(plan->For(3), (std::vector<Fault>{{FaultKind::kNoise, 0.4}}));
  EXPECT_EQ(plan->For(5), (std::vector<Fault>{{FaultKind::kBlur, 1.5}}));
  EXPECT_TRUE(plan->For(4).empty());
}

TEST(FaultPlanTest, RangesWildcardsAliasesAndRepeatsCombineInOrder) {
  auto plan = FaultPlan::Parse(" 2-4:rotation=15 , *:dead-pixels=0.01, 3:occlusion=0.2");
  ASSERT_OK(plan);
  EXPECT_EQ(plan->For(3),
            (std::vector<Fault>{{FaultKind::kRotate, 15}, {FaultKind::kDeadPixels, 0.01}, {FaultKind::kOcclude, 0.2}}));
  EXPECT_EQ(plan->For(9), (std::vector<Fault>{{FaultKind::kDeadPixels, 0.01}}));
  EXPECT_TRUE(FaultPlan::Parse("")->empty());
}

TEST(FaultPlanTest, RejectsMalformedItemsNamingThem) {
  struct Case {
    const char* spec;
    const char* reason;
  } cases[] = {
      {"3noise=0.4", "'3noise=0.4': expected PRODUCERS:KIND=STRENGTH"},
      {"3:nois=0.4", "unknown fault 'nois'"},
      {"x:noise=0.4", "producers must be"},
      {"5-2:noise=0.4", "producers must be"},
      {"3:noise=abc", "strength must be a number in (0, 2]"},
      {"3:noise=0", "strength must be"},
      {"3:occlude=1", "strength must be a number in (0, 1)"},
      {"3:rotate=500", "(0, 180]"},
      {"3:blur=-1", "strength must be"},
  };
  for (const auto& c : cases) {
    auto plan = FaultPlan::Parse(c.spec);
    ASSERT_FALSE(plan) << c.spec;
    EXPECT_THAT(plan.error().message(), HasSubstr(c.reason)) << c.spec;
  }
}

TEST(ApplyFaultsTest, EachKindChangesTheImage) {
  const Image clean = Sample();
  for (auto kind :
       {FaultKind::kNoise, FaultKind::kBlur, FaultKind::kRotate, FaultKind::kOcclude, FaultKind::kDeadPixels}) {
    Image image = clean;
    Fault fault{kind, kind == FaultKind::kRotate ? 30.0 : kind == FaultKind::kBlur ? 1.5 : 0.3};
    ApplyFaults({&fault, 1}, 1, 0, 0, image);
    EXPECT_GT(Changed(clean, image), 20) << FaultName(kind);
  }
}

TEST(ApplyFaultsTest, CorruptDamagesThatShareOfMessagesAndNoPixel) {
  const Image clean = Sample();
  const std::vector<Fault> faults = FaultPlan::Parse("2:corrupt=0.1")->For(2);
  Image image = clean;
  ApplyFaults(faults, 1, 2, 0, image);
  EXPECT_EQ(Changed(clean, image), 0);
  int damaged = 0;
  for (uint64_t i = 0; i < 10000; ++i) {
    const bool hit = CorruptsMessage(faults, 7, 2, i);
    EXPECT_EQ(hit, CorruptsMessage(faults, 7, 2, i)) << "deterministic";
    damaged += hit;
  }
  EXPECT_NEAR(damaged, 1000, 100);  // binomial: sd 30
  EXPECT_FALSE(CorruptsMessage({}, 7, 2, 0));
  EXPECT_FALSE(FaultPlan::Parse("2:corrupt=0"));
  EXPECT_FALSE(FaultPlan::Parse("2:corrupt=1.5"));
}

TEST(ApplyFaultsTest, DeterministicPerSeedProducerAndSequence) {
  Fault noise{FaultKind::kNoise, 0.2};
  auto run = [&](uint64_t seed, int producer, uint64_t sequence) {
    Image image = Sample();
    ApplyFaults({&noise, 1}, seed, producer, sequence, image);
    return image.pixels;
  };
  EXPECT_EQ(run(1, 3, 10), run(1, 3, 10));
  EXPECT_NE(run(1, 3, 10), run(2, 3, 10));
  EXPECT_NE(run(1, 3, 10), run(1, 4, 10));
  EXPECT_NE(run(1, 3, 10), run(1, 3, 11));
}

TEST(ApplyFaultsTest, DeadPixelsStayPutAcrossImagesOfOneProducer) {
  Fault dead{FaultKind::kDeadPixels, 0.05};
  Image white{28, 28, 1, std::vector<uint8_t>(784, 255)};
  Image first = white, second = white;
  ApplyFaults({&dead, 1}, 7, 2, 0, first);
  ApplyFaults({&dead, 1}, 7, 2, 999, second);
  EXPECT_EQ(first.pixels, second.pixels);
  int dark = 784 - static_cast<int>(std::count(first.pixels.begin(), first.pixels.end(), 255));
  EXPECT_GT(dark, 15);  // about 5% of 784 = 39
  EXPECT_LT(dark, 80);
}

TEST(ApplyFaultsTest, OcclusionCoversTheRequestedArea) {
  Fault occlude{FaultKind::kOcclude, 0.25};
  Image white{28, 28, 3, std::vector<uint8_t>(784 * 3, 255)};
  ApplyFaults({&occlude, 1}, 1, 0, 0, white);
  EXPECT_EQ(std::count(white.pixels.begin(), white.pixels.end(), 0), 14 * 14 * 3);
}

TEST(ApplyFaultsTest, StrongerNoiseHurtsMore) {
  const Image clean = Sample();
  auto distance = [&](double strength) {
    Image image = clean;
    Fault f{FaultKind::kNoise, strength};
    ApplyFaults({&f, 1}, 1, 0, 0, image);
    double sum = 0;
    for (size_t i = 0; i < image.pixels.size(); ++i) sum += std::abs(image.pixels[i] - clean.pixels[i]);
    return sum;
  };
  EXPECT_LT(distance(0.05), distance(0.5));
}

}  // namespace
}  // namespace iotinfer::dataset
