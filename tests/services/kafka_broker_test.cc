// Checks that the broker `./dev services up kafka` starts is a working Kafka: metadata,
// topic creation, idempotent produce and a consumer group reading it all back.
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <memory>
#include <string>

namespace {

constexpr const char* kBrokers = "127.0.0.1:9092";

struct KafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using Kafka = std::unique_ptr<rd_kafka_t, KafkaDeleter>;

Kafka Make(rd_kafka_type_t type, std::initializer_list<std::pair<const char*, std::string>> settings) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char error[512];
  EXPECT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", kBrokers, error, sizeof error), RD_KAFKA_CONF_OK);
  for (const auto& [key, value] : settings) {
    EXPECT_EQ(rd_kafka_conf_set(conf, key, value.c_str(), error, sizeof error), RD_KAFKA_CONF_OK) << error;
  }
  rd_kafka_t* rk = rd_kafka_new(type, conf, error, sizeof error);
  EXPECT_NE(rk, nullptr) << error;
  return Kafka(rk);
}

std::string UniqueName(const char* prefix) {
  return std::string(prefix) + "-" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
}

void CreateTopic(rd_kafka_t* rk, const std::string& topic, int partitions) {
  char error[512];
  rd_kafka_NewTopic_t* new_topic = rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, error, sizeof error);
  ASSERT_NE(new_topic, nullptr) << error;
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &new_topic, 1, nullptr, queue);
  rd_kafka_event_t* event = rd_kafka_queue_poll(queue, 30000);
  ASSERT_NE(event, nullptr) << "no CreateTopics answer in 30 s";
  const rd_kafka_CreateTopics_result_t* result = rd_kafka_event_CreateTopics_result(event);
  size_t count = 0;
  const rd_kafka_topic_result_t** topics = rd_kafka_CreateTopics_result_topics(result, &count);
  ASSERT_EQ(count, 1u);
  EXPECT_EQ(rd_kafka_topic_result_error(topics[0]), RD_KAFKA_RESP_ERR_NO_ERROR)
      << rd_kafka_topic_result_error_string(topics[0]);
  rd_kafka_event_destroy(event);
  rd_kafka_queue_destroy(queue);
  rd_kafka_NewTopic_destroy(new_topic);
}

TEST(KafkaBrokerTest, AnswersMetadataAsASingleKraftNode) {
  Kafka rk = Make(RD_KAFKA_PRODUCER, {});
  const rd_kafka_metadata_t* metadata = nullptr;
  ASSERT_EQ(rd_kafka_metadata(rk.get(), 1, nullptr, &metadata, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(metadata->broker_cnt, 1);
  EXPECT_EQ(metadata->brokers[0].id, 1);
  EXPECT_EQ(std::string(metadata->brokers[0].host), "127.0.0.1");
  EXPECT_EQ(metadata->brokers[0].port, 9092);
  rd_kafka_metadata_destroy(metadata);
}

TEST(KafkaBrokerTest, IdempotentProduceThenConsumerGroupReadsEverything) {
  const std::string topic = UniqueName("broker-test");
  constexpr int kMessages = 200;
  Kafka producer = Make(RD_KAFKA_PRODUCER, {{"enable.idempotence", "true"}});
  CreateTopic(producer.get(), topic, 6);
  for (int i = 0; i < kMessages; ++i) {
    std::string key = std::to_string(i % 8), value = "message " + std::to_string(i);
    ASSERT_EQ(rd_kafka_producev(producer.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
                                RD_KAFKA_V_VALUE(value.data(), value.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  ASSERT_EQ(rd_kafka_flush(producer.get(), 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(rd_kafka_outq_len(producer.get()), 0);

  Kafka consumer = Make(RD_KAFKA_CONSUMER, {{"group.id", UniqueName("broker-test-group")},
                                            {"auto.offset.reset", "earliest"},
                                            {"isolation.level", "read_committed"}});
  rd_kafka_poll_set_consumer(consumer.get());
  rd_kafka_topic_partition_list_t* subscription = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(subscription, topic.c_str(), RD_KAFKA_PARTITION_UA);
  ASSERT_EQ(rd_kafka_subscribe(consumer.get(), subscription), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(subscription);

  int received = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (received < kMessages && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer.get(), 500);
    if (!message) continue;
    if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) ++received;
    rd_kafka_message_destroy(message);
  }
  EXPECT_EQ(received, kMessages);
  rd_kafka_consumer_close(consumer.get());
}

}  // namespace
