// The sink against the real broker and the real MongoDB-protocol server that the `kafka` and
// `mongo` ctest fixtures start (plus, for the outage test, a private server it may kill).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "analytics/batch.h"
#include "analytics/latency.h"
#include "analytics_test_util.h"
#include "infer_test_util.h"
#include "kafka_test_util.h"
#include "private_mongo.h"
#include "process_util.h"
#include "produce/produce.h"
#include "sink/sink.h"
#include "stream/stream.h"
#include "test_util.h"

namespace iotinfer::sink {
namespace {

using iotinfer::testing::PrivateMongo;
using iotinfer::testing::ReadAll;
using iotinfer::testing::UniqueTopic;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kMongo = "mongodb://127.0.0.1:27017";

// A sink's topics, group and database, unique to one test.
struct Names {
  std::string inferences = UniqueTopic("sink-inferences");
  std::string dlq = UniqueTopic("sink-dlq");
  std::string accepted = UniqueTopic("sink-accepted");
  std::string group = UniqueTopic("sink-group");
  std::string database = "sink_test_" + std::to_string(getpid()) + "_" + std::to_string(++counter);
  static inline int counter = 0;

  SinkOptions Options(const std::string& uri = kMongo) const {
    SinkOptions o;
    o.input_topic = inferences;
    o.dlq_topic = dlq;
    o.accepted_topic = accepted;
    o.group = group;
    o.store = {.uri = uri, .database = database, .timeout = milliseconds(1000)};
    o.flush_interval = milliseconds(50);
    o.log_every = milliseconds(0);
    return o;
  }
};

std::unique_ptr<store::Store> OpenStore(const std::string& uri, const std::string& database) {
  auto store = store::Store::Open({.uri = uri, .database = database});
  EXPECT_TRUE(store) << store.error().message();
  return store ? std::move(*store) : nullptr;
}

// Runs RunSink in a thread until `done` holds for its counters or `timeout` passes.
Result<SinkStats> RunSinkUntil(const SinkOptions& options, const std::function<bool(const SinkStats&)>& done,
                               std::chrono::seconds timeout) {
  std::atomic<bool> stop{false};
  Result<SinkStats> result = std::unexpected(Error::Internal("did not run"));
  std::thread service([&] {
    result = RunSink(options, stop, [&](const SinkStats& s) {
      if (done(s)) stop = true;
    });
  });
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!stop && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(50));
  stop = true;
  service.join();
  return result;
}

InferenceRecord Record(int i) {
  return {.id = fmt::format("rec-{}", i),
          .image_prediction = i % 3 ? "Bag" : "Coat",
          .actual_value = i % 5 ? std::optional<std::string>("Bag") : std::nullopt,
          .producer_id = i % 8,
          .confidence = 0.9,
          .model = "fmnist-cnn-test",
          .produced_at_us = 1'700'000'000'000'000 + i,
          .inferred_at_us = 1'700'000'000'100'000 + i};
}

// Sends `values` to `topic` as they are, keyed like infer's records.
void Send(const std::string& topic, const std::vector<std::string>& values) {
  auto producer = kafka::Producer::Create({});
  ASSERT_OK(producer);
  for (size_t i = 0; i < values.size(); ++i) {
    ASSERT_OK((*producer)->Send(topic, {std::to_string(i % 8), values[i], {}}));
  }
  ASSERT_OK((*producer)->Flush());
  ASSERT_EQ((*producer)->stats().acknowledged, static_cast<int64_t>(values.size()));
}

std::vector<std::string> Encoded(int from, int to) {
  std::vector<std::string> values;
  for (int i = from; i < to; ++i) values.push_back(EncodeInferenceRecord(Record(i)));
  return values;
}

// What a store keeps of a record: timestamps to the millisecond.
InferenceRecord AsStored(InferenceRecord r) {
  if (r.produced_at_us) r.produced_at_us = *r.produced_at_us / 1000 * 1000;
  r.inferred_at_us = r.inferred_at_us / 1000 * 1000;
  // The stage times travel on the topics for `report latency --stages`; the store keeps none.
  r.appended_at_us = r.polled_at_us = r.batch_at_us = std::nullopt;
  return r;
}

std::map<std::string, InferenceRecord> StoredById(store::Store& store) {
  std::map<std::string, InferenceRecord> by_id;
  Status scanned = store.Scan({}, [&](const store::StoredRecord& s) {
    EXPECT_TRUE(by_id.emplace(s.record.id, s.record).second) << "duplicate id " << s.record.id;
    return Ok();
  });
  EXPECT_TRUE(scanned) << scanned.error().message();
  return by_id;
}

TEST(SinkIntegrationTest, PipelineStoresEachInferenceOnceAndAReplayChangesNothing) {
  Names names;
  const std::string images = UniqueTopic("sink-images");
  constexpr int kImages = 400;
  produce::ProduceOptions produce_options;
  produce_options.topic = images;
  produce_options.images = kImages;
  produce_options.format = ImageEncoding::kRaw;
  auto produced = produce::Produce(produce_options);
  ASSERT_OK(produced);
  ASSERT_EQ(produced->acknowledged, kImages);
  infer::InferOptions infer_options;
  infer_options.input_topic = images;
  infer_options.output_topic = names.inferences;
  infer_options.dlq_topic = UniqueTopic("sink-images-dlq");
  infer_options.group = UniqueTopic("sink-infer");
  infer_options.log_every = milliseconds(0);
  auto inferred = iotinfer::testing::RunInferUntil(infer_options, kImages, seconds(120));
  ASSERT_OK(inferred);
  ASSERT_EQ(inferred->inferred, kImages);

  auto first = RunSinkUntil(
      names.Options(), [](const SinkStats& s) { return s.consumed >= kImages; }, seconds(120));
  ASSERT_OK(first);
  EXPECT_EQ(first->consumed, kImages);
  EXPECT_EQ(first->inserted, kImages);
  EXPECT_EQ(first->dead_lettered, 0);

  // Every stored record went through every stage, and `report latency --stages` can tell
  // each apart: the topics the services made stamp records with the broker's append time.
  iotinfer::testing::TempDir charts;
  analytics::LatencyOptions latency{.topic = names.accepted, .out_dir = charts.file("charts"), .stages = true};
  auto stages = analytics::ReportLatencyStages(latency);
  ASSERT_OK(stages);
  EXPECT_EQ(stages->records, kImages);
  EXPECT_EQ(stages->complete, kImages);
  ASSERT_EQ(stages->stages.size(), 8u);
  double at_p50 = 0;
  for (size_t s = 0; s < stages->stages.size(); ++s) {
    const auto& stage = stages->stages[s];
    EXPECT_EQ(stage.latency.count, kImages) << stage.name;
    // A broker's append time is whole milliseconds, so a stage that ends at one can seem to
    // end up to 1 ms early; no stage runs backwards by more.
    EXPECT_GT(stage.latency.sorted_ms.front(), -1.0) << stage.name;
    at_p50 += stages->at_p50_ms[s];
  }
  EXPECT_GT(stages->end_to_end.p50_ms, 0);
  // Around the median, the stages' means add up to the records' own end-to-end latency.
  EXPECT_NEAR(at_p50, stages->end_to_end.p50_ms, 0.25 * stages->end_to_end.p50_ms + 1);
  ASSERT_EQ(stages->charts.size(), 2u);
  EXPECT_GT(std::filesystem::file_size(stages->charts[0]), 1000u);

  std::map<std::string, InferenceRecord> published;
  ASSERT_OK(kafka::ScanTopic({}, names.inferences, [&](const kafka::InputMessage& in) -> Status {
    ASSIGN_OR_RETURN(InferenceRecord r, DecodeInferenceRecord(in.message.value));
    std::string id = r.id;
    published.emplace(std::move(id), AsStored(std::move(r)));
    return Ok();
  }));
  ASSERT_EQ(published.size(), static_cast<size_t>(kImages));
  auto store = OpenStore(kMongo, names.database);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Count({}).value(), kImages);
  EXPECT_EQ(StoredById(*store), published);

  // A second sink group reads `inferences` from offset 0 into the same collection: each
  // record finds itself, stored from its own offset.
  SinkOptions replay_options = names.Options();
  replay_options.group = UniqueTopic("sink-replay");
  auto replay = RunSinkUntil(
      replay_options, [](const SinkStats& s) { return s.consumed >= kImages; }, seconds(120));
  ASSERT_OK(replay);
  EXPECT_EQ(replay->consumed, kImages);
  EXPECT_EQ(replay->inserted, 0);
  EXPECT_EQ(replay->replayed, kImages);
  EXPECT_EQ(store->Count({}).value(), kImages);
  EXPECT_EQ(StoredById(*store), published);
}

// Records that come one by one are stored as they come, and committed (offsets and
// publication to the accepted topic) at most once per commit interval: each stored and
// published once, in a handful of transactions rather than one a record.
TEST(SinkIntegrationTest, RecordsThatTrickleInAreCommittedOncePerInterval) {
  Names names;
  ASSERT_OK(kafka::EnsureTopics({}, {{names.inferences}, {names.dlq}, {names.accepted}}));
  SinkOptions options = names.Options();
  options.flush_interval = milliseconds(0);
  options.commit_interval = milliseconds(300);
  constexpr int kRecords = 40;
  std::atomic<int> partitions{0};
  std::chrono::steady_clock::time_point started;
  // Sent once the sink has its partitions, so that it sees them come one at a time.
  std::thread sender([&] {
    auto producer = kafka::Producer::Create({});
    ASSERT_OK(producer);
    const auto assigned_by = std::chrono::steady_clock::now() + seconds(60);
    while (partitions == 0 && std::chrono::steady_clock::now() < assigned_by) {
      std::this_thread::sleep_for(milliseconds(50));
    }
    started = std::chrono::steady_clock::now();
    for (const std::string& value : Encoded(0, kRecords)) {
      ASSERT_OK((*producer)->Send(names.inferences, {"1", value, {}}));
      ASSERT_OK((*producer)->Flush());
      std::this_thread::sleep_for(milliseconds(25));
    }
  });
  auto result = RunSinkUntil(
      options,
      [&](const SinkStats& s) {
        partitions = s.partitions;
        return s.consumed >= kRecords;
      },
      seconds(120));
  sender.join();
  const double elapsed_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  ASSERT_OK(result);
  EXPECT_EQ(result->consumed, kRecords);
  EXPECT_EQ(result->inserted, kRecords);
  EXPECT_GE(result->batches, 2);
  EXPECT_LE(result->batches, static_cast<int64_t>(elapsed_ms / 300) + 2) << elapsed_ms << " ms";
  EXPECT_EQ(ReadAll(names.accepted, kRecords, seconds(1)).size(), static_cast<size_t>(kRecords));
  auto store = OpenStore(kMongo, names.database);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Count({}).value(), kRecords);
}

