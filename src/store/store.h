#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/inference_record.h"

namespace iotinfer::store {

struct StoreOptions {
  /// `sqlite:PATH` (the embedded default; the file is created) or a MongoDB connection
  /// string `mongodb://[user:password@]host[:port][/?options]`: authentication and TLS
  /// options (`tls=true`, `tlsCAFile=…`, `authSource=…`) go to the driver as given. Writes
  /// use `w=majority&journal=true` unless the URI sets `w` or `journal`.
  std::string uri = "sqlite:iotinfer.db";
  std::string database = "iotinfer";  // the MongoDB database; a SQLite file is one database
  /// How long a call waits for an unreachable server before returning Unavailable.
  std::chrono::milliseconds timeout{5000};
  /// How long one command may run before the client gives up on its answer (MongoDB's
  /// socketTimeoutMS, and wtimeoutMS for the majority write concern): a server that stops
  /// answering mid-write (a network partition) holds a service this long, not the driver's
  /// 5 minutes. `socketTimeoutMS` and `wtimeoutMS` in the URI win.
  std::chrono::milliseconds command_timeout{30000};
};

/// A stored `images` document: the inference record plus when the store wrote it.
/// Timestamps are kept with millisecond precision (BSON dates), in every store alike.
struct StoredRecord {
  InferenceRecord record;
  int64_t stored_at_us = 0;
};

/// Which documents a scan or count sees; unset fields match everything.
struct Filter {
  std::optional<int> producer_id;
  std::optional<std::string> id;
};

/// Documents per (producer, predicted class, true class): the confusion matrix of each
/// producer, from which every per-producer count follows. `actual_value` is empty for
/// unlabelled records.
struct ConfusionCell {
  int producer_id = 0;
  std::string image_prediction;
  std::optional<std::string> actual_value;
  int64_t count = 0;
  friend bool operator==(const ConfusionCell&, const ConfusionCell&) = default;
};

/// One document of `incorrect_inference_results`.
struct ProducerResult {
  int producer_id = 0;
  int64_t incorrect_count = 0;
  int64_t total = 0;       // every record of the producer, labelled or not
  int64_t unlabelled = 0;  // records without actual_value: never incorrect
  double error_rate = 0;   // incorrect_count / labelled records (0 when none)
  int64_t computed_at_us = 0;
  friend bool operator==(const ProducerResult&, const ProducerResult&) = default;
};

/// The additive part of a producer's result: counts over partitions and windows sum up.
struct ProducerCounts {
  int producer_id = 0;
  int64_t incorrect_count = 0;
  int64_t total = 0;
  int64_t unlabelled = 0;

  /// Counts `count` records predicted `prediction` whose true class is `actual`.
  void Add(std::string_view prediction, const std::optional<std::string>& actual, int64_t count = 1);
  ProducerCounts& operator+=(const ProducerCounts& other);
  friend bool operator==(const ProducerCounts&, const ProducerCounts&) = default;
};

/// `counts` with its error rate: incorrect over labelled records (0 when none is labelled).
ProducerResult ToResult(const ProducerCounts& counts, int64_t computed_at_us);

/// Per-producer counts from confusion cells, sorted by producer_id.
std::vector<ProducerResult> PerProducer(std::span<const ConfusionCell> cells, int64_t computed_at_us);

/// A producer's counts in one tumbling window [start, start + size).
struct WindowCounts {
  int64_t start_us = 0;
  ProducerCounts counts;
  friend bool operator==(const WindowCounts&, const WindowCounts&) = default;
};

/// One Kafka partition's share of a live count (`iotinfer stream`): the offset to read next
/// and the counts of every record before it. Saved as one row or document, in one write, so
/// the offset and the counts never disagree whatever crashes when.
struct StreamState {
  std::string group;  // the stream job, by its consumer group
  std::string topic;
  int32_t partition = 0;
  int64_t next_offset = 0;
  std::vector<ProducerCounts> counts;  // sorted by producer_id
  std::vector<WindowCounts> windows;   // sorted by (start, producer_id)
  int64_t updated_at_us = 0;           // kept in milliseconds, as every timestamp
  friend bool operator==(const StreamState&, const StreamState&) = default;
};

/// One document of `incorrect_inference_windows`: a producer's result in one window.
struct WindowResult {
  int64_t window_start_us = 0;
  int64_t window_end_us = 0;
  ProducerResult result;
  friend bool operator==(const WindowResult&, const WindowResult&) = default;
};

/// What an upsert did, by the store's own account.
struct UpsertStats {
  int64_t inserted = 0;  // ids that were new
  int64_t replaced = 0;  // ids that existed and were overwritten
};

/// The store of inference results: collection/table `images` (one document per image id, the
/// original schema's fields first) and `incorrect_inference_results` (one per producer).
/// Errors: Unavailable when the server cannot be reached or timed out (retry later; nothing
/// was lost), InvalidInput for a bad URI or a record the store refuses, Internal otherwise.
/// One instance is not thread-safe; open one per thread.
class Store {
 public:
  /// Connects to `options.uri` and creates the unique index on `images.id` (and the tables,
  /// for SQLite). A MongoDB server that is down is not an error here: calls return
  /// Unavailable until it answers, so a service can start before its database.
  static Result<std::unique_ptr<Store>> Open(const StoreOptions& options);
  virtual ~Store() = default;

