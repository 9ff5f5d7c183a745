#include "stream/stream.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "core/inference_record.h"
#include "core/results.h"
#include "kafka/external_offset_consumer.h"
#include "kafka/service_loop.h"
#include "store/retry.h"
#include "stream/dashboard.h"
#include "stream/dead_letter_watch.h"
#include "stream/device_series.h"

namespace iotinfer::stream {
namespace {

using Clock = std::chrono::steady_clock;
using kafka::PartitionId;
using store::ChunkKey;
using store::StateChunk;
using WindowKey = std::pair<int64_t, int>;  // (window start in µs, producer_id)

// The dashboard's latest document, for the server's threads.
struct PageState {
  std::mutex mutex;
  std::string document = "{}";
};

// One chunk of a partition's counts as this instance holds it.
struct Chunk {
  int64_t as_of = 0;  // just after the last record that changed it
  std::map<int, ProducerCounts> counts;
};

// What one instance holds for one of its partitions: the saved state plus what it counted
// since.
struct PartitionCounts {
  int64_t next_offset = 0;
  std::map<ChunkKey, Chunk> chunks;   // the totals' chunks first, then the windows' by start
  std::map<ChunkKey, int64_t> saved;  // the as_of of each chunk in the store: what a save replaces
  std::set<ChunkKey> changed;         // since the last save
  std::vector<StateChunk> dropped;    // saved chunks of windows no longer kept
  std::optional<int64_t> newest_window;
  int64_t saved_offset = -1;  // of the state in the store this instance last loaded or saved
  bool dirty = false;
};

PartitionCounts FromState(const store::StreamState& state) {
  PartitionCounts p{.next_offset = state.next_offset, .saved_offset = state.next_offset};
  for (const StateChunk& c : state.chunks) {
    Chunk& chunk = p.chunks[c.key];
    chunk.as_of = c.as_of;
    for (const ProducerCounts& counts : c.counts) chunk.counts[counts.producer_id] = counts;
    p.saved[c.key] = c.as_of;
    if (c.key.window_start_us)
      p.newest_window = std::max(p.newest_window.value_or(*c.key.window_start_us), *c.key.window_start_us);
  }
  return p;
}

// A partition's saved state as this instance last loaded it, to write the results from.
struct LoadedPartition {
  int64_t next_offset = 0;
  std::optional<int64_t> window_floor;
  std::map<ChunkKey, StateChunk> chunks;
};

class Stream {
 public:
  // `beat` is called on every turn of the main loop.
  // `endpoints` (may be null) also get the per-device series, and the dashboard's documents,
  // each also kept in `page_state` for the page's first load.
  Stream(const StreamOptions& options, const std::atomic<bool>& stop, std::unique_ptr<store::Store> store,
         const std::function<void(const StreamStats&)>& on_progress, std::function<void()> beat,
         ops::Endpoints* endpoints, std::shared_ptr<PageState> page_state)
      : options_(options),
        stop_(stop),
        store_(std::move(store)),
        on_progress_(on_progress),
        beat_(std::move(beat)),
        endpoints_(endpoints),
        page_state_(std::move(page_state)) {
    if (endpoints_) {
      dashboard_.emplace(options_.group);
      stats_.http_port = endpoints_->port();
      if (!options_.dead_letter_topics.empty()) {
        // A group of this process's own: every instance's page shows every dead letter.
        dead_letter_watch_.emplace(options_.kafka, options_.dead_letter_topics,
                                   fmt::format("{}.dashboard.{}.{}", options_.group, getpid(), NowMicros()));
      }
    }
  }
  // Closing the consumer revokes its partitions, which calls back into this object: close it
  // while the members it uses still exist (also when Run returned early with an error).
  ~Stream() {
    if (consumer_) consumer_->Close();
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  Status Run() {
    kafka::ExternalOffsetConsumerOptions consumer_options{.kafka = options_.kafka,
                                                          .group = options_.group,
                                                          .topics = {options_.topic},
                                                          .max_batch = options_.max_batch,
                                                          .log = kafka::StderrLog("stream")};
    ASSIGN_OR_RETURN(consumer_,
                     kafka::ExternalOffsetConsumer::Create(
                         consumer_options, [this](std::span<const PartitionId> ids) { return OnAssign(ids); },
                         [this](std::span<const PartitionId> ids) { OnRevoke(ids); }));
    if (options_.health_window.count() > 0) {
      tracker_.emplace(options_.health_window, options_.health);
      if (endpoints_) device_series_.emplace(options_.device_series);
    }
    auto next_update = Clock::now() + options_.update_interval;
    auto next_log = Clock::now() + options_.log_every;
    auto next_health = Clock::now() + options_.health_every;
    auto next_page = Clock::now();
    while (!stop_) {
      beat_();
      // With nothing counted since the last update, there is nothing to save before the next
      // look at other instances' saves: wait for records rather than turning the loop over
      // every millisecond (back-to-back updates would).
      const bool pending = std::ranges::any_of(owned_, [](const auto& entry) { return entry.second.dirty; });
      const auto until = pending ? next_update : std::max(next_update, next_idle_check_);
      const auto idle = std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()),
                                   std::chrono::milliseconds(1), std::chrono::milliseconds(200));
      ASSIGN_OR_RETURN(std::vector<kafka::InputMessage> batch, consumer_->Poll(idle));
      // One clock read a poll, not one a record: a poll waits at most 200 ms, and the health
      // window is cut into tenths of at least 1 s.
      const int64_t polled_at_us = tracker_ || dashboard_ ? NowMicros() : 0;
      for (const kafka::InputMessage& in : batch) Count(in, polled_at_us);
      if (const int partitions = static_cast<int>(owned_.size()); partitions != stats_.partitions) {
        stats_.partitions = partitions;
        Report();
      }
      if (Clock::now() >= next_update) {
        TRY(Update());
        next_update = Clock::now() + options_.update_interval;
      }
      if (tracker_ && Clock::now() >= next_health) {
        JudgeHealth();
        next_health = Clock::now() + options_.health_every;
      }
      if (dashboard_ && Clock::now() >= next_page) {
        PublishPage();
        next_page = Clock::now() + kPageEvery;
      }
      if (options_.log_every.count() && Clock::now() >= next_log) {
        stats_.lag = consumer_->lag();
        std::fprintf(stderr, "stream: %s\n", FormatStats(stats_).c_str());
        next_log = Clock::now() + options_.log_every;
      }
    }
    // What was counted since the last update is saved before the partitions are given up.
    TRY(Update());
    if (tracker_) JudgeHealth();  // the verdicts on everything counted
    stats_.lag = consumer_->lag();
    consumer_->Close();
    if (health_producer_) (void)health_producer_->Flush(std::chrono::seconds(10));
    return Ok();
  }