TEST(SinkIntegrationTest, InvalidRecordsAreDeadLetteredWithReasonsAndGoodOnesStored) {
  Names names;
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"", "not valid JSON"},
      {"{\"id\":\"x\"", "not valid JSON"},
      {"[1,2]", "not a JSON object"},
      {R"({"image_prediction":"Bag","actual_value":"Bag","producer_id":1})", "missing field 'id'"},
      {R"({"id":7,"image_prediction":"Bag","actual_value":"Bag","producer_id":1})", "field 'id'"},
      {R"({"id":"","image_prediction":"Bag","actual_value":"Bag","producer_id":1})", "field 'id'"},
      {R"({"id":"b1","actual_value":"Bag","producer_id":1})", "missing field 'image_prediction'"},
      {R"({"id":"b2","image_prediction":"Bag","producer_id":1})", "missing field 'actual_value'"},
      {R"({"id":"b3","image_prediction":"Bag","actual_value":5,"producer_id":1})", "field 'actual_value'"},
      {R"({"id":"b4","image_prediction":"Bag","actual_value":"Bag"})", "missing field 'producer_id'"},
      {R"({"id":"b5","image_prediction":"Bag","actual_value":"Bag","producer_id":"3"})", "field 'producer_id'"},
      {R"({"id":"b6","image_prediction":"Bag","actual_value":"Bag","producer_id":-1})", "field 'producer_id'"},
      {R"({"id":"b7","image_prediction":"Bag","actual_value":"Bag","producer_id":1.5})", "field 'producer_id'"},
      {R"({"id":"b8","image_prediction":"Bag","actual_value":"Bag","producer_id":1,"confidence":"x"})",
       "field 'confidence'"},
      {R"({"id":"b9","image_prediction":"Bag","actual_value":"Bag","producer_id":1,"inferred_at":"now"})",
       "field 'inferred_at'"},
  };
  std::vector<std::string> values;
  constexpr int kGood = 200;
  for (int i = 0; i < kGood; ++i) {
    values.push_back(EncodeInferenceRecord(Record(i)));
    if (i % 13 == 0 && static_cast<size_t>(i / 13) < bad.size()) values.push_back(bad[i / 13].first);
  }
  ASSERT_OK(kafka::EnsureTopics({}, {{names.inferences}, {names.dlq}}));
  Send(names.inferences, values);
  const int64_t total = static_cast<int64_t>(values.size());
  ASSERT_EQ(total, kGood + static_cast<int64_t>(bad.size()));

  auto stats = RunSinkUntil(
      names.Options(), [&](const SinkStats& s) { return s.consumed >= total; }, seconds(120));
  ASSERT_OK(stats);
  EXPECT_EQ(stats->inserted, kGood);
  EXPECT_EQ(stats->dead_lettered, static_cast<int64_t>(bad.size()));
  EXPECT_EQ(stats->dead_lettered_by_reason[kafka::ReasonIndex(kafka::DeadLetterReason::kInvalidRecord)],
            static_cast<int64_t>(bad.size()));

  auto dead = ReadAll(names.dlq, bad.size(), seconds(2));
  ASSERT_EQ(dead.size(), bad.size());
  std::map<std::string, std::string> reason_by_value;
  for (const auto& m : dead) {
    std::map<std::string, std::string> headers;
    for (const auto& h : m.headers) headers[h.name] = h.value;
    EXPECT_TRUE(headers.contains("failed-at"));
    EXPECT_THAT(headers["source"], ::testing::StartsWith(names.inferences + "/"));
    EXPECT_EQ(headers["reason"], "invalid-record");
    reason_by_value[m.value] = headers["error"];
  }
  for (const auto& [value, reason] : bad) {
    ASSERT_TRUE(reason_by_value.contains(value)) << value;
    EXPECT_THAT(reason_by_value[value], ::testing::HasSubstr(reason)) << value;
  }
  auto store = OpenStore(kMongo, names.database);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Count({}).value(), kGood);
}

