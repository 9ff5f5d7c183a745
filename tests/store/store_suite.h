#pragma once

// The one behaviour every store implements, run against each: SQLite in store_test, a
// real MongoDB-protocol server in store_mongo_test (the INSTANTIATE lines pick which).
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "store/store.h"

namespace iotinfer::store {

/// Opens a fresh, empty store for one test; `name` is what test names show.
struct StoreFactory {
  std::string name;
  std::function<std::unique_ptr<Store>()> open;
  friend void PrintTo(const StoreFactory& factory, std::ostream* os) { *os << factory.name; }
};

class StoreSuite : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void SetUp() override {
    store_ = GetParam().open();
    ASSERT_NE(store_, nullptr);
  }

  static InferenceRecord Record(int i, int producer, std::string prediction, std::optional<std::string> actual) {
    return {.id = "img-" + std::to_string(i),
            .image_prediction = std::move(prediction),
            .actual_value = std::move(actual),
            .producer_id = producer,
            .confidence = 0.5 + i * 1e-4,
            .model = "fmnist-cnn-test",
            .produced_at_us = 1'700'000'000'000'000 + i * 1000,
            .inferred_at_us = 1'700'000'000'500'000 + i * 1000};
  }

  std::vector<StoredRecord> ScanAll(const Filter& filter = {}) {
    std::vector<StoredRecord> out;
    Status s = store_->Scan(filter, [&](const StoredRecord& r) {
      out.push_back(r);
      return Ok();
    });
    EXPECT_TRUE(s) << s.error().message();
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.record.id < b.record.id; });
    return out;
  }

  std::unique_ptr<Store> store_;
};

TEST_P(StoreSuite, PingsAndStartsEmpty) {
  EXPECT_TRUE(store_->Ping());
  EXPECT_EQ(store_->Count({}).value(), 0);
  EXPECT_TRUE(store_->ReadResults().value().empty());
}

TEST_P(StoreSuite, UpsertedRecordsReadBackEqual) {
  std::vector<InferenceRecord> records{Record(1, 3, "Shirt", "T-shirt/top"), Record(2, 5, "Bag", std::nullopt)};
  records[1].produced_at_us.reset();
  const auto before = std::chrono::system_clock::now();
  auto stats = store_->Upsert(records);
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->inserted, 2);
  EXPECT_EQ(stats->replaced, 0);
  auto stored = ScanAll();
  ASSERT_EQ(stored.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(stored[i].record, records[i]) << stored[i].record.id;
    const auto at = std::chrono::system_clock::time_point(std::chrono::microseconds(stored[i].stored_at_us));
    EXPECT_GE(at, std::chrono::time_point_cast<std::chrono::milliseconds>(before));
    EXPECT_LE(at, std::chrono::system_clock::now());
  }
}

TEST_P(StoreSuite, TimestampsKeepMilliseconds) {
  InferenceRecord r = Record(1, 0, "Bag", "Bag");
  r.produced_at_us = 1'700'000'000'123'999;
  r.inferred_at_us = 1'700'000'000'456'001;
  ASSERT_TRUE(store_->Upsert({&r, 1}));
  auto stored = ScanAll();
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].record.produced_at_us, 1'700'000'000'123'000);
  EXPECT_EQ(stored[0].record.inferred_at_us, 1'700'000'000'456'000);
}

TEST_P(StoreSuite, UpsertingAgainLeavesOneDocumentPerId) {
  std::vector<InferenceRecord> records;
  for (int i = 0; i < 300; ++i) records.push_back(Record(i, i % 4, "Bag", "Bag"));
  ASSERT_TRUE(store_->Upsert(records));
  // A replay that overlaps: half old ids with a changed prediction, half new ones.
  std::vector<InferenceRecord> replay;
  for (int i = 150; i < 450; ++i) replay.push_back(Record(i, i % 4, "Sneaker", "Bag"));
  auto stats = store_->Upsert(replay);
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->inserted, 150);
  EXPECT_EQ(stats->replaced, 150);
  EXPECT_EQ(store_->Count({}).value(), 450);
  auto stored = ScanAll({.id = "img-200"});
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].record.image_prediction, "Sneaker");  // the later write wins
  EXPECT_EQ(ScanAll({.id = "img-100"}).at(0).record.image_prediction, "Bag");
}