  const StreamStats& stats() const { return stats_; }

 private:
  // Retries `write` while the store is down, backing off, until a stop is asked for.
  template <typename Write>
  auto Retrying(std::string_view what, Write write) -> decltype(write()) {
    auto result = store::WriteWithRetries(
        write, {.initial = options_.retry_initial, .max = options_.retry_max}, stop_,
        [&](const Error& error, std::chrono::milliseconds wait) {
          stats_.store_retries++;
          stats_.store_available = false;
          Report();
          std::fprintf(stderr, "stream: store unavailable while %.*s, retrying in %lld ms: %s\n",
                       static_cast<int>(what.size()), what.data(), static_cast<long long>(wait.count()),
                       error.message().c_str());
        });
    if (result && !stats_.store_available) {
      stats_.store_available = true;
      Report();
    }
    return result;
  }

  Result<std::map<PartitionId, int64_t>> OnAssign(std::span<const PartitionId> ids) {
    ASSIGN_OR_RETURN(std::vector<store::StreamState> states,
                     Retrying("loading stream_state", [&] { return store_->LoadStreamState(options_.group); }));
    std::map<PartitionId, int64_t> starts;  // a partition never counted starts at its beginning
    for (const PartitionId& id : ids) {
      owned_[id] = PartitionCounts{};
      for (const store::StreamState& s : states) {
        if (s.topic != id.topic || s.partition != id.partition) continue;
        owned_[id] = FromState(s);
        starts[id] = s.next_offset;
      }
    }
    return starts;
  }

  void OnRevoke(std::span<const PartitionId> ids) {
    std::vector<store::StreamState> states;
    for (const PartitionId& id : ids) {
      auto it = owned_.find(id);
      if (it == owned_.end()) continue;
      if (it->second.dirty) states.push_back(ToState(id, it->second));
      owned_.erase(it);
      // The partition's new owner judges its devices from now on.
      if (tracker_) tracker_->Forget(id.partition);
    }
    // Best effort: the new owner counts again from the last saved state if this fails.
    if (!states.empty()) (void)store_->SaveStreamStates(states);
  }

