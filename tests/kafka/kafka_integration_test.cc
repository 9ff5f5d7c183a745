// Against the real broker that the `kafka` ctest fixture starts.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <map>
#include <set>

#include "core/image_message.h"
#include "kafka/kafka.h"
#include "kafka/transactional_pipe.h"
#include "kafka/transactional_producer.h"
#include "kafka_test_util.h"
#include "pipe_test_util.h"
#include "process_util.h"
#include "test_util.h"

namespace iotinfer::kafka {
namespace {

using iotinfer::testing::ReadAll;
using iotinfer::testing::UniqueTopic;
using ::testing::HasSubstr;
using ::testing::Not;

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

// An aborted transaction's messages, on every partition of `topic`.
void ProduceAbortedTransaction(const std::string& topic, int partitions) {
  std::vector<std::pair<int32_t, WireMessage>> messages;
  for (int p = 0; p < partitions; ++p) messages.push_back({p, {"", "aborted", {}}});
  testing::ProduceAbortedTransaction(topic, messages);
}

TEST(KafkaIntegrationTest, ScanTopicReadsEveryCommittedMessageOnceInPartitionOrder) {
  const std::string topic = UniqueTopic("scan");
  constexpr int kPartitions = 3, kMessages = 90;
  ASSERT_OK(EnsureTopics({}, {{topic, kPartitions}}));
  ProduceAbortedTransaction(topic, kPartitions);
  auto producer = Producer::Create({});
  ASSERT_OK(producer);
  for (int i = 0; i < kMessages; ++i)
    ASSERT_OK((*producer)->Send(topic, {std::to_string(i % 5), fmt::format("m{}", i), {}}));
  ASSERT_OK((*producer)->Flush());

  std::map<int32_t, int64_t> last_offset;
  std::multiset<std::string> values;
  ASSERT_OK(ScanTopic({}, topic, [&](const InputMessage& in) -> Status {
    EXPECT_EQ(in.topic, topic);
    if (last_offset.contains(in.partition)) {
      EXPECT_GT(in.offset, last_offset[in.partition]);
    }
    last_offset[in.partition] = in.offset;
    values.insert(in.message.value);
    return Ok();
  }));
  EXPECT_EQ(values.size(), static_cast<size_t>(kMessages));
  EXPECT_EQ(values.count("aborted"), 0u);
  for (int i = 0; i < kMessages; ++i) EXPECT_EQ(values.count(fmt::format("m{}", i)), 1u) << i;
}

TEST(KafkaIntegrationTest, ScanTopicStopsAtTheCallersErrorAndNamesAMissingTopic) {
  const std::string topic = UniqueTopic("scan-stop");
  ASSERT_OK(EnsureTopics({}, {{topic, 1}}));
  auto producer = Producer::Create({});
  ASSERT_OK(producer);
  for (int i = 0; i < 10; ++i) ASSERT_OK((*producer)->Send(topic, {"k", "v", {}}));
  ASSERT_OK((*producer)->Flush());
  int seen = 0;
  Status status = ScanTopic({}, topic, [&](const InputMessage&) -> Status {
    if (++seen == 3) return std::unexpected(Error::InvalidInput("enough"));
    return Ok();
  });
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().message(), "enough");
  EXPECT_EQ(seen, 3);

  Status missing = ScanTopic({}, UniqueTopic("no-such-topic"), [](const InputMessage&) { return Ok(); });
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), Error::Code::kNotFound);
}

