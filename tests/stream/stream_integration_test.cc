// `iotinfer stream` against the real broker and the real MongoDB-protocol server of the
// `kafka` and `mongo` ctest fixtures: live counts equal to the batch result, also after the
// stream process is killed with SIGKILL at random points.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <random>
#include <span>
#include <thread>

#include "analytics/batch.h"
#include "analytics_test_util.h"
#include "core/inference_record.h"
#include "core/labels.h"
#include "kafka/kafka.h"
#include "kafka_test_util.h"
#include "process_util.h"
#include "stream/command.h"
#include "stream/stream.h"
#include "test_util.h"

namespace iotinfer::stream {
namespace {

using iotinfer::testing::CountsOf;
using iotinfer::testing::OpenCleared;
using iotinfer::testing::SendRecords;
using iotinfer::testing::UniqueTopic;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kMongo = "mongodb://127.0.0.1:27017";

// Varied enough that every producer has its own error rate, unlabelled records included.
InferenceRecord Record(int i, int64_t produced_at_us = 1'700'000'000'000'000) {
  const int producer = i % 8;
  const std::string actual(kFashionMnistClasses[i % 10]);
  const bool wrong = (i / 8) % (producer + 2) == 0;
  return {.id = fmt::format("s-{}", i),
          .image_prediction = wrong ? std::string(kFashionMnistClasses[(i * 7 + 3) % 10]) : actual,
          .actual_value = i % 13 == 0 ? std::nullopt : std::optional<std::string>(actual),
          .producer_id = producer,
          .confidence = 0.9,
          .model = "fmnist-cnn-test",
          .produced_at_us = produced_at_us,
          .inferred_at_us = produced_at_us + 1000};
}

struct Names {
  std::string topic = UniqueTopic("stream-inferences");
  std::string group = UniqueTopic("stream-group");
  std::string database = "stream_test_" + std::to_string(getpid()) + "_" + std::to_string(++counter);
  static inline int counter = 0;
};

int64_t Total(const std::vector<ProducerResult>& results) {
  int64_t total = 0;
  for (const auto& r : results) total += r.total;
  return total;
}

// What `iotinfer batch` says about `records`: the stream must end equal to it.
std::vector<ProducerResult> BatchResult(const std::string& uri, const std::string& database,
                                        const std::vector<InferenceRecord>& records) {
  const std::string batch_db = database + "_batch";
  auto store = OpenCleared(uri, batch_db);
  EXPECT_TRUE(store->Upsert(records));
  auto report = analytics::RunBatch(
      {.store = {.uri = uri, .database = batch_db}, .engine = analytics::BatchEngine::kNative, .out_dir = ""});
  EXPECT_TRUE(report) << report.error().message();
  return report ? report->results : std::vector<ProducerResult>{};
}

// Polls the store until its results count `expected` records or `timeout` passes.
std::vector<ProducerResult> WaitForTotal(store::Store& store, int64_t expected, seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<ProducerResult> results;
  while (std::chrono::steady_clock::now() < deadline) {
    auto read = store.ReadResults();
    if (read) results = *read;
    if (Total(results) >= expected) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  return results;
}

// A stream instance and a thread that stops it; `on_progress` sees every report.
class BackgroundStream {
 public:
  BackgroundStream(const StreamOptions& options, std::function<void(const StreamStats&)> on_progress = {})
      : thread_([this, options, on_progress] { stats_ = RunStream(options, stop_, on_progress); }) {}
  ~BackgroundStream() { Stop(); }
  const Result<StreamStats>& Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return stats_;
  }

 private:
  std::atomic<bool> stop_{false};
  Result<StreamStats> stats_ = std::unexpected(Error::Internal("did not run"));
  std::thread thread_;
};

TEST(StreamIntegrationTest, LiveCountsEqualTheBatchResultAndInvalidRecordsAreSkipped) {
  Names names;
  ASSERT_OK(kafka::EnsureTopics({}, {{names.topic, 4}}));
  std::vector<InferenceRecord> records;
  for (int i = 0; i < 3000; ++i) records.push_back(Record(i));
  SendRecords(names.topic, records, 0, 3000);
  {
    auto producer = kafka::Producer::Create({});
    ASSERT_OK(producer);
    ASSERT_OK((*producer)->Send(names.topic, {"1", "{not json", {}}));
    ASSERT_OK((*producer)->Send(names.topic, {"1", R"({"id":"x","producer_id":"one"})", {}}));
    ASSERT_OK((*producer)->Flush());
  }
  auto store = OpenCleared(kMongo, names.database);
  StreamOptions options;
  options.topic = names.topic;
  options.group = names.group;
  options.store = {.uri = kMongo, .database = names.database};
  options.update_interval = milliseconds(200);
  options.log_every = milliseconds(0);
  const int http_port = iotinfer::testing::FreePort();
  options.endpoints = ops::EndpointOptions{.port = http_port};
  std::atomic<bool> stop{false};
  Result<StreamStats> stats = std::unexpected(Error::Internal("did not run"));
  int64_t updates_seen = 0;
  int ready_status = 0;
  std::string metrics;
  std::thread service([&] {
    stats = RunStream(options, stop, [&](const StreamStats& s) {
      updates_seen = s.updates;
      if (s.consumed >= 3002 && s.updates > 0 && !stop) {
        // While the endpoints still serve.
        httplib::Client client("127.0.0.1", http_port);
        if (auto ready = client.Get("/readyz")) ready_status = ready->status;
        if (auto scraped = client.Get("/metrics")) metrics = scraped->body;
        stop = true;
      }
    });
  });
  const auto deadline = std::chrono::steady_clock::now() + seconds(90);
  while (!stop && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(50));
  stop = true;
  service.join();
  ASSERT_OK(stats);
  EXPECT_EQ(stats->consumed, 3002);
  EXPECT_EQ(stats->invalid, 2);
  EXPECT_EQ(stats->superseded, 0);
  EXPECT_GE(updates_seen, 1);
  EXPECT_EQ(ready_status, 200);
  EXPECT_THAT(metrics, ::testing::HasSubstr("iotinfer_stream_consumed_total 3002\n"));
  EXPECT_THAT(metrics, ::testing::HasSubstr("iotinfer_stream_invalid_total 2\n"));
  EXPECT_THAT(metrics, ::testing::HasSubstr("iotinfer_stream_partitions 4\n"));
  auto live = store->ReadResults();
  ASSERT_OK(live);
  EXPECT_EQ(CountsOf(*live), CountsOf(BatchResult(kMongo, names.database, records)));
  // One state per partition, whose offsets cover every record.
  auto states = store->LoadStreamState(names.group);
  ASSERT_OK(states);
  int64_t next = 0;
  for (const auto& s : *states) next += s.next_offset;
  EXPECT_EQ(states->size(), 4u);
  EXPECT_EQ(next, 3002);
}

TEST(StreamIntegrationTest, KilledWithSigkillAtRandomPointsTheCountsEndExact) {
  Names names;
  ASSERT_OK(kafka::EnsureTopics({}, {{names.topic, 3}}));
  auto store = OpenCleared(kMongo, names.database);
  constexpr int kRecords = 7000;
  std::vector<InferenceRecord> records;
  for (int i = 0; i < kRecords; ++i) records.push_back(Record(i));
  // A static member id: each restart takes its dead predecessor's partitions at once
  // instead of after the session timeout.
  const std::vector<std::string> args{"stream",
                                      "--topic",
                                      names.topic,
                                      "--group",
                                      names.group,
                                      "--store",
                                      kMongo,
                                      "--db",
                                      names.database,
                                      "--update-ms",
                                      "50",
                                      "--batch-max",
                                      "100",
                                      "--log-every-ms",
                                      "0",
                                      "--kafka",
                                      "group.instance.id=" + names.group};
  auto saved_offsets = [&] {
    int64_t sum = 0;
    if (auto states = store->LoadStreamState(names.group)) {
      for (const auto& state : *states) sum += state.next_offset;
    }
    return sum;
  };
  // Each run gets new records, is killed at a random moment once it has saved some of them,
  // and the next run starts from what was saved.
  std::mt19937 rng(static_cast<unsigned>(getpid()));
  int64_t saved = 0;
  int progressed = 0;
  for (int run = 0; run < 6; ++run) {
    SendRecords(names.topic, records, run * 1000, (run + 1) * 1000);
    iotinfer::testing::IotinferProcess stream(args);
    const auto deadline = std::chrono::steady_clock::now() + seconds(30);
    while (saved_offsets() <= saved && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(20));
    }
    std::this_thread::sleep_for(milliseconds(rng() % 300));
    const int status = stream.Signal(SIGKILL);
    EXPECT_TRUE(WIFSIGNALED(status)) << "the stream ended before it was killed (status " << status << ")";
    const int64_t now = saved_offsets();
    if (now > saved) ++progressed;
    saved = now;
  }
  EXPECT_EQ(progressed, 6) << "a run was killed before it saved anything";
  {
    // The last run counts records sent after it started, so a clean stop is tested on a
    // process that is surely running.
    iotinfer::testing::IotinferProcess stream(args);
    SendRecords(names.topic, records, 6000, kRecords);
    auto live = WaitForTotal(*store, kRecords, seconds(120));
    EXPECT_EQ(Total(live), kRecords);
    const int status = stream.Signal(SIGTERM);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  auto live = store->ReadResults();
  ASSERT_OK(live);
  EXPECT_EQ(CountsOf(*live), CountsOf(BatchResult(kMongo, names.database, records)));
}

TEST(StreamIntegrationTest, TwoInstancesShareThePartitionsAndCountEachRecordOnce) {
  Names names;
  ASSERT_OK(kafka::EnsureTopics({}, {{names.topic, 4}}));
  auto store = OpenCleared(kMongo, names.database);
  std::vector<InferenceRecord> records;
  for (int i = 0; i < 4000; ++i) records.push_back(Record(i));
  StreamOptions options;
  options.topic = names.topic;
  options.group = names.group;
  options.store = {.uri = kMongo, .database = names.database};
  options.update_interval = milliseconds(100);
  options.max_batch = 100;
  // The counters line of each instance every 2 s: ctest shows it when the test fails.
  options.log_every = milliseconds(2000);
  struct Progress {
    std::atomic<int> max_partitions{0};
    std::atomic<int64_t> consumed{0};
    std::function<void(const StreamStats&)> Watch() {
      return [this](const StreamStats& s) {
        max_partitions = std::max(max_partitions.load(), s.partitions);
        consumed = s.consumed;
      };
    }
  };
  Progress a, b;
  SendRecords(names.topic, records, 0, 2000);
  BackgroundStream stream_a(options, a.Watch());
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  while (a.consumed == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(20));
  // B joins while A is counting: the group rebalances under load. The second half is sent once
  // B holds partitions; else A, quick on an idle machine, may count everything before B joins.
  BackgroundStream stream_b(options, b.Watch());
  while (b.max_partitions == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  SendRecords(names.topic, records, 2000, 4000);
  auto live = WaitForTotal(*store, 4000, seconds(90));
  const Result<StreamStats>& stats_a = stream_a.Stop();
  const Result<StreamStats>& stats_b = stream_b.Stop();
  ASSERT_OK(stats_a);
  ASSERT_OK(stats_b);
  EXPECT_GT(a.max_partitions, 0) << "an instance never got a partition";
  EXPECT_GT(b.max_partitions, 0) << "an instance never got a partition";
  EXPECT_EQ(Total(live), 4000);
  auto final_results = store->ReadResults();
  ASSERT_OK(final_results);
  EXPECT_EQ(CountsOf(*final_results), CountsOf(BatchResult(kMongo, names.database, records)));
}

// The results `records` should give, on top of `counts`.
iotinfer::testing::ResultCounts Tally(std::span<const InferenceRecord> records,
                                      std::map<int, ProducerCounts> counts = {}) {
  for (const InferenceRecord& r : records) {
    ProducerCounts& c = counts[r.producer_id];
    c.producer_id = r.producer_id;
    c.Add(r.image_prediction, r.actual_value);
  }
  iotinfer::testing::ResultCounts want;
  for (const auto& [producer, c] : counts) want.emplace_back(producer, c.incorrect_count, c.total, c.unlabelled);
  return want;
}

// Options for one instance of the `names` job on the store `uri`: 100 ms updates, no log.
StreamOptions QuietOptions(const Names& names, const std::string& uri) {
  StreamOptions options;
  options.topic = names.topic;
  options.group = names.group;
  options.store = {.uri = uri};
  options.update_interval = milliseconds(100);
  options.log_every = milliseconds(0);
  return options;
}

// One stream job over a fresh topic of `partitions`, on a SQLite store of its own, with
// Record(0..records-1) to send: the setting of the tests that play other instances.
struct SqliteJob {
  SqliteJob(int partitions, int count) {
    EXPECT_TRUE(kafka::EnsureTopics({}, {{names.topic, partitions}}));
    for (int i = 0; i < count; ++i) records.push_back(Record(i));
  }
  StreamOptions Options() const { return QuietOptions(names, uri); }

  Names names;
  const iotinfer::testing::TempDir dir;
  const std::string uri = "sqlite:" + dir.file("stream.db");
  std::unique_ptr<store::Store> store = OpenCleared(uri, "");
  std::vector<InferenceRecord> records;
};

// Instances of one group each rewrite the results from their own read of every partition's
// saved state, so a slow instance's write can land after a newer one. Each instance rewrites
// until it has written the latest states, so the results catch up also when the states
// changed only on another instance's side, which this test plays: it saves the state of a
// partition the running instance does not hold. Before, an idle instance never looked again
// and the stale results stayed (TwoInstances... stalled once that way in CI).
TEST(StreamIntegrationTest, ResultsCatchUpWithStatesSavedByAnotherInstance) {
  SqliteJob job(2, 200);
  const Names& names = job.names;
  auto& store = job.store;
  SendRecords(names.topic, job.records);
  BackgroundStream stream(job.Options());
  EXPECT_EQ(Total(WaitForTotal(*store, 200, seconds(60))), 200);
  const store::StreamState elsewhere{.group = names.group,
                                     .topic = names.topic,
                                     .partition = 7,
                                     .next_offset = 50,
                                     .chunks = {{.key = {std::nullopt, store::StateBucket(42)},
                                                 .as_of = 50,
                                                 .counts = {{.producer_id = 42, .incorrect_count = 3, .total = 50}}}}};
  ASSERT_TRUE(store->SaveStreamState(elsewhere).value_or(false));
  auto live = WaitForTotal(*store, 250, seconds(30));
  EXPECT_EQ(Total(live), 250);
  ASSERT_OK(stream.Stop());
  EXPECT_THAT(CountsOf(live), ::testing::Contains(iotinfer::testing::ResultCounts::value_type{42, 3, 50, 0}));
}

// A save refused because another instance counted the partition further (it held it while
// this one was cut off) makes this instance continue from that state: the other instance's
// counts are kept and records before its offset are not counted again.
TEST(StreamIntegrationTest, AnInstanceContinuesFromAStateSavedFurtherOnElsewhere) {
  SqliteJob job(1, 400);
  const Names& names = job.names;
  auto& store = job.store;
  const std::vector<InferenceRecord>& records = job.records;
  SendRecords(names.topic, records, 0, 100);
  std::atomic<int64_t> superseded{0};
  BackgroundStream stream(job.Options(), [&](const StreamStats& s) { superseded = s.superseded; });
  EXPECT_EQ(Total(WaitForTotal(*store, 100, seconds(60))), 100);
  // The other instance's word: offsets 0-299 counted, as 300 records of producer 42. Every
  // save of this instance is refused until it has read past offset 300.
  // Its chunks replace those of producers 0-7 that this instance saved, as a real state at
  // that offset would.
  const ProducerCounts counted{.producer_id = 42, .incorrect_count = 7, .total = 300};
  store::StreamState further{.group = names.group, .topic = names.topic, .partition = 0, .next_offset = 300};
  further.chunks.push_back({.key = {std::nullopt, store::StateBucket(42)}, .as_of = 300, .counts = {counted}});
  for (int producer = 0; producer < 8; ++producer) {
    further.chunks.push_back({.key = {std::nullopt, store::StateBucket(producer)}, .as_of = 300});
  }
  ASSERT_TRUE(store->SaveStreamState(further).value_or(false));
  SendRecords(names.topic, records, 100, 200);
  const auto deadline = std::chrono::steady_clock::now() + seconds(30);
  while (superseded == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(20));
  EXPECT_GT(superseded, 0) << "no save was refused";
  SendRecords(names.topic, records, 200, 400);
  auto live = WaitForTotal(*store, 400, seconds(60));
  ASSERT_OK(stream.Stop());
  std::map<int, ProducerCounts> expected{{42, counted}};
  EXPECT_EQ(CountsOf(live), Tally(std::span(records).subspan(300), std::move(expected)));
}

// The results write of an instance that has left can land after the remaining instances
// wrote newer ones; with nothing flowing, no state changes to trigger a rewrite. The test
// plays that late write: the running instance puts its totals back. Results that are not
// behind its own (another group or a batch run wrote them) are left alone.
TEST(StreamIntegrationTest, ALateStaleResultsWriteIsPutBackButOtherWritersResultsStay) {
  SqliteJob job(2, 200);
  auto& store = job.store;
  SendRecords(job.names.topic, job.records);
  BackgroundStream stream(job.Options());
  const auto current = WaitForTotal(*store, 200, seconds(60));
  ASSERT_EQ(Total(current), 200);

  std::vector<ProducerResult> stale = current;
  stale.pop_back();
  for (ProducerResult& r : stale) {
    r = ToResult({.producer_id = r.producer_id, .incorrect_count = r.incorrect_count / 2, .total = r.total / 2}, 0);
  }
  ASSERT_OK(store->ReplaceResults(stale));
  auto put_back = WaitForTotal(*store, 200, seconds(10));
  EXPECT_EQ(CountsOf(put_back), CountsOf(current));

  std::vector<ProducerResult> other = current;
  other.push_back(ToResult({.producer_id = 99, .incorrect_count = 1, .total = 5}, 0));
  ASSERT_OK(store->ReplaceResults(other));
  std::this_thread::sleep_for(seconds(1));  // four looks at the store
  auto kept = store->ReadResults();
  ASSERT_OK(kept);
  EXPECT_EQ(CountsOf(*kept), CountsOf(other));
  ASSERT_OK(stream.Stop());
}

std::map<std::pair<int64_t, int>, int64_t> WindowTotals(store::Store& store) {
  std::map<std::pair<int64_t, int>, int64_t> totals;
  auto windows = store.ReadWindowResults();
  EXPECT_TRUE(windows) << windows.error().message();
  if (windows) {
    for (const auto& w : *windows) totals[{w.window_start_us, w.result.producer_id}] = w.result.total;
  }
  return totals;
}

// The same for window documents, which a late write can set back on their own (its totals
// landed before the live instance's write, its windows after): an idle instance looks at
// them every few seconds and puts back its own, and leaves windows it never wrote alone.
TEST(StreamIntegrationTest, ALateStaleWindowWriteIsPutBackButOtherWindowsStay) {
  SqliteJob job(2, 200);
  auto& store = job.store;
  SendRecords(job.names.topic, job.records);
  StreamOptions options = job.Options();
  options.window = seconds(10);
  BackgroundStream stream(options);
  ASSERT_EQ(Total(WaitForTotal(*store, 200, seconds(60))), 200);
  std::map<std::pair<int64_t, int>, int64_t> current;
  const auto deadline = std::chrono::steady_clock::now() + seconds(10);
  do {
    std::this_thread::sleep_for(milliseconds(100));
    current = WindowTotals(*store);
  } while (current.size() < 8 && std::chrono::steady_clock::now() < deadline);
  ASSERT_EQ(current.size(), 8u) << "one window per producer";  // Record(i): one event time

  auto windows = store->ReadWindowResults();
  ASSERT_OK(windows);
  WindowResult stale = windows->front();
  stale.result = ToResult({.producer_id = stale.result.producer_id, .total = stale.result.total / 2}, 0);
  WindowResult other = windows->front();
  other.window_start_us -= 3'600'000'000;  // an hour earlier: a window this instance never wrote
  other.window_end_us -= 3'600'000'000;
  ASSERT_OK(store->UpsertWindowResults(std::vector{stale, other}));
  auto put_back = WindowTotals(*store);
  const auto until = std::chrono::steady_clock::now() + seconds(15);
  while (put_back.size() < current.size() + 1 || put_back.at({stale.window_start_us, stale.result.producer_id}) !=
                                                     current.at({stale.window_start_us, stale.result.producer_id})) {
    if (std::chrono::steady_clock::now() > until) break;
    std::this_thread::sleep_for(milliseconds(200));
    put_back = WindowTotals(*store);
  }
  auto expected = current;
  expected[{other.window_start_us, other.result.producer_id}] = other.result.total;
  EXPECT_EQ(put_back, expected);
  ASSERT_OK(stream.Stop());
}

// --update-ms 0: each update starts when the previous one ends, as long as records flow.
// Counts stay exact, and with nothing flowing the results are not rewritten again and again.
TEST(StreamIntegrationTest, BackToBackUpdatesCountExactlyAndRestWhenNothingFlows) {
  SqliteJob job(3, 600);
  const Names& names = job.names;
  auto& store = job.store;
  const std::vector<InferenceRecord>& records = job.records;
  StreamOptions options = job.Options();
  options.update_interval = milliseconds(0);
  std::atomic<int64_t> updates{0};
  BackgroundStream stream(options, [&](const StreamStats& s) { updates = s.updates; });
  SendRecords(names.topic, records, 0, 300);
  EXPECT_EQ(Total(WaitForTotal(*store, 300, seconds(60))), 300);
  std::this_thread::sleep_for(milliseconds(300));  // the last update's report
  const int64_t settled = updates;
  std::this_thread::sleep_for(seconds(1));
  EXPECT_EQ(updates, settled) << "results rewritten while nothing flowed";
  SendRecords(names.topic, records, 300, 600);
  auto live = WaitForTotal(*store, 600, seconds(60));
  ASSERT_OK(stream.Stop());
  EXPECT_GT(updates, settled);
  EXPECT_EQ(CountsOf(live), Tally(records));
}

TEST(StreamIntegrationTest, TumblingWindowsCountByEventTime) {
  Names names;
  ASSERT_OK(kafka::EnsureTopics({}, {{names.topic, 2}}));
  const iotinfer::testing::TempDir dir;
  const std::string uri = "sqlite:" + dir.file("windows.db");
  auto store = OpenCleared(uri, "");
  // 900 records over three 10 s windows, in order of event time within each producer.
  const int64_t t0 = 1'700'000'000'000'000;  // a multiple of 10 s
  std::vector<InferenceRecord> records;
  std::map<std::pair<int64_t, int>, std::pair<int64_t, int64_t>> expected;  // (start, producer) -> (incorrect, total)
  for (int i = 0; i < 900; ++i) {
    const int64_t at = t0 + (i / 300) * 10'000'000 + (i % 300) * 1000;
    records.push_back(Record(i, at));
    auto& e = expected[{t0 + (i / 300) * 10'000'000, records.back().producer_id}];
    e.first += records.back().incorrect() ? 1 : 0;
    e.second++;
  }
  SendRecords(names.topic, records, 0, 900);
  StreamOptions options = QuietOptions(names, uri);
  options.window = seconds(10);
  std::atomic<bool> stop{false};
  Result<StreamStats> stats = std::unexpected(Error::Internal("did not run"));
  std::thread service([&] {
    stats = RunStream(options, stop, [&](const StreamStats& s) {
      if (s.consumed >= 900 && s.updates > 0) stop = true;
    });
  });
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  while (!stop && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(50));
  stop = true;
  service.join();
  ASSERT_OK(stats);
  auto windows = store->ReadWindowResults();
  ASSERT_OK(windows);
  std::map<std::pair<int64_t, int>, std::pair<int64_t, int64_t>> got;
  for (const auto& w : *windows) {
    EXPECT_EQ(w.window_end_us - w.window_start_us, 10'000'000);
    got[{w.window_start_us, w.result.producer_id}] = {w.result.incorrect_count, w.result.total};
  }
  EXPECT_EQ(got, expected);
  EXPECT_EQ(stats->late, 0);
}

// What the state of a fleet of a million devices is: each partition's state is saved in
// chunks of one producer bucket each, so no document grows with the fleet (the largest a
// chunk can be is StoreSuite.StreamStateHoldsAFullBucket), and the results stay exact as
// a few producers send again.
void CountProducers(const std::string& uri, const std::string& database, const int producers) {
  constexpr int kAgain = 1000;
  Names names;
  ASSERT_OK(kafka::EnsureTopics({}, {{names.topic, 4}}));
  auto store = OpenCleared(uri, database);
  auto record = [](int producer, int round) {
    const std::string actual(kFashionMnistClasses[producer % 10]);
    return InferenceRecord{.id = fmt::format("m-{}-{}", producer, round),
                           .image_prediction = producer % 3 == 0 ? "Bag" : actual,
                           .actual_value = producer % 7 == 0 ? std::nullopt : std::optional<std::string>(actual),
                           .producer_id = producer,
                           .confidence = 0.9,
                           .model = "fmnist-cnn-test",
                           .inferred_at_us = 1'700'000'000'000'000};
  };
  auto send = [&](int count, int round) {
    auto producer = kafka::Producer::Create({});
    ASSERT_OK(producer);
    for (int p = 0; p < count; ++p) {
      ASSERT_OK((*producer)->Send(names.topic, {std::to_string(p), EncodeInferenceRecord(record(p, round)), {}}));
    }
    ASSERT_OK((*producer)->Flush());
  };
  std::map<int, ProducerCounts> expected;
  auto expect = [&](int count, int round) {
    for (int p = 0; p < count; ++p) {
      const InferenceRecord r = record(p, round);
      ProducerCounts& c = expected[p];
      c.producer_id = p;
      c.Add(r.image_prediction, r.actual_value);
    }
  };
  send(producers, 0);
  expect(producers, 0);
  StreamOptions options = QuietOptions(names, uri);
  options.store.database = database;
  options.update_interval = milliseconds(500);
  BackgroundStream stream(options);
  // A million producers take minutes to count under ThreadSanitizer.
  auto live = WaitForTotal(*store, producers, seconds(300) * iotinfer::testing::kWaitScale);
  ASSERT_EQ(Total(live), producers);
  send(kAgain, 1);
  expect(kAgain, 1);
  WaitForTotal(*store, producers + kAgain, seconds(120) * iotinfer::testing::kWaitScale);
  ASSERT_OK(stream.Stop());  // whose last update writes what it counted until then
  live = store->ReadResults().value_or(std::vector<ProducerResult>{});
  EXPECT_EQ(live.size(), static_cast<size_t>(producers));
  const iotinfer::testing::ResultCounts got = CountsOf(live), want = Tally({}, std::move(expected));
  std::vector<std::tuple<int, int64_t, int64_t, int64_t>> differ;
  std::ranges::set_symmetric_difference(got, want, std::back_inserter(differ));
  EXPECT_TRUE(differ.empty()) << differ.size() << " entries differ, e.g. producer " << std::get<0>(differ.front());

  auto states = store->LoadStreamState(names.group);
  ASSERT_OK(states);
  size_t largest = 0;
  int64_t counted = 0;
  for (const store::StreamState& state : *states) {
    for (const store::StateChunk& chunk : state.chunks) {
      largest = std::max(largest, chunk.counts.size());
      for (const ProducerCounts& c : chunk.counts) counted += c.total;
    }
  }
  EXPECT_EQ(counted, producers + kAgain);
  EXPECT_LE(largest, static_cast<size_t>((producers + store::kStateBuckets - 1) / store::kStateBuckets));
}

TEST(StreamIntegrationTest, AMillionProducersKeepEveryStateDocumentSmall) {
  const iotinfer::testing::TempDir dir;
  CountProducers("sqlite:" + dir.file("stream.db"), "", 1'000'000);
}

// FerretDB 1.24 reads every document of a collection for each replace or delete, by _id or
// not: 20,000 producers take it over 9 minutes, so this suite keeps to a size it serves in
// seconds; the million is SQLite's above.
TEST(StreamIntegrationTest, ManyProducersOnTheMongoWireServer) { CountProducers(kMongo, Names().database, 2'000); }

// Device health through the real broker: eight devices, one of them misclassifying 30% of its
// images where the others miss 5%. The stream judges them, says so in its metrics and
// publishes each device's verdict, keyed by device, to its health topic.
TEST(StreamIntegrationTest, DevicesAreJudgedAndTheirVerdictsPublished) {
  Names names;
  const std::string health_topic = UniqueTopic("producer-health");
  ASSERT_OK(kafka::EnsureTopics({}, {{names.topic, 4}}));
  std::vector<InferenceRecord> records;
  for (int i = 0; i < 4800; ++i) {
    const int producer = i % 8, n = i / 8;
    const bool wrong = producer == 3 ? n % 10 < 3 : n % 20 == 0;
    const std::string actual(kFashionMnistClasses[i % 10]);
    records.push_back({.id = fmt::format("h-{}", i),
                       .image_prediction = wrong ? std::string(kFashionMnistClasses[(i + 1) % 10]) : actual,
                       .actual_value = actual,
                       .producer_id = producer,
                       .confidence = 0.9,
                       .model = "fmnist-cnn-test",
                       .produced_at_us = 1'700'000'000'000'000,
                       .inferred_at_us = 1'700'000'000'001'000});
  }
  SendRecords(names.topic, records);
  auto store = OpenCleared(kMongo, names.database);
  StreamOptions options;
  options.topic = names.topic;
  options.group = names.group;
  options.store = {.uri = kMongo, .database = names.database};
  options.update_interval = milliseconds(200);
  options.log_every = milliseconds(0);
  options.health_every = milliseconds(200);
  options.health_topic = health_topic;
  const int http_port = iotinfer::testing::FreePort();
  options.endpoints = ops::EndpointOptions{.port = http_port};
  std::string metrics;
  {
    BackgroundStream stream(options);
    WaitForTotal(*store, 4800, seconds(60));
    const auto deadline = std::chrono::steady_clock::now() + seconds(30);
    while (metrics.find("iotinfer_stream_devices_faulty 1\n") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(100));
      httplib::Client client("127.0.0.1", http_port);
      if (auto scraped = client.Get("/metrics")) metrics = scraped->body;
    }
    ASSERT_OK(stream.Stop());
  }
  EXPECT_THAT(metrics, ::testing::HasSubstr("iotinfer_stream_devices_faulty 1\n"));
  EXPECT_THAT(metrics, ::testing::HasSubstr("iotinfer_stream_devices_suspect 0\n"));
  // Eight devices, under the default 100 shown: each has its series, from its total. "other"
  // counted every image, since all came before the first look gave the devices their labels;
  // it never gives them back (a counter must not fall), so sums of rates stay exact.
  EXPECT_THAT(metrics, ::testing::HasSubstr("iotinfer_producer_verdict{producer_id=\"3\"} 3\n"));
  EXPECT_THAT(metrics, ::testing::HasSubstr("iotinfer_producer_verdict{producer_id=\"5\"} 1\n"));
  EXPECT_THAT(metrics, ::testing::HasSubstr("iotinfer_producer_images_total{producer_id=\"3\"} 600\n"));
  EXPECT_THAT(metrics, ::testing::HasSubstr("iotinfer_producer_incorrect_total{producer_id=\"3\"} 180\n"));
  EXPECT_THAT(metrics, ::testing::HasSubstr("iotinfer_producer_images_total{producer_id=\"other\"} 4800\n"));

  std::map<int, DeviceHealth> latest;
  for (const WireMessage& m : iotinfer::testing::ReadAll(health_topic, 8)) {
    std::optional<DeviceHealth> a = health::FromJson(m.value);
    ASSERT_TRUE(a) << m.value;
    EXPECT_EQ(m.key, std::to_string(a->producer_id));
    latest[a->producer_id] = *a;
  }
  ASSERT_EQ(latest.size(), 8u);
  for (const auto& [producer, a] : latest) {
    EXPECT_EQ(a.verdict, producer == 3 ? Verdict::kFaulty : Verdict::kHealthy)
        << producer << ": " << VerdictName(a.verdict) << " at " << a.error_rate;
  }
  EXPECT_NEAR(latest[3].error_rate, 0.3, 0.01);
  EXPECT_NEAR(latest[3].fleet_rate, 0.05, 0.01);

  // The store holds the same latest verdicts, as report health prints them.
  std::vector<DeviceHealth> expected;
  for (const auto& [producer, a] : latest) expected.push_back(a);
  EXPECT_EQ(store->ReadHealth().value(), expected);
  const Result<std::string> report = ReportHealth(options.store, 1);
  ASSERT_OK(report);
  EXPECT_THAT(*report, ::testing::StartsWith("8 devices: 1 faulty, 0 suspect, 7 healthy, 0 unknown"));
  EXPECT_THAT(*report, ::testing::HasSubstr("          3  faulty "));
  EXPECT_THAT(*report, ::testing::HasSubstr("(7 more)"));
}

}  // namespace
}  // namespace iotinfer::stream