TEST_P(StoreSuite, DuplicateIdsWithinOneBatchKeepOne) {
  std::vector<InferenceRecord> records{Record(1, 0, "Bag", "Bag"), Record(1, 0, "Coat", "Bag")};
  ASSERT_TRUE(store_->Upsert(records));
  EXPECT_EQ(store_->Count({}).value(), 1);
  EXPECT_EQ(ScanAll().at(0).record.image_prediction, "Coat");  // the later record wins
}

TEST_P(StoreSuite, LargeBatch) {
  std::vector<InferenceRecord> records;
  for (int i = 0; i < 20000; ++i) records.push_back(Record(i, i % 8, "Bag", i % 3 ? "Bag" : "Coat"));
  auto stats = store_->Upsert(records);
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->inserted, 20000);
  EXPECT_EQ(store_->Count({}).value(), 20000);
  int64_t scanned = 0;
  ASSERT_TRUE(store_->Scan({}, [&](const StoredRecord&) {
    ++scanned;
    return Ok();
  }));
  EXPECT_EQ(scanned, 20000);
}

TEST_P(StoreSuite, FiltersByProducerAndId) {
  std::vector<InferenceRecord> records;
  for (int i = 0; i < 20; ++i) records.push_back(Record(i, i % 4, "Bag", "Bag"));
  ASSERT_TRUE(store_->Upsert(records));
  EXPECT_EQ(store_->Count({.producer_id = 2}).value(), 5);
  auto two = ScanAll({.producer_id = 2});
  ASSERT_EQ(two.size(), 5u);
  for (const auto& s : two) EXPECT_EQ(s.record.producer_id, 2);
  EXPECT_EQ(ScanAll({.producer_id = 1, .id = "img-5"}).size(), 1u);
  EXPECT_EQ(ScanAll({.producer_id = 2, .id = "img-5"}).size(), 0u);
  EXPECT_EQ(store_->Count({.producer_id = 99}).value(), 0);
}

TEST_P(StoreSuite, ScanStopsAtTheVisitorsError) {
  std::vector<InferenceRecord> records{Record(1, 0, "Bag", "Bag"), Record(2, 0, "Bag", "Bag")};
  ASSERT_TRUE(store_->Upsert(records));
  int visited = 0;
  Status s = store_->Scan({}, [&](const StoredRecord&) -> Status {
    ++visited;
    return std::unexpected(Error::Io("disk full"));
  });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message(), "disk full");
  EXPECT_EQ(visited, 1);
}

TEST_P(StoreSuite, ConfusionCountsEveryCombination) {
  std::vector<InferenceRecord> records{Record(1, 0, "Bag", "Bag"),        Record(2, 0, "Bag", "Bag"),
                                       Record(3, 0, "Coat", "Bag"),       Record(4, 1, "Coat", "Coat"),
                                       Record(5, 1, "Bag", std::nullopt), Record(6, 1, "Bag", std::nullopt),
                                       Record(7, 1, "Shirt", "Coat")};
  ASSERT_TRUE(store_->Upsert(records));
  auto cells = store_->Confusion();
  ASSERT_TRUE(cells) << cells.error().message();
  std::sort(cells->begin(), cells->end(), [](auto& a, auto& b) {
    return std::tie(a.producer_id, a.image_prediction, a.actual_value) <
           std::tie(b.producer_id, b.image_prediction, b.actual_value);
  });
  std::vector<ConfusionCell> want{{0, "Bag", "Bag", 2},
                                  {0, "Coat", "Bag", 1},
                                  {1, "Bag", std::nullopt, 2},
                                  {1, "Coat", "Coat", 1},
                                  {1, "Shirt", "Coat", 1}};
  EXPECT_EQ(*cells, want);
  auto results = PerProducer(*cells, 42);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0], (ProducerResult{0, 1, 3, 0, 1.0 / 3, 42}));
  EXPECT_EQ(results[1], (ProducerResult{1, 1, 4, 2, 0.5, 42}));
}

