// The embedded default store: one SQLite file in WAL mode, tables named like the MongoDB
// collections, columns in the order of the original schema.
#include <fmt/format.h>
#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include "store/store_internal.h"

namespace iotinfer::store {
namespace {

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using Statement = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS images (
  id TEXT PRIMARY KEY NOT NULL,
  image_prediction TEXT NOT NULL,
  actual_value TEXT,
  producer_id INTEGER NOT NULL,
  confidence REAL NOT NULL,
  model TEXT NOT NULL,
  produced_at INTEGER,
  inferred_at INTEGER NOT NULL,
  stored_at INTEGER NOT NULL,
  source TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS incorrect_inference_results (
  producer_id INTEGER PRIMARY KEY NOT NULL,
  incorrect_count INTEGER NOT NULL,
  total INTEGER NOT NULL,
  unlabelled INTEGER NOT NULL,
  error_rate REAL NOT NULL,
  computed_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS stream_partitions (
  grp TEXT NOT NULL,
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  next_offset INTEGER NOT NULL,
  window_floor INTEGER,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (grp, topic, partition)
);
CREATE TABLE IF NOT EXISTS stream_chunks (
  grp TEXT NOT NULL,
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  as_of INTEGER NOT NULL,
  bucket INTEGER NOT NULL,
  windowed INTEGER NOT NULL,
  window_start INTEGER NOT NULL,
  counts TEXT NOT NULL,
  PRIMARY KEY (grp, topic, partition, as_of, bucket, windowed, window_start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS incorrect_inference_windows (
  producer_id INTEGER NOT NULL,
  window_start INTEGER NOT NULL,
  window_end INTEGER NOT NULL,
  incorrect_count INTEGER NOT NULL,
  total INTEGER NOT NULL,
  unlabelled INTEGER NOT NULL,
  error_rate REAL NOT NULL,
  computed_at INTEGER NOT NULL,
  PRIMARY KEY (producer_id, window_start)
);
CREATE TABLE IF NOT EXISTS producer_health (
  producer_id INTEGER PRIMARY KEY NOT NULL,
  verdict TEXT NOT NULL,
  labelled INTEGER NOT NULL,
  incorrect INTEGER NOT NULL,
  error_rate REAL NOT NULL,
  interval_low REAL NOT NULL,
  interval_high REAL NOT NULL,
  fleet_rate REAL NOT NULL,
  p_value REAL NOT NULL,
  window_ms INTEGER NOT NULL,
  judged_at INTEGER NOT NULL
);
)sql";

constexpr const char* kDeleteChunk =
    "DELETE FROM stream_chunks WHERE grp=? AND topic=? AND partition=? AND as_of=? AND bucket=? AND windowed=? AND "
    "window_start=?";

using Json = nlohmann::json;

// A state's counts as compact JSON arrays: [producer, incorrect, total, unlabelled] per
// producer, with the window start (ms) in front for windows.
Json CountsJson(const ProducerCounts& c) {
  return Json::array({c.producer_id, c.incorrect_count, c.total, c.unlabelled});
}

ProducerCounts CountsFromJson(const Json& j, size_t first) {
  return {.producer_id = j.at(first).get<int>(),
          .incorrect_count = j.at(first + 1).get<int64_t>(),
          .total = j.at(first + 2).get<int64_t>(),
          .unlabelled = j.at(first + 3).get<int64_t>()};
}

constexpr const char* kColumns =
    "id, image_prediction, actual_value, producer_id, confidence, model, produced_at, inferred_at, stored_at";

class SqliteStore final : public Store {
 public:
  SqliteStore(std::string uri, sqlite3* db) : uri_(std::move(uri)), db_(db) {}

  // The one place SQLite's codes become ours: a locked database is worth retrying.
  Error FromSqlite(int rc, std::string_view context) const {
    std::string what = fmt::format("{}: {}: {}", uri_, context, sqlite3_errmsg(db_.get()));
    switch (rc & 0xff) {
      case SQLITE_BUSY:
      case SQLITE_LOCKED:
        return Error::Unavailable(what);
      case SQLITE_CONSTRAINT:
      case SQLITE_MISMATCH:
      case SQLITE_TOOBIG:
        return Error::InvalidInput(what);
      case SQLITE_IOERR:
      case SQLITE_FULL:
      case SQLITE_CANTOPEN:
      case SQLITE_READONLY:
        return Error::Io(what);
      default:
        return Error::Internal(what);
    }
  }

  Status Exec(const char* sql) {
    if (int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr); rc != SQLITE_OK) {
      return std::unexpected(FromSqlite(rc, "executing schema statements"));
    }
    return Ok();
  }

  Result<Statement> Prepare(std::string_view sql) {
    sqlite3_stmt* stmt = nullptr;
    if (int rc = sqlite3_prepare_v3(db_.get(), sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                    &stmt, nullptr);
        rc != SQLITE_OK) {
      return std::unexpected(FromSqlite(rc, "preparing a statement"));
    }
    return Statement(stmt);
  }

  // Runs `stmt` to completion; rows, if any, go to `row`.
  Status Run(sqlite3_stmt* stmt, std::string_view context, const std::function<Status(sqlite3_stmt*)>& row = {}) {
    for (;;) {
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) {
        sqlite3_reset(stmt);
        return std::unexpected(FromSqlite(rc, context));
      }
      if (row) {
        if (Status s = row(stmt); !s) {
          sqlite3_reset(stmt);
          return s;
        }
      }
    }
    sqlite3_reset(stmt);
    return Ok();
  }

  // Runs `body` as one write transaction: committed when it succeeds, rolled back when not.
  Status InWriteTransaction(const std::function<Status()>& body) {
    TRY(Exec("BEGIN IMMEDIATE"));
    Status done = body();
    if (done) done = Exec("COMMIT");
    if (!done) (void)Exec("ROLLBACK");
    return done;
  }

  Status Init() {
    // FULL: a commit is on disk before the sink commits past its records in Kafka, power cut or not
    // (NORMAL in WAL mode may lose the last commits to one). Batches are large, so the fsync is rare.
    TRY(Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"));
    TRY(EnsureIndexes());
    TRY(AddSourceColumn());
    ASSIGN_OR_RETURN(insert_,
                     Prepare(fmt::format("INSERT OR IGNORE INTO images ({}) VALUES (?,?,?,?,?,?,?,?,?)", kColumns)));
    ASSIGN_OR_RETURN(update_, Prepare("UPDATE images SET image_prediction=?2, actual_value=?3, producer_id=?4, "
                                      "confidence=?5, model=?6, produced_at=?7, inferred_at=?8, stored_at=?9 "
                                      "WHERE id=?1"));
    return Ok();
  }

  // Files written before InsertFirst kept sources lack the column.
  Status AddSourceColumn() {
    ASSIGN_OR_RETURN(Statement columns, Prepare("SELECT 1 FROM pragma_table_info('images') WHERE name = 'source'"));
    bool present = false;
    TRY(Run(columns.get(), "reading the images table's columns", [&](sqlite3_stmt*) {
      present = true;
      return Ok();
    }));
    return present ? Ok() : Exec("ALTER TABLE images ADD COLUMN source TEXT");
  }

  Status Ping() override { return Exec("SELECT 1"); }

  Status EnsureIndexes() override { return Exec(kSchema); }

  Result<UpsertStats> Upsert(std::span<const InferenceRecord> records) override {
    UpsertStats stats;
    const int64_t stored_at = ToMillis(NowMillisAsMicros());
    Status written = InWriteTransaction([&]() -> Status {
      for (const InferenceRecord& r : records) {
        for (sqlite3_stmt* stmt : {insert_.get(), update_.get()}) {
          BindRecord(stmt, r, stored_at);
          TRY(Run(stmt, "upserting into images"));
          if (sqlite3_changes(db_.get()) > 0) {
            (stmt == insert_.get() ? stats.inserted : stats.replaced)++;
            break;
          }
        }
      }
      return Ok();
    });
    if (!written) return std::unexpected(written.error());
    return stats;
  }

  // The record as parameters 1-9, in kColumns' order.
  static void BindRecord(sqlite3_stmt* stmt, const InferenceRecord& r, int64_t stored_at) {
    sqlite3_bind_text(stmt, 1, r.id.data(), static_cast<int>(r.id.size()), SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, r.image_prediction.data(), static_cast<int>(r.image_prediction.size()), SQLITE_STATIC);
    if (r.actual_value) {
      sqlite3_bind_text(stmt, 3, r.actual_value->data(), static_cast<int>(r.actual_value->size()), SQLITE_STATIC);
    } else {
      sqlite3_bind_null(stmt, 3);
    }
    sqlite3_bind_int(stmt, 4, r.producer_id);
    sqlite3_bind_double(stmt, 5, r.confidence);
    sqlite3_bind_text(stmt, 6, r.model.data(), static_cast<int>(r.model.size()), SQLITE_STATIC);
    if (r.produced_at_us) {
      sqlite3_bind_int64(stmt, 7, ToMillis(*r.produced_at_us));
    } else {
      sqlite3_bind_null(stmt, 7);
    }
    sqlite3_bind_int64(stmt, 8, ToMillis(r.inferred_at_us));
    sqlite3_bind_int64(stmt, 9, stored_at);
  }

  // In one transaction: a record whose id is stored is left alone, and that document read.
  Result<std::vector<std::optional<StoredRecord>>> InsertNew(std::span<const InferenceRecord> records,
                                                             std::span<const std::string> sources) override {
    std::vector<std::optional<StoredRecord>> stored(records.size());
    ASSIGN_OR_RETURN(
        Statement insert,
        Prepare(fmt::format("INSERT OR IGNORE INTO images ({}, source) VALUES (?,?,?,?,?,?,?,?,?,?)", kColumns)));
    ASSIGN_OR_RETURN(Statement select, Prepare(fmt::format("SELECT {}, source FROM images WHERE id = ?", kColumns)));
    const int64_t stored_at = ToMillis(NowMillisAsMicros());
    Status written = InWriteTransaction([&]() -> Status {
      for (size_t i = 0; i < records.size(); ++i) {
        BindRecord(insert.get(), records[i], stored_at);
        sqlite3_bind_text(insert.get(), 10, sources[i].c_str(), -1, SQLITE_TRANSIENT);
        TRY(Run(insert.get(), "inserting into images"));
        if (sqlite3_changes(db_.get()) > 0) continue;
        sqlite3_bind_text(select.get(), 1, records[i].id.data(), static_cast<int>(records[i].id.size()), SQLITE_STATIC);
        TRY(Run(select.get(), "reading images", [&](sqlite3_stmt* row) {
          stored[i] = ReadRow(row);
          return Ok();
        }));
        if (!stored[i]) {
          return std::unexpected(
              Error::Internal(fmt::format("{}: images.{} was neither inserted nor found", uri_, records[i].id)));
        }
      }
      return Ok();
    });
    if (!written) return std::unexpected(written.error());
    return stored;
  }

  // A row of kColumns, then source.
  static StoredRecord ReadRow(sqlite3_stmt* s) {
    StoredRecord stored;
    InferenceRecord& r = stored.record;
    r.id = *OptionalText(s, 0);
    r.image_prediction = *OptionalText(s, 1);
    r.actual_value = OptionalText(s, 2);
    r.producer_id = sqlite3_column_int(s, 3);
    r.confidence = sqlite3_column_double(s, 4);
    r.model = *OptionalText(s, 5);
    if (sqlite3_column_type(s, 6) != SQLITE_NULL) r.produced_at_us = sqlite3_column_int64(s, 6) * 1000;
    r.inferred_at_us = sqlite3_column_int64(s, 7) * 1000;
    stored.stored_at_us = sqlite3_column_int64(s, 8) * 1000;
    stored.source = OptionalText(s, 9).value_or("");
    return stored;
  }

  // " WHERE ..." for `filter`, whose values bind from parameter 1 on.
  static std::string Where(const Filter& filter) {
    std::vector<std::string> terms;
    if (filter.producer_id) terms.push_back("producer_id = ?");
    if (filter.id) terms.push_back("id = ?");
    return terms.empty() ? "" : fmt::format(" WHERE {}", fmt::join(terms, " AND "));
  }
  static void Bind(sqlite3_stmt* stmt, const Filter& filter) {
    int i = 1;
    if (filter.producer_id) sqlite3_bind_int(stmt, i++, *filter.producer_id);
    if (filter.id) sqlite3_bind_text(stmt, i++, filter.id->c_str(), -1, SQLITE_TRANSIENT);
  }

  static std::optional<std::string> OptionalText(sqlite3_stmt* stmt, int column) {
    if (sqlite3_column_type(stmt, column) == SQLITE_NULL) return std::nullopt;
    return std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, column)));
  }