  /// Unavailable unless the server answers now.
  virtual Status Ping() = 0;

  /// Creates what the store needs (unique index on `images.id`); idempotent.
  virtual Status EnsureIndexes() = 0;

  /// Writes each record as the document with its id, replacing any earlier one, so a replay
  /// leaves the same documents. All or nothing for SQLite; for MongoDB every record is
  /// attempted (unordered) and an error means some may be written: retrying is safe.
  virtual Result<UpsertStats> Upsert(std::span<const InferenceRecord> records) = 0;

  /// Calls `visit` for every matching document, in no particular order, holding at most a
  /// driver batch in memory. Stops at the first error `visit` returns.
  virtual Status Scan(const Filter& filter, const std::function<Status(const StoredRecord&)>& visit) = 0;

  virtual Result<int64_t> Count(const Filter& filter) = 0;

  /// The confusion cells of all documents, computed by the store (an aggregation pipeline
  /// or a GROUP BY): what analytics push down.
  virtual Result<std::vector<ConfusionCell>> Confusion() = 0;

  /// Replaces the whole of `incorrect_inference_results` with `results`.
  virtual Status ReplaceResults(std::span<const ProducerResult> results) = 0;

  /// `incorrect_inference_results`, sorted by producer_id.
  virtual Result<std::vector<ProducerResult>> ReadResults() = 0;

  /// Saves `state` unless the store holds a state of the same (group, topic, partition) with
  /// a greater next_offset: then nothing is written and false returned, because another
  /// instance has counted further (this one lost the partition and is behind). One
  /// single-document write: FerretDB has no multi-document transactions.
  Result<bool> SaveStreamState(const StreamState& state);

  /// SaveStreamState for several partitions in one request, each state still its own
  /// single-document write: whether each was saved, in the order of `states`.
  virtual Result<std::vector<bool>> SaveStreamStates(std::span<const StreamState> states) = 0;

  /// Every saved partition state of `group`, sorted by (topic, partition).
  virtual Result<std::vector<StreamState>> LoadStreamState(const std::string& group) = 0;

  /// Writes each window result over any earlier one of the same (producer, window start).
  virtual Status UpsertWindowResults(std::span<const WindowResult> windows) = 0;

  /// `incorrect_inference_windows`, sorted by (window start, producer_id).
  virtual Result<std::vector<WindowResult>> ReadWindowResults() = 0;

  /// Drops every collection (tests and benchmarks start from empty).
  virtual Status Clear() = 0;

  /// The URI with any password replaced by "***": safe to log.
  virtual std::string Describe() const = 0;
};

/// Now, in microseconds since the epoch, cut to whole milliseconds as every store keeps
/// timestamps: a time taken with it reads back from any store unchanged.
int64_t NowMillisAsMicros();

/// `uri` with the password of a `scheme://user:password@host` URI replaced by "***".
std::string RedactUri(std::string_view uri);

}  // namespace iotinfer::store