TEST_P(StoreSuite, ReplaceResultsReplacesTheWholeCollection) {
  std::vector<ProducerResult> first{{0, 5, 10, 0, 0.5, 1'700'000'000'000'000},
                                    {1, 1, 4, 2, 0.5, 1'700'000'000'000'000},
                                    {7, 0, 3, 0, 0.0, 1'700'000'000'000'000}};
  ASSERT_TRUE(store_->ReplaceResults(first));
  EXPECT_EQ(store_->ReadResults().value(), first);
  std::vector<ProducerResult> second{{1, 2, 5, 2, 2.0 / 3, 1'700'000'001'000'000}};
  ASSERT_TRUE(store_->ReplaceResults(second));
  EXPECT_EQ(store_->ReadResults().value(), second);
  ASSERT_TRUE(store_->ReplaceResults({}));
  EXPECT_TRUE(store_->ReadResults().value().empty());
}

TEST_P(StoreSuite, ClearEmptiesBothAndKeepsTheStoreUsable) {
  std::vector<InferenceRecord> records{Record(1, 0, "Bag", "Bag")};
  ASSERT_TRUE(store_->Upsert(records));
  std::vector<ProducerResult> results{{0, 0, 1, 0, 0.0, 0}};
  ASSERT_TRUE(store_->ReplaceResults(results));
  ASSERT_TRUE(store_->Clear());
  EXPECT_EQ(store_->Count({}).value(), 0);
  EXPECT_TRUE(store_->ReadResults().value().empty());
  ASSERT_TRUE(store_->Upsert(records));
  ASSERT_TRUE(store_->Upsert(records));  // the unique index came back with the collection
  EXPECT_EQ(store_->Count({}).value(), 1);
  ASSERT_TRUE(store_->SaveStreamState({.group = "g", .topic = "inferences", .partition = 0, .next_offset = 1}));
  ASSERT_TRUE(store_->Clear());
  EXPECT_TRUE(store_->LoadStreamState("g").value().empty());
}

// First wins, and what came second is told apart: the same source is a replay, the same
// device fields from elsewhere a retry, other device fields a reused id. Within one call too.
TEST_P(StoreSuite, InsertFirstKeepsTheFirstRecordOfAnIdAndTellsWhatCameAfter) {
  const std::vector<InferenceRecord> first{Record(1, 0, "Bag", "Bag"), Record(2, 1, "Coat", "Bag")};
  const std::vector<std::string> sources{"inferences/0/10", "inferences/1/20"};
  auto inserted = store_->InsertFirst(first, sources);
  ASSERT_TRUE(inserted) << inserted.error().message();
  EXPECT_EQ(*inserted, std::vector<Insertion>(2));

  InferenceRecord retry = Record(1, 0, "Shirt", "Bag");  // inferred again: another prediction
  retry.inferred_at_us += 1'000'000;
  InferenceRecord reused = Record(2, 7, "Coat", "Coat");  // the id of another device's image
  InferenceRecord fresh = Record(3, 2, "Bag", std::nullopt);
  InferenceRecord fresh_again = fresh;
  fresh_again.actual_value = "Bag";
  const std::vector<InferenceRecord> second{first[0], retry, reused, fresh, fresh_again};
  const std::vector<std::string> second_sources{"inferences/0/10", "inferences/0/11", "inferences/2/5",
                                                "inferences/3/1", "inferences/3/2"};
  auto judged = store_->InsertFirst(second, second_sources);
  ASSERT_TRUE(judged) << judged.error().message();
  using Kind = Insertion::Kind;
  EXPECT_EQ(*judged, (std::vector<Insertion>{{Kind::kReplayed, ""},
                                             {Kind::kDuplicate, "inferences/0/10"},
                                             {Kind::kConflict, "inferences/1/20"},
                                             {Kind::kInserted, ""},
                                             {Kind::kConflict, "inferences/3/1"}}));
  std::vector<StoredRecord> stored = ScanAll();
  ASSERT_EQ(stored.size(), 3u);
  EXPECT_EQ(stored[0].record.image_prediction, "Bag");
  EXPECT_EQ(stored[0].source, "inferences/0/10");
  EXPECT_EQ(stored[1].record.producer_id, 1);
  EXPECT_EQ(stored[2].record.actual_value, std::nullopt);
  EXPECT_EQ(stored[2].source, "inferences/3/1");
}

TEST_P(StoreSuite, UpsertAndDeleteResultsTouchOnlyTheProducersNamed) {
  std::vector<ProducerResult> first{{0, 5, 10, 0, 0.5, 1'700'000'000'000'000},
                                    {1, 1, 4, 2, 0.5, 1'700'000'000'000'000}};
  ASSERT_TRUE(store_->UpsertResults(first));
  std::vector<ProducerResult> update{{1, 2, 6, 2, 0.5, 1'700'000'001'000'000},
                                     {9, 0, 1, 0, 0.0, 1'700'000'001'000'000}};
  ASSERT_TRUE(store_->UpsertResults(update));
  EXPECT_EQ(store_->ReadResults().value(), (std::vector<ProducerResult>{first[0], update[0], update[1]}));
  const std::vector<int> gone{0, 9, 12345};
  ASSERT_TRUE(store_->DeleteResults(gone));
  EXPECT_EQ(store_->ReadResults().value(), std::vector<ProducerResult>{update[0]});
}

// A partition's chunks as one instance would save them: its totals chunk per producer
// bucket, and a window chunk.
inline StreamState PartitionState(std::string group, int32_t partition, int64_t next_offset) {
  return {.group = std::move(group), .topic = "inferences", .partition = partition, .next_offset = next_offset};
}

TEST_P(StoreSuite, StreamStateRoundTripsPerGroupAndPartition) {
  StreamState a = PartitionState("live", 3, 120);
  a.window_floor_us = 1'699'999'000'000'000;
  a.chunks = {{.key = {std::nullopt, 0}, .as_of = 110, .counts = {{0, 4, 50, 1}}},
              {.key = {std::nullopt, 7}, .as_of = 120, .counts = {{7, 0, 70, 0}, {65543, 1, 2, 0}}},
              {.key = {1'700'000'000'000'000, 0}, .as_of = 90, .counts = {{0, 1, 10, 0}}},
              {.key = {1'700'000'010'000'000, 7}, .as_of = 120, .counts = {{7, 0, 5, 5}}}};
  a.updated_at_us = 1'700'000'000'123'000;
  StreamState b = PartitionState("live", 0, 9);
  b.chunks = {{.key = {std::nullopt, 2}, .as_of = 9, .counts = {{2, 1, 9, 0}}}};
  StreamState other = PartitionState("other", 0, 1);
  for (const StreamState* s : {&a, &b, &other}) {
    auto saved = store_->SaveStreamState(*s);
    ASSERT_TRUE(saved) << saved.error().message();
    EXPECT_TRUE(*saved);
  }
  auto loaded = store_->LoadStreamState("live");
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(*loaded, (std::vector<StreamState>{b, a}));
  EXPECT_TRUE(store_->LoadStreamState("nobody").value().empty());
}

// The head selects, per chunk key, the newest chunk not after its offset: chunks of a save
// whose head never landed (a crash, or an instance that lost the partition) are not counted.
TEST_P(StoreSuite, StreamStateHeadSelectsItsChunksWhateverElseWasWritten) {
  StreamState first = PartitionState("live", 1, 100);
  first.chunks = {{.key = {std::nullopt, 1}, .as_of = 90, .counts = {{1, 2, 3, 0}}}};
  ASSERT_TRUE(store_->SaveStreamState(first).value());
  // Chunks written without their head, as a crash between the two leaves them: here through
  // a head the store refuses.
  StreamState behind = PartitionState("live", 1, 40);
  behind.chunks = {{.key = {std::nullopt, 1}, .as_of = 150, .counts = {{1, 9, 9, 0}}}};
  behind.obsolete = first.chunks;
  auto refused = store_->SaveStreamState(behind);
  ASSERT_TRUE(refused) << refused.error().message();
  EXPECT_FALSE(*refused);
  auto loaded = store_->LoadStreamState("live");
  ASSERT_TRUE(loaded) << loaded.error().message();
  ASSERT_EQ(loaded->size(), 1u);
  EXPECT_EQ(loaded->at(0).next_offset, 100);
  EXPECT_EQ(loaded->at(0).chunks, first.chunks);  // not deleted: that head was refused

  StreamState ahead = PartitionState("live", 1, 160);
  ahead.chunks = {{.key = {std::nullopt, 1}, .as_of = 150, .counts = {{1, 9, 9, 0}}}};
  ahead.obsolete = first.chunks;
  ASSERT_TRUE(store_->SaveStreamState(ahead).value());
  loaded = store_->LoadStreamState("live");
  ASSERT_TRUE(loaded) << loaded.error().message();
  ASSERT_EQ(loaded->size(), 1u);
  EXPECT_EQ(loaded->at(0).next_offset, 160);
  EXPECT_EQ(loaded->at(0).chunks, ahead.chunks);
  StreamState same = ahead;  // the same offset again (a replay of the same save) is fine
  ASSERT_TRUE(store_->SaveStreamState(same).value());
}

// A reader that loaded the states before gets only what changed since: the heads, and the
// chunks saved after the offsets it knew.
TEST_P(StoreSuite, StreamStateLoadsOnlyTheChunksSavedSinceAnEarlierLoad) {
  StreamState p0 = PartitionState("live", 0, 50);
  p0.chunks = {{.key = {std::nullopt, 1}, .as_of = 10, .counts = {{1, 1, 1, 0}}},
               {.key = {std::nullopt, 2}, .as_of = 50, .counts = {{2, 0, 4, 0}}}};
  StreamState p1 = PartitionState("live", 1, 70);
  p1.chunks = {{.key = {std::nullopt, 3}, .as_of = 70, .counts = {{3, 3, 3, 0}}}};
  ASSERT_TRUE(store_->SaveStreamStates(std::vector<StreamState>{p0, p1}));
  const StateVersions since{{{"inferences", 0}, 50}, {{"inferences", 1}, 70}};
  auto unchanged = store_->LoadStreamState("live", since);
  ASSERT_TRUE(unchanged) << unchanged.error().message();
  ASSERT_EQ(unchanged->size(), 2u);
  EXPECT_TRUE(unchanged->at(0).chunks.empty());
  EXPECT_TRUE(unchanged->at(1).chunks.empty());

  StreamState next = PartitionState("live", 0, 80);
  next.chunks = {{.key = {std::nullopt, 2}, .as_of = 75, .counts = {{2, 1, 6, 0}}}};
  next.obsolete = {{.key = {std::nullopt, 2}, .as_of = 50}};
  ASSERT_TRUE(store_->SaveStreamState(next).value());
  auto changed = store_->LoadStreamState("live", since);
  ASSERT_TRUE(changed) << changed.error().message();
  ASSERT_EQ(changed->size(), 2u);
  EXPECT_EQ(changed->at(0).next_offset, 80);
  EXPECT_EQ(changed->at(0).chunks, next.chunks);
  EXPECT_TRUE(changed->at(1).chunks.empty());
  auto full = store_->LoadStreamState("live");
  ASSERT_TRUE(full) << full.error().message();
  EXPECT_EQ(full->at(0).chunks, (std::vector<StateChunk>{p0.chunks[0], next.chunks[0]}));
}

// Windows under the head's floor are no longer part of the state, whether or not a save
// deleted their chunks.
TEST_P(StoreSuite, StreamStateLeavesOutWindowsUnderTheFloor) {
  const int64_t t0 = 1'700'000'000'000'000, t1 = t0 + 10'000'000;
  StreamState state = PartitionState("live", 0, 20);
  state.chunks = {{.key = {t0, 5}, .as_of = 10, .counts = {{5, 1, 1, 0}}},
                  {.key = {t1, 5}, .as_of = 20, .counts = {{5, 0, 2, 0}}}};
  ASSERT_TRUE(store_->SaveStreamState(state).value());
  StreamState later = PartitionState("live", 0, 30);
  later.window_floor_us = t1;
  ASSERT_TRUE(store_->SaveStreamState(later).value());
  auto loaded = store_->LoadStreamState("live");
  ASSERT_TRUE(loaded) << loaded.error().message();
  ASSERT_EQ(loaded->size(), 1u);
  EXPECT_EQ(loaded->at(0).chunks, std::vector<StateChunk>{state.chunks[1]});
}

// The largest chunk an int producer_id allows: every one of 65,536 producers in one bucket.
TEST_P(StoreSuite, StreamStateHoldsAFullBucket) {
  StreamState state = PartitionState("live", 0, 1'000'000);
  StateChunk& chunk = state.chunks.emplace_back(StateChunk{.key = {std::nullopt, 7}, .as_of = 999'999});
  for (int64_t i = 0; i < kStateBuckets; ++i) {
    const int producer = static_cast<int>(i * kStateBuckets + 7 - (int64_t{1} << 31));
    chunk.counts.push_back({producer, 1'000'000'000'000 + i, 2'000'000'000'000 + i, i});
  }
  std::ranges::sort(chunk.counts, {}, &ProducerCounts::producer_id);
  ASSERT_EQ(StateBucket(chunk.counts.front().producer_id), 7);
  auto saved = store_->SaveStreamState(state);
  ASSERT_TRUE(saved) << saved.error().message();
  auto loaded = store_->LoadStreamState("live");
  ASSERT_TRUE(loaded) << loaded.error().message();
  ASSERT_EQ(loaded->size(), 1u);
  EXPECT_EQ(loaded->at(0).chunks, state.chunks);
}

// Saved together, the heads are still judged one by one: one behind its stored head is
// refused and reported, the others are saved. More than one command's worth of states.
TEST_P(StoreSuite, StreamStatesSavedTogetherAreRefusedOneByOne) {
  std::vector<StreamState> first;
  for (int partition = 0; partition < 40; ++partition) first.push_back(PartitionState("live", partition, 100));
  auto saved = store_->SaveStreamStates(first);
  ASSERT_TRUE(saved) << saved.error().message();
  EXPECT_EQ(*saved, std::vector<bool>(40, true));
  std::vector<StreamState> next = first;
  std::vector<bool> expected(40, true);
  for (int partition = 0; partition < 40; ++partition) {
    const bool behind = partition % 17 == 3;  // 3, 20 and 37: in every command of 16
    next[partition].next_offset = behind ? 50 : 200;
    // An instance that is behind has counted nothing the stored head has not.
    if (!behind)
      next[partition].chunks = {{.key = {std::nullopt, partition}, .as_of = 200, .counts = {{partition, 1, 2, 0}}}};
    expected[partition] = !behind;
  }
  saved = store_->SaveStreamStates(next);
  ASSERT_TRUE(saved) << saved.error().message();
  EXPECT_EQ(*saved, expected);
  std::vector<StreamState> stored = store_->LoadStreamState("live").value();
  ASSERT_EQ(stored.size(), 40u);
  for (StreamState& s : stored) {
    const StreamState& want = expected[s.partition] ? next[s.partition] : first[s.partition];
    s.updated_at_us = want.updated_at_us;
    EXPECT_EQ(s, want) << "partition " << s.partition;
  }
}

TEST_P(StoreSuite, WindowResultsUpsertByProducerAndStart) {
  const int64_t t0 = 1'700'000'000'000'000, t1 = t0 + 10'000'000;
  std::vector<WindowResult> first{{t0, t1, {2, 1, 4, 0, 0.25, t1}}, {t0, t1, {1, 0, 2, 0, 0.0, t1}}};
  ASSERT_TRUE(store_->UpsertWindowResults(first));
  std::vector<WindowResult> second{{t0, t1, {2, 2, 5, 0, 0.4, t1 + 1000}},
                                   {t1, t1 + 10'000'000, {1, 1, 1, 0, 1.0, t1}}};
  ASSERT_TRUE(store_->UpsertWindowResults(second));
  auto windows = store_->ReadWindowResults();
  ASSERT_TRUE(windows) << windows.error().message();
  EXPECT_EQ(*windows, (std::vector<WindowResult>{first[1], second[0], second[1]}));
}

TEST_P(StoreSuite, EachDeviceKeepsItsLatestVerdict) {
  const int64_t t0 = 1'700'000'000'000'000;
  EXPECT_TRUE(store_->ReadHealth().value().empty());
  const std::vector<DeviceHealth> first{
      {.producer_id = 7,
       .verdict = Verdict::kSuspect,
       .labelled = 900,
       .incorrect = 99,
       .error_rate = 0.11,
       .low = 0.09,
       .high = 0.13,
       .fleet_rate = 0.08,
       .p_value = 1e-5,
       .window_ms = 600'000,
       .judged_at_us = t0},
      {.producer_id = 2, .verdict = Verdict::kHealthy, .labelled = 400, .window_ms = 600'000, .judged_at_us = t0}};
  ASSERT_TRUE(store_->UpsertHealth(first));
  DeviceHealth worse = first[0];
  worse.verdict = Verdict::kFaulty;
  worse.labelled = 1500;
  worse.p_value = 1e-300;  // far below what a float would keep
  worse.judged_at_us = t0 + 5'000'000;
  ASSERT_TRUE(store_->UpsertHealth(std::vector{worse}));
  auto verdicts = store_->ReadHealth();
  ASSERT_TRUE(verdicts) << verdicts.error().message();
  EXPECT_EQ(*verdicts, (std::vector<DeviceHealth>{first[1], worse}));
  ASSERT_TRUE(store_->Clear());
  EXPECT_TRUE(store_->ReadHealth().value().empty());
}

}  // namespace iotinfer::store