// Devices land where Kafka's Java clients put them (murmur2 of the key, what Spark, Kafka
// Streams and the Java producer compute), so every client agrees on a device's partition; and
// devices 0-7 use all six partitions of a default topic.
// What a replay's exactly-once rests on: a new producer of the same transactional id aborts the
// transaction the old one left open, and the old one can commit nothing more.
TEST(TransactionalProducerTest, ANewProducerOfTheSameIdFencesTheOldOne) {
  const std::string topic = UniqueTopic("txn"), id = UniqueTopic("txn-id");
  ASSERT_OK(EnsureTopics({}, {{topic, 1}}));
  auto old = TransactionalProducer::Create({.transactional_id = id, .topics = {topic}});
  ASSERT_OK(old);
  const std::vector<OutputMessage> first = {{topic, {"k", "committed", {}}}};
  ASSERT_OK((*old)->Commit(first));

  std::unique_ptr<TransactionalProducer> successor;
  const std::vector<OutputMessage> second = {{topic, {"k", "never seen", {}}}};
  // The old one's second transaction is written, and open, when its successor starts.
  Status late = (*old)->Commit(second, [&] {
    auto created = TransactionalProducer::Create({.transactional_id = id, .topics = {topic}});
    ASSERT_OK(created);
    successor = std::move(*created);
  });
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code(), Error::Code::kFailedPrecondition) << late.error().message();
  ASSERT_NE(successor, nullptr);
  const std::vector<OutputMessage> third = {{topic, {"k", "after", {}}}};
  ASSERT_OK(successor->Commit(third));

  std::vector<std::string> values;
  for (const WireMessage& m : ReadAll(topic, 2, std::chrono::seconds(1))) values.push_back(m.value);
  EXPECT_EQ(values, (std::vector<std::string>{"committed", "after"}));
}

// Writes "m0", "m1", ... to `topic`, all with one key; returns them.
std::vector<std::string> SendNumbered(const std::string& topic, int count) {
  std::vector<std::string> values;
  std::vector<OutputMessage> messages;
  for (int i = 0; i < count; ++i) {
    values.push_back(fmt::format("m{}", i));
    messages.push_back({topic, {"k", values.back(), {}}});
  }
  iotinfer::testing::WriteAll(messages);
  return values;
}

// The values of `topic` that read_committed readers see, waiting for `count`.
std::vector<std::string> CommittedValues(const std::string& topic, size_t count) {
  std::vector<std::string> values;
  for (const WireMessage& m : ReadAll(topic, count, std::chrono::seconds(1))) values.push_back(m.value);
  return values;
}

// Commits the pipe's next two messages to `out`, each as it came.
Status CommitNextTwo(TransactionalPipe& pipe, const std::string& out) {
  const std::vector<InputMessage> batch = PollUpTo(pipe, 2);
  EXPECT_EQ(batch.size(), 2u);
  return pipe.Commit(batch, OutputsOf(batch, out));
}

// The pipe renews a producer the coordinator fenced on its own (a transaction that outlived
// its timeout: mock_cluster_test.cc, where the mock cannot fence one instance by another); one
// fenced because another instance took its transactional id must stop the service instead,
// or the two would fence each other in turn. On a real broker the fence is the commit's own
// fatal error, before any abort. With alternating producers the successor fences both: the
// commit after the first is the second producer's.
TEST(TransactionalPipeTest, APipeFencedByAnotherInstanceStops) {
  for (const bool alternate : {false, true}) {
    SCOPED_TRACE(alternate ? "two producers" : "one producer");
    const std::string in = UniqueTopic("fence-in"), out = UniqueTopic("fence-out"), id = UniqueTopic("fence-id");
    ASSERT_OK(EnsureTopics({}, {{in, 1}, {out, 1}}));
    SendNumbered(in, 4);
    auto open = [&](const std::string& group) {
      return TransactionalPipe::Create({.group = group,
                                        .input_topics = {in},
                                        .output_topics = {out},
                                        .transactional_id = id,
                                        .alternate_producers = alternate,
                                        .max_batch = 2});
    };
    auto pipe = open(UniqueTopic("fence-group"));
    ASSERT_OK(pipe);
    ASSERT_OK(CommitNextTwo(**pipe, out));
    auto successor = open(UniqueTopic("fence-group"));  // its initialisation fences the first
    ASSERT_OK(successor);
    Status failed = CommitNextTwo(**pipe, out);
    ASSERT_FALSE(failed);
    EXPECT_EQ(failed.error().code(), Error::Code::kFailedPrecondition) << failed.error().message();
    EXPECT_EQ(CommittedValues(out, 2), (std::vector<std::string>{"m0", "m1"}));
  }
}