  void Count(const kafka::InputMessage& in, int64_t polled_at_us) {
    auto it = owned_.find({in.topic, in.partition});
    if (it == owned_.end()) return;
    PartitionCounts& p = it->second;
    if (in.offset < p.next_offset) return;  // fetched before a seek back to a saved state
    p.next_offset = in.offset + 1;
    p.dirty = true;
    stats_.consumed++;
    // Invalid records are sink's to dead-letter (it owns the topic's dead letters); here they
    // are counted, like the records no client could read.
    if (!in.unreadable.empty()) {
      std::fprintf(stderr, "stream: %s; counted as invalid\n", in.unreadable.c_str());
      stats_.invalid++;
      return;
    }
    Result<InferenceRecord> record = DecodeInferenceRecord(in.message.value);
    if (!record) {
      stats_.invalid++;
      return;
    }
    CountIn(p, {std::nullopt, store::StateBucket(record->producer_id)}, in.offset, *record);
    if (tracker_) {
      const bool incorrect = IsIncorrect(record->image_prediction, record->actual_value);
      tracker_->Add(record->producer_id, in.partition, polled_at_us, record->actual_value.has_value(), incorrect);
      if (device_series_) device_series_->Count(record->producer_id, incorrect);
    }
    if (dashboard_) dashboard_->Record(*record, polled_at_us);
    if (options_.window.count() > 0) CountWindow(p, in.offset, *record);
  }

  static void CountIn(PartitionCounts& p, const ChunkKey& key, int64_t offset, const InferenceRecord& r) {
    Chunk& chunk = p.chunks[key];
    chunk.as_of = offset + 1;
    ProducerCounts& c = chunk.counts[r.producer_id];
    c.producer_id = r.producer_id;
    c.Add(r.image_prediction, r.actual_value);
    p.changed.insert(key);
  }

  void CountWindow(PartitionCounts& p, int64_t offset, const InferenceRecord& r) {
    const int64_t size = WindowMicros();
    const int64_t event = r.produced_at_us.value_or(r.inferred_at_us);
    const int64_t start = event / size * size - (event % size < 0 ? size : 0);
    const int64_t newest = std::max(start, p.newest_window.value_or(start));
    const int64_t oldest_kept = newest - (options_.window_keep - 1) * size;
    if (start < oldest_kept) {
      stats_.late++;
      return;
    }
    p.newest_window = newest;
    CountIn(p, {start, store::StateBucket(r.producer_id)}, offset, r);
    // The windows' chunks follow the totals', by start.
    auto first = p.chunks.upper_bound({std::nullopt, std::numeric_limits<int32_t>::max()});
    auto last = p.chunks.lower_bound({oldest_kept, std::numeric_limits<int32_t>::min()});
    for (auto it = first; it != last; it = p.chunks.erase(it)) {
      p.changed.erase(it->first);
      if (auto saved = p.saved.find(it->first); saved != p.saved.end()) {
        p.dropped.push_back({.key = it->first, .as_of = saved->second});
        p.saved.erase(saved);
      }
    }
  }

  int64_t WindowMicros() const {
    return std::chrono::duration_cast<std::chrono::microseconds>(options_.window).count();
  }

  // The partition's head with the chunks that changed since its last save, and those the
  // save makes obsolete.
  store::StreamState ToState(const PartitionId& id, const PartitionCounts& p) const {
    store::StreamState state{.group = options_.group,
                             .topic = id.topic,
                             .partition = id.partition,
                             .next_offset = p.next_offset,
                             .obsolete = p.dropped,
                             .updated_at_us = store::NowMillisAsMicros()};
    if (p.newest_window) state.window_floor_us = *p.newest_window - (options_.window_keep - 1) * WindowMicros();
    for (const ChunkKey& key : p.changed) {
      const Chunk& chunk = p.chunks.at(key);
      StateChunk& c = state.chunks.emplace_back(StateChunk{.key = key, .as_of = chunk.as_of});
      for (const auto& [producer, counts] : chunk.counts) c.counts.push_back(counts);
      if (auto saved = p.saved.find(key); saved != p.saved.end() && saved->second != chunk.as_of) {
        state.obsolete.push_back({.key = key, .as_of = saved->second});
      }
    }
    return state;
  }

  static void MarkSaved(PartitionCounts& p, int64_t offset) {
    p.saved_offset = offset;
    for (const ChunkKey& key : p.changed) p.saved[key] = p.chunks.at(key).as_of;
    p.changed.clear();
    p.dropped.clear();
    p.dirty = false;
  }