  Status Scan(const Filter& filter, const std::function<Status(const StoredRecord&)>& visit) override {
    ASSIGN_OR_RETURN(Statement stmt, Prepare(fmt::format("SELECT {}, source FROM images{}", kColumns, Where(filter))));
    Bind(stmt.get(), filter);
    return Run(stmt.get(), "scanning images", [&](sqlite3_stmt* s) {
      const StoredRecord stored = ReadRow(s);
      return visit(stored);
    });
  }

  Result<int64_t> Count(const Filter& filter) override {
    ASSIGN_OR_RETURN(Statement stmt, Prepare(fmt::format("SELECT COUNT(*) FROM images{}", Where(filter))));
    Bind(stmt.get(), filter);
    int64_t count = 0;
    TRY(Run(stmt.get(), "counting images", [&](sqlite3_stmt* s) {
      count = sqlite3_column_int64(s, 0);
      return Ok();
    }));
    return count;
  }

  Result<std::vector<ConfusionCell>> Confusion() override {
    ASSIGN_OR_RETURN(Statement stmt, Prepare("SELECT producer_id, image_prediction, actual_value, COUNT(*) FROM images "
                                             "GROUP BY producer_id, image_prediction, actual_value"));
    std::vector<ConfusionCell> cells;
    TRY(Run(stmt.get(), "aggregating images", [&](sqlite3_stmt* s) {
      cells.push_back({sqlite3_column_int(s, 0), *OptionalText(s, 1), OptionalText(s, 2), sqlite3_column_int64(s, 3)});
      return Ok();
    }));
    return cells;
  }

