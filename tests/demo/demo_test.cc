// The embedded demo: no servers, librdkafka's in-process cluster.
#include "demo/demo.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>
#include <vector>

#include "dataset/faults.h"
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
  // Device 3 sends some of its messages damaged (the default faults): infer dead-letters
  // exactly those, and everything else goes all the way.
  const std::vector<dataset::Fault> device3 = dataset::FaultPlan::Parse(kDefaultFaults)->For(3);
  int64_t damaged = 0;
  for (int i = 3; i < 600; i += 8) damaged += dataset::CorruptsMessage(device3, options.seed, 3, i);
  ASSERT_GT(damaged, 0) << "600 images at 2% of device 3's: the demo shows no dead letter";
  const int64_t good = 600 - damaged;
  EXPECT_EQ(report->produced.acknowledged, 600);
  EXPECT_EQ(report->inferred.inferred, good);
  EXPECT_EQ(report->inferred.dead_lettered, damaged);
  EXPECT_EQ(report->sunk.inserted, good);
  EXPECT_EQ(report->sunk.dead_lettered, 0);
  EXPECT_EQ(report->streamed.consumed, good);
  EXPECT_EQ(report->batch.documents, good);
  // Eight devices, each with its own count; the live count ended equal to the batch one.
  ASSERT_EQ(report->batch.results.size(), 8u);
  EXPECT_EQ(report->stream_results.size(), 8u);
  int64_t total = 0;
  for (const auto& r : report->batch.results) total += r.total;
  EXPECT_EQ(total, good);
  for (const char* file :
       {"results.csv", "results.png", "results.svg", "confusion.csv", "confusion.png", "iotinfer.db"}) {
    EXPECT_TRUE(std::filesystem::exists(dir.file(std::string("out/") + file))) << file;
  }
  EXPECT_EQ(report->latency.latency.count, good);
  EXPECT_GT(report->latency.latency.p50_ms, 0);
  ASSERT_EQ(report->latency.charts.size(), 2u);
  for (const auto& chart : report->latency.charts) EXPECT_TRUE(std::filesystem::exists(chart)) << chart;
  ASSERT_FALSE(log.empty());
  EXPECT_NE(log.front().find("in-process mock cluster"), std::string::npos);
  const std::string shown = FormatDemo(*report);
  EXPECT_NE(shown.find(fmt::format("inferred {}", good)), std::string::npos) << shown;
  EXPECT_NE(shown.find("they agree"), std::string::npos) << shown;
  EXPECT_NE(shown.find("incorrect_count"), std::string::npos) << shown;
  // Devices 0 and 7 have no faults by default: 150 clean test images, which the model gets
  // about 92% right, while the faulty devices pull the whole down.
  EXPECT_EQ(report->healthy_producers, (std::vector<int>{0, 7}));
  std::smatch accuracy;
  ASSERT_TRUE(std::regex_search(
      shown, accuracy,
      std::regex(R"(accuracy: ([0-9.]+)% over all devices, ([0-9.]+)% over the devices without faults \(0, 7\))")))
      << shown;
  EXPECT_GT(std::stod(accuracy[2]), 85.0);
  EXPECT_LT(std::stod(accuracy[1]), std::stod(accuracy[2]));
}

// Enough images for verdicts (500 a device): the stream judges the demo's devices, publishes
// the verdicts to its topic, and the demo prints them.
TEST(DemoTest, ItsStreamJudgesTheFaultyDevicesFaultyAndTheHealthyHealthy) {
  iotinfer::testing::TempDir dir;
  DemoOptions options;
  options.images = 4000;
  options.out_dir = dir.file("out");
  auto report = RunDemo(options);
  ASSERT_OK(report);
  std::map<int, Verdict> verdicts;
  for (const DeviceHealth& a : report->verdicts) verdicts[a.producer_id] = a.verdict;
  EXPECT_EQ(verdicts[0], Verdict::kHealthy);
  EXPECT_EQ(verdicts[7], Verdict::kHealthy);
  EXPECT_EQ(verdicts[4], Verdict::kFaulty);  // occluded: about 30% wrong
  EXPECT_EQ(verdicts[6], Verdict::kFaulty);  // noise and blur: about 59% wrong
  const std::string shown = FormatDemo(*report);
  EXPECT_NE(shown.find("device health"), std::string::npos) << shown;
}

// A shadow model is compared with the active one on the same images: here the same network
// under another name, so they agree on every image.
TEST(DemoTest, ComparesAShadowModelWithTheActiveOne) {
  iotinfer::testing::TempDir dir;
  DemoOptions options;
  options.images = 600;
  options.out_dir = dir.file("out");
  options.shadow_model = dir.file("candidate.onnx");
  iotinfer::testing::WriteModelVariant(options.shadow_model, "candidate");
  auto report = RunDemo(options);
  ASSERT_OK(report);
  ASSERT_TRUE(report->comparison);
  const models::Comparison& c = *report->comparison;
  EXPECT_EQ(c.active, *model::ModelId(iotinfer::testing::ModelPath()));
  EXPECT_EQ(c.candidate, *model::ModelId(options.shadow_model));
  ASSERT_FALSE(c.pairs.empty());
  EXPECT_EQ(c.pairs.front().labelled, report->inferred.inferred);
  EXPECT_EQ(c.judgement.overall.b + c.judgement.overall.c, 0);
  EXPECT_EQ(c.judgement.decision, models::Decision::kNoDifference);
  const std::string shown = FormatDemo(*report);
  EXPECT_NE(shown.find("on the devices with faults: "), std::string::npos) << shown;
  EXPECT_NE(shown.find("(+0.00 points, McNemar p = 1)"), std::string::npos) << shown;
}

// The model trained on the devices' faults, in the shadow: significantly better on the demo's
// faulty devices (about 13 points on 20,000 images), and the comparison says so.
TEST(DemoTest, TheAugmentedShadowWinsOnTheFaultyDevices) {
  iotinfer::testing::TempDir dir;
  DemoOptions options;
  options.images = 4000;
  options.out_dir = dir.file("out");
  options.shadow_model = iotinfer::testing::AugmentedModelPath();
  auto report = RunDemo(options);
  ASSERT_OK(report);
  ASSERT_TRUE(report->comparison);
  models::PairedCounts faulty;
  for (const models::DeviceComparison& d : report->comparison->judgement.devices) {
    if (std::ranges::find(report->healthy_producers, d.producer_id) == report->healthy_producers.end()) {
      faulty += d.counts;
      EXPECT_NE(d.difference, models::Difference::kWorse) << "device " << d.producer_id;
    }
  }
  ASSERT_GT(faulty.images, 2500);
  EXPECT_GT(faulty.candidate_correct - faulty.active_correct, faulty.images / 10) << "less than 10 points better";
  EXPECT_LT(models::McNemarP(faulty.b, faulty.c), 1e-6);
}

}  // namespace
}  // namespace iotinfer::demo
