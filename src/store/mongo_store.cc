// MongoDB (or any server speaking its wire protocol, such as FerretDB) through the official
// C driver. Documents are built field by field so that their order is the original schema's.
#include <fmt/format.h>
#include <mongoc/mongoc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <utility>

#include "store/store_internal.h"

namespace iotinfer::store {
namespace {

constexpr const char* kImages = "images";
constexpr const char* kResults = "incorrect_inference_results";
constexpr const char* kStreamHeads = "stream_partitions";
constexpr const char* kStreamChunks = "stream_chunks";
constexpr const char* kWindows = "incorrect_inference_windows";
constexpr const char* kHealth = "producer_health";
constexpr int kDuplicateKey = 11000;

// Owns a heap document. (bson_t carries an alignment attribute, which a unique_ptr's
// template argument would drop with a warning.)
class Bson {
 public:
  explicit Bson(bson_t* doc = bson_new()) : doc_(doc) {}
  ~Bson() { bson_destroy(doc_); }
  Bson(Bson&& other) noexcept : doc_(std::exchange(other.doc_, nullptr)) {}
  Bson& operator=(Bson&&) = delete;
  bson_t* get() const { return doc_; }

 private:
  bson_t* doc_;
};
struct PoolDeleter {
  void operator()(mongoc_client_pool_t* p) const { mongoc_client_pool_destroy(p); }
};
using Pool = std::unique_ptr<mongoc_client_pool_t, PoolDeleter>;

// One client popped from a pool of its own, for the pool's background monitoring: a
// single-threaded client leaves a server it failed to reach alone for 5 s (the SDAM spec's
// cooldown), so it noticed a restarted server about 4 s late; a pool's monitor rechecks it
// at most every 500 ms while operations wait for it.
class PooledClient {
 public:
  explicit PooledClient(Pool pool) : pool_(std::move(pool)), client_(mongoc_client_pool_pop(pool_.get())) {}
  ~PooledClient() { mongoc_client_pool_push(pool_.get(), client_); }
  PooledClient(const PooledClient&) = delete;
  PooledClient& operator=(const PooledClient&) = delete;
  mongoc_client_t* get() const { return client_; }

 private:
  Pool pool_;
  mongoc_client_t* client_;
};
struct CollectionDeleter {
  void operator()(mongoc_collection_t* c) const { mongoc_collection_destroy(c); }
};
using Collection = std::unique_ptr<mongoc_collection_t, CollectionDeleter>;
struct BulkDeleter {
  void operator()(mongoc_bulk_operation_t* b) const { mongoc_bulk_operation_destroy(b); }
};
using Bulk = std::unique_ptr<mongoc_bulk_operation_t, BulkDeleter>;
struct CursorDeleter {
  void operator()(mongoc_cursor_t* c) const { mongoc_cursor_destroy(c); }
};
using Cursor = std::unique_ptr<mongoc_cursor_t, CursorDeleter>;
struct UriDeleter {
  void operator()(mongoc_uri_t* u) const { mongoc_uri_destroy(u); }
};
struct WriteConcernDeleter {
  void operator()(mongoc_write_concern_t* w) const { mongoc_write_concern_destroy(w); }
};

// The one place the driver's errors become ours: what a caller may retry is decided here.
Error FromBson(const bson_error_t& error, std::string_view context) {
  std::string what = fmt::format("{}: {}", context, error.message);
  // Bad credentials or an untrusted certificate do not heal by waiting. The driver reports the
  // latter only in the words of its server selection error, which also covers servers that are
  // merely down.
  if (error.domain == MONGOC_ERROR_CLIENT && error.code == MONGOC_ERROR_CLIENT_AUTHENTICATE) {
    return Error::PermissionDenied(what);
  }
  if (std::string_view(error.message).find("certificate verify failed") != std::string_view::npos) {
    return Error::PermissionDenied(fmt::format("{} (is tlsCAFile the CA that signed the server's certificate?)", what));
  }
  switch (error.domain) {
    case MONGOC_ERROR_STREAM:
    case MONGOC_ERROR_SERVER_SELECTION:
    case MONGOC_ERROR_CLIENT:
    case MONGOC_ERROR_PROTOCOL:
      return Error::Unavailable(what);
    case MONGOC_ERROR_COMMAND:
    case MONGOC_ERROR_SERVER:
    case MONGOC_ERROR_WRITE_CONCERN:
      switch (error.code) {
        // Not primary, shutting down, interrupted, host unreachable, network timeout, write
        // concern not met in time (members down): the server or its replica set is going away
        // or not ready, so the same call may succeed later.
        case 6:
        case 7:
        case 64:
        case 89:
        case 91:
        case 189:
        case 10107:
        case 11600:
        case 11602:
        case 13435:
        case 13436:
          return Error::Unavailable(what);
        // Duplicate key, bad value, type mismatch: the same request fails again.
        case kDuplicateKey:
        case 2:
        case 14:
          return Error::InvalidInput(what);
        default:
          return Error::Internal(what);
      }
    case MONGOC_ERROR_BSON:
    case MONGOC_ERROR_COLLECTION:
    case MONGOC_ERROR_CURSOR:
      return Error::InvalidInput(what);
    default:
      return Error::Internal(what);
  }
}

void AppendOptionalString(bson_t* doc, const char* key, const std::optional<std::string>& value) {
  if (value) {
    BSON_APPEND_UTF8(doc, key, value->c_str());
  } else {
    BSON_APPEND_NULL(doc, key);
  }
}

// The original schema's four fields first, exactly as its Python consumer wrote them
// (strings, strings, int32), then the extras.
void AppendRecord(bson_t* doc, const InferenceRecord& r, int64_t stored_at_ms) {
  bson_append_utf8(doc, "id", 2, r.id.data(), static_cast<int>(r.id.size()));
  bson_append_utf8(doc, "image_prediction", -1, r.image_prediction.data(), static_cast<int>(r.image_prediction.size()));
  AppendOptionalString(doc, "actual_value", r.actual_value);
  BSON_APPEND_INT32(doc, "producer_id", r.producer_id);
  BSON_APPEND_DOUBLE(doc, "confidence", r.confidence);
  bson_append_utf8(doc, "model", -1, r.model.data(), static_cast<int>(r.model.size()));
  if (r.produced_at_us) {
    BSON_APPEND_DATE_TIME(doc, "produced_at", ToMillis(*r.produced_at_us));
  } else {
    BSON_APPEND_NULL(doc, "produced_at");
  }
  BSON_APPEND_DATE_TIME(doc, "inferred_at", ToMillis(r.inferred_at_us));
  BSON_APPEND_DATE_TIME(doc, "stored_at", stored_at_ms);
}

Result<std::optional<std::string>> ReadOptionalString(const bson_iter_t& it, const char* key) {
  if (BSON_ITER_HOLDS_NULL(&it)) return std::nullopt;
  if (!BSON_ITER_HOLDS_UTF8(&it)) return std::unexpected(Error::InvalidInput(fmt::format("'{}' is not a string", key)));
  uint32_t length = 0;
  const char* s = bson_iter_utf8(&it, &length);
  return std::string(s, length);
}

// Reads what AppendRecord wrote, accepting what other writers (the original Python consumer,
// Spark) may have used instead: int64 or double producer_id, timestamps as integers.
Result<StoredRecord> ReadRecord(const bson_t* doc) {
  StoredRecord stored;
  InferenceRecord& r = stored.record;
  bool has_id = false, has_prediction = false, has_producer = false;
  bson_iter_t it;
  bson_iter_init(&it, doc);
  while (bson_iter_next(&it)) {
    const std::string_view key = bson_iter_key(&it);
    if (key == "id" || key == "image_prediction" || key == "actual_value" || key == "model") {
      ASSIGN_OR_RETURN(std::optional<std::string> value, ReadOptionalString(it, key.data()));
      if (key == "id") {
        has_id = value.has_value();
        r.id = value.value_or("");
      } else if (key == "image_prediction") {
        has_prediction = value.has_value();
        r.image_prediction = value.value_or("");
      } else if (key == "actual_value") {
        r.actual_value = std::move(value);
      } else {
        r.model = value.value_or("");
      }
    } else if (key == "producer_id") {
      if (!BSON_ITER_HOLDS_NUMBER(&it)) return std::unexpected(Error::InvalidInput("'producer_id' is not a number"));
      r.producer_id = static_cast<int>(bson_iter_as_int64(&it));
      has_producer = true;
    } else if (key == "confidence" && BSON_ITER_HOLDS_NUMBER(&it)) {
      r.confidence = bson_iter_as_double(&it);
    } else if (key == "source" && BSON_ITER_HOLDS_UTF8(&it)) {
      stored.source = bson_iter_utf8(&it, nullptr);
    } else if (key == "produced_at" || key == "inferred_at" || key == "stored_at") {
      std::optional<int64_t> ms;
      if (BSON_ITER_HOLDS_DATE_TIME(&it)) ms = bson_iter_date_time(&it);
      if (BSON_ITER_HOLDS_NUMBER(&it)) ms = bson_iter_as_int64(&it);
      if (key == "produced_at") {
        if (ms) r.produced_at_us = *ms * 1000;
      } else {
        (key == "inferred_at" ? r.inferred_at_us : stored.stored_at_us) = ms.value_or(0) * 1000;
      }
    }
  }
  if (!has_id || !has_prediction || !has_producer) {
    return std::unexpected(Error::InvalidInput(
        fmt::format("document '{}' lacks id, image_prediction or producer_id", r.id.empty() ? "?" : r.id)));
  }
  return stored;
}

Bson FilterDocument(const Filter& filter) {
  Bson doc = Bson();
  if (filter.producer_id) BSON_APPEND_INT32(doc.get(), "producer_id", *filter.producer_id);
  if (filter.id) BSON_APPEND_UTF8(doc.get(), "id", filter.id->c_str());
  return doc;
}

class MongoStore final : public Store {
 public:
  MongoStore(std::string described, Pool pool, std::string database)
      : described_(std::move(described)), client_(std::move(pool)), database_(std::move(database)) {}

