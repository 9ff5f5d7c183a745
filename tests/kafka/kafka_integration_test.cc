// Against the real broker that the `kafka` ctest fixture starts.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <map>

#include "core/image_message.h"
#include "kafka/kafka.h"
#include "kafka_test_util.h"
#include "test_util.h"

namespace iotinfer::kafka {
namespace {

using iotinfer::testing::ReadAll;
using iotinfer::testing::UniqueTopic;

TEST(KafkaIntegrationTest, EnsureTopicsCreatesMissingOnesAndKeepsExistingOnes) {
  const std::string six = UniqueTopic("six"), three = UniqueTopic("three");
  ASSERT_OK(EnsureTopics({}, {{six}, {three, 3}}));
  EXPECT_EQ(PartitionCount({}, six).value(), 6);
  EXPECT_EQ(PartitionCount({}, three).value(), 3);
  // Asking again, even with another count, changes nothing and is not an error.
  ASSERT_OK(EnsureTopics({}, {{three, 12}}));
  EXPECT_EQ(PartitionCount({}, three).value(), 3);
  auto missing = PartitionCount({}, UniqueTopic("missing"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Error::Code::kNotFound);
}

TEST(KafkaIntegrationTest, ProducerDeliversImageMessagesWithTheirHeaders) {
  const std::string topic = UniqueTopic("images");
  ASSERT_OK(EnsureTopics({}, {{topic}}));
  auto producer = Producer::Create({});
  ASSERT_OK(producer);
  constexpr int kImages = 300;
  for (int i = 0; i < kImages; ++i) {
    ImageRecord record{fmt::format("img-{}", i), i % 7, std::string("Bag"), int64_t{1000 + i},
                       Image{2, 2, 1, {uint8_t(i), 1, 2, 3}}};
    auto message = EncodeImageMessage(record, {.encoding = ImageEncoding::kRaw});
    ASSERT_OK(message);
    ASSERT_OK((*producer)->Send(topic, *message));
  }
  ASSERT_OK((*producer)->Flush());
  EXPECT_EQ((*producer)->stats().acknowledged, kImages);
  EXPECT_EQ((*producer)->stats().failed, 0);

  std::vector<WireMessage> read = ReadAll(topic, kImages);
  ASSERT_EQ(read.size(), static_cast<size_t>(kImages));
  std::map<std::string, ImageRecord> by_id;
  for (const auto& m : read) {
    auto record = DecodeImageMessage(m);
    ASSERT_OK(record);
    EXPECT_EQ(m.key, std::to_string(record->producer_id));
    by_id[record->id] = *record;
  }
  ASSERT_EQ(by_id.size(), static_cast<size_t>(kImages));  // no duplicates
  EXPECT_EQ(by_id["img-42"].producer_id, 0);
  EXPECT_EQ(by_id["img-42"].image.pixels[0], 42);
  EXPECT_EQ(by_id["img-42"].produced_at_us, 1042);
}

}  // namespace
}  // namespace iotinfer::kafka
