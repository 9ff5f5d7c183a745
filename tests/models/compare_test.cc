#include "models/compare.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <vector>

namespace iotinfer::models {
namespace {

using ::testing::HasSubstr;

PairedCounts Counts(int64_t b, int64_t c, int64_t both_right = 0) {
  return {.images = b + c + both_right,
          .active_correct = b + both_right,
          .candidate_correct = c + both_right,
          .b = b,
          .c = c};
}

// Equal up to the rounding of sums taken in logs.
void ExpectClose(double actual, double expected) { EXPECT_NEAR(actual, expected, 1e-12 * expected); }

TEST(McNemarTest, ExactTwoSidedValuesByHand) {
  // P(X <= 1) for X ~ Binomial(10, 1/2) is (1 + 10) / 1024; two-sided, twice that.
  ExpectClose(McNemarP(1, 9), 2.0 * 11 / 1024);
  ExpectClose(McNemarP(9, 1), 2.0 * 11 / 1024);
  ExpectClose(McNemarP(2, 8), 2.0 * (1 + 10 + 45) / 1024);
  ExpectClose(McNemarP(0, 5), 2.0 / 32);
  ExpectClose(McNemarP(0, 10), 2.0 / 1024);
  ExpectClose(McNemarP(0, 1), 1);
  // P(X <= 5) for X ~ Binomial(25, 1/2): (1 + 25 + 300 + 2300 + 12650 + 53130) / 2^25.
  ExpectClose(McNemarP(5, 20), 2.0 * 68406 / 33554432);
}

TEST(McNemarTest, NoDisagreementOrAnEvenSplitIsOne) {
  EXPECT_EQ(McNemarP(0, 0), 1);
  EXPECT_EQ(McNemarP(5, 5), 1);
  EXPECT_EQ(McNemarP(1'000'000, 1'000'000), 1);
  ExpectClose(McNemarP(6, 5), 1);  // 2 P(X <= 5) for n = 11 is exactly 1
}

TEST(McNemarTest, MillionsOfDisagreementsAreExactAndQuick) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t b = 1'000'000, c = 1'003'000;
  const double p = McNemarP(b, c);
  // Against the normal approximation with continuity correction, which is close at this n.
  const double z = (static_cast<double>(c - b) - 1) / std::sqrt(static_cast<double>(b + c));
  EXPECT_NEAR(p, std::erfc(z / std::sqrt(2.0)), 0.01 * p);
  EXPECT_GT(p, 0.03);
  EXPECT_LT(p, 0.04);
  EXPECT_LT(McNemarP(0, 2000), 1e-300) << "2 * 2^-2000, below the smallest double";
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

TEST(HolmTest, AdjustsStepDownInTheOrderGiven) {
  const std::vector<double> p = {0.01, 0.04, 0.03, 0.005};
  const std::vector<double> adjusted = HolmAdjust(p);
  ASSERT_EQ(adjusted.size(), 4u);
  EXPECT_DOUBLE_EQ(adjusted[3], 4 * 0.005);
  EXPECT_DOUBLE_EQ(adjusted[0], 3 * 0.01);
  EXPECT_DOUBLE_EQ(adjusted[2], 2 * 0.03);
  EXPECT_DOUBLE_EQ(adjusted[1], 2 * 0.03) << "never below the one before it";
  EXPECT_EQ(HolmAdjust(std::vector<double>{0.6, 0.9}), (std::vector<double>{1, 1}));
  EXPECT_TRUE(HolmAdjust({}).empty());
}

TEST(JudgeTest, BetterOverallAndOnNoDeviceWorsePromotes) {
  const Judgement j = Judge({{1, Counts(2, 20, 100)}, {2, Counts(3, 25, 100)}, {3, Counts(4, 4, 100)}}, 0.05);
  EXPECT_EQ(j.decision, Decision::kBetter);
  EXPECT_EQ(j.overall, Counts(9, 49, 300));
  EXPECT_EQ(j.p_value, McNemarP(9, 49));
  EXPECT_EQ(j.devices_tested, 3);
  ASSERT_EQ(j.devices.size(), 3u);
  EXPECT_EQ(j.devices[0].difference, Difference::kBetter);
  EXPECT_EQ(j.devices[2].difference, Difference::kNone);
  EXPECT_THAT(j.summary, HasSubstr("significantly better overall: right on 49 images"));
  EXPECT_THAT(j.summary, HasSubstr("worse on none of the 3 devices tested"));
}

TEST(JudgeTest, OneDeviceSignificantlyWorseBlocksPromotion) {
  std::map<int, PairedCounts> devices;
  for (int d = 1; d <= 9; ++d) devices[d] = Counts(5, 30, 200);
  devices[10] = Counts(40, 0, 160);  // p = 2^-39, far below 0.05 / 10
  const Judgement j = Judge(devices, 0.05);
  EXPECT_EQ(j.decision, Decision::kWorseOnDevices);
  EXPECT_LT(j.p_value, 1e-10);
  EXPECT_GT(j.overall.c, j.overall.b);
  EXPECT_EQ(j.devices.back().producer_id, 10);
  EXPECT_EQ(j.devices.back().difference, Difference::kWorse);
  EXPECT_LT(j.devices.back().adjusted_p, 0.05);
  EXPECT_THAT(j.summary, HasSubstr("significantly worse on 1 of the 10 devices tested (Holm): device 10 (b 40, c 0"));
}

TEST(JudgeTest, HolmKeepsADeviceWorseByChanceInAFleetFromBlocking) {
  // Device 11 alone: 9 against 1 is p = 0.021, significant at 0.05.
  const Judgement alone = Judge({{11, Counts(9, 1)}}, 0.05);
  EXPECT_EQ(alone.devices[0].difference, Difference::kWorse);
  EXPECT_EQ(alone.decision, Decision::kWorse);

  // Among 11 devices tested, the smallest p must be below 0.05 / 11 for any to count.
  std::map<int, PairedCounts> devices;
  for (int d = 1; d <= 10; ++d) devices[d] = Counts(2, 10, 50);  // each p = 0.0386
  devices[11] = Counts(9, 1, 50);
  const Judgement j = Judge(devices, 0.05);
  EXPECT_EQ(j.devices_tested, 11);
  const DeviceComparison& eleven = j.devices.back();
  EXPECT_LT(eleven.p_value, 0.05);
  EXPECT_GE(eleven.adjusted_p, 0.05);
  EXPECT_EQ(eleven.difference, Difference::kNone);
  EXPECT_EQ(j.decision, Decision::kBetter);
}

TEST(JudgeTest, DevicesWithoutDisagreementAreNotTested) {
  const Judgement j = Judge({{1, Counts(0, 0, 50)}, {2, Counts(0, 30)}, {3, {}}}, 0.05);
  EXPECT_EQ(j.devices_tested, 1);
  EXPECT_EQ(j.devices[0].adjusted_p, 1);
  EXPECT_EQ(j.devices[1].adjusted_p, McNemarP(0, 30)) << "a family of one is not corrected";
  EXPECT_EQ(j.decision, Decision::kBetter);
}

TEST(JudgeTest, NoDifferenceWorseAndNoData) {
  const Judgement same = Judge({{1, Counts(10, 12, 500)}}, 0.05);
  EXPECT_EQ(same.decision, Decision::kNoDifference);
  EXPECT_THAT(same.summary, HasSubstr("no significant difference"));
  const Judgement worse = Judge({{1, Counts(50, 10, 500)}}, 0.05);
  EXPECT_EQ(worse.decision, Decision::kWorse);
  EXPECT_THAT(worse.summary, HasSubstr("significantly worse overall"));
  EXPECT_EQ(Judge({}, 0.05).decision, Decision::kNoData);
  EXPECT_EQ(Judge({{1, {}}}, 0.05).decision, Decision::kNoData);
  // A stricter level: p = 0.021 is no longer enough.
  EXPECT_EQ(Judge({{1, Counts(1, 9)}}, 0.05).decision, Decision::kBetter);
  EXPECT_EQ(Judge({{1, Counts(1, 9)}}, 0.01).decision, Decision::kNoDifference);
}

TEST(PairedCountsTest, AddCountsEachOutcome) {
  PairedCounts c;
  c.Add(true, true);
  c.Add(true, false);
  c.Add(false, true);
  c.Add(false, true);
  c.Add(false, false);
  EXPECT_EQ(c, (PairedCounts{.images = 5, .active_correct = 2, .candidate_correct = 3, .b = 1, .c = 2}));
}

}  // namespace
}  // namespace iotinfer::models