// A value near the broker's size limit that is not JSON, between good records on the same
// partition: its dead letter would exceed the dead-letter topic's limit with the value, so it
// goes without it (saying so, and where the original is), and the records around it are stored.
TEST(SinkIntegrationTest, AValueNearTheSizeLimitThatIsNotJsonIsDeadLetteredWithoutIt) {
  Names names;
  ASSERT_OK(kafka::EnsureTopics({}, {{names.inferences, 2}, {names.dlq, 2}}));
  kafka::KafkaConfig big_messages;
  big_messages.properties["message.max.bytes"] = "1040000";
  auto producer = kafka::Producer::Create(big_messages);
  ASSERT_OK(producer);
  constexpr int kGood = 200;
  for (int i = 0; i < kGood; ++i) {
    ASSERT_OK((*producer)->Send(names.inferences, {"1", EncodeInferenceRecord(Record(i)), {}}));
    if (i == kGood / 2) ASSERT_OK((*producer)->Send(names.inferences, {"1", std::string(1'000'000, '{'), {}}));
  }
  ASSERT_OK((*producer)->Flush());
  ASSERT_EQ((*producer)->stats().acknowledged, kGood + 1);

  auto stats = RunSinkUntil(
      names.Options(), [&](const SinkStats& s) { return s.consumed >= kGood + 1; }, seconds(60));
  ASSERT_OK(stats);
  EXPECT_EQ(stats->inserted, kGood);
  EXPECT_EQ(stats->dead_lettered, 1);
  EXPECT_EQ(stats->aborted, 0);

  auto dead = ReadAll(names.dlq, 1, seconds(1));
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_TRUE(dead[0].value.empty());
  ASSERT_NE(dead[0].FindHeader("payload-dropped"), nullptr);
  EXPECT_THAT(*dead[0].FindHeader("payload-dropped"), ::testing::HasSubstr("1000000 bytes"));
  ASSERT_NE(dead[0].FindHeader("error"), nullptr);
  EXPECT_THAT(*dead[0].FindHeader("error"), ::testing::HasSubstr("not valid JSON"));
  ASSERT_NE(dead[0].FindHeader("source"), nullptr);
  EXPECT_THAT(*dead[0].FindHeader("source"), ::testing::StartsWith(names.inferences + "/"));
  auto store = OpenStore(kMongo, names.database);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Count({}).value(), kGood);
}