  // Saves each changed partition, then rewrites the results from every saved state when they
  // changed since this instance last wrote them, whoever changed them.
  Status Update() {
    const auto start = Clock::now();
    std::vector<store::StreamState> states;
    for (const auto& [id, p] : owned_) {
      if (p.dirty) states.push_back(ToState(id, p));
    }
    std::map<PartitionId, int64_t> saved;
    if (!states.empty()) {
      Result<std::vector<bool>> written =
          Retrying("saving stream_state", [&] { return store_->SaveStreamStates(states); });
      if (!written) return stop_ ? Ok() : Status(std::unexpected(written.error()));
      for (size_t i = 0; i < states.size(); ++i) {
        const PartitionId id{states[i].topic, states[i].partition};
        if (!(*written)[i]) {
          TRY(Resync(id));
          continue;
        }
        PartitionCounts& p = owned_[id];
        // The loaded state was this save's starting point: the save is the change since, and
        // the next results write need not read back what this instance just wrote.
        if (auto loaded = loaded_.find(id); loaded != loaded_.end() && loaded->second.next_offset == p.saved_offset) {
          MergeOne(states[i], loaded->second);
        }
        MarkSaved(p, states[i].next_offset);
        saved[id] = states[i].next_offset;
      }
    }
    // With nothing to save here, only other instances' saves (or their late results writes)
    // can have changed anything: looking for that a few times a second is enough, however
    // short the update interval.
    const bool idle_check = states.empty();
    if (idle_check && start < next_idle_check_) return Ok();
    next_idle_check_ = start + std::max<Clock::duration>(options_.update_interval, kIdleCheck);
    Result<bool> rewritten = Retrying("writing results", [&] { return WriteResults(idle_check); });
    if (!rewritten) return stop_ ? Ok() : Status(std::unexpected(rewritten.error()));
    consumer_->CommitForMonitoring(saved);
    if (!*rewritten) return Ok();
    stats_.updates++;
    stats_.last_update_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    Report();
    return Ok();
  }

  // Another instance saved this partition further on (we lost it in a rebalance and it was
  // counted meanwhile): continue from its state.
  Status Resync(const PartitionId& id) {
    stats_.superseded++;
    ASSIGN_OR_RETURN(std::vector<store::StreamState> states, store_->LoadStreamState(options_.group));
    for (const store::StreamState& s : states) {
      if (s.topic != id.topic || s.partition != id.partition) continue;
      owned_[id] = FromState(s);
      std::fprintf(stderr, "stream: %s [%d] was counted further elsewhere; continuing from offset %lld\n",
                   id.topic.c_str(), id.partition, static_cast<long long>(s.next_offset));
      Report();
      return consumer_->Seek(id, s.next_offset);
    }
    return Ok();
  }

  // Instances write the results from their own reads of the states, so a slower instance's
  // write may land after a newer one. Each instance therefore rewrites until what it last
  // wrote is the latest: the last writer of a stale result sees that and corrects it. Only
  // an instance that has stopped (or died with its write in flight) cannot: so when nothing
  // changed, `check_stored` also looks now and then at the stored totals and windows, and
  // puts back what this instance wrote where they are behind it. Each read brings only the
  // chunks saved since the last, and only the producers and windows they changed are
  // written: a million producers cost what the few that sent records since cost. False when
  // nothing needed writing.
  Result<bool> WriteResults(bool check_stored) {
    store::StateVersions since;
    for (const auto& [id, loaded] : loaded_) since[{id.topic, id.partition}] = loaded.next_offset;
    ASSIGN_OR_RETURN(std::vector<store::StreamState> states, store_->LoadStreamState(options_.group, since));
    // Nothing counted yet by this group: the results another writer (batch) left stay.
    if (states.empty()) return false;
    Merge(std::move(states));
    if (!rewrite_all_ && changed_producers_.empty() && changed_windows_.empty()) {
      if (!check_stored || Clock::now() < next_stored_check_) return false;
      const auto read_start = Clock::now();
      ASSIGN_OR_RETURN(const bool behind, StoredResultsBehind());
      // Reading every result is dear with many producers: at most 5% of the time.
      next_stored_check_ = Clock::now() + 20 * (Clock::now() - read_start);
      if (behind) {
        std::fprintf(stderr,
                     "stream: incorrect_inference_results was behind the saved counts (a late write of an "
                     "instance that has left, or a deletion); rewriting it\n");
        rewrite_all_ = true;
        ForgetWrittenWindows();  // that write may have set back windows as well
      } else {
        // A late write can also set back windows alone: its totals landed before ours, its
        // windows after. Reading every window document is dearer, so less often: every 2 s,
        // or 20 times as long as the last read took.
        if (written_windows_.empty() || Clock::now() < next_window_check_) return false;
        const auto windows_start = Clock::now();
        ASSIGN_OR_RETURN(const size_t forgotten, ForgetWindowsStoredBehind());
        next_window_check_ =
            Clock::now() + std::max<Clock::duration>(kWindowCheck, 20 * (Clock::now() - windows_start));
        if (forgotten == 0) return false;
        std::fprintf(stderr,
                     "stream: %zu window result(s) were behind the saved counts (a late write of an instance "
                     "that has left, or a deletion); rewriting them\n",
                     forgotten);
      }
    }
    const int64_t now = store::NowMillisAsMicros();
    std::vector<ProducerResult> results;
    std::vector<int> gone;
    if (rewrite_all_) {
      for (const auto& [producer, c] : totals_) results.push_back(ToResult(c, now));
      TRY(store_->ReplaceResults(results));
    } else {
      for (int producer : changed_producers_) {
        auto it = totals_.find(producer);
        if (it == totals_.end()) {
          gone.push_back(producer);
        } else {
          results.push_back(ToResult(it->second, now));
        }
      }
      TRY(store_->UpsertResults(results));
      if (!gone.empty()) TRY(store_->DeleteResults(gone));
    }
    rewrite_all_ = false;
    changed_producers_.clear();
    TRY(WriteWindows(now));
    return true;
  }

