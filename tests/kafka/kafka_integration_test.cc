// Against the real broker that the `kafka` ctest fixture starts.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <map>

#include "core/image_message.h"
#include "kafka/kafka.h"
#include "test_util.h"

namespace iotinfer::kafka {
namespace {

std::string UniqueTopic(const char* prefix) {
  return fmt::format("{}-{}", prefix, std::chrono::steady_clock::now().time_since_epoch().count());
}

// Reads every message of `topic` from the beginning, as the wire-level WireMessage.
std::vector<WireMessage> ReadAll(const std::string& topic, size_t expected) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char error[512];
  rd_kafka_conf_set(conf, "bootstrap.servers", "127.0.0.1:9092", error, sizeof error);
  rd_kafka_conf_set(conf, "group.id", UniqueTopic("reader").c_str(), error, sizeof error);
  rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", error, sizeof error);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof error);
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  std::vector<WireMessage> out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (out.size() < expected && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 500);
    if (!m) continue;
    if (!m->err) {
      WireMessage w{{static_cast<const char*>(m->key), m->key_len}, {static_cast<const char*>(m->payload), m->len}, {}};
      rd_kafka_headers_t* headers = nullptr;
      if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name;
        const void* value;
        size_t size;
        for (size_t i = 0; !rd_kafka_header_get_all(headers, i, &name, &value, &size); ++i) {
          w.headers.push_back({name, {static_cast<const char*>(value), size}});
        }
      }
      out.push_back(std::move(w));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return out;
}

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
