#include "analytics/spark_engine.h"

#include <fmt/format.h>

#include <thread>
#include <utility>
#include <vector>

#include "spark/client.h"
#include "spark/plan.h"

namespace iotinfer::analytics {
namespace {

using spark::Col;
using spark::Column;
using spark::DataFrame;
using spark::Lit;

// The connector's default partitioner needs collStats, which FerretDB lacks. Paging through
// `_id` works on every MongoDB-compatible server, but plans each range with a sorted, skipped
// query and reads it with an `_id` range filter: on FerretDB both scan the whole collection,
// so there one range, read once, is fastest.
constexpr std::string_view kPagingPartitioner =
    "com.mongodb.spark.sql.connector.read.partitioner.PaginateIntoPartitionsPartitioner";
constexpr std::string_view kSinglePartitioner =
    "com.mongodb.spark.sql.connector.read.partitioner.SinglePartitionPartitioner";
// The fields the analytics read, with their types: Spark then samples no documents to infer
// a schema, and a document whose field has another type reads as null there.
constexpr std::string_view kRecordSchema = "id STRING, image_prediction STRING, actual_value STRING, producer_id INT";

spark::Options MongoOptions(const std::string& uri, const store::StoreOptions& store, std::string_view collection) {
  return {{"connection.uri", uri}, {"database", store.database}, {"collection", std::string(collection)}};
}

// Records a consumer could not count are left out, as the native engines never see them
// (the sink dead-letters them).
DataFrame ValidRecords(const DataFrame& records) {
  return records.Filter(Col("id").IsNotNull() && Col("image_prediction").IsNotNull() && Col("producer_id").IsNotNull());
}

// Per producer, from rows that each stand for `weight` records: the same arithmetic as
// ToResult, so that every engine agrees.
DataFrame PerProducer(const DataFrame& rows, const Column& weight) {
  const Column labelled = Col("actual_value").IsNotNull();
  const Column incorrect = labelled && Col("image_prediction") != Col("actual_value");
  const Column zero = Lit(int64_t{0});
  const DataFrame counts =
      rows.GroupBy({Col("producer_id")})
          .Agg({spark::Sum(spark::When(incorrect, weight, zero)).Cast("long").Alias("incorrect_count"),
                spark::Sum(weight).Cast("long").Alias("total"),
                spark::Sum(spark::When(labelled, zero, weight)).Cast("long").Alias("unlabelled")});
  const Column labelled_count = Col("total") - Col("unlabelled");
  return counts
      .WithColumn("error_rate",
                  spark::When(labelled_count > zero, Col("incorrect_count").Cast("double") / labelled_count, Lit(0.0)))
      .WithColumn("computed_at", spark::Fn("current_timestamp", {}))
      .Select({Col("producer_id").Cast("int").Alias("producer_id"), Col("incorrect_count"), Col("total"),
               Col("error_rate"), Col("unlabelled"), Col("computed_at")});
}

Result<spark::Session> Connect(const SparkOptions& options) {
  return spark::Session::Connect({.url = options.url,
                                  .token = options.token,
                                  .token_file = options.token_file,
                                  .ca_file = options.ca_file,
                                  .connect_timeout = options.connect_timeout});
}

Result<std::vector<ConfusionCell>> ToCells(const spark::Table& table) {
  const auto producer = table.Index("producer_id"), prediction = table.Index("image_prediction"),
             actual = table.Index("actual_value"), count = table.Index("count");
  if (!producer || !prediction || !actual || !count) {
    return std::unexpected(Error::Internal("Spark returned confusion cells without the expected columns"));
  }
  std::vector<ConfusionCell> cells;
  for (const auto& row : table.rows) {
    const auto* p = std::get_if<int64_t>(&row[*producer]);
    const auto* pred = std::get_if<std::string>(&row[*prediction]);
    const auto* n = std::get_if<int64_t>(&row[*count]);
    if (!p || !pred || !n) return std::unexpected(Error::Internal("Spark returned a confusion cell with nulls"));
    ConfusionCell cell{.producer_id = static_cast<int>(*p), .image_prediction = *pred, .count = *n};
    if (const auto* a = std::get_if<std::string>(&row[*actual])) cell.actual_value = *a;
    cells.push_back(std::move(cell));
  }
  return cells;
}

std::vector<ops::MetricSpec> SparkStreamMetrics() {
  using Kind = ops::MetricSpec::Kind;
  return {
      {Kind::kCounter, "iotinfer_spark_stream_input_rows_total", "rows the query read from Kafka in this run", {}},
      {Kind::kCounter, "iotinfer_spark_stream_batches_total", "micro-batches that ended in this run", {}},
      {Kind::kHistogram, "iotinfer_spark_stream_batch_seconds", "one micro-batch, trigger to commit",
       ops::SecondsBuckets()},
      {Kind::kGauge, "iotinfer_spark_stream_input_rows_per_second", "the last micro-batch's input rate", {}},
      {Kind::kGauge, "iotinfer_spark_stream_processed_rows_per_second", "the last micro-batch's processing rate", {}},
  };
}

}  // namespace

Result<std::string> SparkMongoUri(const SparkOptions& options, const store::StoreOptions& store) {
  if (!options.mongo_uri.empty()) return store::WithPassword(options.mongo_uri, store);
  if (store.uri.starts_with("mongodb://") || store.uri.starts_with("mongodb+srv://")) {
    return store::WithPassword(store.uri, store);
  }
  return std::unexpected(Error::InvalidInput(
      fmt::format("the Spark engine reads and writes MongoDB through Spark's MongoDB connector; '{}' is not a "
                  "MongoDB URI (give --store mongodb://...)",
                  store::RedactUri(store.uri))));
}

Result<SparkBatchResult> RunSparkBatch(const SparkOptions& options, const store::StoreOptions& store_options,
                                       const std::atomic<bool>* cancel) {
  ASSIGN_OR_RETURN(const std::string uri, SparkMongoUri(options, store_options));
  ASSIGN_OR_RETURN(spark::Session session, Connect(options));
  SparkBatchResult result{.spark_version = session.server_version()};

  spark::Options read = MongoOptions(uri, store_options, "images");
  if (options.read_partitions > 1) {
    read["partitioner"] = kPagingPartitioner;
    read["partitioner.options.max.number.of.partitions"] = std::to_string(options.read_partitions);
  } else {
    read["partitioner"] = kSinglePartitioner;
  }
  const DataFrame images = ValidRecords(DataFrame::Read("mongodb", kRecordSchema, read));
  // The cells are few (producers x classes^2); cached, the results write and the collect
  // below read MongoDB once between them.
  const DataFrame cells = images.GroupBy({Col("producer_id"), Col("image_prediction"), Col("actual_value")})
                              .Agg({spark::Count(Lit(int64_t{1})).Alias("count")});
  TRY(session.Persist(cells, cancel));
  const DataFrame results = PerProducer(cells, Col("count"));
  Status written = session.Execute(results.Write("mongodb", spark::SaveMode::kOverwrite,
                                                 MongoOptions(uri, store_options, "incorrect_inference_results")),
                                   cancel);
  Result<spark::Table> collected = written ? session.Collect(cells, cancel) : Result<spark::Table>();
  (void)session.Unpersist(cells);  // the session's release frees it anyway
  TRY(written);
  if (!collected) return std::unexpected(collected.error());
  ASSIGN_OR_RETURN(result.cells, ToCells(*collected));
  return result;
}

std::string FormatStats(const SparkStreamStats& s) {
  return fmt::format(
      "batch {}: {} micro-batches with rows, {} rows in this run; last: {:.0f} rows/s in, "
      "{:.0f} rows/s processed, {} ms",
      s.last_batch_id, s.batches, s.input_rows, s.input_rows_per_second, s.processed_rows_per_second, s.last_batch_ms);
}

namespace {

// Connects to the stream's server, waiting up to server_wait (not ready, the main loop said to
// turn) while it does not answer; any other failure, a stop, or the end of the wait returns.
Result<spark::Session> ConnectWhenUp(const SparkStreamOptions& options, const std::atomic<bool>& stop,
                                     ops::Endpoints* endpoints) {
  const auto deadline = std::chrono::steady_clock::now() + options.server_wait;
  for (;;) {
    Result<spark::Session> session = Connect(options.spark);
    if (session || session.error().code() != Error::Code::kUnavailable || stop ||
        std::chrono::steady_clock::now() >= deadline) {
      return session;
    }
    if (endpoints) {
      endpoints->SetReady(false, fmt::format("waiting for the Spark Connect server: {}", session.error().message()));
      endpoints->Beat();
    }
    // A refusal can come back at once (no route, no name yet): never a busy loop.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

}  // namespace

Result<SparkStreamStats> RunSparkStream(const SparkStreamOptions& options, const std::atomic<bool>& stop,
                                        const std::function<void(const SparkStreamStats&)>& on_progress) {
  if (options.checkpoint.empty()) {
    return std::unexpected(Error::InvalidInput("a Spark stream needs a checkpoint directory (--checkpoint)"));
  }
  if (options.brokers.empty()) return std::unexpected(Error::InvalidInput("a Spark stream needs --brokers"));
  ASSIGN_OR_RETURN(const std::string uri, SparkMongoUri(options.spark, options.store));
  ASSIGN_OR_RETURN(std::unique_ptr<ops::Endpoints> endpoints,
                   ops::StartIfAsked("stream", options.endpoints, SparkStreamMetrics()));
  ASSIGN_OR_RETURN(spark::Session session, ConnectWhenUp(options, stop, endpoints.get()));
  SparkStreamStats stats{.spark_version = session.server_version()};

  spark::Options source{{"kafka.bootstrap.servers", options.brokers},
                        {"subscribe", options.topic},
                        {"startingOffsets", "earliest"},
                        // Only what the inference service committed, as the native stream reads.
                        {"kafka.isolation.level", "read_committed"}};
  for (const auto& [key, value] : options.kafka) source["kafka." + key] = value;
  const DataFrame records =
      DataFrame::ReadStream("kafka", "", source)
          .Select({spark::Fn("from_json", {Col("value").Cast("string"), Lit(kRecordSchema)}).Alias("r")})
          .Select({Col("r.id").Alias("id"), Col("r.image_prediction").Alias("image_prediction"),
                   Col("r.actual_value").Alias("actual_value"), Col("r.producer_id").Alias("producer_id")});
  spark::Options sink = MongoOptions(uri, options.store, "incorrect_inference_results");
  // Complete mode hands every producer's row to each micro-batch; replacing by producer_id
  // (with upsert) keeps one document per producer without emptying the collection.
  sink["operationType"] = "replace";
  sink["idFieldList"] = "producer_id";
  sink["upsertDocument"] = "true";
  const spark::Plan plan =
      PerProducer(ValidRecords(records), Lit(int64_t{1}))
          .WriteStream({.format = "mongodb",
                        .options = sink,
                        .output_mode = "complete",
                        .checkpoint = options.checkpoint,
                        .query_name = options.query_name,
                        .processing_time = fmt::format("{} milliseconds", options.trigger.count())});
  if (endpoints) endpoints->SetReady(false, "the Spark query is starting");
  ASSIGN_OR_RETURN(const spark::StreamingQuery query, session.StartStream(plan));
  stats.query_id = query.id;

  // Counts every micro-batch once, from the reports Spark keeps (the last 100).
  auto take_progress = [&]() -> Status {
    ASSIGN_OR_RETURN(const auto reports, session.RecentProgress(query));
    bool changed = false;
    for (const spark::QueryProgress& p : reports) {
      if (p.batch_id <= stats.last_batch_id) continue;
      changed = true;
      stats.last_batch_id = p.batch_id;
      if (p.input_rows > 0) ++stats.batches;
      stats.input_rows += p.input_rows;
      stats.input_rows_per_second = p.input_rows_per_second;
      stats.processed_rows_per_second = p.processed_rows_per_second;
      stats.last_batch_ms = p.batch_duration_ms;
      if (endpoints) {
        endpoints->Add("iotinfer_spark_stream_input_rows_total", static_cast<double>(p.input_rows));
        endpoints->Add("iotinfer_spark_stream_batches_total", 1);
        endpoints->Observe("iotinfer_spark_stream_batch_seconds", static_cast<double>(p.batch_duration_ms) / 1000);
        endpoints->Set("iotinfer_spark_stream_input_rows_per_second", p.input_rows_per_second);
        endpoints->Set("iotinfer_spark_stream_processed_rows_per_second", p.processed_rows_per_second);
      }
    }
    if (changed && on_progress) on_progress(stats);
    return Ok();
  };
  auto next_report = std::chrono::steady_clock::now();
  while (!stop.load()) {
    // A status request that hangs stops the beats, and /healthz then says so.
    if (endpoints) endpoints->Beat();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (std::chrono::steady_clock::now() < next_report) continue;
    next_report = std::chrono::steady_clock::now() + options.progress_every;
    ASSIGN_OR_RETURN(const spark::QueryStatus status, session.StatusOf(query));
    if (endpoints) endpoints->SetReady(status.active, "the Spark query is not running");
    if (!status.active) {
      ASSIGN_OR_RETURN(const auto exception, session.Exception(query));
      return std::unexpected(
          Error::Internal(fmt::format("the Spark streaming query stopped: {}", exception.value_or(status.message))));
    }
    TRY(take_progress());
  }
  // A micro-batch that is under way ends first (for up to stop_grace). Stopped midway, it may
  // have written its counts but not its commit: the next run would do it again (the same counts,
  // as complete mode replaces them) and this run's counters would leave it out.
  const auto grace_ends = std::chrono::steady_clock::now() + options.stop_grace;
  while (std::chrono::steady_clock::now() < grace_ends) {
    const Result<spark::QueryStatus> status = session.StatusOf(query);
    if (!status || !status->active || !status->trigger_active) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  TRY(session.Stop(query));
  // The micro-batches that ended since the last look; a stopped query keeps its reports.
  (void)take_progress();
  return stats;
}

}  // namespace iotinfer::analytics