  Collection Get(const char* name) {
    return Collection(mongoc_client_get_collection(client_.get(), database_.c_str(), name));
  }

  Status Ping() override {
    bson_error_t error;
    Bson ping(BCON_NEW("ping", BCON_INT32(1)));
    if (!mongoc_client_command_simple(client_.get(), "admin", ping.get(), nullptr, nullptr, &error)) {
      return std::unexpected(FromBson(error, Context("ping")));
    }
    return Ok();
  }

  Status EnsureIndexes() override {
    mongoc_database_t* db = mongoc_client_get_database(client_.get(), database_.c_str());
    Status status = Ok();
    // Only what uniqueness needs, and what a stream's reads of its state select by: on
    // FerretDB every index costs each insert dearly, and analytics scan whole collections.
    struct Index {
      const char* collection;
      const char* name;
      Bson key;
      bool unique;
    };
    Index indexes[] = {
        {kImages, "id_1", Bson(BCON_NEW("id", BCON_INT32(1))), true},
        {kResults, "producer_id_1", Bson(BCON_NEW("producer_id", BCON_INT32(1))), true},
        {kStreamChunks, "partition_as_of",
         Bson(BCON_NEW("group", BCON_INT32(1), "topic", BCON_INT32(1), "partition", BCON_INT32(1), "as_of",
                       BCON_INT32(1))),
         false},
    };
    for (const Index& index : indexes) {
      Bson command(BCON_NEW("createIndexes", BCON_UTF8(index.collection), "indexes", "[", "{", "key",
                            BCON_DOCUMENT(index.key.get()), "name", BCON_UTF8(index.name), "unique",
                            BCON_BOOL(index.unique), "}", "]"));
      bson_error_t error;
      if (!mongoc_database_write_command_with_opts(db, command.get(), nullptr, nullptr, &error)) {
        status = std::unexpected(
            FromBson(error, Context(fmt::format("creating index {}.{}", index.collection, index.name))));
        break;
      }
    }
    mongoc_database_destroy(db);
    if (status) indexed_ = true;
    return status;
  }

  // Inserting is the common case and several times faster than an upsert on FerretDB, so
  // every record is first inserted (unordered); the ids the unique index refuses exist
  // already and are then replaced by id with upsert, which makes the whole an upsert.
  Result<UpsertStats> Upsert(std::span<const InferenceRecord> records) override {
    UpsertStats stats;
    if (records.empty()) return stats;
    // Without the unique index an insert of an existing id would succeed: a store opened
    // while its server was down creates the index before its first write.
    if (!indexed_) TRY(EnsureIndexes());
    Collection images = Get(kImages);
    const int64_t stored_at = ToMillis(NowMillisAsMicros());
    std::vector<Bson> docs;
    docs.reserve(records.size());
    for (const InferenceRecord& r : records) {
      docs.push_back(Bson());
      AppendRecord(docs.back().get(), r, stored_at);
    }
    ASSIGN_OR_RETURN(std::vector<size_t> duplicates, InsertAll(images.get(), docs, "inserting images"));
    stats.inserted = static_cast<int64_t>(records.size() - duplicates.size());
    if (duplicates.empty()) return stats;

    std::vector<Replacement> replacements;
    for (size_t i : duplicates) {
      replacements.push_back({Bson(BCON_NEW("id", BCON_UTF8(records[i].id.c_str()))), docs[i].get()});
    }
    TRY(ReplaceAll(images.get(), replacements, "replacing existing images"));
    stats.replaced = static_cast<int64_t>(duplicates.size());
    return stats;
  }