  // Only windows every partition still holds are written: under a partition's floor, its
  // chunks may be gone.
  Status WriteWindows(int64_t now) {
    std::optional<int64_t> floor;
    for (const auto& [id, loaded] : loaded_) {
      if (loaded.window_floor) floor = std::max(floor.value_or(*loaded.window_floor), *loaded.window_floor);
    }
    std::vector<WindowResult> changed;
    const int64_t size = WindowMicros();
    for (const WindowKey& key : changed_windows_) {
      auto it = window_totals_.find(key);
      if (it == window_totals_.end() || (floor && key.first < *floor)) continue;
      auto written = written_windows_.find(key);
      if (written != written_windows_.end() && written->second == it->second) continue;
      changed.push_back({key.first, key.first + size, ToResult(it->second, now)});
    }
    if (!changed.empty()) TRY(store_->UpsertWindowResults(changed));
    for (const WindowResult& w : changed) {
      const WindowKey key{w.window_start_us, w.result.producer_id};
      written_windows_[key] = window_totals_.at(key);
    }
    changed_windows_.clear();
    if (floor) written_windows_.erase(written_windows_.begin(), written_windows_.lower_bound({*floor, 0}));
    return Ok();
  }

  // Applies what LoadStreamState returned (every head; the chunks saved since the last load)
  // to the loaded states and to the totals and windows summed from them.
  void Merge(std::vector<store::StreamState> states) {
    std::set<PartitionId> present;
    for (store::StreamState& s : states) {
      const PartitionId id{s.topic, s.partition};
      present.insert(id);
      auto [it, fresh] = loaded_.try_emplace(id);
      // Unmoved, or moved while it was read: the store leaves it at what was loaded before.
      if (!fresh && s.next_offset == it->second.next_offset && s.chunks.empty()) continue;
      MergeOne(s, it->second);
    }
    for (auto it = loaded_.begin(); it != loaded_.end();) {
      if (present.contains(it->first)) {
        ++it;
        continue;
      }
      for (const auto& [key, chunk] : it->second.chunks) Apply(chunk, -1);  // its state was deleted
      it = loaded_.erase(it);
    }
  }

  // Moves `loaded` on to the state `s` brings: its offset, and the chunks changed since.
  void MergeOne(const store::StreamState& s, LoadedPartition& loaded) {
    for (const StateChunk& c : s.chunks) {
      StateChunk& held = loaded.chunks[c.key];
      Apply(held, -1);
      held = c;
      Apply(held, +1);
    }
    loaded.next_offset = s.next_offset;
    loaded.window_floor = s.window_floor_us;
    if (!loaded.window_floor) return;
    auto first = loaded.chunks.upper_bound({std::nullopt, std::numeric_limits<int32_t>::max()});
    auto last = loaded.chunks.lower_bound({*loaded.window_floor, std::numeric_limits<int32_t>::min()});
    for (auto c = first; c != last; c = loaded.chunks.erase(c)) Apply(c->second, -1);
  }

  // Adds (sign +1) or takes away (-1) a chunk's counts from the totals or its window's.
  void Apply(const StateChunk& chunk, int sign) {
    for (const ProducerCounts& c : chunk.counts) {
      ProducerCounts delta = c;
      delta.incorrect_count *= sign;
      delta.total *= sign;
      delta.unlabelled *= sign;
      if (chunk.key.window_start_us) {
        const WindowKey key{*chunk.key.window_start_us, c.producer_id};
        AddTo(window_totals_, key, delta);
        changed_windows_.insert(key);
      } else {
        AddTo(totals_, c.producer_id, delta);
        changed_producers_.insert(c.producer_id);
      }
    }
  }

  // A producer (or window) whose counts are all taken away has no result any more.
  template <typename Key>
  static void AddTo(std::map<Key, ProducerCounts>& sums, const Key& key, const ProducerCounts& delta) {
    auto [it, inserted] = sums.try_emplace(key, ProducerCounts{.producer_id = delta.producer_id});
    it->second += delta;
    if (it->second == ProducerCounts{.producer_id = delta.producer_id}) sums.erase(it);
  }

  void ForgetWrittenWindows() {
    for (const auto& [key, counts] : written_windows_) changed_windows_.insert(key);
    written_windows_.clear();
  }

