// The Spark engines against the real Spark Connect server, Kafka broker and MongoDB-protocol
// server of the `spark`, `kafka` and `mongo` ctest fixtures: the batch job and the streaming
// query count exactly what the native engine counts, also across a restart from the
// checkpoint; the client decodes Arrow results, maps Spark's errors and cancels jobs.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <list>
#include <thread>

#include "analytics/batch.h"
#include "analytics/spark_engine.h"
#include "analytics_test_util.h"
#include "core/inference_record.h"
#include "core/labels.h"
#include "kafka/kafka.h"
#include "kafka_test_util.h"
#include "spark/client.h"
#include "test_util.h"

namespace iotinfer::analytics {
namespace {

using iotinfer::testing::CountsOf;
using iotinfer::testing::MetricValue;
using iotinfer::testing::OpenCleared;
using iotinfer::testing::ResultCounts;
using iotinfer::testing::SendRecords;
using iotinfer::testing::TempDir;
using iotinfer::testing::UniqueTopic;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kMongo = "mongodb://127.0.0.1:27017";
constexpr const char* kSpark = "sc://127.0.0.1:15002";

std::string UniqueDatabase(const char* prefix) {
  static int counter = 0;
  return fmt::format("{}_{}_{}", prefix, getpid(), ++counter);
}

// Six producers with their own error rates; every 11th record unlabelled.
std::vector<InferenceRecord> Records(int from, int to) {
  std::vector<InferenceRecord> records;
  for (int i = from; i < to; ++i) {
    const int producer = 10 + i % 6;
    const std::string actual(kFashionMnistClasses[(i / 3) % 10]);
    const bool wrong = i % (producer - 7) == 0;
    records.push_back({.id = fmt::format("spark-{}", i),
                       .image_prediction = wrong ? std::string(kFashionMnistClasses[(i / 3 + 1) % 10]) : actual,
                       .actual_value = i % 11 == 0 ? std::nullopt : std::optional<std::string>(actual),
                       .producer_id = producer,
                       .confidence = 0.8,
                       .model = "fmnist-cnn-test",
                       .produced_at_us = 1'700'000'000'000'000 + i,
                       .inferred_at_us = 1'700'000'000'001'000 + i});
  }
  return records;
}

// What the native batch engine says about `records`, in a database of its own.
ResultCounts NativeCounts(const std::vector<InferenceRecord>& records) {
  const std::string database = UniqueDatabase("spark_native");
  auto store = OpenCleared(kMongo, database);
  EXPECT_TRUE(store->Upsert(records));
  auto report = RunBatch({.store = {.uri = kMongo, .database = database}, .out_dir = ""});
  EXPECT_TRUE(report) << report.error().message();
  return report ? CountsOf(report->results) : ResultCounts{};
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(SparkIntegrationTest, BatchOnSparkEqualsTheNativeEngine) {
  const std::string database = UniqueDatabase("spark_batch");
  auto store = OpenCleared(kMongo, database);
  ASSERT_TRUE(store);
  const auto records = Records(0, 3000);
  ASSERT_OK(store->Upsert(records));
  TempDir native_dir, spark_dir;
  auto native = RunBatch({.store = {.uri = kMongo, .database = database}, .out_dir = native_dir.path().string()});
  ASSERT_OK(native);
  auto spark = RunBatch({.store = {.uri = kMongo, .database = database},
                         .engine = BatchEngine::kSpark,
                         .out_dir = spark_dir.path().string(),
                         .spark = {.url = kSpark}});
  ASSERT_OK(spark);
  EXPECT_FALSE(spark->spark_version.empty());
  EXPECT_EQ(spark->documents, 3000);
  EXPECT_EQ(spark->cells, native->cells);
  ASSERT_EQ(spark->results.size(), 6u);
  EXPECT_EQ(CountsOf(spark->results), CountsOf(native->results));
  for (size_t i = 0; i < spark->results.size(); ++i) {
    EXPECT_NEAR(spark->results[i].error_rate, native->results[i].error_rate, 1e-12);
    EXPECT_GT(spark->results[i].computed_at_us, 0) << "Spark stamps when it computed them";
  }
  // What Spark wrote is what the store holds, and what the files show.
  auto stored = store->ReadResults();
  ASSERT_OK(stored);
  EXPECT_EQ(CountsOf(*stored), CountsOf(native->results));
  for (const char* file : {"confusion.csv", "confusion_by_producer.csv"}) {
    EXPECT_EQ(ReadFile(spark_dir.file(file)), ReadFile(native_dir.file(file))) << file;
  }
  EXPECT_TRUE(std::filesystem::exists(spark_dir.file("results.png")));

  // Overwrite, not append: a second run leaves one document per producer. This one reads
  // in three ranges, which page through `_id`: each document is still read once.
  auto paged = RunBatch({.store = {.uri = kMongo, .database = database},
                         .engine = BatchEngine::kSpark,
                         .out_dir = "",
                         .spark = {.url = kSpark, .read_partitions = 3}});
  ASSERT_OK(paged);
  EXPECT_EQ(paged->cells, native->cells);
  auto again = store->ReadResults();
  ASSERT_OK(again);
  EXPECT_EQ(CountsOf(*again), CountsOf(native->results));
}

TEST(SparkIntegrationTest, CollectDecodesArrowResults) {
  auto session = spark::Session::Connect({.url = kSpark});
  ASSERT_OK(session);
  using spark::Col;
  using spark::Lit;
  // Enough rows for several Arrow batches.
  constexpr int64_t kRows = 300'000;
  auto table = session->Collect(spark::DataFrame::Range(0, kRows).Select(
      {Col("id"), Col("id").Cast("int").Alias("small"), (Col("id") / Lit(int64_t{2})).Alias("half"),
       Col("id").Cast("string").Alias("text"), (Col("id") > Lit(int64_t{2})).Alias("big"),
       spark::Fn("nullif", {Col("id"), Col("id")}).Alias("nothing")}));
  ASSERT_OK(table);
  EXPECT_EQ(table->columns, (std::vector<std::string>{"id", "small", "half", "text", "big", "nothing"}));
  ASSERT_EQ(table->rows.size(), static_cast<size_t>(kRows));
  int64_t sum = 0;
  for (const auto& row : table->rows) sum += std::get<int64_t>(row[0]);
  EXPECT_EQ(sum, kRows * (kRows - 1) / 2) << "every row once";
  const auto& row = table->rows[3];
  EXPECT_EQ(std::get<int64_t>(row[1]), 3);
  EXPECT_DOUBLE_EQ(std::get<double>(row[2]), 1.5);
  EXPECT_EQ(std::get<std::string>(row[3]), "3");
  EXPECT_TRUE(std::get<bool>(row[4]));
  EXPECT_TRUE(std::holds_alternative<std::monostate>(row[5]));
}

TEST(SparkIntegrationTest, ErrorsSaySparksMessageAndWhatFailed) {
  auto unreachable = spark::Session::Connect({.url = "sc://127.0.0.1:1", .connect_timeout = milliseconds(500)});
  ASSERT_FALSE(unreachable);
  EXPECT_EQ(unreachable.error().code(), Error::Code::kUnavailable);
  EXPECT_NE(unreachable.error().message().find("127.0.0.1:1"), std::string::npos) << unreachable.error().message();

  auto session = spark::Session::Connect({.url = kSpark});
  ASSERT_OK(session);
  auto analysis = session->Collect(spark::DataFrame::Range(0, 3).Select({spark::Col("no_such_column")}));
  ASSERT_FALSE(analysis);
  EXPECT_NE(analysis.error().message().find("UNRESOLVED_COLUMN"), std::string::npos) << analysis.error().message();
  EXPECT_NE(analysis.error().message().find("no_such_column"), std::string::npos) << analysis.error().message();

  TempDir dir;
  auto sqlite =
      RunBatch({.store = {.uri = "sqlite:" + dir.file("x.db")}, .engine = BatchEngine::kSpark, .out_dir = ""});
  ASSERT_FALSE(sqlite);
  EXPECT_EQ(sqlite.error().code(), Error::Code::kInvalidInput);
  EXPECT_NE(sqlite.error().message().find("MongoDB"), std::string::npos) << sqlite.error().message();
}

TEST(SparkIntegrationTest, CancelInterruptsTheJobOnTheServer) {
  auto session = spark::Session::Connect({.url = kSpark});
  ASSERT_OK(session);
  std::atomic<bool> cancel{false};
  std::jthread canceller([&] {
    std::this_thread::sleep_for(seconds(2));
    cancel = true;
  });
  const auto start = std::chrono::steady_clock::now();
  // Minutes of work on two cores.
  auto long_job = session->Collect(
      spark::DataFrame::Range(0, 200'000'000'000).GroupBy({}).Agg({spark::Sum(spark::Col("id").Cast("double"))}),
      &cancel);
  ASSERT_FALSE(long_job);
  EXPECT_NE(long_job.error().message().find("cancelled"), std::string::npos) << long_job.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(30));
  // The session goes on.
  auto after = session->Collect(spark::DataFrame::Range(0, 10));
  ASSERT_OK(after);
  EXPECT_EQ(after->rows.size(), 10u);
}

// The records incorrect_inference_results counts, once they reach `expected` or 150 s passed.
int64_t WaitForTotal(store::Store& store, int64_t expected) {
  const auto deadline = std::chrono::steady_clock::now() + seconds(150);
  int64_t total = 0;
  while (std::chrono::steady_clock::now() < deadline && total < expected) {
    std::this_thread::sleep_for(milliseconds(50));
    if (auto results = store.ReadResults()) {
      total = 0;
      for (const auto& r : *results) total += r.total;
    }
  }
  return total;
}

// Runs the Spark stream until `store` counts `expected` records (or a timeout), then stops it.
// With endpoints, also waits (briefly) for /metrics to count `input_rows` rows read.
SparkStreamStats StreamUntil(const SparkStreamOptions& options, store::Store& store, int64_t expected,
                             int64_t input_rows = -1) {
  std::atomic<bool> stop{false};
  Result<SparkStreamStats> ran = std::unexpected(Error::Internal("not run"));
  std::jthread runner([&] { ran = RunSparkStream(options, stop); });
  const int64_t total = WaitForTotal(store, expected);
  if (options.endpoints) {
    httplib::Client client("127.0.0.1", options.endpoints->port);
    auto ready = client.Get("/readyz");
    EXPECT_TRUE(ready && ready->status == 200) << "the query runs";
    double rows = -1;
    for (int i = 0; i < 40 && rows != static_cast<double>(input_rows); ++i) {
      std::this_thread::sleep_for(milliseconds(250));
      if (auto metrics = client.Get("/metrics"))
        rows = MetricValue(metrics->body, "iotinfer_spark_stream_input_rows_total");
    }
    EXPECT_EQ(rows, static_cast<double>(input_rows));
  }
  stop = true;
  runner.join();
  EXPECT_TRUE(ran) << ran.error().message();
  EXPECT_EQ(total, expected);
  return ran ? *ran : SparkStreamStats{};
}

TEST(SparkIntegrationTest, StreamCountsEqualTheNativeEngineAcrossARestartFromTheCheckpoint) {
  const std::string topic = UniqueTopic("spark-inferences");
  const std::string database = UniqueDatabase("spark_stream");
  ASSERT_OK(kafka::EnsureTopics({}, {{topic, 4}}));
  auto store = OpenCleared(kMongo, database);
  ASSERT_TRUE(store);
  const auto first = Records(0, 2000);
  SendRecords(topic, first);
  {
    // Values that are no inference record are skipped, not counted.
    auto producer = kafka::Producer::Create({});
    ASSERT_OK(producer);
    ASSERT_OK((*producer)->Send(topic, {"1", "{not json", {}}));
    ASSERT_OK((*producer)->Send(topic, {"1", R"({"id":"x","producer_id":"one","image_prediction":"Bag"})", {}}));
    ASSERT_OK((*producer)->Flush());
  }
  TempDir checkpoint;
  const SparkStreamOptions options{.spark = {.url = kSpark},
                                   .store = {.uri = kMongo, .database = database},
                                   .brokers = iotinfer::testing::kTestBrokers,
                                   .topic = topic,
                                   .checkpoint = checkpoint.file("query"),
                                   .query_name = "spark_stream_test_" + std::to_string(getpid()),
                                   .trigger = milliseconds(500),
                                   .progress_every = milliseconds(500)};
  SparkStreamOptions first_run = options;
  first_run.endpoints = ops::EndpointOptions{.port = iotinfer::testing::FreePort()};
  const SparkStreamStats run1 = StreamUntil(first_run, *store, 2000, 2002);
  auto results = store->ReadResults();
  ASSERT_OK(results);
  EXPECT_EQ(CountsOf(*results), NativeCounts(first));
  EXPECT_EQ(run1.input_rows, 2002) << "the invalid values were read, and left out of the counts";

  // Stopped, more arrives; the restart reads only what is new, so nothing counts twice.
  const auto second = Records(2000, 3000);
  SendRecords(topic, second);
  const SparkStreamStats run2 = StreamUntil(options, *store, 3000);
  EXPECT_EQ(run2.query_id, run1.query_id) << "the same query, resumed from its checkpoint";
  EXPECT_EQ(run2.input_rows, 1000);
  results = store->ReadResults();
  ASSERT_OK(results);
  auto all = first;
  all.insert(all.end(), second.begin(), second.end());
  EXPECT_EQ(CountsOf(*results), NativeCounts(all));
}

// Forwards 127.0.0.1:`port` to 127.0.0.1:`to` once Open() is called: until then nothing listens
// there, as for a Spark Connect server that has not started yet.
class LateServer {
 public:
  LateServer(int port, int to) : port_(port), to_(to) {}
  ~LateServer() {
    stop_ = true;
    if (listener_ >= 0) ::shutdown(listener_, SHUT_RDWR);
    if (acceptor_.joinable()) acceptor_.join();  // after it, nothing adds to open_ or pumps_
    for (int fd : open_) ::shutdown(fd, SHUT_RDWR);
    pumps_.clear();  // joins
    for (int fd : open_) ::close(fd);
    if (listener_ >= 0) ::close(listener_);
  }

  bool Open() {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in address = Loopback(port_);
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || ::listen(listener_, 8) != 0) {
      return false;
    }
    acceptor_ = std::jthread([this] {
      while (!stop_) {
        const int client = ::accept(listener_, nullptr, nullptr);
        if (client < 0) return;
        const int server = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in target = Loopback(to_);
        if (::connect(server, reinterpret_cast<sockaddr*>(&target), sizeof target) != 0) {
          ::close(client);
          ::close(server);
          continue;
        }
        open_.push_back(client);
        open_.push_back(server);
        pumps_.emplace_back([client, server] { Pump(client, server); });
        pumps_.emplace_back([client, server] { Pump(server, client); });
      }
    });
    return true;
  }

 private:
  static sockaddr_in Loopback(int port) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return address;
  }
  static void Pump(int from, int to) {
    char buffer[16384];
    for (ssize_t n; (n = ::read(from, buffer, sizeof buffer)) > 0;) {
      if (::write(to, buffer, static_cast<size_t>(n)) != n) break;
    }
    ::shutdown(to, SHUT_WR);
  }

  const int port_, to_;
  int listener_ = -1;
  std::atomic<bool> stop_{false};
  std::vector<int> open_;
  std::list<std::jthread> pumps_;
  std::jthread acceptor_;
};

// A chart's install starts the Spark Connect server and the stream together, and the server
// answers tens of seconds later: the stream waits for it, alive and not ready, then runs.
TEST(SparkIntegrationTest, AStreamWaitsNotReadyForAServerThatStartsLate) {
  const std::string topic = UniqueTopic("spark-late");
  const std::string database = UniqueDatabase("spark_late");
  ASSERT_OK(kafka::EnsureTopics({}, {{topic, 1}}));
  auto store = OpenCleared(kMongo, database);
  ASSERT_TRUE(store);
  SendRecords(topic, Records(0, 100));
  const int spark_port = iotinfer::testing::FreePort();
  LateServer server(spark_port, 15002);
  TempDir checkpoint;
  const SparkStreamOptions options{
      .spark = {.url = fmt::format("sc://127.0.0.1:{}", spark_port), .connect_timeout = milliseconds(500)},
      .store = {.uri = kMongo, .database = database},
      .brokers = iotinfer::testing::kTestBrokers,
      .topic = topic,
      .checkpoint = checkpoint.file("query"),
      .query_name = "spark_late_test_" + std::to_string(getpid()),
      .trigger = milliseconds(500),
      .server_wait = seconds(120),
      // Short, so that a main loop that stopped beating after the wait shows within the test.
      .endpoints = ops::EndpointOptions{.port = iotinfer::testing::FreePort(), .stall_after = seconds(2)}};
  std::atomic<bool> stop{false};
  Result<SparkStreamStats> ran = std::unexpected(Error::Internal("not run"));
  std::jthread runner([&] { ran = RunSparkStream(options, stop); });
  httplib::Client client("127.0.0.1", options.endpoints->port);
  // Not ready ("starting"), then, once the first try has failed, saying what it waits for.
  std::string waiting;
  for (int i = 0; i < 100 && waiting.find("waiting for the Spark Connect server") == std::string::npos; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
    if (auto ready = client.Get("/readyz"); ready && ready->status == 503) waiting = ready->body;
  }
  EXPECT_NE(waiting.find("waiting for the Spark Connect server"), std::string::npos) << waiting;
  std::this_thread::sleep_for(seconds(2));  // a few tries on nothing
  auto health = client.Get("/healthz");
  EXPECT_TRUE(health && health->status == 200) << "alive while it waits";

  ASSERT_TRUE(server.Open());
  const int64_t total = WaitForTotal(*store, 100);
  auto ready = client.Get("/readyz");
  EXPECT_TRUE(ready && ready->status == 200) << "ready once the query runs";
  std::this_thread::sleep_for(seconds(3));  // longer than stall_after
  health = client.Get("/healthz");
  EXPECT_TRUE(health && health->status == 200) << "alive while the query runs";
  stop = true;
  runner.join();
  EXPECT_TRUE(ran) << ran.error().message();
  EXPECT_EQ(total, 100);
}

// With no server at all, the wait ends: a clear error, not a service that waits for ever.
TEST(SparkIntegrationTest, AStreamGivesUpOnAServerThatNeverAnswers) {
  const SparkStreamOptions options{.spark = {.url = fmt::format("sc://127.0.0.1:{}", iotinfer::testing::FreePort()),
                                             .connect_timeout = milliseconds(300)},
                                   .store = {.uri = kMongo, .database = UniqueDatabase("spark_none")},
                                   .brokers = iotinfer::testing::kTestBrokers,
                                   .checkpoint = "/tmp/unused",
                                   .server_wait = seconds(2)};
  std::atomic<bool> stop{false};
  const auto start = std::chrono::steady_clock::now();
  auto ran = RunSparkStream(options, stop);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(ran);
  EXPECT_EQ(ran.error().code(), Error::Code::kUnavailable) << ran.error().message();
  EXPECT_GE(took, seconds(2));
  EXPECT_LT(took, seconds(10));
}

}  // namespace
}  // namespace iotinfer::analytics