  Status ReplaceResults(std::span<const ProducerResult> results) override {
    return InWriteTransaction([&]() -> Status {
      TRY(Exec("DELETE FROM incorrect_inference_results"));
      return WriteResults(results);
    });
  }

  Status UpsertResults(std::span<const ProducerResult> results) override {
    return InWriteTransaction([&] { return WriteResults(results); });
  }

  Status DeleteResults(std::span<const int> producer_ids) override {
    ASSIGN_OR_RETURN(Statement remove, Prepare("DELETE FROM incorrect_inference_results WHERE producer_id = ?"));
    return InWriteTransaction([&]() -> Status {
      for (int id : producer_ids) {
        sqlite3_reset(remove.get());
        sqlite3_bind_int(remove.get(), 1, id);
        TRY(Run(remove.get(), "deleting incorrect_inference_results"));
      }
      return Ok();
    });
  }

  Status WriteResults(std::span<const ProducerResult> results) {
    ASSIGN_OR_RETURN(Statement insert, Prepare("INSERT OR REPLACE INTO incorrect_inference_results (producer_id, "
                                               "incorrect_count, total, unlabelled, error_rate, computed_at) "
                                               "VALUES (?,?,?,?,?,?)"));
    for (const ProducerResult& r : results) {
      sqlite3_reset(insert.get());
      sqlite3_bind_int(insert.get(), 1, r.producer_id);
      sqlite3_bind_int64(insert.get(), 2, r.incorrect_count);
      sqlite3_bind_int64(insert.get(), 3, r.total);
      sqlite3_bind_int64(insert.get(), 4, r.unlabelled);
      sqlite3_bind_double(insert.get(), 5, r.error_rate);
      sqlite3_bind_int64(insert.get(), 6, ToMillis(r.computed_at_us));
      TRY(Run(insert.get(), "writing incorrect_inference_results"));
    }
    return Ok();
  }

