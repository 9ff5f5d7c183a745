#include "kafka/kafka.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <fstream>
#include <set>
#include <thread>

#include "kafka/kafka_internal.h"
#include "kafka/transactional_pipe.h"
#include "test_util.h"

namespace iotinfer::kafka {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(KafkaConfigTest, AddPropertySplitsAtTheFirstEquals) {
  KafkaConfig config;
  ASSERT_OK(config.AddProperty("security.protocol=SASL_SSL"));
  ASSERT_OK(config.AddProperty("sasl.jaas.config=a b=c"));
  EXPECT_EQ(config.properties["security.protocol"], "SASL_SSL");
  EXPECT_EQ(config.properties["sasl.jaas.config"], "a b=c");
  EXPECT_FALSE(config.AddProperty("no-equals-sign"));
  EXPECT_FALSE(config.AddProperty("=value"));
}

TEST(KafkaConfigTest, PropertiesFileLinesAreAddedAndBadLinesNamedWithoutTheirText) {
  iotinfer::testing::TempDir dir;
  const std::string path = (dir.path() / "kafka.properties").string();
  {
    std::ofstream out(path);
    out << "# mounted from a Secret\n\n  security.protocol = SASL_SSL\r\n! also a comment\n"
        << "sasl.jaas.config=a b=c\nsasl.password=hunter2\n";
  }
  KafkaConfig config;
  ASSERT_OK(config.AddPropertiesFile(path));
  EXPECT_EQ(config.properties.size(), 3u);
  EXPECT_EQ(config.properties["security.protocol"], "SASL_SSL");
  EXPECT_EQ(config.properties["sasl.jaas.config"], "a b=c");
  EXPECT_EQ(config.properties["sasl.password"], "hunter2");

  { std::ofstream(path, std::ios::app) << "hunter3 on its own line\n"; }
  auto bad = config.AddPropertiesFile(path);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), Error::Code::kInvalidInput);
  EXPECT_THAT(bad.error().message(), HasSubstr("line 7"));
  EXPECT_THAT(bad.error().message(), Not(HasSubstr("hunter3")));

  auto missing = config.AddPropertiesFile(path + ".absent");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Error::Code::kNotFound);
}

TEST(KafkaConfigTest, DescribeNeverShowsSecrets) {
  KafkaConfig config{.brokers = "b1:9093"};
  for (const char* property :
       {"sasl.password=hunter2", "ssl.key.password=hunter2", "sasl.oauthbearer.client.secret=hunter2",
        "sasl.jaas.config=user password=hunter2", "ssl.keystore.password=hunter2", "sasl.username=alice"}) {
    ASSERT_OK(config.AddProperty(property));
  }
  std::string described = config.Describe();
  EXPECT_THAT(described, Not(HasSubstr("hunter2")));
  EXPECT_THAT(described, HasSubstr("sasl.password=***"));
  EXPECT_THAT(described, HasSubstr("sasl.username=alice"));
  EXPECT_THAT(described, HasSubstr("bootstrap.servers=b1:9093"));
}

TEST(KafkaConfigTest, UnknownPropertyIsNamedWithoutItsValue) {
  KafkaConfig config;
  ASSERT_OK(config.AddProperty("sasl.passwrd=hunter2"));
  auto producer = Producer::Create(config);
  ASSERT_FALSE(producer);
  EXPECT_EQ(producer.error().code(), Error::Code::kInvalidInput);
  EXPECT_THAT(producer.error().message(), HasSubstr("sasl.passwrd"));
  EXPECT_THAT(producer.error().message(), Not(HasSubstr("hunter2")));
}

std::string ConfValue(const Conf& conf, const char* key) {
  char value[256];
  size_t size = sizeof value;
  return rd_kafka_conf_get(conf.get(), key, value, &size) == RD_KAFKA_CONF_OK ? value : "<unknown>";
}