  Result<std::vector<std::optional<StoredRecord>>> InsertNew(std::span<const InferenceRecord> records,
                                                             std::span<const std::string> sources) override {
    std::vector<std::optional<StoredRecord>> stored(records.size());
    if (records.empty()) return stored;
    if (!indexed_) TRY(EnsureIndexes());  // without the unique index, every insert would succeed
    Collection images = Get(kImages);
    const int64_t stored_at = ToMillis(NowMillisAsMicros());
    std::vector<Bson> docs;
    docs.reserve(records.size());
    for (size_t i = 0; i < records.size(); ++i) {
      docs.push_back(Bson());
      AppendRecord(docs.back().get(), records[i], stored_at);
      BSON_APPEND_UTF8(docs.back().get(), "source", sources[i].c_str());
    }
    ASSIGN_OR_RETURN(std::vector<size_t> refused, InsertAll(images.get(), docs, "inserting images"));
    if (refused.empty()) return stored;
    std::map<std::string, size_t> index;
    Bson query;
    bson_t in, ids;
    BSON_APPEND_DOCUMENT_BEGIN(query.get(), "id", &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &ids);
    for (size_t i : refused) {
      BSON_APPEND_UTF8(&ids, std::to_string(index.size()).c_str(), records[i].id.c_str());
      index[records[i].id] = i;
    }
    bson_append_array_end(&in, &ids);
    bson_append_document_end(query.get(), &in);
    Status status = Ok();
    TRY(Find(kImages, query, Bson(), [&](const bson_t* doc) {
      Result<StoredRecord> existing = ReadRecord(doc);
      if (!existing) {
        if (status) status = std::unexpected(existing.error());
        return;
      }
      if (auto it = index.find(existing->record.id); it != index.end()) stored[it->second] = std::move(*existing);
    }));
    TRY(status);
    // Refused as a duplicate, yet gone when looked up (deleted meanwhile): nothing to compare
    // with, so it is written as the first of its id on the next try.
    for (size_t i : refused) {
      if (!stored[i]) return std::unexpected(Error::Unavailable(Context("images." + records[i].id + " vanished")));
    }
    return stored;
  }

  struct Replacement {
    Bson selector;
    const bson_t* document;
  };

  // Replace of each document (with upsert unless told otherwise), in commands of a few
  // statements: FerretDB 1.x holds a SQLite connection per statement of an update command
  // until the command ends, from a pool of 100 per database, so a command of 100 statements
  // (or a few concurrent ones of dozens) deadlocks the server. Replacements are the rare
  // path (replays, results), so this costs little. Returns how many selectors matched.
  Result<int64_t> ReplaceAll(mongoc_collection_t* collection, std::span<const Replacement> replacements,
                             std::string_view what, bool upsert = true) {
    constexpr size_t kStatementsPerCommand = 16;
    // Two writers upserting the same new key (two stream instances writing a producer's first
    // result) both find nothing and both insert; the unique index refuses the second. The
    // document exists now, so the same replacements succeed when sent again: what MongoDB
    // 4.2+ does on its own for such upserts, and FerretDB does not.
    constexpr int kAttempts = 3;
    Bson unordered(BCON_NEW("ordered", BCON_BOOL(false)));
    Bson options(BCON_NEW("upsert", BCON_BOOL(upsert)));
    int64_t matched = 0;
    for (size_t begin = 0; begin < replacements.size(); begin += kStatementsPerCommand) {
      for (int attempt = 1;; ++attempt) {
        Bulk bulk(mongoc_collection_create_bulk_operation_with_opts(collection, unordered.get()));
        for (size_t i = begin; i < std::min(replacements.size(), begin + kStatementsPerCommand); ++i) {
          mongoc_bulk_operation_replace_one_with_opts(bulk.get(), replacements[i].selector.get(),
                                                      replacements[i].document, options.get(), nullptr);
        }
        bson_t reply;
        bson_error_t error;
        const bool ok = mongoc_bulk_operation_execute(bulk.get(), &reply, &error) != 0;
        bson_iter_t n;
        if (ok && bson_iter_init_find(&n, &reply, "nMatched")) matched += bson_iter_as_int64(&n);
        bson_destroy(&reply);
        if (ok) break;
        if (error.code != kDuplicateKey || attempt == kAttempts) {
          return std::unexpected(FromBson(error, Context(what)));
        }
      }
    }
    return matched;
  }

  // Indexes of the records the unique index refused; any other write error fails the call.
  Result<std::vector<size_t>> Duplicates(const bson_t* reply, bool ok, const bson_error_t& error,
                                         std::string_view what) {
    std::vector<size_t> duplicates;
    if (ok) return duplicates;
    // The reply lists writeErrors (empty) even when the command never reached the server:
    // only a failure that is all duplicate keys is one.
    bson_iter_t it, errors;
    if (error.code != kDuplicateKey || !bson_iter_init_find(&it, reply, "writeErrors") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &errors)) {
      return std::unexpected(FromBson(error, Context(what)));
    }
    while (bson_iter_next(&errors)) {
      bson_iter_t entry;
      if (!bson_iter_recurse(&errors, &entry)) continue;
      int64_t index = -1, code = 0;
      std::string message;
      while (bson_iter_next(&entry)) {
        const std::string_view key = bson_iter_key(&entry);
        if (key == "index") index = bson_iter_as_int64(&entry);
        if (key == "code") code = bson_iter_as_int64(&entry);
        if (key == "errmsg" && BSON_ITER_HOLDS_UTF8(&entry)) message = bson_iter_utf8(&entry, nullptr);
      }
      if (code != kDuplicateKey || index < 0) {
        bson_error_t item{};
        item.domain = MONGOC_ERROR_SERVER;
        item.code = static_cast<uint32_t>(code);
        bson_strncpy(item.message, message.c_str(), sizeof item.message);
        return std::unexpected(FromBson(item, Context(what)));
      }
      duplicates.push_back(static_cast<size_t>(index));
    }
    if (duplicates.empty()) return std::unexpected(FromBson(error, Context(what)));
    return duplicates;
  }

  Status Scan(const Filter& filter, const std::function<Status(const StoredRecord&)>& visit) override {
    Collection images = Get(kImages);
    Bson query = FilterDocument(filter);
    Bson opts(BCON_NEW("projection", "{", "_id", BCON_INT32(0), "}", "batchSize", BCON_INT32(10000)));
    Cursor cursor(mongoc_collection_find_with_opts(images.get(), query.get(), opts.get(), nullptr));
    const bson_t* doc = nullptr;
    while (mongoc_cursor_next(cursor.get(), &doc)) {
      ASSIGN_OR_RETURN(StoredRecord stored, ReadRecord(doc));
      TRY(visit(stored));
    }
    bson_error_t error;
    if (mongoc_cursor_error(cursor.get(), &error)) return std::unexpected(FromBson(error, Context("scanning images")));
    return Ok();
  }