  Result<std::vector<ProducerResult>> ReadResults() override {
    ASSIGN_OR_RETURN(Statement stmt, Prepare("SELECT producer_id, incorrect_count, total, unlabelled, error_rate, "
                                             "computed_at FROM incorrect_inference_results ORDER BY producer_id"));
    std::vector<ProducerResult> results;
    TRY(Run(stmt.get(), "reading incorrect_inference_results", [&](sqlite3_stmt* s) {
      results.push_back({sqlite3_column_int(s, 0), sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 2),
                         sqlite3_column_int64(s, 3), sqlite3_column_double(s, 4), sqlite3_column_int64(s, 5) * 1000});
      return Ok();
    }));
    return results;
  }

  // One transaction: chunks, head, then (when the head was saved) the obsolete chunks.
  Result<std::vector<bool>> SaveStreamStates(std::span<const StreamState> states) override {
    std::vector<bool> saved;
    Status written = InWriteTransaction([&]() -> Status {
      ASSIGN_OR_RETURN(Statement chunk, Prepare("INSERT OR IGNORE INTO stream_chunks (grp, topic, partition, as_of, "
                                                "bucket, windowed, window_start, counts) VALUES (?,?,?,?,?,?,?,?)"));
      ASSIGN_OR_RETURN(Statement remove, Prepare(kDeleteChunk));
      ASSIGN_OR_RETURN(
          Statement head,
          Prepare("INSERT INTO stream_partitions (grp, topic, partition, next_offset, window_floor, updated_at) "
                  "VALUES (?,?,?,?,?,?) ON CONFLICT (grp, topic, partition) DO UPDATE SET "
                  "next_offset=excluded.next_offset, window_floor=excluded.window_floor, "
                  "updated_at=excluded.updated_at WHERE excluded.next_offset >= stream_partitions.next_offset"));
      for (const StreamState& state : states) {
        for (const StateChunk& c : state.chunks) {
          Json counts = Json::array();
          for (const ProducerCounts& p : c.counts) counts.push_back(CountsJson(p));
          const std::string text = counts.dump();
          BindChunk(chunk.get(), state, c);
          sqlite3_bind_text(chunk.get(), 8, text.c_str(), -1, SQLITE_TRANSIENT);
          TRY(Run(chunk.get(), "saving stream_chunks"));
        }
        sqlite3_reset(head.get());
        BindPartition(head.get(), state);
        sqlite3_bind_int64(head.get(), 4, state.next_offset);
        if (state.window_floor_us) {
          sqlite3_bind_int64(head.get(), 5, ToMillis(*state.window_floor_us));
        } else {
          sqlite3_bind_null(head.get(), 5);
        }
        sqlite3_bind_int64(head.get(), 6, ToMillis(state.updated_at_us));
        TRY(Run(head.get(), "saving stream_partitions"));
        saved.push_back(sqlite3_changes(db_.get()) > 0);
        if (!saved.back()) continue;
        for (const StateChunk& c : state.obsolete) {
          BindChunk(remove.get(), state, c);
          TRY(Run(remove.get(), "deleting stream_chunks"));
        }
      }
      return Ok();
    });
    if (!written) return std::unexpected(written.error());
    return saved;
  }