// "consumer." and "producer." direct a property to one kind of client, and win over the
// same property given to all.
TEST(KafkaConfigTest, PrefixedPropertiesReachOnlyTheirKindOfClient) {
  KafkaConfig config;
  ASSERT_OK(config.AddProperty("consumer.fetch.wait.max.ms=10"));
  ASSERT_OK(config.AddProperty("producer.linger.ms=7"));
  ASSERT_OK(config.AddProperty("socket.timeout.ms=30000"));
  ASSERT_OK(config.AddProperty("producer.socket.timeout.ms=20000"));
  ASSERT_OK(config.AddProperty("consumer.no.such.property=1"));  // a consumer would refuse it
  auto producer = MakeConf(config, ClientRole::kProducer);
  ASSERT_OK(producer);
  EXPECT_EQ(ConfValue(*producer, "linger.ms"), "7");
  EXPECT_EQ(ConfValue(*producer, "socket.timeout.ms"), "20000");

  config.properties.erase("consumer.no.such.property");
  auto consumer = MakeConf(config, ClientRole::kConsumer);
  ASSERT_OK(consumer);
  EXPECT_EQ(ConfValue(*consumer, "fetch.wait.max.ms"), "10");
  EXPECT_EQ(ConfValue(*consumer, "socket.timeout.ms"), "30000");
  EXPECT_NE(ConfValue(*consumer, "linger.ms"), "7");

  // A bad one is named for the client it reaches, never with its value.
  ASSERT_OK(config.AddProperty("producer.sasl.passwrd=hunter2"));
  auto refused = MakeConf(config, ClientRole::kProducer);
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message(), HasSubstr("sasl.passwrd"));
  EXPECT_THAT(refused.error().message(), Not(HasSubstr("hunter2")));
  EXPECT_TRUE(MakeConf(config, ClientRole::kConsumer));
}

// Unprefixed, a consumer's property makes librdkafka warn in a producer; prefixed, it does not.
TEST(KafkaConfigTest, APrefixedPropertyDrawsNoWarningFromTheOtherKindOfClient) {
  for (const char* property : {"auto.offset.reset=earliest", "consumer.auto.offset.reset=earliest"}) {
    KafkaConfig config{.brokers = "127.0.0.1:1"};
    ASSERT_OK(config.AddProperty(property));
    ::testing::internal::CaptureStderr();
    { ASSERT_OK(Producer::Create(config)); }
    const std::string log = ::testing::internal::GetCapturedStderr();
    if (std::string_view(property).starts_with("consumer.")) {
      EXPECT_THAT(log, Not(HasSubstr("auto.offset.reset"))) << property;
    } else {
      EXPECT_THAT(log, HasSubstr("auto.offset.reset is a consumer property")) << property;
    }
  }
}

TEST(ProducerTest, DeliveryFailuresAreCountedNotLost) {
  // Nothing listens on port 1: every message must come back as a failed delivery.
  KafkaConfig config{.brokers = "127.0.0.1:1"};
  ASSERT_OK(config.AddProperty("message.timeout.ms=1500"));
  auto producer = Producer::Create(config);
  ASSERT_OK(producer);
  WireMessage message{"1", "payload", {{"id", "x"}}};
  for (int i = 0; i < 20; ++i) ASSERT_OK((*producer)->Send("images", message));
  ASSERT_OK((*producer)->Flush(std::chrono::seconds(30)));
  const ProducerStats& stats = (*producer)->stats();
  EXPECT_EQ(stats.sent, 20);
  EXPECT_EQ(stats.acknowledged, 0);
  EXPECT_EQ(stats.failed, 20);
  EXPECT_THAT(stats.last_error, HasSubstr("timed out"));
}

TEST(KafkaLogTest, LibrdkafkaLinesComeInTheServicesFormWithALevelWord) {
  ::testing::internal::CaptureStderr();
  std::string log;
  {
    KafkaConfig config{.brokers = "127.0.0.1:1"};  // nothing listens: librdkafka logs the refused connect
    auto producer = Producer::Create(config);
    ASSERT_OK(producer);
    ASSERT_OK((*producer)->Send("images", {"1", "payload", {}}));
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
  log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, ::testing::ContainsRegex("kafka rdkafka#producer-[0-9]+: error FAIL: .*Connection refused"));
  EXPECT_THAT(log, Not(HasSubstr("%3|")));
}

TEST(KafkaAdminTest, UnreachableClusterIsUnavailable) {
  auto status = EnsureTopics({.brokers = "127.0.0.1:1"}, {{"images"}}, std::chrono::milliseconds(1500));
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), Error::Code::kUnavailable);
}

InputMessage Original(std::string key, std::string value, std::vector<WireMessage::Header> headers) {
  return {.message = {std::move(key), std::move(value), std::move(headers)},
          .topic = "images",
          .partition = 3,
          .offset = 42};
}

