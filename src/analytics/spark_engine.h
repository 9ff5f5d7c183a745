#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "core/error.h"
#include "core/topics.h"
#include "ops/endpoints.h"
#include "store/store.h"

namespace iotinfer::analytics {

/// Where Spark runs and how it reaches the data. Spark reads and writes MongoDB itself,
/// through the MongoDB Spark connector, so addresses are as the Spark cluster sees them.
struct SparkOptions {
  std::string url = "sc://127.0.0.1:15002";  // the Spark Connect server (spark::ParseEndpoint)
  // Its token and CA, as spark::ConnectOptions takes them (kept out of the URL).
  std::string token;
  std::string token_file;
  std::string ca_file;
  // The MongoDB URI the Spark executors use; empty: the store's own URI.
  std::string mongo_uri;
  std::chrono::milliseconds connect_timeout{10000};
  // How many ranges of `images` Spark reads in parallel: on a real MongoDB, about the
  // cluster's cores. 1 reads the collection in one pass, which is fastest on FerretDB, where
  // every further range costs a full sort and a full scan of the collection.
  int read_partitions = 1;
};

/// The MongoDB URI Spark is given: options.mongo_uri, else the store's, which must then be a
/// MongoDB one (InvalidInput otherwise: Spark cannot read a SQLite file of this machine); with
/// the store's password put in (store::WithPassword). It goes to the server inside plans: use
/// TLS to a server that is not on this machine (ca_file, use_ssl).
Result<std::string> SparkMongoUri(const SparkOptions& options, const store::StoreOptions& store);

/// What the Spark batch job computed.
struct SparkBatchResult {
  std::string spark_version;
  std::vector<ConfusionCell> cells;  // collected from Spark (Arrow), unsorted
};

/// The batch job on Spark: reads `images` through the MongoDB connector, counts documents
/// per (producer_id, image_prediction, actual_value), derives per producer incorrect_count
/// (prediction != label; unlabelled never incorrect), total, unlabelled and error_rate, and
/// overwrites `incorrect_inference_results` from Spark. The confusion cells come back as
/// Arrow batches for the CSV files and charts. `cancel` interrupts the job on the server.
Result<SparkBatchResult> RunSparkBatch(const SparkOptions& spark, const store::StoreOptions& store,
                                       const std::atomic<bool>* cancel = nullptr);

struct SparkStreamOptions {
  SparkOptions spark;
  store::StoreOptions store;                        // where incorrect_inference_results is (a MongoDB)
  std::string brokers;                              // Kafka bootstrap servers, as the Spark cluster reaches them
  std::map<std::string, std::string> kafka;         // more consumer properties (SASL, TLS, ...)
  std::string topic = topics::kInferencesAccepted;  // what sink publishes, as for the native stream
  // The query's state and Kafka offsets, on the Spark server's file system (or HDFS, S3, ...):
  // a restart with the same directory goes on where the last run stopped.
  std::string checkpoint;
  std::string query_name = "iotinfer_stream";
  std::chrono::milliseconds trigger{1000};  // micro-batch interval
  std::chrono::milliseconds progress_every{5000};
  // On stop, how long a micro-batch that is running may take to end before the query is stopped.
  std::chrono::milliseconds stop_grace{20000};
  // How long a Spark Connect server that does not answer yet is waited for, not ready, before
  // the stream gives up: a chart's install starts the server and the stream together, and the
  // server takes tens of seconds. 0: one try of spark.connect_timeout.
  std::chrono::milliseconds server_wait{std::chrono::minutes(5)};
  // /healthz, /readyz (ready while the query runs) and /metrics; none when unset.
  std::optional<ops::EndpointOptions> endpoints;
};

struct SparkStreamStats {
  std::string spark_version;
  std::string query_id;    // the same for every run from one checkpoint
  int64_t batches = 0;     // micro-batches that read rows, in this run
  int64_t input_rows = 0;  // rows they read
  int64_t last_batch_id = -1;
  double input_rows_per_second = 0;
  double processed_rows_per_second = 0;
  int64_t last_batch_ms = 0;  // how long the last micro-batch took
};

/// One line for logs.
std::string FormatStats(const SparkStreamStats& stats);

/// The live count on Spark Structured Streaming: reads `topic` (read_committed), parses each
/// value as an inference record (values that are not one are skipped; the sink dead-letters
/// them), counts per producer as the batch job does, output mode complete, and upserts every
/// producer's counts into `incorrect_inference_results` after each micro-batch. Runs until
/// `stop`, lets a micro-batch under way end, then stops the query (its checkpoint keeps where
/// it was) and returns. Errors: no
/// Spark, a query that fails (its exception's message).
Result<SparkStreamStats> RunSparkStream(const SparkStreamOptions& options, const std::atomic<bool>& stop,
                                        const std::function<void(const SparkStreamStats&)>& on_progress = {});

}  // namespace iotinfer::analytics