// The two producers take turns: an instance that fences only the first (one that does not
// alternate, under the same transactional id) stops the pipe at its first producer's next
// turn, not before.
TEST(TransactionalPipeTest, AlternatingProducersTakeTurns) {
  const std::string in = UniqueTopic("turns-in"), out = UniqueTopic("turns-out"), id = UniqueTopic("turns-id");
  ASSERT_OK(EnsureTopics({}, {{in, 1}, {out, 1}}));
  SendNumbered(in, 6);
  auto open = [&](bool alternate) {
    return TransactionalPipe::Create({.group = UniqueTopic("turns-group"),
                                      .input_topics = {in},
                                      .output_topics = {out},
                                      .transactional_id = id,
                                      .alternate_producers = alternate,
                                      .max_batch = 2});
  };
  auto pipe = open(true);
  ASSERT_OK(pipe);
  ASSERT_OK(CommitNextTwo(**pipe, out));
  auto successor = open(false);  // fences the transactional id itself, not its "#2"
  ASSERT_OK(successor);
  ASSERT_OK(CommitNextTwo(**pipe, out));
  Status failed = CommitNextTwo(**pipe, out);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code(), Error::Code::kFailedPrecondition) << failed.error().message();
  EXPECT_EQ(CommittedValues(out, 4), (std::vector<std::string>{"m0", "m1", "m2", "m3"}));
}

// Back-to-back commits taking turns between two producers: each output is read once and in
// order, and the group's offsets end at the last commit's, though the coordinator may still
// be writing one producer's offsets when the other commits later ones.
TEST(TransactionalPipeTest, AlternatingProducersCommitEachBatchOnceAndTheirOffsetsInOrder) {
  const std::string in = UniqueTopic("alt-in"), out = UniqueTopic("alt-out"), group = UniqueTopic("alt-group");
  ASSERT_OK(EnsureTopics({}, {{in, 1}, {out, 1}}));
  constexpr int kMessages = 60;
  const std::vector<std::string> sent = SendNumbered(in, kMessages);
  const PipeOptions options{.group = group,
                            .input_topics = {in},
                            .output_topics = {out},
                            .transactional_id = UniqueTopic("alt-id"),
                            .alternate_producers = true,
                            .max_batch = 3,
                            .max_wait = std::chrono::milliseconds(0)};
  {
    auto pipe = TransactionalPipe::Create(options);
    ASSERT_OK(pipe);
    int consumed = 0, commits = 0;
    while (consumed < kMessages) {
      const std::vector<InputMessage> batch = PollUpTo(**pipe, 1);
      ASSERT_FALSE(batch.empty());
      ASSERT_OK((*pipe)->Commit(batch, OutputsOf(batch, out)));
      consumed += static_cast<int>(batch.size());
      commits++;
    }
    EXPECT_GE(commits, kMessages / 3);
  }
  EXPECT_EQ(CommittedValues(out, kMessages), sent);

  // A new member of the group starts where the last commit ended: the next message first.
  iotinfer::testing::WriteAll({{in, {"k", "next", {}}}});
  auto resumed = TransactionalPipe::Create(
      {.group = group, .input_topics = {in}, .output_topics = {out}, .transactional_id = options.transactional_id});
  ASSERT_OK(resumed);
  const std::vector<InputMessage> next = PollUpTo(**resumed, 1);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].message.value, "next");
}

TEST(KafkaIntegrationTest, KeysGoToThePartitionsJavaClientsChoose) {
  const std::string topic = UniqueTopic("keys");
  ASSERT_OK(EnsureTopics({}, {{topic, 6}}));
  auto producer = Producer::Create({});
  ASSERT_OK(producer);
  for (int device = 0; device < 8; ++device) ASSERT_OK((*producer)->Send(topic, {std::to_string(device), "v", {}}));
  ASSERT_OK((*producer)->Flush());
  std::map<std::string, int32_t> partition_of;
  ASSERT_OK(ScanTopic({}, topic, [&](const InputMessage& in) -> Status {
    partition_of[in.message.key] = in.partition;
    return Ok();
  }));
  // org.apache.kafka.common.utils.Utils.toPositive(murmur2(key)) % 6 for keys "0".."7".
  const std::map<std::string, int32_t> java{{"0", 2}, {"1", 3}, {"2", 2}, {"3", 5},
                                            {"4", 1}, {"5", 0}, {"6", 4}, {"7", 3}};
  EXPECT_EQ(partition_of, java);
}