// `iotinfer sink` as a process, to be killed with SIGKILL mid-run, restarted, then stopped with SIGTERM.
std::unique_ptr<iotinfer::testing::IotinferProcess> StartSink(const Names& names) {
  return std::make_unique<iotinfer::testing::IotinferProcess>(std::vector<std::string>{"sink",
                                                                                       "--store",
                                                                                       kMongo,
                                                                                       "--db",
                                                                                       names.database,
                                                                                       "--group",
                                                                                       names.group,
                                                                                       "--instance-id",
                                                                                       "only",
                                                                                       "--input-topic",
                                                                                       names.inferences,
                                                                                       "--dlq-topic",
                                                                                       names.dlq,
                                                                                       "--accepted-topic",
                                                                                       names.accepted,
                                                                                       "--batch-max",
                                                                                       "40",
                                                                                       "--flush-ms",
                                                                                       "5",
                                                                                       "--log-every-ms",
                                                                                       "0"});
}

// Polls the document count until `done` holds for it or `timeout` passes; the last count.
int64_t WaitForCount(store::Store& store, const std::function<bool(int64_t)>& done, seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int64_t count = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    count = store.Count({}).value_or(-1);
    if (done(count)) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  return count;
}

TEST(SinkIntegrationTest, KillNineAndRestartStillStoresEachRecordOnce) {
  Names names;
  constexpr int kRecords = 4000;
  ASSERT_OK(kafka::EnsureTopics({}, {{names.inferences}, {names.dlq}}));
  Send(names.inferences, Encoded(0, kRecords));
  auto store = OpenStore(kMongo, names.database);
  ASSERT_NE(store, nullptr);

  auto sink = StartSink(names);
  const int64_t at_kill = WaitForCount(
      *store, [](int64_t n) { return n >= 400; }, seconds(60));
  const int killed = sink->Signal(SIGKILL);
  EXPECT_TRUE(WIFSIGNALED(killed));
  ASSERT_GE(at_kill, 400);
  ASSERT_LT(store->Count({}).value(), kRecords) << "the kill came too late to be mid-run";

  sink = StartSink(names);
  EXPECT_EQ(WaitForCount(
                *store, [](int64_t n) { return n >= kRecords; }, seconds(120)),
            kRecords);
  const int stopped = sink->Signal(SIGTERM);
  ASSERT_TRUE(WIFEXITED(stopped));
  EXPECT_EQ(WEXITSTATUS(stopped), 0);

  EXPECT_EQ(store->Count({}).value(), kRecords);
  std::map<std::string, InferenceRecord> want;
  for (int i = 0; i < kRecords; ++i) want.emplace(Record(i).id, AsStored(Record(i)));
  EXPECT_EQ(StoredById(*store), want);
  EXPECT_TRUE(ReadAll(names.dlq, 0, seconds(1)).empty());
  // What stream counts: each stored record once, although the killed sink had written some
  // of them without committing.
  std::map<std::string, int> published;
  for (const WireMessage& m : ReadAll(names.accepted, kRecords, seconds(1))) {
    published[DecodeInferenceRecord(m.value).value().id]++;
  }
  EXPECT_EQ(published.size(), static_cast<size_t>(kRecords));
  EXPECT_TRUE(std::ranges::all_of(published, [](const auto& p) { return p.second == 1; }));
}