  Result<int64_t> Count(const Filter& filter) override {
    Collection images = Get(kImages);
    Bson query = FilterDocument(filter);
    bson_error_t error;
    const int64_t n = mongoc_collection_count_documents(images.get(), query.get(), nullptr, nullptr, nullptr, &error);
    if (n < 0) return std::unexpected(FromBson(error, Context("counting images")));
    return n;
  }

  // Only $group with a compound key and {$sum: 1}: FerretDB 1.x runs this pipeline, while
  // comparing two fields inside the server ($expr, $cond, $ne) it does not.
  Result<std::vector<ConfusionCell>> Confusion() override {
    Collection images = Get(kImages);
    Bson pipeline(BCON_NEW("pipeline", "[", "{", "$group", "{", "_id", "{", "p", BCON_UTF8("$producer_id"), "pred",
                           BCON_UTF8("$image_prediction"), "act", BCON_UTF8("$actual_value"), "}", "n", "{", "$sum",
                           BCON_INT32(1), "}", "}", "}", "]"));
    Cursor cursor(mongoc_collection_aggregate(images.get(), MONGOC_QUERY_NONE, pipeline.get(), nullptr, nullptr));
    std::vector<ConfusionCell> cells;
    const bson_t* doc = nullptr;
    while (mongoc_cursor_next(cursor.get(), &doc)) {
      ConfusionCell cell;
      bson_iter_t it, key;
      if (bson_iter_init_find(&it, doc, "n")) cell.count = bson_iter_as_int64(&it);
      if (bson_iter_init_find(&it, doc, "_id") && bson_iter_recurse(&it, &key)) {
        while (bson_iter_next(&key)) {
          const std::string_view name = bson_iter_key(&key);
          if (name == "p") cell.producer_id = static_cast<int>(bson_iter_as_int64(&key));
          if (name == "pred" && BSON_ITER_HOLDS_UTF8(&key)) cell.image_prediction = bson_iter_utf8(&key, nullptr);
          if (name == "act" && BSON_ITER_HOLDS_UTF8(&key)) cell.actual_value = bson_iter_utf8(&key, nullptr);
        }
      }
      cells.push_back(std::move(cell));
    }
    bson_error_t error;
    if (mongoc_cursor_error(cursor.get(), &error)) {
      return std::unexpected(FromBson(error, Context("aggregating images")));
    }
    return cells;
  }

  // Inserted first, as images are: on FerretDB a fresh collection of a million producers
  // takes minutes of upserts and seconds of inserts. Producers that have a result already are
  // then replaced, selected by _id (the producer_id): FerretDB finds a document by _id
  // through its primary key, and by any other field only by reading every document.
  Status UpsertResults(std::span<const ProducerResult> results) override {
    std::vector<Bson> docs;
    docs.reserve(results.size());
    for (const ProducerResult& r : results) {
      docs.push_back(Bson(BCON_NEW("_id", BCON_INT32(r.producer_id))));
      AppendResult(docs.back().get(), r);
    }
    return UpsertByProducer(kResults, docs, results, &ProducerResult::producer_id);
  }

  // Documents keyed by producer, inserted first, then those whose producer has one already
  // replaced, selected by _id (the producer_id): on FerretDB a fresh collection of a million
  // producers takes minutes of upserts and seconds of inserts, and it finds a document by _id
  // through its primary key, by any other field only by reading every document.
  template <typename Item>
  Status UpsertByProducer(const char* name, std::span<const Bson> docs, std::span<const Item> items,
                          int Item::*producer_id) {
    if (docs.empty()) return Ok();
    if (!indexed_) TRY(EnsureIndexes());
    Collection collection = Get(name);
    const std::string what = fmt::format("writing {}", name);
    ASSIGN_OR_RETURN(std::vector<size_t> existing, InsertAll(collection.get(), docs, what));
    std::vector<Replacement> replacements;
    for (size_t i : existing) {
      replacements.push_back({Bson(BCON_NEW("_id", BCON_INT32(items[i].*producer_id))), docs[i].get()});
    }
    TRY(ReplaceAll(collection.get(), replacements, what));
    return Ok();
  }

  // The verdict first, as people look for it; the interval as the topic's JSON has it.
  Status UpsertHealth(std::span<const DeviceHealth> verdicts) override {
    std::vector<Bson> docs;
    docs.reserve(verdicts.size());
    for (const DeviceHealth& h : verdicts) {
      docs.push_back(Bson(BCON_NEW("_id", BCON_INT32(h.producer_id), "producer_id", BCON_INT32(h.producer_id),
                                   "verdict", BCON_UTF8(std::string(VerdictName(h.verdict)).c_str()), "labelled",
                                   BCON_INT64(h.labelled), "incorrect", BCON_INT64(h.incorrect), "error_rate",
                                   BCON_DOUBLE(h.error_rate), "interval", "[", BCON_DOUBLE(h.low), BCON_DOUBLE(h.high),
                                   "]", "fleet_rate", BCON_DOUBLE(h.fleet_rate), "p_value", BCON_DOUBLE(h.p_value),
                                   "window_seconds", BCON_DOUBLE(static_cast<double>(h.window_ms) / 1000), "judged_at",
                                   BCON_DATE_TIME(ToMillis(h.judged_at_us)))));
    }
    return UpsertByProducer(kHealth, docs, verdicts, &DeviceHealth::producer_id);
  }

  Result<std::vector<DeviceHealth>> ReadHealth() override {
    std::vector<DeviceHealth> verdicts;
    Bson opts(BCON_NEW("sort", "{", "producer_id", BCON_INT32(1), "}"));
    TRY(Find(kHealth, Bson(), opts, [&](const bson_t* doc) {
      DeviceHealth h;
      bson_iter_t it;
      bson_iter_init(&it, doc);
      while (bson_iter_next(&it)) {
        const std::string_view key = bson_iter_key(&it);
        if (key == "producer_id") h.producer_id = static_cast<int>(bson_iter_as_int64(&it));
        if (key == "verdict" && BSON_ITER_HOLDS_UTF8(&it)) {
          h.verdict = ParseVerdict(bson_iter_utf8(&it, nullptr)).value_or(Verdict::kUnknown);
        }
        if (key == "labelled") h.labelled = bson_iter_as_int64(&it);
        if (key == "incorrect") h.incorrect = bson_iter_as_int64(&it);
        if (key == "error_rate") h.error_rate = bson_iter_as_double(&it);
        if (key == "fleet_rate") h.fleet_rate = bson_iter_as_double(&it);
        if (key == "p_value") h.p_value = bson_iter_as_double(&it);
        if (key == "window_seconds") h.window_ms = std::llround(bson_iter_as_double(&it) * 1000);
        if (key == "judged_at" && BSON_ITER_HOLDS_DATE_TIME(&it)) h.judged_at_us = bson_iter_date_time(&it) * 1000;
        bson_iter_t bound;
        if (key == "interval" && BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &bound)) {
          if (bson_iter_next(&bound)) h.low = bson_iter_as_double(&bound);
          if (bson_iter_next(&bound)) h.high = bson_iter_as_double(&bound);
        }
      }
      verdicts.push_back(h);
    }));
    return verdicts;
  }

