// The embedded demo: no servers, librdkafka's in-process cluster.
#include "demo/demo.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "test_util.h"

namespace iotinfer::demo {
namespace {

TEST(DemoTest, RunsTheWholePipelineOnTheMockCluster) {
  iotinfer::testing::TempDir dir;
  DemoOptions options;
  options.images = 600;
  options.out_dir = dir.file("out");
  std::vector<std::string> log;
  auto report = RunDemo(options, [&](const std::string& line) { log.push_back(line); });
  ASSERT_OK(report);
  EXPECT_TRUE(report->embedded);
  EXPECT_EQ(report->produced.acknowledged, 600);
  EXPECT_EQ(report->inferred.inferred, 600);
  EXPECT_EQ(report->inferred.dead_lettered, 0);
  EXPECT_EQ(report->latency.latency.count, 600);
  EXPECT_GT(report->latency.latency.p50_ms, 0);
  ASSERT_EQ(report->latency.charts.size(), 2u);
  for (const auto& chart : report->latency.charts) EXPECT_TRUE(std::filesystem::exists(chart)) << chart;
  ASSERT_FALSE(log.empty());
  EXPECT_NE(log.front().find("in-process mock cluster"), std::string::npos);
  EXPECT_NE(FormatDemo(*report).find("inferred 600"), std::string::npos) << FormatDemo(*report);
}

}  // namespace
}  // namespace iotinfer::demo