// Devices reuse ids: a retry sends an id again with the same device fields (a duplicate:
// counted, not stored), a reused id comes with other ones (a conflict: dead-lettered with
// the reason). The first record of an id wins in the store and is the only one published to
// the accepted topic, so stream's counts of that topic equal batch's of the store.
TEST(SinkIntegrationTest, ReusedIdsFirstRecordWinsAndStreamCountsWhatBatchCounts) {
  Names names;
  constexpr int kRecords = 600, kRetried = 100, kReused = 50;
  ASSERT_OK(kafka::EnsureTopics({}, {{names.inferences}, {names.dlq}}));
  std::vector<std::string> values = Encoded(0, kRecords);
  // Send keys value i by i % 8: each later record of an id lands behind the first.
  for (int i = 0; i < kRetried; ++i) {
    InferenceRecord retry = Record(i);
    retry.image_prediction = "Shirt";  // inferred again, by another model perhaps
    retry.inferred_at_us += 5000;
    values.push_back(EncodeInferenceRecord(retry));
  }
  for (int i = kRetried; i < kRetried + kReused; ++i) {
    InferenceRecord reused = Record(i);
    reused.producer_id = 42;
    reused.actual_value = "Coat";
    values.push_back(EncodeInferenceRecord(reused));
  }
  Send(names.inferences, values);
  auto sunk = RunSinkUntil(
      names.Options(), [&](const SinkStats& s) { return s.consumed >= static_cast<int64_t>(values.size()); },
      seconds(120));
  ASSERT_OK(sunk);
  EXPECT_EQ(sunk->inserted, kRecords);
  EXPECT_EQ(sunk->duplicates, kRetried);
  EXPECT_EQ(sunk->conflicts, kReused);
  EXPECT_EQ(sunk->dead_lettered, kReused);
  EXPECT_EQ(sunk->dead_lettered_by_reason[kafka::ReasonIndex(kafka::DeadLetterReason::kIdConflict)], kReused);
  auto store = OpenStore(kMongo, names.database);
  ASSERT_NE(store, nullptr);
  std::map<std::string, InferenceRecord> want;
  for (int i = 0; i < kRecords; ++i) want.emplace(Record(i).id, AsStored(Record(i)));
  EXPECT_EQ(StoredById(*store), want);
  const std::vector<WireMessage> dead = ReadAll(names.dlq, kReused, seconds(1));
  ASSERT_EQ(dead.size(), static_cast<size_t>(kReused));
  for (const WireMessage& m : dead) {
    ASSERT_NE(m.FindHeader("error"), nullptr);
    EXPECT_THAT(*m.FindHeader("error"), ::testing::HasSubstr("the first record of an id wins"));
    ASSERT_NE(m.FindHeader("reason"), nullptr);
    EXPECT_EQ(*m.FindHeader("reason"), "id-conflict");
  }
  EXPECT_EQ(ReadAll(names.accepted, kRecords, seconds(1)).size(), static_cast<size_t>(kRecords));

  stream::StreamOptions stream_options;
  stream_options.topic = names.accepted;
  stream_options.group = UniqueTopic("sink-stream");
  stream_options.store = {.uri = kMongo, .database = names.database};
  stream_options.update_interval = milliseconds(100);
  stream_options.log_every = milliseconds(0);
  std::atomic<bool> stop{false};
  Result<stream::StreamStats> streamed = std::unexpected(Error::Internal("did not run"));
  std::atomic<bool> counted{false};
  std::thread stream([&] {
    streamed = stream::RunStream(stream_options, stop, [&](const stream::StreamStats& s) {
      if (s.consumed >= kRecords && s.updates > 0) counted = true;
    });
  });
  const auto deadline = std::chrono::steady_clock::now() + seconds(120);
  while (!counted && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(50));
  stop = true;
  stream.join();
  EXPECT_TRUE(counted) << "stream did not count the accepted records within 120 s";
  ASSERT_OK(streamed);
  auto live = store->ReadResults();
  ASSERT_OK(live);
  auto batch = analytics::RunBatch(
      {.store = {.uri = kMongo, .database = names.database}, .engine = analytics::BatchEngine::kNative, .out_dir = ""});
  ASSERT_OK(batch);
  EXPECT_EQ(iotinfer::testing::CountsOf(*live), iotinfer::testing::CountsOf(batch->results));
  EXPECT_EQ(batch->documents, kRecords);
}

