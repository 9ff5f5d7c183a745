// The embedded demo's in-process cluster must carry the whole exactly-once path, so it is
// checked here end to end: produce, transactional infer, read_committed reads.
#include "kafka/mock_cluster.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>  // after rdkafka.h, as it requires

#include <nlohmann/json.hpp>
#include <set>
#include <span>

#include "infer_test_util.h"
#include "kafka/transactional_pipe.h"
#include "kafka_test_util.h"
#include "pipe_test_util.h"
#include "produce/produce.h"
#include "test_util.h"

namespace iotinfer::kafka {
namespace {

TEST(MockClusterTest, CarriesProduceAndTransactionalInfer) {
  auto cluster = MockCluster::Create();
  ASSERT_OK(cluster);
  const std::string brokers = (*cluster)->bootstrap_servers();
  EXPECT_TRUE(brokers.starts_with("127.0.0.1:")) << brokers;

  for (const char* topic : {"images", "inferences", "images.dlq"}) ASSERT_OK((*cluster)->CreateTopic({topic, 3}));

  constexpr int kImages = 200;
  produce::ProduceOptions produce_options;
  produce_options.kafka.brokers = brokers;
  produce_options.images = kImages;
  produce_options.producers = 4;
  auto produced = produce::Produce(produce_options);
  ASSERT_OK(produced);
  EXPECT_EQ(produced->acknowledged, kImages);

  infer::InferOptions options;
  options.kafka.brokers = brokers;
  options.log_every = std::chrono::milliseconds(0);
  auto result = testing::RunInferUntil(options, kImages, std::chrono::seconds(60));
  ASSERT_OK(result);
  EXPECT_EQ(result->inferred, kImages);

  auto records = testing::ReadAll(options.output_topic, kImages, std::chrono::seconds(1), brokers);
  ASSERT_EQ(records.size(), static_cast<size_t>(kImages));
  std::set<std::string> ids;
  for (const auto& m : records) ids.insert(nlohmann::json::parse(m.value)["id"].get<std::string>());
  EXPECT_EQ(ids.size(), static_cast<size_t>(kImages));
}

// A mock cluster of one broker, in which requests can be made to fail on demand, with topics
// "in" and "out" of 2 partitions each.
class MockPipeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    ASSERT_EQ(rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", error, sizeof error), RD_KAFKA_CONF_OK);
    owner.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error));
    ASSERT_NE(owner, nullptr) << error;
    mock = rd_kafka_handle_mock_cluster(owner.get());
    kafka.brokers = rd_kafka_mock_cluster_bootstraps(mock);
    for (const char* topic : {"in", "out"}) ASSERT_EQ(rd_kafka_mock_topic_create(mock, topic, 2, 1), 0);
  }

  // Messages "m<from>" to "m<to - 1>" to partition `partition` of "in".
  void Send(int32_t partition, int from, int to) {
    rd_kafka_conf_t* producer_conf = rd_kafka_conf_new();
    ASSERT_EQ(rd_kafka_conf_set(producer_conf, "bootstrap.servers", kafka.brokers.c_str(), error, sizeof error),
              RD_KAFKA_CONF_OK);
    std::unique_ptr<rd_kafka_t, decltype(&rd_kafka_destroy)> producer(
        rd_kafka_new(RD_KAFKA_PRODUCER, producer_conf, error, sizeof error), &rd_kafka_destroy);
    ASSERT_NE(producer, nullptr) << error;
    for (int i = from; i < to; ++i) {
      const std::string value = fmt::format("m{}", i);
      ASSERT_EQ(rd_kafka_producev(producer.get(), RD_KAFKA_V_TOPIC("in"), RD_KAFKA_V_PARTITION(partition),
                                  RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    ASSERT_EQ(rd_kafka_flush(producer.get(), 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  void OutliveTheTimeout(bool offsets_late);

  char error[512] = "";
  std::unique_ptr<rd_kafka_t, decltype(&rd_kafka_destroy)> owner{nullptr, &rd_kafka_destroy};
  rd_kafka_mock_cluster_t* mock = nullptr;
  KafkaConfig kafka;
};

// The loss of the transaction coordinator during a commit (a broker killed, as in the chaos
// run) can leave librdkafka's producer in a fatal state, in which it can never commit again. The
// pipe replaces it with a new one under the same transactional id, and the batch, read again,
// is committed. The mock cluster is the one place where that error can be made on demand; it
// writes no transaction markers, though, so its readers see the aborted attempt's records too:
// that each record is then visible once is shown on real brokers, by the chaos run.
TEST_F(MockPipeTest, AProducerLostToAFatalErrorIsReplacedAndTheBatchCommittedOnce) {
  constexpr int kMessages = 10;
  {
    auto producer = Producer::Create(kafka);
    ASSERT_OK(producer);
    for (int i = 0; i < kMessages; ++i)
      ASSERT_OK((*producer)->Send("in", {std::to_string(i), fmt::format("m{}", i), {}}));
    ASSERT_OK((*producer)->Flush());
  }
  std::vector<std::string> log;
  auto pipe = TransactionalPipe::Create({.kafka = kafka,
                                         .group = "renew",
                                         .input_topics = {"in"},
                                         .output_topics = {"out"},
                                         .transactional_id = "renew-0",
                                         .log = [&](const std::string& line) { log.push_back(line); }});
  ASSERT_OK(pipe);
  auto poll_all = [&] { return PollUpTo(**pipe, kMessages); };

  std::vector<InputMessage> batch = poll_all();
  ASSERT_EQ(batch.size(), static_cast<size_t>(kMessages));
  constexpr int16_t kEndTxn = 26;  // the Kafka protocol's api key of EndTxn (commit or abort)
  rd_kafka_mock_push_request_errors(mock, kEndTxn, 1, RD_KAFKA_RESP_ERR_INVALID_TXN_STATE);
  Status failed = (*pipe)->Commit(batch, OutputsOf(batch));
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code(), Error::Code::kUnavailable) << failed.error().message();
  EXPECT_THAT(log, ::testing::Contains(::testing::HasSubstr("starting a new transactional producer")));

  std::vector<InputMessage> again = poll_all();
  ASSERT_EQ(again.size(), static_cast<size_t>(kMessages)) << "the batch is read again from its start";
  ASSERT_OK((*pipe)->Commit(again, OutputsOf(again)));
  auto records = testing::ReadAll("out", 2 * kMessages, std::chrono::seconds(1), kafka.brokers);
  std::set<std::string> values;
  for (const auto& m : records) values.insert(m.value);
  for (int i = 0; i < kMessages; ++i) EXPECT_TRUE(values.contains(fmt::format("m{}", i))) << i;
}

// The sink stores its next batch while the last one's commit is in flight (StartCommit). A
// poll waiting for messages returns when the commit finishes; a commit that fails rewinds the
// consumer to where its batch began and to where what was polled meanwhile began, so that both
// are read again and nothing after them is skipped.
TEST_F(MockPipeTest, ACommitInFlightLetsTheNextBatchInAndAFailureRewindsBoth) {
  // The first batch from one partition, what comes meanwhile from the other: a rewind of the
  // first batch alone would not read the others again.
  constexpr int kMessages = 10;
  Send(0, 0, kMessages / 2);
  auto pipe = TransactionalPipe::Create({.kafka = kafka,
                                         .group = "overlap",
                                         .input_topics = {"in"},
                                         .output_topics = {"out"},
                                         .transactional_id = "overlap-0",
                                         .max_wait = std::chrono::milliseconds(0)});
  ASSERT_OK(pipe);
  auto poll_up_to = [&](size_t count) { return PollUpTo(**pipe, count); };
  auto values_of = [](const std::vector<InputMessage>& batch) {
    std::multiset<std::string> values;
    for (const auto& in : batch) values.insert(in.message.value);
    return values;
  };

  std::vector<InputMessage> first = poll_up_to(kMessages / 2);
  ASSERT_EQ(first.size(), static_cast<size_t>(kMessages / 2));
  std::vector<OutputMessage> first_outputs = OutputsOf(first);
  constexpr int16_t kEndTxn = 26;  // the Kafka protocol's api key of EndTxn (commit or abort)
  rd_kafka_mock_push_request_errors(mock, kEndTxn, 1, RD_KAFKA_RESP_ERR_INVALID_TXN_STATE);
  ASSERT_OK((*pipe)->StartCommit(first, first_outputs));
  EXPECT_TRUE((*pipe)->commit_in_flight());
  EXPECT_FALSE((*pipe)->StartCommit(first, first_outputs)) << "one commit at a time";
  Send(1, kMessages / 2, kMessages);
  std::vector<InputMessage> meanwhile = poll_up_to(kMessages / 2);
  ASSERT_EQ(meanwhile.size(), static_cast<size_t>(kMessages / 2)) << "the next messages come while it commits";
  Status failed = (*pipe)->AwaitCommit(meanwhile);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code(), Error::Code::kUnavailable) << failed.error().message();
  EXPECT_FALSE((*pipe)->commit_in_flight());

  std::vector<InputMessage> again = poll_up_to(kMessages);
  std::multiset<std::string> expected = values_of(first);
  expected.merge(values_of(meanwhile));
  EXPECT_EQ(values_of(again), expected) << "both read again, once each";

  std::vector<OutputMessage> again_outputs = OutputsOf(again);
  ASSERT_OK((*pipe)->StartCommit(again, again_outputs));
  // Nothing more to read: the poll returns when the commit finishes, not after its idle wait.
  const auto started = std::chrono::steady_clock::now();
  auto nothing = (*pipe)->PollBatch(std::chrono::seconds(60));
  ASSERT_OK(nothing);
  EXPECT_TRUE(nothing->empty());
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(30));
  EXPECT_TRUE((*pipe)->commit_finished());
  ASSERT_OK((*pipe)->AwaitCommit({}));
  // Nothing uncommitted is read again by a new member of the group.
  pipe->reset();
  auto next = TransactionalPipe::Create({.kafka = kafka,
                                         .group = "overlap",
                                         .input_topics = {"in"},
                                         .output_topics = {"out"},
                                         .transactional_id = "overlap-1"});
  ASSERT_OK(next);
  auto rest = (*next)->PollBatch(std::chrono::seconds(3));
  ASSERT_OK(rest);
  EXPECT_TRUE(rest->empty()) << rest->size() << " messages read again after their commit";
}

// What a service holds toward its next commit (processed while one was in flight) counts
// against the batch limits: a poll fills only the rest, so that memory stays within a batch.
TEST_F(MockPipeTest, APollFillsOnlyWhatTheHeldMessagesLeaveOfABatch) {
  Send(0, 0, 10);
  auto pipe = TransactionalPipe::Create({.kafka = kafka,
                                         .group = "held",
                                         .input_topics = {"in"},
                                         .output_topics = {"out"},
                                         .transactional_id = "held-0",
                                         .max_batch = 4,
                                         .max_wait = std::chrono::milliseconds(0)});
  ASSERT_OK(pipe);
  std::vector<InputMessage> held = PollUpTo(**pipe, 3);
  ASSERT_GE(held.size(), 3u);
  held.resize(3);
  EXPECT_FALSE((*pipe)->Fills(held));
  std::vector<InputMessage> more = PollUpTo(**pipe, 1, held);
  ASSERT_EQ(more.size(), 1u) << "room for one of the batch of 4";
  held.push_back(more.front());
  EXPECT_TRUE((*pipe)->Fills(held));
  // However much is held, a poll still takes one message: a service never stalls on it.
  auto one = (*pipe)->PollBatch(std::chrono::seconds(5), held);
  ASSERT_OK(one);
  EXPECT_EQ(one->size(), 1u);
}

// A transaction that outlives transaction.timeout.ms (its outputs timed out while a broker was
// away: the chaos run) is aborted by the coordinator, which bumps the epoch; the producer's own
// abort then finds itself fenced, though no other instance took its id. The pipe goes on with
// a new producer under the same id, and the batch is read again, instead of stopping.
// A transaction whose outputs were answered only after transaction.timeout.ms; with
// `offsets_late`, the offsets too, so that the timeout is reported first by
// send_offsets_to_transaction, with another code than the outputs' (_TIMED_OUT, not
// _MSG_TIMED_OUT), as a loaded machine once had it.
void MockPipeTest::OutliveTheTimeout(bool offsets_late) {
  {
    auto producer = Producer::Create(kafka);
    ASSERT_OK(producer);
    for (int i = 0; i < 4; ++i) ASSERT_OK((*producer)->Send("in", {std::to_string(i), fmt::format("m{}", i), {}}));
    ASSERT_OK((*producer)->Flush());
  }
  KafkaConfig short_timeout = kafka;
  short_timeout.properties["producer.transaction.timeout.ms"] = "1500";
  auto pipe = TransactionalPipe::Create({.kafka = short_timeout,
                                         .group = "outlived",
                                         .input_topics = {"in"},
                                         .output_topics = {"out"},
                                         .transactional_id = "outlived-0"});
  ASSERT_OK(pipe);
  std::vector<InputMessage> batch = PollUpTo(**pipe, 4);
  ASSERT_EQ(batch.size(), 4u);
  std::vector<OutputMessage> outputs = OutputsOf(batch);

  // The Kafka protocol's api keys.
  constexpr int16_t kProduce = 0, kInitProducerId = 22, kAddOffsetsToTxn = 25;
  // The outputs' answer comes after they timed out; or the offsets' answer does, and the
  // coordinator's answers about the outputs' partitions queue behind it, so that the outputs
  // time out unsent. The epoch bump of the abort is refused as fenced.
  const int16_t late = offsets_late ? kAddOffsetsToTxn : kProduce;
  ASSERT_EQ(rd_kafka_mock_broker_push_request_error_rtts(mock, 1, late, 1, RD_KAFKA_RESP_ERR_NO_ERROR, 4000),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_mock_push_request_errors(mock, kInitProducerId, 1, RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
  Status failed = (*pipe)->Commit(batch, outputs);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code(), Error::Code::kUnavailable) << failed.error().message();
  EXPECT_THAT(failed.error().message(), ::testing::ContainsRegex("[Tt]imed out"));
  if (offsets_late) {
    EXPECT_THAT(failed.error().message(), ::testing::HasSubstr("sending offsets"));
  }

  std::vector<InputMessage> again = PollUpTo(**pipe, 4);
  ASSERT_EQ(again.size(), 4u) << "the batch is read again";
  ASSERT_OK((*pipe)->Commit(again, outputs));
}

TEST_F(MockPipeTest, ATransactionThatOutlivedItsTimeoutIsRenewedNotStopped) { OutliveTheTimeout(false); }

TEST_F(MockPipeTest, ATransactionThatOutlivedItsTimeoutWhileSendingOffsetsIsRenewedNotStopped) {
  OutliveTheTimeout(true);
}

}  // namespace
}  // namespace iotinfer::kafka