  // Results written before their _id was the producer_id (or by another writer) would make
  // every insert of their producer fail as a duplicate and the replace by _id find nothing:
  // a whole rewrite removes them first.
  Status ReplaceResults(std::span<const ProducerResult> results) override {
    Collection collection = Get(kResults);
    Bson others(BCON_NEW("_id", "{", "$not", "{", "$type", BCON_UTF8("int"), "}", "}"));
    bson_error_t error;
    if (!mongoc_collection_delete_many(collection.get(), others.get(), nullptr, nullptr, &error)) {
      return std::unexpected(FromBson(error, Context("deleting incorrect_inference_results of other writers")));
    }
    return Store::ReplaceResults(results);
  }

  Status DeleteResults(std::span<const int> producer_ids) override {
    return DeleteIn(kResults, "_id", producer_ids,
                    [](bson_t* array, const char* key, int id) { BSON_APPEND_INT32(array, key, id); });
  }

  // Deletes the documents whose `field` is one of `values`, in commands of a bounded size
  // (a million values in one $in would exceed the 16 MiB a command may have).
  template <typename T, typename AppendValue>
  Status DeleteIn(const char* name, const char* field, std::span<const T> values, AppendValue append) {
    constexpr size_t kPerCommand = 10000;
    Collection collection = Get(name);
    for (size_t begin = 0; begin < values.size(); begin += kPerCommand) {
      Bson selector;
      bson_t in, array;
      BSON_APPEND_DOCUMENT_BEGIN(selector.get(), field, &in);
      BSON_APPEND_ARRAY_BEGIN(&in, "$in", &array);
      for (size_t i = begin; i < std::min(values.size(), begin + kPerCommand); ++i) {
        append(&array, std::to_string(i - begin).c_str(), values[i]);
      }
      bson_append_array_end(&in, &array);
      bson_append_document_end(selector.get(), &in);
      bson_error_t error;
      if (!mongoc_collection_delete_many(collection.get(), selector.get(), nullptr, nullptr, &error)) {
        return std::unexpected(FromBson(error, Context(fmt::format("deleting from {}", name))));
      }
    }
    return Ok();
  }

  // Inserts every document (unordered) and returns the indexes of those a unique index
  // refused because they exist already; any other error fails the call.
  Result<std::vector<size_t>> InsertAll(mongoc_collection_t* collection, std::span<const Bson> docs,
                                        std::string_view what) {
    Bson unordered(BCON_NEW("ordered", BCON_BOOL(false)));
    Bulk insert(mongoc_collection_create_bulk_operation_with_opts(collection, unordered.get()));
    for (const Bson& doc : docs) mongoc_bulk_operation_insert_with_opts(insert.get(), doc.get(), nullptr, nullptr);
    bson_t reply;
    bson_error_t error;
    const bool ok = mongoc_bulk_operation_execute(insert.get(), &reply, &error) != 0;
    Result<std::vector<size_t>> refused = Duplicates(&reply, ok, error, what);
    bson_destroy(&reply);
    return refused;
  }

  Result<std::vector<ProducerResult>> ReadResults() override {
    std::vector<ProducerResult> results;
    Bson opts(BCON_NEW("sort", "{", "producer_id", BCON_INT32(1), "}"));
    TRY(Find(kResults, Bson(), opts, [&](const bson_t* doc) {
      ProducerResult r;
      bson_iter_t it;
      bson_iter_init(&it, doc);
      while (bson_iter_next(&it)) ReadResultField(&it, r);
      results.push_back(r);
    }));
    return results;
  }

  // The chunks are inserted first: a chunk's _id names its key and as_of, which fix its
  // content, so one that exists already (a save retried, two instances counting the same
  // records) is the same and its refusal harmless. Then the heads, each replaced where the
  // stored one is not further on (no upsert), in as few commands as ReplaceAll allows: the
  // common case, a save of partitions saved before. If fewer matched, some partition is new
  // or was counted further elsewhere, and the heads are saved one by one, which tells which.
  // (A conditional upsert per head in one command would tell that at once on MongoDB, but
  // FerretDB 1.24 stops such a command at its first refused statement and reports that at
  // index 0.) Last, the chunks the saved heads made obsolete are deleted.
  Result<std::vector<bool>> SaveStreamStates(std::span<const StreamState> states) override {
    std::vector<Bson> chunks;
    for (const StreamState& state : states) {
      for (const StateChunk& chunk : state.chunks) chunks.push_back(ChunkDocument(state, chunk));
    }
    if (!chunks.empty()) {
      Collection collection = Get(kStreamChunks);
      TRY(InsertAll(collection.get(), chunks, "saving stream_chunks"));
    }
    Collection heads = Get(kStreamHeads);
    std::vector<Bson> docs;
    std::vector<Replacement> replacements;
    for (const StreamState& state : states) {
      const std::string key = HeadKey(state);
      docs.push_back(HeadDocument(key, state));  // moving a Bson keeps its bson_t where it is
      replacements.push_back({HeadSelector(key, state), docs.back().get()});
    }
    ASSIGN_OR_RETURN(int64_t matched,
                     ReplaceAll(heads.get(), replacements, "saving stream_partitions", /*upsert=*/false));
    std::vector<bool> saved(states.size(), true);
    if (matched != static_cast<int64_t>(states.size())) {
      for (size_t i = 0; i < states.size(); ++i) {
        ASSIGN_OR_RETURN(saved[i], SaveHeadAlone(states[i]));
      }
    }
    std::vector<std::string> obsolete;
    for (size_t i = 0; i < states.size(); ++i) {
      if (!saved[i]) continue;
      for (const StateChunk& chunk : states[i].obsolete) obsolete.push_back(ChunkId(states[i], chunk.key, chunk.as_of));
    }
    TRY(DeleteChunks(obsolete));
    return saved;
  }