  static void BindPartition(sqlite3_stmt* stmt, const StreamState& state) {
    sqlite3_bind_text(stmt, 1, state.group.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 2, state.topic.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(stmt, 3, state.partition);
  }

  // The chunk's primary key as the first seven parameters.
  static void BindChunk(sqlite3_stmt* stmt, const StreamState& state, const StateChunk& c) {
    sqlite3_reset(stmt);
    BindPartition(stmt, state);
    sqlite3_bind_int64(stmt, 4, c.as_of);
    sqlite3_bind_int(stmt, 5, c.key.bucket);
    sqlite3_bind_int(stmt, 6, c.key.window_start_us ? 1 : 0);
    sqlite3_bind_int64(stmt, 7, c.key.window_start_us ? ToMillis(*c.key.window_start_us) : 0);
  }

  // In one read transaction, so a head and its chunks are of one moment; the chunks no head
  // can select again are then deleted.
  Result<std::vector<StreamState>> LoadStreamState(const std::string& group, const StateVersions& since) override {
    std::vector<StreamState> states;
    std::vector<std::pair<size_t, StateChunk>> garbage;  // (index into states, chunk)
    TRY(Exec("BEGIN"));
    Status read = [&]() -> Status {
      ASSIGN_OR_RETURN(Statement heads, Prepare("SELECT topic, partition, next_offset, window_floor, updated_at FROM "
                                                "stream_partitions WHERE grp = ? ORDER BY topic, partition"));
      sqlite3_bind_text(heads.get(), 1, group.c_str(), -1, SQLITE_TRANSIENT);
      TRY(Run(heads.get(), "loading stream_partitions", [&](sqlite3_stmt* s) -> Status {
        StreamState state{.group = group,
                          .topic = *OptionalText(s, 0),
                          .partition = sqlite3_column_int(s, 1),
                          .next_offset = sqlite3_column_int64(s, 2),
                          .updated_at_us = sqlite3_column_int64(s, 4) * 1000};
        if (sqlite3_column_type(s, 3) != SQLITE_NULL) state.window_floor_us = sqlite3_column_int64(s, 3) * 1000;
        states.push_back(std::move(state));
        return Ok();
      }));
      ASSIGN_OR_RETURN(Statement chunks,
                       Prepare("SELECT as_of, bucket, windowed, window_start, counts FROM stream_chunks WHERE grp = ? "
                               "AND topic = ? AND partition = ? AND as_of > ? AND as_of <= ?"));
      for (size_t i = 0; i < states.size(); ++i) {
        StreamState& state = states[i];
        auto known = since.find({state.topic, state.partition});
        if (known != since.end() && known->second == state.next_offset) continue;
        sqlite3_reset(chunks.get());
        BindPartition(chunks.get(), state);
        sqlite3_bind_int64(chunks.get(), 4, known == since.end() ? -1 : known->second);
        sqlite3_bind_int64(chunks.get(), 5, state.next_offset);
        std::vector<StateChunk> found;
        TRY(Run(chunks.get(), "loading stream_chunks", [&](sqlite3_stmt* s) -> Status {
          StateChunk c{.key = {.bucket = sqlite3_column_int(s, 1)}, .as_of = sqlite3_column_int64(s, 0)};
          if (sqlite3_column_int(s, 2)) c.key.window_start_us = sqlite3_column_int64(s, 3) * 1000;
          try {
            for (const Json& j : Json::parse(*OptionalText(s, 4))) c.counts.push_back(CountsFromJson(j, 0));
          } catch (const Json::exception& e) {
            return std::unexpected(Error::Internal(fmt::format("{}: stream_chunks of {}/{}/{} are corrupt: {}", uri_,
                                                               group, state.topic, state.partition, e.what())));
          }
          found.push_back(std::move(c));
          return Ok();
        }));
        std::vector<StateChunk> unselectable;
        state.chunks = SelectChunks(state, std::move(found), known == since.end() ? &unselectable : nullptr);
        for (StateChunk& c : unselectable) garbage.emplace_back(i, std::move(c));
      }
      return Ok();
    }();
    (void)Exec(read ? "COMMIT" : "ROLLBACK");
    if (!read) return std::unexpected(read.error());
    if (!garbage.empty()) {
      (void)InWriteTransaction([&]() -> Status {  // tidying: the next full load tries again
        ASSIGN_OR_RETURN(Statement remove, Prepare(kDeleteChunk));
        for (const auto& [index, c] : garbage) {
          BindChunk(remove.get(), states[index], c);
          TRY(Run(remove.get(), "deleting stream_chunks"));
        }
        return Ok();
      });
    }
    return states;
  }

  Status UpsertWindowResults(std::span<const WindowResult> windows) override {
    ASSIGN_OR_RETURN(Statement upsert,
                     Prepare("INSERT OR REPLACE INTO incorrect_inference_windows (producer_id, window_start, "
                             "window_end, incorrect_count, total, unlabelled, error_rate, computed_at) "
                             "VALUES (?,?,?,?,?,?,?,?)"));
    return InWriteTransaction([&]() -> Status {
      for (const WindowResult& w : windows) {
        const ProducerResult& r = w.result;
        sqlite3_bind_int(upsert.get(), 1, r.producer_id);
        sqlite3_bind_int64(upsert.get(), 2, ToMillis(w.window_start_us));
        sqlite3_bind_int64(upsert.get(), 3, ToMillis(w.window_end_us));
        sqlite3_bind_int64(upsert.get(), 4, r.incorrect_count);
        sqlite3_bind_int64(upsert.get(), 5, r.total);
        sqlite3_bind_int64(upsert.get(), 6, r.unlabelled);
        sqlite3_bind_double(upsert.get(), 7, r.error_rate);
        sqlite3_bind_int64(upsert.get(), 8, ToMillis(r.computed_at_us));
        TRY(Run(upsert.get(), "writing incorrect_inference_windows"));
      }
      return Ok();
    });
  }

  Result<std::vector<WindowResult>> ReadWindowResults() override {
    ASSIGN_OR_RETURN(Statement stmt,
                     Prepare("SELECT window_start, window_end, producer_id, incorrect_count, total, unlabelled, "
                             "error_rate, computed_at FROM incorrect_inference_windows "
                             "ORDER BY window_start, producer_id"));
    std::vector<WindowResult> windows;
    TRY(Run(stmt.get(), "reading incorrect_inference_windows", [&](sqlite3_stmt* s) {
      windows.push_back(
          {sqlite3_column_int64(s, 0) * 1000, sqlite3_column_int64(s, 1) * 1000,
           ProducerResult{sqlite3_column_int(s, 2), sqlite3_column_int64(s, 3), sqlite3_column_int64(s, 4),
                          sqlite3_column_int64(s, 5), sqlite3_column_double(s, 6), sqlite3_column_int64(s, 7) * 1000}});
      return Ok();
    }));
    return windows;
  }

  Status UpsertHealth(std::span<const DeviceHealth> verdicts) override {
    ASSIGN_OR_RETURN(Statement upsert,
                     Prepare("INSERT OR REPLACE INTO producer_health (producer_id, verdict, labelled, incorrect, "
                             "error_rate, interval_low, interval_high, fleet_rate, p_value, window_ms, judged_at) "
                             "VALUES (?,?,?,?,?,?,?,?,?,?,?)"));
    return InWriteTransaction([&]() -> Status {
      for (const DeviceHealth& h : verdicts) {
        const std::string_view verdict = VerdictName(h.verdict);
        sqlite3_bind_int(upsert.get(), 1, h.producer_id);
        sqlite3_bind_text(upsert.get(), 2, verdict.data(), static_cast<int>(verdict.size()), SQLITE_STATIC);
        sqlite3_bind_int64(upsert.get(), 3, h.labelled);
        sqlite3_bind_int64(upsert.get(), 4, h.incorrect);
        sqlite3_bind_double(upsert.get(), 5, h.error_rate);
        sqlite3_bind_double(upsert.get(), 6, h.low);
        sqlite3_bind_double(upsert.get(), 7, h.high);
        sqlite3_bind_double(upsert.get(), 8, h.fleet_rate);
        sqlite3_bind_double(upsert.get(), 9, h.p_value);
        sqlite3_bind_int64(upsert.get(), 10, h.window_ms);
        sqlite3_bind_int64(upsert.get(), 11, ToMillis(h.judged_at_us));
        TRY(Run(upsert.get(), "writing producer_health"));
      }
      return Ok();
    });
  }

  Result<std::vector<DeviceHealth>> ReadHealth() override {
    ASSIGN_OR_RETURN(Statement stmt,
                     Prepare("SELECT producer_id, verdict, labelled, incorrect, error_rate, interval_low, "
                             "interval_high, fleet_rate, p_value, window_ms, judged_at FROM producer_health "
                             "ORDER BY producer_id"));
    std::vector<DeviceHealth> verdicts;
    TRY(Run(stmt.get(), "reading producer_health", [&](sqlite3_stmt* s) {
      verdicts.push_back({.producer_id = sqlite3_column_int(s, 0),
                          .verdict = ParseVerdict(OptionalText(s, 1).value_or("")).value_or(Verdict::kUnknown),
                          .labelled = sqlite3_column_int64(s, 2),
                          .incorrect = sqlite3_column_int64(s, 3),
                          .error_rate = sqlite3_column_double(s, 4),
                          .low = sqlite3_column_double(s, 5),
                          .high = sqlite3_column_double(s, 6),
                          .fleet_rate = sqlite3_column_double(s, 7),
                          .p_value = sqlite3_column_double(s, 8),
                          .window_ms = sqlite3_column_int64(s, 9),
                          .judged_at_us = sqlite3_column_int64(s, 10) * 1000});
      return Ok();
    }));
    return verdicts;
  }

  Status Clear() override {
    return Exec(
        "DELETE FROM images; DELETE FROM incorrect_inference_results; DELETE FROM stream_partitions; DELETE FROM "
        "stream_chunks; DELETE FROM incorrect_inference_windows; DELETE FROM producer_health;");
  }

  std::string Describe() const override { return uri_; }

 private:
  std::string uri_;
  std::unique_ptr<sqlite3, DbCloser> db_;
  Statement insert_;
  Statement update_;
};

}  // namespace

Result<std::unique_ptr<Store>> OpenSqlite(const StoreOptions& options, const std::string& path) {
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  auto store = std::make_unique<SqliteStore>(options.uri, db);  // owns db even when opening failed
  if (rc != SQLITE_OK) return std::unexpected(store->FromSqlite(rc, "opening").WithContext("store"));
  // Another process writing (a second sink, a batch job) makes us wait, not fail.
  sqlite3_busy_timeout(db, static_cast<int>(options.timeout.count()));
  TRY(store->Init());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace iotinfer::store
