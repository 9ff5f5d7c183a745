// `produce` against the real broker that the `kafka` ctest fixture starts.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "core/labels.h"
#include "kafka_test_util.h"
#include "produce/produce.h"
#include "test_util.h"

namespace iotinfer::produce {
namespace {

using iotinfer::testing::ReadAll;
using iotinfer::testing::ReadAllTimed;
using iotinfer::testing::UniqueTopic;

TEST(ProduceIntegrationTest, DevicesSendEveryImageOnceWithKeysLabelsAndFaults) {
  ProduceOptions options;
  options.topic = UniqueTopic("produce");
  options.producers = 4;
  options.images = 800;
  options.faults = "1:noise=0.5";
  options.run_id = "run7";
  std::vector<ProduceProgress> reports;
  auto result = Produce(options, [&](const ProduceProgress& p) { reports.push_back(p); });
  ASSERT_OK(result);
  EXPECT_EQ(result->sent, 800);
  EXPECT_EQ(result->acknowledged, 800);
  EXPECT_EQ(result->failed, 0);
  ASSERT_FALSE(reports.empty());
  EXPECT_EQ(reports.back().acknowledged, 800);
  EXPECT_EQ(kafka::PartitionCount({}, options.topic).value(), 6);

  std::vector<WireMessage> messages = ReadAll(options.topic, 800);
  ASSERT_EQ(messages.size(), 800u);
  std::set<std::string> ids;
  std::map<int, int> per_producer;
  const auto classes = ClassNames(kFashionMnistClasses);
  for (const WireMessage& m : messages) {
    auto record = DecodeImageMessage(m);
    ASSERT_OK(record);
    ids.insert(record->id);
    per_producer[record->producer_id]++;
    EXPECT_EQ(m.key, std::to_string(record->producer_id));
    EXPECT_THAT(record->id, ::testing::StartsWith(fmt::format("run7-{}-", record->producer_id)));
    ASSERT_TRUE(record->label);
    EXPECT_TRUE(ClassIndex(classes, *record->label)) << *record->label;
    EXPECT_EQ(record->image.rows, 28);
    EXPECT_EQ(record->image.channels, 1);
    EXPECT_TRUE(record->produced_at_us);
    EXPECT_EQ(*m.FindHeader("content-type"), "image/png");
  }
  EXPECT_EQ(ids.size(), 800u);
  EXPECT_EQ(per_producer, (std::map<int, int>{{0, 200}, {1, 200}, {2, 200}, {3, 200}}));
}

TEST(ProduceIntegrationTest, SameSeedSendsTheSamePixels) {
  auto pixels_of = [](const std::string& topic) {
    ProduceOptions options;
    options.topic = topic;
    options.producers = 2;
    options.images = 40;
    options.faults = "*:noise=0.2";
    options.format = ImageEncoding::kRaw;
    options.run_id = "same";
    EXPECT_TRUE(Produce(options));
    std::map<std::string, std::string> by_id;
    for (const auto& m : ReadAll(topic, 40)) by_id[*m.FindHeader("id")] = m.value;
    return by_id;
  };
  auto first = pixels_of(UniqueTopic("seed-a")), second = pixels_of(UniqueTopic("seed-b"));
  ASSERT_EQ(first.size(), 40u);
  EXPECT_EQ(first, second);
}

TEST(ProduceIntegrationTest, RateLimitIsHeld) {
  ProduceOptions options;
  options.topic = UniqueTopic("rate");
  options.images = 300;
  options.rate = 500;
  auto result = Produce(options);
  ASSERT_OK(result);
  EXPECT_EQ(result->acknowledged, 300);
  // 300 images at 500/s cannot finish in under 0.6 s; a generous upper bound keeps CI calm.
  EXPECT_GE(result->seconds, 0.59);
  EXPECT_LT(result->seconds, 10.0);
}

// The first image waits for the linger before it leaves (the second, sent 0.5 s later, goes
// with the final flush): its broker append time is the linger after its produced_at. Sent at
// once, it is appended within milliseconds, so an ignored --linger-ms fails this.
TEST(ProduceIntegrationTest, LingeringDevicesHoldTheirImagesForTheLinger) {
  ProduceOptions options;
  options.topic = UniqueTopic("linger");
  options.producers = 1;
  options.images = 2;
  options.rate = 2;
  options.linger = std::chrono::milliseconds(300);
  ASSERT_OK(Produce(options));
  for (const auto& [message, appended_ms] : ReadAllTimed(options.topic, 2)) {
    auto record = DecodeImageMessage(message);
    ASSERT_OK(record);
    if (!record->id.ends_with("-0")) continue;
    EXPECT_GE(appended_ms * 1000 - *record->produced_at_us, 250'000) << "appended too soon: the linger was not held";
    return;
  }
  FAIL() << "the first image was not read back";
}

}  // namespace
}  // namespace iotinfer::produce