  // One delete statement per _id, a few to a command, rather than one `$in`: FerretDB finds
  // a document by _id equality through its primary key, but reads every document for an
  // `$in` (ten thousand ids in a collection of a hundred thousand chunks took over 30 s).
  Status DeleteChunks(std::span<const std::string> ids) {
    constexpr size_t kStatementsPerCommand = 16;
    Collection collection = Get(kStreamChunks);
    Bson unordered(BCON_NEW("ordered", BCON_BOOL(false)));
    for (size_t begin = 0; begin < ids.size(); begin += kStatementsPerCommand) {
      Bulk bulk(mongoc_collection_create_bulk_operation_with_opts(collection.get(), unordered.get()));
      for (size_t i = begin; i < std::min(ids.size(), begin + kStatementsPerCommand); ++i) {
        Bson selector(BCON_NEW("_id", BCON_UTF8(ids[i].c_str())));
        mongoc_bulk_operation_remove_one_with_opts(bulk.get(), selector.get(), nullptr, nullptr);
      }
      bson_t reply;
      bson_error_t error;
      const bool ok = mongoc_bulk_operation_execute(bulk.get(), &reply, &error) != 0;
      bson_destroy(&reply);
      if (!ok) return std::unexpected(FromBson(error, Context("deleting from stream_chunks")));
    }
    return Ok();
  }

  // A replace whose filter also requires next_offset <= ours, with upsert: when the stored
  // head is further on, the filter matches nothing and the upsert's insert of the same _id
  // is refused as a duplicate key, so the newer head stays.
  Result<bool> SaveHeadAlone(const StreamState& state) {
    const std::string key = HeadKey(state);
    Collection collection = Get(kStreamHeads);
    Bson upsert(BCON_NEW("upsert", BCON_BOOL(true)));
    bson_error_t error;
    if (mongoc_collection_replace_one(collection.get(), HeadSelector(key, state).get(), HeadDocument(key, state).get(),
                                      upsert.get(), nullptr, &error)) {
      return true;
    }
    if (error.code == kDuplicateKey) return false;
    return std::unexpected(FromBson(error, Context("saving stream_partitions " + key)));
  }

  static std::string HeadKey(const StreamState& state) {
    return fmt::format("{}/{}/{}", state.group, state.topic, state.partition);
  }

  static std::string ChunkId(const StreamState& state, const ChunkKey& key, int64_t as_of) {
    return fmt::format("{}/{}/{}/{}/{}/{}", state.group, state.topic, state.partition, key.bucket,
                       key.window_start_us ? fmt::format("w{}", ToMillis(*key.window_start_us)) : "t", as_of);
  }

  static Bson HeadSelector(const std::string& key, const StreamState& state) {
    return Bson(
        BCON_NEW("_id", BCON_UTF8(key.c_str()), "next_offset", "{", "$lte", BCON_INT64(state.next_offset), "}"));
  }

  static Bson HeadDocument(const std::string& key, const StreamState& state) {
    Bson doc(BCON_NEW("_id", BCON_UTF8(key.c_str()), "group", BCON_UTF8(state.group.c_str()), "topic",
                      BCON_UTF8(state.topic.c_str()), "partition", BCON_INT32(state.partition), "next_offset",
                      BCON_INT64(state.next_offset)));
    if (state.window_floor_us) BSON_APPEND_DATE_TIME(doc.get(), "window_floor", ToMillis(*state.window_floor_us));
    BSON_APPEND_DATE_TIME(doc.get(), "updated_at", ToMillis(state.updated_at_us));
    return doc;
  }

  // Counts as four arrays, by producer (FerretDB stores no nested arrays): a bucket of
  // 65,536 producers stays under 4 MiB.
  static constexpr const char* kCountFields[] = {"producers", "incorrect", "total", "unlabelled"};

  static Bson ChunkDocument(const StreamState& state, const StateChunk& chunk) {
    const std::string id = ChunkId(state, chunk.key, chunk.as_of);
    Bson doc(BCON_NEW("_id", BCON_UTF8(id.c_str()), "group", BCON_UTF8(state.group.c_str()), "topic",
                      BCON_UTF8(state.topic.c_str()), "partition", BCON_INT32(state.partition), "as_of",
                      BCON_INT64(chunk.as_of), "bucket", BCON_INT32(chunk.key.bucket)));
    if (chunk.key.window_start_us) BSON_APPEND_DATE_TIME(doc.get(), "window", ToMillis(*chunk.key.window_start_us));
    for (size_t field = 0; field < std::size(kCountFields); ++field) {
      bson_t array;
      BSON_APPEND_ARRAY_BEGIN(doc.get(), kCountFields[field], &array);
      for (size_t i = 0; i < chunk.counts.size(); ++i) {
        const ProducerCounts& c = chunk.counts[i];
        const std::string index = std::to_string(i);
        if (field == 0) {
          BSON_APPEND_INT32(&array, index.c_str(), c.producer_id);
        } else {
          BSON_APPEND_INT64(&array, index.c_str(),
                            field == 1   ? c.incorrect_count
                            : field == 2 ? c.total
                                         : c.unlabelled);
        }
      }
      bson_append_array_end(doc.get(), &array);
    }
    return doc;
  }