// The sink's /readyz status and body (0 when it does not answer).
std::pair<int, std::string> Readiness(int port) {
  httplib::Client client("127.0.0.1", port);
  auto response = client.Get("/readyz");
  return response ? std::pair{response->status, response->body} : std::pair{0, std::string()};
}

TEST(SinkIntegrationTest, StoreKilledForTenSecondsLosesAndDuplicatesNothing) {
  PrivateMongo mongo;
  mongo.Up();
  Names names;
  constexpr int kRecords = 3000;
  ASSERT_OK(kafka::EnsureTopics({}, {{names.inferences}, {names.dlq}}));
  SinkOptions options = names.Options(mongo.uri());
  options.batch_max = 100;
  options.retry_initial = milliseconds(100);
  options.retry_max = milliseconds(1000);
  const int http_port = iotinfer::testing::FreePort();
  options.endpoints = ops::EndpointOptions{.port = http_port};

  std::atomic<bool> stop{false};
  std::atomic<int64_t> consumed{0};
  Result<SinkStats> result = std::unexpected(Error::Internal("did not run"));
  std::thread service([&] { result = RunSink(options, stop, [&](const SinkStats& s) { consumed = s.consumed; }); });
  // Records keep coming before, during and after the outage.
  std::thread feeder([&] {
    for (int from = 0; from < kRecords; from += 200) {
      Send(names.inferences, Encoded(from, from + 200));
      std::this_thread::sleep_for(milliseconds(1000));
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  while (consumed < 400 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(20));
  EXPECT_EQ(Readiness(http_port).first, 200) << "partitions assigned and the store answers";
  mongo.KillNine();
  const int64_t at_kill = consumed;
  std::this_thread::sleep_for(seconds(10));
  const int64_t during_outage = consumed;
  const auto unready = Readiness(http_port);
  EXPECT_EQ(unready.first, 503) << "the store is down: take the pod out of service";
  EXPECT_THAT(unready.second, ::testing::HasSubstr("store is unavailable"));
  mongo.Up();
  feeder.join();
  while (consumed < kRecords && std::chrono::steady_clock::now() < deadline + seconds(60)) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_EQ(Readiness(http_port).first, 200) << "ready again once the store is back";
  httplib::Client client("127.0.0.1", http_port);
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_THAT(metrics->body, ::testing::HasSubstr(fmt::format("iotinfer_sink_consumed_total {}", kRecords)));
  EXPECT_THAT(metrics->body, ::testing::HasSubstr("iotinfer_sink_store_write_seconds_count"));
  EXPECT_THAT(metrics->body, ::testing::Not(::testing::HasSubstr("iotinfer_sink_store_retries_total 0\n")));
  stop = true;
  service.join();
  ASSERT_OK(result);
  EXPECT_GE(at_kill, 400);
  EXPECT_LE(during_outage - at_kill, options.batch_max) << "consumed on while the store was down";
  EXPECT_GT(result->store_retries, 0);
  EXPECT_EQ(result->consumed, kRecords);
  auto store = OpenStore(mongo.uri(), names.database);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Count({}).value(), kRecords);
  EXPECT_EQ(StoredById(*store).size(), static_cast<size_t>(kRecords));
}

// 5,000 records of 100 KB (valid, padded with a field the services ignore) arrive while the
// store is down for 60 s. The sink holds one batch and consumes no more; the stream counts on
// in memory. Each stays under 384 MiB resident, and once the store is back every record is
// stored once and counted once. Batches end at 64 MiB and prefetch at 16 MiB: before, a sink
// batch was 5,000 records whatever their size (500 MB here), a stream poll 10,000 (1 GB).
TEST(SinkIntegrationTest, SinkAndStreamHoldTheirMemoryThroughAMinuteLongStoreOutage) {
  if (iotinfer::testing::kSanitized) GTEST_SKIP() << "the sanitizer's shadow memory would be measured";
  PrivateMongo mongo;
  mongo.Up();
  Names names;
  constexpr int kRecords = 5000;
  ASSERT_OK(kafka::EnsureTopics({}, {{names.inferences}, {names.dlq}}));
  const int sink_port = iotinfer::testing::FreePort(), stream_port = iotinfer::testing::FreePort();
  auto sink = std::make_unique<iotinfer::testing::IotinferProcess>(
      std::vector<std::string>{"sink", "--store", mongo.uri(), "--db", names.database, "--group", names.group,
                               "--input-topic", names.inferences, "--dlq-topic", names.dlq, "--accepted-topic",
                               names.accepted, "--log-every-ms", "0", "--http-port", std::to_string(sink_port)});
  auto stream = std::make_unique<iotinfer::testing::IotinferProcess>(std::vector<std::string>{
      "stream", "--store", mongo.uri(), "--db", names.database, "--group", names.group + "-stream", "--topic",
      names.inferences, "--log-every-ms", "0", "--http-port", std::to_string(stream_port)});
  for (int port : {sink_port, stream_port}) {
    const auto deadline = std::chrono::steady_clock::now() + seconds(60);
    while (Readiness(port).first != 200 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(100));
    }
    ASSERT_EQ(Readiness(port).first, 200);
  }
  mongo.KillNine();
  const auto outage_start = std::chrono::steady_clock::now();
  {
    kafka::KafkaConfig config;
    config.properties["queue.buffering.max.kbytes"] = "65536";
    auto producer = kafka::Producer::Create(config);
    ASSERT_OK(producer);
    const std::string padding = fmt::format(R"(,"padding":"{}"}})", std::string(100'000, 'p'));
    for (int i = 0; i < kRecords; ++i) {
      std::string value = EncodeInferenceRecord(Record(i));
      value.pop_back();  // its closing brace
      ASSERT_OK((*producer)->Send(names.inferences, {std::to_string(i % 8), value + padding, {}}));
    }
    ASSERT_OK((*producer)->Flush());
  }
  std::this_thread::sleep_for(seconds(60) - (std::chrono::steady_clock::now() - outage_start));
  EXPECT_EQ(Readiness(sink_port).first, 503);
  mongo.Up();

  auto store = OpenStore(mongo.uri(), names.database);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(WaitForCount(
                *store, [](int64_t n) { return n >= kRecords; }, seconds(120)),
            kRecords);
  int64_t counted = 0;
  for (auto deadline = std::chrono::steady_clock::now() + seconds(60);
       counted < kRecords && std::chrono::steady_clock::now() < deadline;
       std::this_thread::sleep_for(milliseconds(200))) {
    counted = 0;
    if (auto results = store->ReadResults()) {
      for (const auto& r : *results) counted += r.total;
    }
  }
  EXPECT_EQ(counted, kRecords);
  const int64_t sink_peak = sink->PeakRss(), stream_peak = stream->PeakRss();
  std::fprintf(stderr, "peak RSS: sink %.0f MiB, stream %.0f MiB\n", sink_peak / 1048576.0, stream_peak / 1048576.0);
  EXPECT_GT(sink_peak, 0);
  EXPECT_LT(sink_peak, int64_t{384} << 20);
  EXPECT_GT(stream_peak, 0);
  EXPECT_LT(stream_peak, int64_t{384} << 20);
  const int sink_status = sink->Signal(SIGTERM), stream_status = stream->Signal(SIGTERM);
  EXPECT_TRUE(WIFEXITED(sink_status) && WEXITSTATUS(sink_status) == 0) << sink_status;
  EXPECT_TRUE(WIFEXITED(stream_status) && WEXITSTATUS(stream_status) == 0) << stream_status;
  EXPECT_EQ(StoredById(*store).size(), static_cast<size_t>(kRecords));
}

// The store may come up after the sink; its unique index on id must still exist by the
// first write, or records arriving again (a producer's retry, a replay) would be duplicated.
TEST(SinkIntegrationTest, SinkStartedBeforeItsStoreStillUpsertsByUniqueId) {
  PrivateMongo mongo;
  Names names;
  constexpr int kRecords = 300;
  ASSERT_OK(kafka::EnsureTopics({}, {{names.inferences}, {names.dlq}}));
  Send(names.inferences, Encoded(0, kRecords));
  SinkOptions options = names.Options(mongo.uri());
  options.retry_initial = milliseconds(100);
  options.retry_max = milliseconds(500);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> consumed{0};
  Result<SinkStats> result = std::unexpected(Error::Internal("did not run"));
  std::thread service([&] { result = RunSink(options, stop, [&](const SinkStats& s) { consumed = s.consumed; }); });
  std::this_thread::sleep_for(seconds(2));
  mongo.Up();
  const auto deadline = std::chrono::steady_clock::now() + seconds(90);
  while (consumed < kRecords && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  Send(names.inferences, Encoded(0, kRecords));  // the same ids again, to the same sink
  while (consumed < 2 * kRecords && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  stop = true;
  service.join();
  ASSERT_OK(result);
  EXPECT_EQ(result->consumed, 2 * kRecords);
  EXPECT_EQ(result->inserted, kRecords);
  EXPECT_EQ(result->duplicates, kRecords) << FormatStats(*result);  // the same ids and device fields from other offsets
  auto store = OpenStore(mongo.uri(), names.database);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Count({}).value(), kRecords);
}

// A store that refuses the sink's account stops it at once with the store's reason (opening
// the store creates its indexes), not at its first batch: the topic here stays empty. The
// password shows nowhere.
TEST(SinkIntegrationTest, AStoreThatRefusesTheSinksAccountStopsItAtOnce) {
  if (!PrivateMongo::CanAuthenticate()) GTEST_SKIP() << "the authenticating test server is FerretDB";
  PrivateMongo mongo("iotinfer:iotinfer-dev");
  mongo.Up();
  Names names;
  const auto run =
      iotinfer::testing::Iotinfer(fmt::format("sink --input-topic {} --dlq-topic {} --store '{}'", names.inferences,
                                              names.dlq, mongo.uri("iotinfer", "hunter2-wrong")),
                                  /*timeout_s=*/60);
  EXPECT_NE(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, ::testing::HasSubstr("uthentication failed"));
  EXPECT_THAT(run.output, ::testing::Not(::testing::HasSubstr("hunter2")));
}

}  // namespace
}  // namespace iotinfer::sink