TEST(DeadLetterTest, KeepsTheOriginalWholeWhenItFits) {
  const auto out = DeadLetter("images.dlq", Original("7", "payload", {{"id", "a"}}),
                              DeadLetterReason::kUndecodableImage, "why", 10'000);
  EXPECT_EQ(out.topic, "images.dlq");
  EXPECT_EQ(out.message.key, "7");
  EXPECT_EQ(out.message.value, "payload");
  EXPECT_EQ(*out.message.FindHeader("id"), "a");
  EXPECT_EQ(*out.message.FindHeader("error"), "why");
  EXPECT_EQ(*out.message.FindHeader("reason"), "undecodable-image");
  EXPECT_EQ(*out.message.FindHeader("source"), "images/3/42");
  EXPECT_NE(out.message.FindHeader("failed-at"), nullptr);
  EXPECT_EQ(out.message.FindHeader("payload-dropped"), nullptr);
}

// A dead letter that could not be written would stop its partition for ever: past the limit,
// the payload goes, and then the key and the original headers, never the reason or the source.
TEST(DeadLetterTest, DropsThePayloadAndThenKeyAndHeadersToFitTheLimit) {
  const auto no_payload = DeadLetter("dlq", Original("7", std::string(5000, 'x'), {{"id", "a"}}),
                                     DeadLetterReason::kTooLarge, "too big", 4000);
  EXPECT_TRUE(no_payload.message.value.empty());
  EXPECT_EQ(no_payload.message.key, "7");
  EXPECT_EQ(*no_payload.message.FindHeader("id"), "a");
  EXPECT_THAT(*no_payload.message.FindHeader("payload-dropped"), HasSubstr("5000 bytes"));
  EXPECT_EQ(*no_payload.message.FindHeader("error"), "too big");
  EXPECT_EQ(*no_payload.message.FindHeader("source"), "images/3/42");

  const auto bare = DeadLetter("dlq", Original(std::string(3000, 'k'), "v", {{"h", std::string(3000, 'h')}}),
                               DeadLetterReason::kCommitFailed, "why", 4000);
  EXPECT_TRUE(bare.message.key.empty());
  EXPECT_TRUE(bare.message.value.empty());
  EXPECT_EQ(bare.message.FindHeader("h"), nullptr);
  EXPECT_THAT(*bare.message.FindHeader("key-and-headers-dropped"), HasSubstr("3000 bytes of key, 1 headers"));
  EXPECT_EQ(*bare.message.FindHeader("error"), "why");
  EXPECT_EQ(*bare.message.FindHeader("reason"), "commit-failed");
  EXPECT_EQ(*bare.message.FindHeader("source"), "images/3/42");
  EXPECT_NE(bare.message.FindHeader("payload-dropped"), nullptr);

  const auto long_reason =
      DeadLetter("dlq", Original("7", "v", {}), DeadLetterReason::kInvalidRecord, std::string(5000, 'r'), 100'000);
  EXPECT_EQ(long_reason.message.FindHeader("error")->size(), 1024u);
  EXPECT_EQ(*long_reason.message.FindHeader("reason"), "invalid-record");
}

// The codes become metric labels and filters: each one distinct, short, lower-case words
// joined by '-', and read back as the reason that wrote it.
TEST(DeadLetterTest, ReasonCodesAreDistinctLabelsThatParseBack) {
  std::set<std::string_view> seen;
  for (size_t i = 0; i < kDeadLetterReasons.size(); ++i) {
    const DeadLetterReason reason = kDeadLetterReasons[i];
    EXPECT_EQ(ReasonIndex(reason), i);
    const std::string_view code = ReasonCode(reason);
    EXPECT_TRUE(seen.insert(code).second) << code;
    EXPECT_THAT(std::string(code), ::testing::MatchesRegex("[a-z]+(-[a-z]+)*")) << code;
    EXPECT_LE(code.size(), 20u);
    EXPECT_EQ(ParseReasonCode(code), reason);
  }
  EXPECT_EQ(ParseReasonCode(""), std::nullopt);
  EXPECT_EQ(ParseReasonCode("Too-Large"), std::nullopt);
  EXPECT_EQ(ParseReasonCode("too-large "), std::nullopt);
  EXPECT_EQ(ParseReasonCode("unknown"), std::nullopt);
}

}  // namespace
}  // namespace iotinfer::kafka