  static StateChunk ReadChunk(const bson_t* doc) {
    StateChunk chunk;
    std::vector<int64_t> columns[std::size(kCountFields)];
    bson_iter_t it, array;
    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
      const std::string_view key = bson_iter_key(&it);
      if (key == "as_of") chunk.as_of = bson_iter_as_int64(&it);
      if (key == "bucket") chunk.key.bucket = static_cast<int32_t>(bson_iter_as_int64(&it));
      if (key == "window" && BSON_ITER_HOLDS_DATE_TIME(&it))
        chunk.key.window_start_us = bson_iter_date_time(&it) * 1000;
      for (size_t field = 0; field < std::size(kCountFields); ++field) {
        if (key != kCountFields[field] || !BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &array)) continue;
        while (bson_iter_next(&array)) columns[field].push_back(bson_iter_as_int64(&array));
      }
    }
    for (size_t i = 0; i < columns[0].size(); ++i) {
      auto at = [&](size_t field) { return i < columns[field].size() ? columns[field][i] : 0; };
      chunk.counts.push_back({static_cast<int>(at(0)), at(1), at(2), at(3)});
    }
    return chunk;
  }

  Result<std::map<std::pair<std::string, int32_t>, StreamState>> LoadHeads(const std::string& group) {
    std::map<std::pair<std::string, int32_t>, StreamState> heads;
    TRY(Find(kStreamHeads, Bson(BCON_NEW("group", BCON_UTF8(group.c_str()))), Bson(), [&](const bson_t* doc) {
      StreamState state{.group = group};
      bson_iter_t it;
      bson_iter_init(&it, doc);
      while (bson_iter_next(&it)) {
        const std::string_view key = bson_iter_key(&it);
        if (key == "topic" && BSON_ITER_HOLDS_UTF8(&it)) state.topic = bson_iter_utf8(&it, nullptr);
        if (key == "partition") state.partition = static_cast<int32_t>(bson_iter_as_int64(&it));
        if (key == "next_offset") state.next_offset = bson_iter_as_int64(&it);
        if (key == "window_floor" && BSON_ITER_HOLDS_DATE_TIME(&it)) {
          state.window_floor_us = bson_iter_date_time(&it) * 1000;
        }
        if (key == "updated_at" && BSON_ITER_HOLDS_DATE_TIME(&it))
          state.updated_at_us = bson_iter_date_time(&it) * 1000;
      }
      heads[{state.topic, state.partition}] = std::move(state);
    }));
    return heads;
  }

  // Heads, then each moved partition's chunks, then the heads again: a head that moved
  // meanwhile may have had its chunks tidied away under the read, so that partition is read
  // again (or, when the reader knows an earlier state, left at that state for its next load).
  // A head that did not move selects chunks that no one deletes: only chunks under what a
  // newer head selects are ever deleted.
  Result<std::vector<StreamState>> LoadStreamState(const std::string& group, const StateVersions& since) override {
    constexpr int kAttempts = 10;
    std::vector<StreamState> loaded;
    ASSIGN_OR_RETURN(auto heads, LoadHeads(group));
    for (int attempt = 1; !heads.empty(); ++attempt) {
      std::map<std::pair<std::string, int32_t>, std::vector<StateChunk>> chunks;
      std::vector<std::string> garbage;
      for (auto& [id, head] : heads) {
        auto known = since.find(id);
        if (known != since.end() && known->second == head.next_offset) continue;
        const int64_t after = known == since.end() ? -1 : known->second;
        Bson query(BCON_NEW("group", BCON_UTF8(group.c_str()), "topic", BCON_UTF8(id.first.c_str()), "partition",
                            BCON_INT32(id.second), "as_of", "{", "$gt", BCON_INT64(after), "}"));
        std::vector<StateChunk> found;
        TRY(Find(kStreamChunks, query, Bson(), [&](const bson_t* doc) { found.push_back(ReadChunk(doc)); }));
        std::vector<StateChunk> unselectable;
        chunks[id] = SelectChunks(head, std::move(found), known == since.end() ? &unselectable : nullptr);
        for (const StateChunk& c : unselectable) garbage.push_back(ChunkId(head, c.key, c.as_of));
      }
      ASSIGN_OR_RETURN(auto again, LoadHeads(group));
      std::vector<std::pair<std::string, int32_t>> moved;
      for (auto& [id, head] : heads) {
        auto now = again.find(id);
        if (now != again.end() && now->second.next_offset == head.next_offset) {
          head.chunks = std::move(chunks[id]);
          loaded.push_back(std::move(head));
        } else if (auto known = since.find(id); known != since.end()) {
          loaded.push_back({.group = group, .topic = id.first, .partition = id.second, .next_offset = known->second});
        } else {
          moved.push_back(id);
        }
      }
      (void)DeleteChunks(garbage);  // tidying: the next full load tries again
      if (moved.empty()) break;
      if (attempt == kAttempts) {
        return std::unexpected(Error::Unavailable(Context("stream_partitions kept moving while they were read")));
      }
      std::map<std::pair<std::string, int32_t>, StreamState> retry;
      for (const auto& id : moved) {
        if (auto it = again.find(id); it != again.end()) retry[id] = std::move(it->second);
      }
      heads = std::move(retry);
    }
    std::ranges::sort(loaded, {}, [](const StreamState& s) { return std::pair(s.topic, s.partition); });
    return loaded;
  }

  Status UpsertWindowResults(std::span<const WindowResult> windows) override {
    Collection collection = Get(kWindows);
    std::vector<Bson> docs;
    std::vector<Replacement> replacements;
    for (const WindowResult& w : windows) {
      const int64_t start = ToMillis(w.window_start_us);
      docs.push_back(Bson(BCON_NEW("producer_id", BCON_INT32(w.result.producer_id), "window_start",
                                   BCON_DATE_TIME(start), "window_end", BCON_DATE_TIME(ToMillis(w.window_end_us)))));
      AppendResult(docs.back().get(), w.result, /*with_id=*/false);
      replacements.push_back(
          {Bson(BCON_NEW("producer_id", BCON_INT32(w.result.producer_id), "window_start", BCON_DATE_TIME(start))),
           docs.back().get()});
    }
    TRY(ReplaceAll(collection.get(), replacements, "writing incorrect_inference_windows"));
    return Ok();
  }

  Result<std::vector<WindowResult>> ReadWindowResults() override {
    std::vector<WindowResult> windows;
    Bson opts(BCON_NEW("sort", "{", "window_start", BCON_INT32(1), "producer_id", BCON_INT32(1), "}"));
    TRY(Find(kWindows, Bson(), opts, [&](const bson_t* doc) {
      WindowResult w;
      bson_iter_t it;
      bson_iter_init(&it, doc);
      while (bson_iter_next(&it)) {
        const std::string_view key = bson_iter_key(&it);
        if (key == "window_start" && BSON_ITER_HOLDS_DATE_TIME(&it))
          w.window_start_us = bson_iter_date_time(&it) * 1000;
        if (key == "window_end" && BSON_ITER_HOLDS_DATE_TIME(&it)) w.window_end_us = bson_iter_date_time(&it) * 1000;
        ReadResultField(&it, w.result);
      }
      windows.push_back(w);
    }));
    return windows;
  }

  Status Clear() override {
    for (const char* name : {kImages, kResults, kStreamHeads, kStreamChunks, kWindows, kHealth}) {
      Collection collection = Get(name);
      bson_error_t error;
      // 26: the collection does not exist, which is what we wanted.
      if (!mongoc_collection_drop(collection.get(), &error) && error.code != 26) {
        return std::unexpected(FromBson(error, Context(fmt::format("dropping {}", name))));
      }
    }
    return EnsureIndexes();
  }

  std::string Describe() const override { return described_; }

 private:
  std::string Context(std::string_view what) const { return fmt::format("{} ({})", what, described_); }

  // Every document of `collection` matching `query`, in `opts`' order. (A template: a
  // std::function of bson_t would drop the type's alignment attribute.)
  template <typename Visit>
  Status Find(const char* collection, const Bson& query, const Bson& opts, Visit&& visit) {
    Collection c = Get(collection);
    Cursor cursor(mongoc_collection_find_with_opts(c.get(), query.get(), opts.get(), nullptr));
    const bson_t* doc = nullptr;
    while (mongoc_cursor_next(cursor.get(), &doc)) visit(doc);
    bson_error_t error;
    if (mongoc_cursor_error(cursor.get(), &error)) {
      return std::unexpected(FromBson(error, Context(fmt::format("reading {}", collection))));
    }
    return Ok();
  }

  // producer_id and incorrect_count first, as the original results had them.
  static void AppendResult(bson_t* doc, const ProducerResult& r, bool with_id = true) {
    if (with_id) BSON_APPEND_INT32(doc, "producer_id", r.producer_id);
    BSON_APPEND_INT64(doc, "incorrect_count", r.incorrect_count);
    BSON_APPEND_INT64(doc, "total", r.total);
    BSON_APPEND_DOUBLE(doc, "error_rate", r.error_rate);
    BSON_APPEND_INT64(doc, "unlabelled", r.unlabelled);
    BSON_APPEND_DATE_TIME(doc, "computed_at", ToMillis(r.computed_at_us));
  }

  static void ReadResultField(const bson_iter_t* it, ProducerResult& r) {
    const std::string_view key = bson_iter_key(it);
    if (key == "producer_id") r.producer_id = static_cast<int>(bson_iter_as_int64(it));
    if (key == "incorrect_count") r.incorrect_count = bson_iter_as_int64(it);
    if (key == "total") r.total = bson_iter_as_int64(it);
    if (key == "unlabelled") r.unlabelled = bson_iter_as_int64(it);
    if (key == "error_rate") r.error_rate = bson_iter_as_double(it);
    if (key == "computed_at" && BSON_ITER_HOLDS_DATE_TIME(it)) r.computed_at_us = bson_iter_date_time(it) * 1000;
  }

  static void AppendCounts(bson_t* doc, const ProducerCounts& c) {
    BSON_APPEND_INT32(doc, "producer_id", c.producer_id);
    BSON_APPEND_INT64(doc, "incorrect_count", c.incorrect_count);
    BSON_APPEND_INT64(doc, "total", c.total);
    BSON_APPEND_INT64(doc, "unlabelled", c.unlabelled);
  }

  static void ReadCountsField(const bson_iter_t* it, ProducerCounts& c) {
    const std::string_view key = bson_iter_key(it);
    if (key == "producer_id") c.producer_id = static_cast<int>(bson_iter_as_int64(it));
    if (key == "incorrect_count") c.incorrect_count = bson_iter_as_int64(it);
    if (key == "total") c.total = bson_iter_as_int64(it);
    if (key == "unlabelled") c.unlabelled = bson_iter_as_int64(it);
  }

  std::string described_;
  PooledClient client_;
  std::string database_;
  bool indexed_ = false;
};

}  // namespace

