// `report latency` over a real topic of the broker that the `kafka` ctest fixture starts.
#include <gtest/gtest.h>

#include <filesystem>
#include <opencv2/imgcodecs.hpp>

#include "analytics/latency.h"
#include "core/inference_record.h"
#include "kafka_test_util.h"
#include "test_util.h"

namespace iotinfer::analytics {
namespace {

using iotinfer::testing::UniqueTopic;

TEST(LatencyIntegrationTest, ReadsTheRunsRecordsAndWritesTheCdf) {
  const std::string topic = UniqueTopic("latency");
  ASSERT_OK(kafka::EnsureTopics({}, {{topic, 3}}));
  auto producer = kafka::Producer::Create({});
  ASSERT_OK(producer);
  // Run "r1": latencies 1..200 ms. Run "r2" and junk must not count toward r1.
  for (int i = 1; i <= 200; ++i) {
    InferenceRecord r{.id = "r1-" + std::to_string(i % 4) + "-" + std::to_string(i),
                      .image_prediction = "Bag",
                      .actual_value = "Bag",
                      .producer_id = i % 4,
                      .produced_at_us = 1'000'000'000,
                      .inferred_at_us = 1'000'000'000 + i * 1000};
    ASSERT_OK((*producer)->Send(topic, {std::to_string(r.producer_id), EncodeInferenceRecord(r), {}}));
  }
  InferenceRecord other{.id = "r2-0-1", .image_prediction = "Bag", .produced_at_us = 0, .inferred_at_us = 99'000'000};
  InferenceRecord untimed{.id = "r1-0-untimed", .image_prediction = "Bag", .inferred_at_us = 5};
  ASSERT_OK((*producer)->Send(topic, {"0", EncodeInferenceRecord(other), {}}));
  ASSERT_OK((*producer)->Send(topic, {"0", EncodeInferenceRecord(untimed), {}}));
  ASSERT_OK((*producer)->Send(topic, {"0", "not json", {}}));
  ASSERT_OK((*producer)->Flush());

  iotinfer::testing::TempDir dir;
  LatencyOptions options;
  options.topic = topic;
  options.run_id = "r1";
  options.out_dir = dir.file("charts");
  auto report = ReportLatency(options);
  ASSERT_OK(report);
  EXPECT_EQ(report->records, 201);
  EXPECT_EQ(report->without_times, 1);
  EXPECT_EQ(report->invalid, 1);
  EXPECT_EQ(report->latency.count, 200);
  EXPECT_DOUBLE_EQ(report->latency.p50_ms, 100);
  EXPECT_DOUBLE_EQ(report->latency.p90_ms, 180);
  EXPECT_DOUBLE_EQ(report->latency.p99_ms, 198);
  EXPECT_DOUBLE_EQ(report->latency.max_ms, 200);
  ASSERT_EQ(report->charts.size(), 2u);
  EXPECT_EQ(report->charts[0], dir.file("charts/latency-cdf.png"));
  EXPECT_FALSE(cv::imread(report->charts[0]).empty());
  EXPECT_GT(std::filesystem::file_size(report->charts[1]), 1000u);

  options.run_id.clear();  // every run
  auto all = ReportLatency(options);
  ASSERT_OK(all);
  EXPECT_EQ(all->latency.count, 201);
  EXPECT_DOUBLE_EQ(all->latency.max_ms, 99'000);
}

TEST(LatencyIntegrationTest, AMissingTopicIsNotFound) {
  LatencyOptions options;
  options.topic = UniqueTopic("no-such-topic");
  auto report = ReportLatency(options);
  ASSERT_FALSE(report.has_value());
  EXPECT_EQ(report.error().code(), Error::Code::kNotFound);
}

}  // namespace
}  // namespace iotinfer::analytics
