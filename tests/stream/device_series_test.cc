// The per-device series of the stream's /metrics: how many there are, whatever the fleet.
#include "stream/device_series.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <regex>
#include <set>
#include <string>

#include "test_util.h"

namespace iotinfer::stream {
namespace {

using ::testing::HasSubstr;

// The producer_id labels of `metric`'s series in a scrape.
std::set<std::string> Labels(const std::string& scrape, const std::string& metric) {
  std::set<std::string> out;
  const std::regex series(metric + R"re(\{producer_id="([^"]*)"\} )re");
  for (auto it = std::sregex_iterator(scrape.begin(), scrape.end(), series); it != std::sregex_iterator(); ++it) {
    out.insert((*it)[1]);
  }
  return out;
}

// A fleet whose devices 0..faulty-1 are faulty at 30% and the rest healthy at about 5%.
std::map<int, DeviceHealth> Fleet(int devices, int faulty, unsigned seed) {
  std::mt19937 random(seed);
  std::uniform_real_distribution<double> jitter(0.03, 0.07);
  std::map<int, DeviceHealth> verdicts;
  for (int p = 0; p < devices; ++p) {
    const bool bad = p < faulty;
    verdicts[p] = {.producer_id = p,
                   .verdict = bad ? Verdict::kFaulty : Verdict::kHealthy,
                   .labelled = 400,
                   .incorrect = bad ? 120 : 20,
                   .error_rate = bad ? 0.3 : jitter(random)};
  }
  return verdicts;
}

ProducerCounts Counted(int producer) { return {.producer_id = producer, .incorrect_count = 7, .total = 100}; }

class DeviceSeriesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = ops::Endpoints::Start({}, DeviceSeries::Specs());
    ASSERT_OK(started);
    endpoints_ = std::move(*started);
  }
  std::unique_ptr<ops::Endpoints> endpoints_;
};

TEST_F(DeviceSeriesTest, AMillionDevicesGiveAtMostTopPlusOneSeriesAndTheFaultyAreAmongThem) {
  DeviceSeries series(100);
  const std::map<int, DeviceHealth> fleet = Fleet(1'000'000, 40, 1);
  series.Choose(fleet, Counted);
  series.Publish(*endpoints_, fleet);
  const std::string scrape = endpoints_->Scrape();
  for (const char* metric : {DeviceSeries::kImages, DeviceSeries::kIncorrect, DeviceSeries::kErrorRate}) {
    const std::set<std::string> labels = Labels(scrape, metric);
    EXPECT_EQ(labels.size(), 101u) << metric;
    EXPECT_TRUE(labels.contains("other")) << metric;
    for (int p = 0; p < 40; ++p) EXPECT_TRUE(labels.contains(std::to_string(p))) << metric << " " << p;
  }
  EXPECT_EQ(Labels(scrape, DeviceSeries::kVerdict).size(), 100u) << "other has no verdict";
  EXPECT_THAT(scrape, HasSubstr("iotinfer_producer_verdict{producer_id=\"7\"} 3\n"));
  EXPECT_THAT(scrape, HasSubstr("iotinfer_producer_error_rate{producer_id=\"7\"} 0.3\n"));
  EXPECT_THAT(scrape, HasSubstr("iotinfer_producer_images_total{producer_id=\"7\"} 100\n")) << "its total so far";
  // The others' pooled window rate: 999,940 devices at 20 of 400.
  EXPECT_THAT(scrape, HasSubstr("iotinfer_producer_error_rate{producer_id=\"other\"} 0.05\n"));
}

TEST_F(DeviceSeriesTest, CountsGoToTheDeviceOrToOtherAndNeverFall) {
  DeviceSeries series(2);
  std::map<int, DeviceHealth> fleet = Fleet(10, 1, 2);
  series.Choose(fleet, Counted);
  ASSERT_EQ(series.labelled(), 2u);
  for (int i = 0; i < 10; ++i) series.Count(0, i < 3);  // labelled: 100 + 10
  for (int i = 0; i < 5; ++i) series.Count(9, true);    // only a label if among the worst two
  series.Publish(*endpoints_, fleet);
  std::string scrape = endpoints_->Scrape();
  EXPECT_THAT(scrape, HasSubstr("iotinfer_producer_images_total{producer_id=\"0\"} 110\n"));
  EXPECT_THAT(scrape, HasSubstr("iotinfer_producer_incorrect_total{producer_id=\"0\"} 10\n"));

  // Device 5 turns faulty: it takes a label from a healthy one; "other" keeps what it counted.
  const std::set<std::string> before = Labels(scrape, DeviceSeries::kImages);
  fleet[5].verdict = Verdict::kFaulty;
  fleet[5].error_rate = 0.4;
  series.Choose(fleet, Counted);
  series.Publish(*endpoints_, fleet);
  scrape = endpoints_->Scrape();
  const std::set<std::string> after = Labels(scrape, DeviceSeries::kImages);
  EXPECT_EQ(after, (std::set<std::string>{"0", "5", "other"})) << "before: " << ::testing::PrintToString(before);
  EXPECT_THAT(scrape, HasSubstr("iotinfer_producer_images_total{producer_id=\"0\"} 110\n"));
  EXPECT_THAT(scrape, HasSubstr("iotinfer_producer_images_total{producer_id=\"5\"} 100\n"));
}

TEST_F(DeviceSeriesTest, HealthyDevicesNearTheBoundaryKeepTheirLabels) {
  DeviceSeries series(50);
  std::map<int, DeviceHealth> fleet = Fleet(10'000, 5, 3);
  series.Choose(fleet, Counted);
  series.Publish(*endpoints_, fleet);
  const std::set<std::string> first = Labels(endpoints_->Scrape(), DeviceSeries::kImages);
  // The healthy devices' rates move a little, as a window's do from one look to the next: the
  // order of the worst ones changes, not who they are.
  std::mt19937 random(4);
  std::uniform_real_distribution<double> drift(-1e-4, 1e-4);
  for (auto& [p, d] : fleet) d.error_rate += d.verdict == Verdict::kHealthy ? drift(random) : 0;
  std::vector<std::pair<double, int>> healthy;
  for (const auto& [p, d] : fleet) {
    if (d.verdict == Verdict::kHealthy) healthy.emplace_back(-d.error_rate, p);
  }
  std::ranges::sort(healthy);
  size_t still_worst = 0;
  for (size_t i = 0; i < 45; ++i) still_worst += first.contains(std::to_string(healthy[i].second));
  ASSERT_LT(still_worst, 45u) << "the drift must change the worst 45, or this shows nothing";

  series.Choose(fleet, Counted);
  series.Publish(*endpoints_, fleet);
  EXPECT_EQ(Labels(endpoints_->Scrape(), DeviceSeries::kImages), first);
}

TEST_F(DeviceSeriesTest, NoneShownLeavesOnlyOther) {
  DeviceSeries series(0);
  const std::map<int, DeviceHealth> fleet = Fleet(100, 3, 5);
  series.Choose(fleet, Counted);
  series.Count(1, true);
  series.Publish(*endpoints_, fleet);
  const std::string scrape = endpoints_->Scrape();
  EXPECT_EQ(Labels(scrape, DeviceSeries::kImages), std::set<std::string>{"other"});
  EXPECT_THAT(scrape, HasSubstr("iotinfer_producer_images_total{producer_id=\"other\"} 1\n"));
}

}  // namespace
}  // namespace iotinfer::stream