  static bool SameCounts(const ProducerResult& stored, const ProducerCounts& written) {
    return stored.total == written.total && stored.incorrect_count == written.incorrect_count &&
           stored.unlabelled == written.unlabelled;
  }

  // Whether the stored totals are an earlier stage of what this instance last wrote: every
  // producer's total at most its own, and something differs. Counts only grow with the
  // offsets, so that is a stale write of this group. Results that are ahead or unrelated
  // (another group or a batch run writing the same collection) are not this instance's to
  // overwrite while nothing changed.
  Result<bool> StoredResultsBehind() {
    ASSIGN_OR_RETURN(const std::vector<ProducerResult> stored, store_->ReadResults());
    bool differs = stored.size() != totals_.size();
    for (const ProducerResult& r : stored) {
      auto it = totals_.find(r.producer_id);
      if (it == totals_.end() || r.total > it->second.total) return false;
      differs |= !SameCounts(r, it->second);
    }
    return differs;
  }

  // The windows this instance wrote whose stored documents are an earlier stage of what it
  // wrote (at most its counts, and different), or are missing: they are forgotten as written,
  // so that the next write puts them back. Windows that are ahead, or that it never wrote,
  // are another writer's. Returns how many.
  Result<size_t> ForgetWindowsStoredBehind() {
    ASSIGN_OR_RETURN(const std::vector<WindowResult> stored, store_->ReadWindowResults());
    std::set<WindowKey> present;
    std::vector<WindowKey> behind;
    for (const WindowResult& w : stored) {
      const WindowKey key{w.window_start_us, w.result.producer_id};
      present.insert(key);
      auto it = written_windows_.find(key);
      if (it == written_windows_.end()) continue;
      if (w.result.total <= it->second.total && !SameCounts(w.result, it->second)) behind.push_back(key);
    }
    for (const auto& [key, counts] : written_windows_) {
      if (!present.contains(key)) behind.push_back(key);
    }
    for (const WindowKey& key : behind) {
      written_windows_.erase(key);
      changed_windows_.insert(key);
    }
    return behind.size();
  }

  void Report() {
    if (consumer_) stats_.lag = consumer_->lag();
    on_progress_(stats_);
  }