// The broker's SASL_PLAINTEXT listener and its development account
// (scripts/kafka/server.properties), as `--kafka` properties.
constexpr const char* kSaslBrokers = "127.0.0.1:9094";
std::vector<std::string> SaslProperties(const std::string& password) {
  return {"security.protocol=SASL_PLAINTEXT", "sasl.mechanisms=PLAIN", "sasl.username=iotinfer",
          "sasl.password=" + password};
}

KafkaConfig Sasl(const std::string& password) {
  KafkaConfig config{.brokers = kSaslBrokers};
  for (const std::string& property : SaslProperties(password)) EXPECT_TRUE(config.AddProperty(property));
  return config;
}

TEST(KafkaIntegrationTest, ClientsWithTheSaslAccountCreateTopicsProduceAndRead) {
  const KafkaConfig config = Sasl("iotinfer-dev");
  const std::string topic = UniqueTopic("sasl");
  ASSERT_OK(EnsureTopics(config, {{topic, 2}}));
  auto producer = Producer::Create(config);
  ASSERT_OK(producer);
  for (int i = 0; i < 20; ++i) ASSERT_OK((*producer)->Send(topic, {std::to_string(i), fmt::format("m{}", i), {}}));
  ASSERT_OK((*producer)->Flush());
  EXPECT_EQ((*producer)->stats().acknowledged, 20);
  std::multiset<std::string> values;
  ASSERT_OK(ScanTopic(config, topic, [&](const InputMessage& in) -> Status {
    values.insert(in.message.value);
    return Ok();
  }));
  EXPECT_EQ(values.size(), 20u);
  EXPECT_EQ(values.count("m7"), 1u);
}

void ExpectRefused(const Status& status, std::string_view client) {
  ASSERT_FALSE(status) << client << " was not refused";
  EXPECT_EQ(status.error().code(), Error::Code::kPermissionDenied) << client << ": " << status.error().message();
  EXPECT_THAT(status.error().message(), HasSubstr("Authentication failed")) << client;
  EXPECT_THAT(status.error().message(), Not(HasSubstr("hunter2"))) << client;
}

// Credentials the cluster refuses are no passing trouble: each kind of client stops with the
// cluster's reason instead of retrying until its timeout (30 s to minutes), and the password
// shows nowhere.
TEST(KafkaIntegrationTest, AWrongPasswordStopsEveryClientWithTheClustersReason) {
  const KafkaConfig config = Sasl("hunter2-wrong");
  const std::string topic = UniqueTopic("sasl-refused");
  ASSERT_OK(EnsureTopics({}, {{topic, 1}}));
  ExpectRefused(EnsureTopics(config, {{topic}}), "admin");
  const Result<int> partitions = PartitionCount(config, topic);
  ExpectRefused(partitions ? Ok() : Status(std::unexpected(partitions.error())), "metadata");
  auto producer = Producer::Create(config);
  ASSERT_OK(producer);
  Status sent = (*producer)->Send(topic, {"k", "v", {}});
  ExpectRefused(sent ? (*producer)->Flush() : sent, "producer");
  ExpectRefused(ScanTopic(config, topic, [](const InputMessage&) { return Ok(); }), "reader");

  // The services' consumers: a group member with offsets in Kafka (sink) and one with its
  // own (stream). Each exits 2, as for any setting only its user can mend, saying why.
  const iotinfer::testing::TempDir dir;
  std::string kafka_flags;
  for (const std::string& property : SaslProperties("hunter2-wrong")) kafka_flags += " --kafka " + property;
  for (const std::string& command :
       {"sink --input-topic " + topic, "stream --log-every-ms 0 --topic " + topic + " --group " + UniqueTopic("g")}) {
    const auto run = iotinfer::testing::Iotinfer(
        fmt::format("{} --brokers {}{} --store sqlite:{}", command, kSaslBrokers, kafka_flags, dir.file("refused.db")),
        /*timeout_s=*/60);
    EXPECT_EQ(run.exit_code, 2) << command << "\n" << run.output;
    EXPECT_THAT(run.output, HasSubstr("refuses this client")) << command;
    EXPECT_THAT(run.output, Not(HasSubstr("hunter2"))) << command;
  }
}

}  // namespace
}  // namespace iotinfer::kafka
