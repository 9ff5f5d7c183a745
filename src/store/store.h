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
#include "core/results.h"
#include "store/stream_state.h"

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
  /// The password of the URI's user, kept out of the URI so that it is on no command line and
  /// in no URI that gets printed: read from `password_file` (a mounted Secret), else `password`
  /// (IOTINFER_STORE_PASSWORD). Neither set: the URI's own, if any.
  std::string password;
  std::string password_file;
};

/// A stored `images` document: the inference record plus when the store wrote it.
/// Timestamps are kept with millisecond precision (BSON dates), in every store alike.
struct StoredRecord {
  InferenceRecord record;
  int64_t stored_at_us = 0;
  std::string source;  // where InsertFirst read it ("topic/partition/offset"); empty when unknown
};

/// What InsertFirst did with one record.
struct Insertion {
  enum class Kind {
    kInserted,   // its id was new: stored
    kReplayed,   // stored before from the same source: a batch read again after a crash
    kDuplicate,  // its id is stored from another source with the same device fields: a retry
    kConflict,   // its id is stored from another source with other device fields: an id reused
  };
  Kind kind = Kind::kInserted;
  std::string stored_source;  // for a duplicate or a conflict: where the stored one came from
  friend bool operator==(const Insertion&, const Insertion&) = default;
};

/// Which documents a scan or count sees; unset fields match everything.
struct Filter {
  std::optional<int> producer_id;
  std::optional<std::string> id;
};

/// What an upsert did, by the store's own account.
struct UpsertStats {
  int64_t inserted = 0;  // ids that were new
  int64_t replaced = 0;  // ids that existed and were overwritten
};

/// The store of inference results: collection/table `images` (one document per image id, the
/// original schema's fields first), `incorrect_inference_results` (one per producer), and what
/// the stream service keeps: its saved state, `incorrect_inference_windows` and
/// `producer_health`.
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

  /// First wins: writes each record whose id is not stored yet, keeping `sources[i]` (where it
  /// was read) in its document; a record whose id is stored, or comes earlier in `records`,
  /// is not written and is told apart by source and device fields (producer_id, actual_value,
  /// produced_at), as Insertion says. What `sink` writes with, so that one document per id
  /// holds what was counted. Errors as Upsert's; retrying is safe (a record written before
  /// the error finds itself: kReplayed).
  Result<std::vector<Insertion>> InsertFirst(std::span<const InferenceRecord> records,
                                             std::span<const std::string> sources);

  /// Calls `visit` for every matching document, in no particular order, holding at most a
  /// driver batch in memory. Stops at the first error `visit` returns.
  virtual Status Scan(const Filter& filter, const std::function<Status(const StoredRecord&)>& visit) = 0;

  virtual Result<int64_t> Count(const Filter& filter) = 0;

  /// The confusion cells of all documents, computed by the store (an aggregation pipeline
  /// or a GROUP BY): what analytics push down.
  virtual Result<std::vector<ConfusionCell>> Confusion() = 0;

  /// Replaces the whole of `incorrect_inference_results` with `results`: upserts them, then
  /// deletes the producers not among them, so a reader never sees the collection empty.
  virtual Status ReplaceResults(std::span<const ProducerResult> results);

  /// Writes each result over the earlier one of its producer.
  virtual Status UpsertResults(std::span<const ProducerResult> results) = 0;

  /// Deletes the results of these producers.
  virtual Status DeleteResults(std::span<const int> producer_ids) = 0;

  /// `incorrect_inference_results`, sorted by producer_id.
  virtual Result<std::vector<ProducerResult>> ReadResults() = 0;

  /// Saves `state` unless the store holds a head of the same (group, topic, partition) with a
  /// greater next_offset: then its chunks may be written but the head is not, false is
  /// returned, and nothing is deleted, because another instance has counted further (this one
  /// lost the partition and is behind). Its chunks are harmless: a chunk newer than the head
  /// is never selected, and the same key and as_of always hold the same counts.
  Result<bool> SaveStreamState(const StreamState& state);

  /// SaveStreamState for several partitions in one request, each head still its own
  /// single-document write: whether each was saved, in the order of `states`.
  virtual Result<std::vector<bool>> SaveStreamStates(std::span<const StreamState> states) = 0;

  /// Every saved partition state of `group`, sorted by (topic, partition), each with its
  /// chunks as its head selects them. A partition in `since` comes only with the chunks that
  /// changed after the offset given there (none when its head has not moved): the reader
  /// applies them to what it loaded then. A consistent view even while instances save and
  /// tidy: a head and the chunks it selects. A full load also deletes chunks that no head can
  /// select again (left by a crash between the chunks and the head of a save).
  virtual Result<std::vector<StreamState>> LoadStreamState(const std::string& group,
                                                           const StateVersions& since = {}) = 0;

  /// Writes each window result over any earlier one of the same (producer, window start).
  virtual Status UpsertWindowResults(std::span<const WindowResult> windows) = 0;

  /// `incorrect_inference_windows`, sorted by (window start, producer_id).
  virtual Result<std::vector<WindowResult>> ReadWindowResults() = 0;

  /// Writes each verdict over the earlier one of its producer in `producer_health`, which
  /// holds each device's latest verdict.
  virtual Status UpsertHealth(std::span<const DeviceHealth> verdicts) = 0;

  /// `producer_health`, sorted by producer_id.
  virtual Result<std::vector<DeviceHealth>> ReadHealth() = 0;

  /// Drops every collection (tests and benchmarks start from empty).
  virtual Status Clear() = 0;

  /// The URI with any password replaced by "***": safe to log.
  virtual std::string Describe() const = 0;

 protected:
  /// Inserts each record (their ids distinct) whose id is not stored, with its source: per
  /// record, nullopt when inserted, else the document stored under its id.
  virtual Result<std::vector<std::optional<StoredRecord>>> InsertNew(std::span<const InferenceRecord> records,
                                                                     std::span<const std::string> sources) = 0;
};

/// Now, in microseconds since the epoch, cut to whole milliseconds as every store keeps
/// timestamps: a time taken with it reads back from any store unchanged.
int64_t NowMillisAsMicros();

/// `uri` (a mongodb:// one) with the password of `options` (see StoreOptions::password) put into
/// its user information, percent-encoded: for the driver, and for Spark's connector. `uri`
/// unchanged when no password is set. InvalidInput when the file cannot be read, when the URI
/// names no user, or when it carries a password already (two would be ambiguous).
Result<std::string> WithPassword(std::string_view uri, const StoreOptions& options);

/// `uri` with the password of a `scheme://user:password@host` URI replaced by "***".
std::string RedactUri(std::string_view uri);

}  // namespace iotinfer::store