// Debian's driver initialises itself when it is loaded and puts its statistics counters (for
// its mongoc-stat tool) in shared memory named after the pid; only its exit-time cleanup
// removes the name. Every process killed with SIGKILL, or ended by a second signal, left a
// file in /dev/shm (690 on one development machine), and a later process given the same pid
// warned on stderr that it fell back to malloc. Removing the name as this binary starts
// leaves the mapping in place, and nothing behind.
[[maybe_unused]] const bool kCountersUnlinked = [] {
  shm_unlink(fmt::format("/mongoc-{}", getpid()).c_str());
  return true;
}();

Result<std::unique_ptr<Store>> OpenMongo(const StoreOptions& options) {
  static std::once_flag init;
  std::call_once(init, [] {
    mongoc_init();
    // The driver logs to stderr on its own (including every failed server check while a
    // server is down); our callers report errors themselves, once, with context.
    mongoc_log_set_handler(nullptr, nullptr);
  });
  ASSIGN_OR_RETURN(const std::string full_uri, WithPassword(options.uri, options));
  bson_error_t error;
  std::unique_ptr<mongoc_uri_t, UriDeleter> uri(mongoc_uri_new_with_error(full_uri.c_str(), &error));
  if (!uri) {
    return std::unexpected(
        Error::InvalidInput(fmt::format("store URI '{}': {}", RedactUri(options.uri), error.message)));
  }
  // mongo-c-driver 1.23 dereferences the missing password of a password mechanism (SCRAM, the
  // default, or PLAIN) and crashes; X.509, Kerberos and AWS need none.
  const char* mechanism = mongoc_uri_get_auth_mechanism(uri.get());
  const bool needs_password =
      !mechanism || std::string_view(mechanism).starts_with("SCRAM") || std::string_view(mechanism) == "PLAIN";
  if (mongoc_uri_get_username(uri.get()) && !mongoc_uri_get_password(uri.get()) && needs_password) {
    return std::unexpected(Error::InvalidInput(
        fmt::format("store URI '{}' names user {} but no password: give it with --store-password-file or "
                    "IOTINFER_STORE_PASSWORD",
                    RedactUri(options.uri), mongoc_uri_get_username(uri.get()))));
  }
  const auto timeout_ms = static_cast<int32_t>(options.timeout.count());
  for (const char* option : {MONGOC_URI_SERVERSELECTIONTIMEOUTMS, MONGOC_URI_CONNECTTIMEOUTMS}) {
    if (!mongoc_uri_has_option(uri.get(), option)) mongoc_uri_set_option_as_int32(uri.get(), option, timeout_ms);
  }
  if (!mongoc_uri_has_option(uri.get(), MONGOC_URI_SOCKETTIMEOUTMS)) {
    const auto ms = std::min<int64_t>(options.command_timeout.count(), std::numeric_limits<int32_t>::max());
    mongoc_uri_set_option_as_int32(uri.get(), MONGOC_URI_SOCKETTIMEOUTMS, static_cast<int32_t>(ms));
  }
  // Acknowledged by a majority and journaled: a record the sink commits past in Kafka must
  // survive the loss of the primary or a power cut. A URI that says otherwise (w, journal,
  // wtimeoutMS) is kept as it is.
  if (!mongoc_uri_has_option(uri.get(), MONGOC_URI_W) && !mongoc_uri_has_option(uri.get(), MONGOC_URI_JOURNAL)) {
    std::unique_ptr<mongoc_write_concern_t, WriteConcernDeleter> concern(
        mongoc_write_concern_copy(mongoc_uri_get_write_concern(uri.get())));
    const int32_t wtimeout = mongoc_uri_has_option(uri.get(), MONGOC_URI_WTIMEOUTMS)
                                 ? mongoc_write_concern_get_wtimeout(concern.get())
                                 : static_cast<int32_t>(std::min<int64_t>(options.command_timeout.count(), 60000));
    mongoc_write_concern_set_wmajority(concern.get(), wtimeout);
    mongoc_write_concern_set_journal(concern.get(), true);
    mongoc_uri_set_write_concern(uri.get(), concern.get());
  }
  mongoc_uri_set_appname(uri.get(), "iotinfer");
  Pool pool(mongoc_client_pool_new_with_error(uri.get(), &error));
  if (!pool) {
    return std::unexpected(
        Error::InvalidInput(fmt::format("store URI '{}': {}", RedactUri(options.uri), error.message)));
  }
  mongoc_client_pool_set_error_api(pool.get(), MONGOC_ERROR_API_VERSION_2);
  auto store = std::make_unique<MongoStore>(RedactUri(options.uri), std::move(pool), options.database);
  // A server that is down now may be up by the first write; anything else is a real error.
  if (Status indexed = store->EnsureIndexes(); !indexed && indexed.error().code() != Error::Code::kUnavailable) {
    return std::unexpected(indexed.error());
  }
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace iotinfer::store
