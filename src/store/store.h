#pragma once

#include <chrono>
#include <compare>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/inference_record.h"
#include "core/results.h"

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

/// Producers are spread over this many buckets (producer_id mod kStateBuckets) in a stream's
/// saved state. An int producer_id leaves at most 65,536 producers in a bucket, so no saved
/// document of the state exceeds about 3 MiB however many producers there are (MongoDB's
/// limit is 16 MiB), and a partition with a million producers saves only the buckets that
/// changed.
inline constexpr int32_t kStateBuckets = 65536;
int32_t StateBucket(int producer_id);

/// Which slice of a partition's counts a chunk holds: one bucket's totals (no window) or one
/// bucket's counts in the window starting at `window_start_us`.
struct ChunkKey {
  std::optional<int64_t> window_start_us;
  int32_t bucket = 0;
  friend auto operator<=>(const ChunkKey&, const ChunkKey&) = default;
};

/// One slice of a partition's live count as it stood at offset `as_of`: the counts of the
/// records before it that fall in the slice. `as_of` is the offset just after the last record
/// that changed the slice, so a chunk's content is a function of the topic alone, whichever
/// instance counted it: the chunks of one partition can be separate documents, written one
/// by one, and still agree with the partition's offset.
struct StateChunk {
  ChunkKey key;
  int64_t as_of = 0;
  std::vector<ProducerCounts> counts;  // sorted by producer_id
  friend bool operator==(const StateChunk&, const StateChunk&) = default;
};

/// One Kafka partition's share of a live count (`iotinfer stream`): the offset to read next
/// and, in chunks, the counts of every record before it. The offset is one small document
/// (the head); each chunk its own. A save writes the changed chunks first, then the head in
/// one single-document write, so whatever crashes when, the head's offset and the chunks it
/// selects (per key, the one with the greatest `as_of` not after it) never disagree.
struct StreamState {
  std::string group;  // the stream job, by its consumer group
  std::string topic;
  int32_t partition = 0;
  int64_t next_offset = 0;
  // Windows starting before this are no longer kept: their chunks are ignored and dropped.
  std::optional<int64_t> window_floor_us;
  // Saving: the chunks that changed since the last save. Loading: the chunk of each key
  // selected by next_offset (or, with `since`, those that changed since), sorted by key.
  std::vector<StateChunk> chunks;
  // Saving only: chunks this save makes obsolete (an earlier version of a saved chunk, a
  // window under the floor), deleted once the head is saved.
  std::vector<StateChunk> obsolete;
  int64_t updated_at_us = 0;  // kept in milliseconds, as every timestamp
  friend bool operator==(const StreamState&, const StreamState&) = default;
};

/// A partition's offset as a reader last loaded it: (topic, partition) -> next_offset.
using StateVersions = std::map<std::pair<std::string, int32_t>, int64_t>;

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

/// `uri` with the password of a `scheme://user:password@host` URI replaced by "***".
std::string RedactUri(std::string_view uri);

}  // namespace iotinfer::store
