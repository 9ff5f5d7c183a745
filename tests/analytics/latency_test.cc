#include "analytics/latency.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace iotinfer::analytics {
namespace {

TEST(LatencyTest, NearestRankPercentilesOfOneToAHundred) {
  std::vector<double> ms(100);
  for (int i = 0; i < 100; ++i) ms[i] = i + 1;
  std::shuffle(ms.begin(), ms.end(), std::mt19937(3));
  const LatencySummary s = SummarizeLatency(ms);
  EXPECT_EQ(s.count, 100);
  EXPECT_EQ(s.p50_ms, 50);
  EXPECT_EQ(s.p90_ms, 90);
  EXPECT_EQ(s.p99_ms, 99);
  EXPECT_EQ(s.max_ms, 100);
  EXPECT_DOUBLE_EQ(s.mean_ms, 50.5);
  EXPECT_TRUE(std::is_sorted(s.sorted_ms.begin(), s.sorted_ms.end()));
}

TEST(LatencyTest, SmallSamplesTakeTheSampleAtOrAboveTheRank) {
  const LatencySummary one = SummarizeLatency({7.5});
  EXPECT_EQ(one.p50_ms, 7.5);
  EXPECT_EQ(one.p99_ms, 7.5);
  const LatencySummary three = SummarizeLatency({30, 10, 20});
  EXPECT_EQ(three.p50_ms, 20);  // rank ceil(1.5) = 2
  EXPECT_EQ(three.p90_ms, 30);
}

TEST(LatencyTest, EmptyIsAllZero) {
  const LatencySummary s = SummarizeLatency({});
  EXPECT_EQ(s.count, 0);
  EXPECT_EQ(s.max_ms, 0);
  EXPECT_TRUE(s.sorted_ms.empty());
}

TEST(LatencyTest, FormatNamesWhatWasLeftOut) {
  LatencyReport report;
  report.latency = SummarizeLatency({1.234, 50, 400});
  report.records = 5;
  report.without_times = 2;
  report.invalid = 1;
  report.charts = {"out/latency-cdf.png"};
  const std::string text = FormatLatency(report);
  EXPECT_NE(text.find("over 3 images: p50 50 ms"), std::string::npos) << text;
  EXPECT_NE(text.find("max 400 ms"), std::string::npos) << text;
  EXPECT_NE(text.find("2 records without produced_at"), std::string::npos) << text;
  EXPECT_NE(text.find("1 values were not inference records"), std::string::npos) << text;
  EXPECT_NE(text.find("chart: out/latency-cdf.png"), std::string::npos) << text;
}

}  // namespace
}  // namespace iotinfer::analytics