  static int64_t NowMicros() {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  // The verdicts' topic and its producer, made at the first verdict. Verdicts wait, the latest
  // per device, while Kafka cannot take them (tried again every 30 s): the count goes on.
  void PublishVerdicts() {
    if (options_.health_topic.empty() || unpublished_.empty()) return;
    if (!health_producer_) {
      if (Clock::now() < next_health_try_) return;
      Status made = [&]() -> Status {
        // Compacted and keyed by producer: the topic keeps each device's latest verdict.
        TRY(kafka::EnsureTopics(options_.kafka,
                                {{.name = options_.health_topic, .configs = {{"cleanup.policy", "compact"}}}},
                                std::chrono::seconds(5)));
        ASSIGN_OR_RETURN(health_producer_,
                         kafka::Producer::Create(options_.kafka, {.topics = {options_.health_topic}}));
        return Ok();
      }();
      if (!made) {
        std::fprintf(stderr, "stream: %zu device verdict(s) wait for %s: %s\n", unpublished_.size(),
                     options_.health_topic.c_str(), made.error().message().c_str());
        next_health_try_ = Clock::now() + std::chrono::seconds(30);
        return;
      }
    }
    for (const auto& [producer, verdict] : unpublished_) {
      // Refused at once only in a fatal producer state. A verdict the idempotent producer gives
      // up on (after librdkafka's delivery timeout) is missing until it changes again; the
      // metrics always carry the current counts.
      (void)health_producer_->Send(options_.health_topic,
                                   {.key = std::to_string(producer), .value = health::ToJson(verdict), .headers = {}});
    }
    unpublished_.clear();
    health_producer_->Poll();
  }

  // The page's document: to the event clients, and kept for a page's first load.
  void PublishPage() {
    if (dead_letter_watch_) dead_letter_watch_->Poll(dead_letters_);
    std::string doc = dashboard_->Build(NowMicros(), stats_.consumed, consumer_ ? consumer_->lag() : 0,
                                        static_cast<int>(owned_.size()), dead_letters_);
    endpoints_->Event(doc);
    std::lock_guard lock(page_state_->mutex);
    page_state_->document = std::move(doc);
  }

  // A device's totals over the partitions this instance holds (normally one: devices key
  // their images).
  ProducerCounts CountedHere(int producer) const {
    ProducerCounts sum{.producer_id = producer};
    const ChunkKey key{std::nullopt, store::StateBucket(producer)};
    for (const auto& [id, p] : owned_) {
      const auto chunk = p.chunks.find(key);
      if (chunk == p.chunks.end()) continue;
      if (const auto counts = chunk->second.counts.find(producer); counts != chunk->second.counts.end()) {
        sum += counts->second;
      }
    }
    return sum;
  }

  // Verdicts wait, the latest per device, while the store is down: the next look tries again,
  // and the count goes on meanwhile (a verdict is not worth stalling it).
  void StoreVerdicts() {
    if (unstored_.empty()) return;
    std::vector<DeviceHealth> verdicts;
    verdicts.reserve(unstored_.size());
    for (const auto& [producer, verdict] : unstored_) verdicts.push_back(verdict);
    if (Status stored = store_->UpsertHealth(verdicts); !stored) {
      std::fprintf(stderr, "stream: %zu device verdict(s) wait for the store: %s\n", unstored_.size(),
                   stored.error().message().c_str());
      return;
    }
    unstored_.clear();
  }

  // Judges the devices counted in the window; each verdict that changed is published, and
  // logged unless it is a device merely becoming healthy or unknown (a million of those at
  // start would drown the log).
  void JudgeHealth() {
    const int64_t now = NowMicros();
    const std::vector<DeviceHealth> changed = tracker_->Update(now);
    stats_.faulty = stats_.suspect = 0;
    for (const auto& [producer, a] : tracker_->current()) {
      stats_.faulty += a.verdict == Verdict::kFaulty;
      stats_.suspect += a.verdict == Verdict::kSuspect;
    }
    for (const DeviceHealth& a : changed) {
      ++stats_.health_changes;
      if (a.verdict == Verdict::kFaulty || a.verdict == Verdict::kSuspect) {
        std::fprintf(stderr,
                     "stream: producer %d is %s: %.1f%% of its %lld labelled images in the window misclassified "
                     "(%.1f%%-%.1f%%), the fleet %.1f%%\n",
                     a.producer_id, VerdictName(a.verdict).data(), 100 * a.error_rate,
                     static_cast<long long>(a.labelled), 100 * a.low, 100 * a.high, 100 * a.fleet_rate);
      }
      // A verdict lost to a crash is judged again within a window.
      unpublished_[a.producer_id] = a;
      unstored_[a.producer_id] = a;
    }
    PublishVerdicts();
    StoreVerdicts();
    const auto counted = [this](int producer) { return CountedHere(producer); };
    if (device_series_) {
      device_series_->Choose(tracker_->current(), counted);
      device_series_->Publish(*endpoints_, tracker_->current());
    }
    if (dashboard_) dashboard_->SetDevices(tracker_->current(), counted);
    if (!changed.empty()) Report();
  }

  const StreamOptions& options_;
  const std::atomic<bool>& stop_;
  std::unique_ptr<store::Store> store_;
  const std::function<void(const StreamStats&)>& on_progress_;
  std::function<void()> beat_;
  std::unique_ptr<kafka::ExternalOffsetConsumer> consumer_;
  std::map<PartitionId, PartitionCounts> owned_;
  // Every partition's saved state as last loaded, and the sums of it: what the results
  // are written from. The producers and windows changed since they were last written.
  std::map<PartitionId, LoadedPartition> loaded_;
  std::map<int, ProducerCounts> totals_;
  std::map<WindowKey, ProducerCounts> window_totals_;
  std::set<int> changed_producers_;
  std::set<WindowKey> changed_windows_;
  bool rewrite_all_ = true;                              // the first write replaces the whole collection
  std::map<WindowKey, ProducerCounts> written_windows_;  // what this instance last wrote
  static constexpr std::chrono::milliseconds kIdleCheck{250};
  static constexpr std::chrono::seconds kWindowCheck{2};
  Clock::time_point next_idle_check_;
  Clock::time_point next_stored_check_;
  Clock::time_point next_window_check_;
  StreamStats stats_;
  std::optional<health::Tracker> tracker_;
  ops::Endpoints* endpoints_;
  std::optional<DeviceSeries> device_series_;  // with endpoints and verdicts
  std::shared_ptr<PageState> page_state_;
  std::optional<Dashboard> dashboard_;  // with endpoints
  DeadLetterView dead_letters_;
  std::optional<DeadLetterWatch> dead_letter_watch_;
  static constexpr std::chrono::seconds kPageEvery{1};
  std::unique_ptr<kafka::Producer> health_producer_;
  std::map<int, DeviceHealth> unpublished_;  // device -> its latest verdict not yet sent
  std::map<int, DeviceHealth> unstored_;     // device -> its latest verdict not yet stored
  Clock::time_point next_health_try_;
};

// Each counter of the service with the total it follows.
const std::vector<ops::TotalCounter<StreamStats>>& Counters() {
  static const std::vector<ops::TotalCounter<StreamStats>> counters{
      {"iotinfer_stream_consumed_total", "inference records read from Kafka",
       [](const StreamStats& s) { return s.consumed; }},
      {"iotinfer_stream_invalid_total", "values that are no inference record",
       [](const StreamStats& s) { return s.invalid; }},
      {"iotinfer_stream_late_total", "records older than every kept window",
       [](const StreamStats& s) { return s.late; }},
      {"iotinfer_stream_updates_total", "times the counts were saved and the results rewritten",
       [](const StreamStats& s) { return s.updates; }},
      {"iotinfer_stream_superseded_total", "saves refused: another instance had counted further",
       [](const StreamStats& s) { return s.superseded; }},
      {"iotinfer_stream_store_retries_total", "writes that found the store unavailable",
       [](const StreamStats& s) { return s.store_retries; }},
      {"iotinfer_stream_health_changes_total", "device verdicts that changed (docs/health.md)",
       [](const StreamStats& s) { return s.health_changes; }},
  };
  return counters;
}

std::vector<ops::MetricSpec> StreamMetrics() {
  using Kind = ops::MetricSpec::Kind;
  std::vector<ops::MetricSpec> specs = ops::WithCounters(
      Counters(), {
                      {Kind::kHistogram, "iotinfer_stream_update_seconds",
                       "one update: the states saved and results rewritten", ops::SecondsBuckets()},
                      {Kind::kGauge, "iotinfer_stream_lag", "records in the assigned partitions not read yet", {}},
                      {Kind::kGauge, "iotinfer_stream_partitions", "partitions assigned to this instance", {}},
                      {Kind::kGauge, "iotinfer_stream_devices_faulty", "devices judged faulty at the last look", {}},
                      {Kind::kGauge, "iotinfer_stream_devices_suspect", "devices judged suspect at the last look", {}},
                  });
  for (ops::MetricSpec& spec : DeviceSeries::Specs()) specs.push_back(std::move(spec));
  return specs;
}

// Publishes what changed since `last` to the endpoints.
void Publish(ops::Endpoints& endpoints, const StreamStats& s, StreamStats& last) {
  ops::AddGrowth(endpoints, Counters(), s, last);
  if (s.updates > last.updates) endpoints.Observe("iotinfer_stream_update_seconds", s.last_update_ms / 1000);
  endpoints.Set("iotinfer_stream_lag", static_cast<double>(s.lag));
  endpoints.Set("iotinfer_stream_partitions", s.partitions);
  endpoints.Set("iotinfer_stream_devices_faulty", s.faulty);
  endpoints.Set("iotinfer_stream_devices_suspect", s.suspect);
  ops::SetConsumerReadiness(endpoints, s.partitions, s.store_available);
  last = s;
}

}  // namespace

std::string FormatStats(const StreamStats& s) {
  return fmt::format(
      "consumed {}, invalid {}, late {}, updates {} (last {:.1f} ms), superseded {}, store retries {}, lag {}, "
      "partitions {}, devices faulty {}, suspect {}",
      s.consumed, s.invalid, s.late, s.updates, s.last_update_ms, s.superseded, s.store_retries, s.lag, s.partitions,
      s.faulty, s.suspect);
}

Result<StreamStats> RunStream(const StreamOptions& options, const std::atomic<bool>& stop,
                              const std::function<void(const StreamStats&)>& on_progress) {
  if (options.update_interval.count() < 0) return std::unexpected(Error::InvalidInput("update interval must be >= 0"));
  if (options.window.count() < 0) return std::unexpected(Error::InvalidInput("window must not be negative"));
  if (options.window_keep < 1) return std::unexpected(Error::InvalidInput("windows kept must be at least 1"));
  auto page_state = std::make_shared<PageState>();
  std::optional<ops::EndpointOptions> endpoint_options = options.endpoints;
  if (endpoint_options) {
    endpoint_options->pages = Dashboard::Pages([page_state] {
      std::lock_guard lock(page_state->mutex);
      return page_state->document;
    });
    endpoint_options->events_path = Dashboard::kEventsPath;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ops::Endpoints> endpoints,
                   ops::StartIfAsked("stream", endpoint_options, StreamMetrics()));
  StreamStats published;
  auto beat = [&] {
    if (endpoints) endpoints->Beat();
  };
  const std::function<void(const StreamStats&)> report = [&](const StreamStats& s) {
    beat();  // also called while a store outage is waited out: the loop is alive
    if (endpoints) Publish(*endpoints, s, published);
    if (on_progress) on_progress(s);
  };
  ASSIGN_OR_RETURN(std::unique_ptr<store::Store> store, store::Store::Open(options.store));
  Stream stream(options, stop, std::move(store), report, beat, endpoints.get(), page_state);
  TRY(stream.Run());
  return stream.stats();
}

}  // namespace iotinfer::stream
