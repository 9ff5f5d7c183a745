#include "analytics/stream.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "core/inference_record.h"
#include "kafka/external_offset_consumer.h"
#include "kafka/service_loop.h"
#include "store/retry.h"

namespace iotinfer::analytics {
namespace {

using Clock = std::chrono::steady_clock;
using kafka::PartitionId;
using store::ProducerCounts;
using WindowKey = std::pair<int64_t, int>;  // (window start in µs, producer_id)

// What one instance holds for one of its partitions: the saved state plus what it counted
// since.
struct PartitionCounts {
  int64_t next_offset = 0;
  std::map<int, ProducerCounts> counts;
  std::map<WindowKey, ProducerCounts> windows;
  bool dirty = false;
};

PartitionCounts FromState(const store::StreamState& state) {
  PartitionCounts p{.next_offset = state.next_offset};
  for (const ProducerCounts& c : state.counts) p.counts[c.producer_id] = c;
  for (const store::WindowCounts& w : state.windows) p.windows[{w.start_us, w.counts.producer_id}] = w.counts;
  return p;
}

class Stream {
 public:
  // `beat` is called on every turn of the main loop.
  Stream(const StreamOptions& options, const std::atomic<bool>& stop, std::unique_ptr<store::Store> store,
         const std::function<void(const StreamStats&)>& on_progress, std::function<void()> beat)
      : options_(options), stop_(stop), store_(std::move(store)), on_progress_(on_progress), beat_(std::move(beat)) {}
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
    ASSIGN_OR_RETURN(consumer_, kafka::ExternalOffsetConsumer::Create(
                                    consumer_options, [this](std::span<const PartitionId> ids) { return OnAssign(ids); },
                                    [this](std::span<const PartitionId> ids) { OnRevoke(ids); }));
    auto next_update = Clock::now() + options_.update_interval;
    auto next_log = Clock::now() + options_.log_every;
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
      for (const kafka::InputMessage& in : batch) Count(in);
      if (const int partitions = static_cast<int>(owned_.size()); partitions != stats_.partitions) {
        stats_.partitions = partitions;
        Report();
      }
      if (Clock::now() >= next_update) {
        TRY(Update());
        next_update = Clock::now() + options_.update_interval;
      }
      if (options_.log_every.count() && Clock::now() >= next_log) {
        stats_.lag = consumer_->lag();
        std::fprintf(stderr, "stream: %s\n", FormatStats(stats_).c_str());
        next_log = Clock::now() + options_.log_every;
      }
    }
    // What was counted since the last update is saved before the partitions are given up.
    TRY(Update());
    stats_.lag = consumer_->lag();
    consumer_->Close();
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
    }
    // Best effort: the new owner counts again from the last saved state if this fails.
    if (!states.empty()) (void)store_->SaveStreamStates(states);
  }

  void Count(const kafka::InputMessage& in) {
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
    ProducerCounts& c = p.counts[record->producer_id];
    c.producer_id = record->producer_id;
    c.Add(record->image_prediction, record->actual_value);
    if (options_.window.count() > 0) CountWindow(p, *record);
  }

  void CountWindow(PartitionCounts& p, const InferenceRecord& r) {
    const int64_t size = std::chrono::duration_cast<std::chrono::microseconds>(options_.window).count();
    const int64_t event = r.produced_at_us.value_or(r.inferred_at_us);
    const int64_t start = event / size * size - (event % size < 0 ? size : 0);
    const int64_t newest = p.windows.empty() ? start : std::max(start, p.windows.rbegin()->first.first);
    const int64_t oldest_kept = newest - (options_.window_keep - 1) * size;
    if (start < oldest_kept) {
      stats_.late++;
      return;
    }
    ProducerCounts& c = p.windows[{start, r.producer_id}];
    c.producer_id = r.producer_id;
    c.Add(r.image_prediction, r.actual_value);
    p.windows.erase(p.windows.begin(), p.windows.lower_bound({oldest_kept, 0}));
  }

  store::StreamState ToState(const PartitionId& id, const PartitionCounts& p) const {
    store::StreamState state{.group = options_.group,
                             .topic = id.topic,
                             .partition = id.partition,
                             .next_offset = p.next_offset,
                             .updated_at_us = store::NowMillisAsMicros()};
    for (const auto& [producer, c] : p.counts) state.counts.push_back(c);
    for (const auto& [key, c] : p.windows) state.windows.push_back({key.first, c});
    return state;
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
        owned_[id].dirty = false;
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
  // changed, `check_stored` also looks at the stored totals, and now and then at the stored
  // windows, and puts back what this instance wrote where they are behind it. False when
  // nothing needed writing.
  Result<bool> WriteResults(bool check_stored) {
    ASSIGN_OR_RETURN(std::vector<store::StreamState> states, store_->LoadStreamState(options_.group));
    // Nothing counted yet by this group: the results another writer (batch) left stay.
    if (states.empty()) return false;
    // Saved offsets only grow, and the counts are a function of them: the offsets identify
    // the states.
    std::map<PartitionId, int64_t> version;
    for (const store::StreamState& s : states) version[{s.topic, s.partition}] = s.next_offset;
    if (version == written_version_) {
      if (!check_stored) return false;
      ASSIGN_OR_RETURN(const bool behind, StoredResultsBehind());
      if (behind) {
        std::fprintf(stderr,
                     "stream: incorrect_inference_results was behind the saved counts (a late write of an "
                     "instance that has left, or a deletion); rewriting it\n");
        written_windows_.clear();  // that write may have set back windows as well
      } else {
        // A late write can also set back windows alone: its totals landed before ours, its
        // windows after. Reading every window document is dearer, so less often: every 2 s,
        // or 20 times as long as the last read took (at most 5% of the time, however many
        // producers and windows are kept).
        if (written_windows_.empty() || Clock::now() < next_window_check_) return false;
        const auto read_start = Clock::now();
        ASSIGN_OR_RETURN(const size_t forgotten, ForgetWindowsStoredBehind());
        next_window_check_ = Clock::now() + std::max<Clock::duration>(kWindowCheck, 20 * (Clock::now() - read_start));
        if (forgotten == 0) return false;
        std::fprintf(stderr,
                     "stream: %zu window result(s) were behind the saved counts (a late write of an instance "
                     "that has left, or a deletion); rewriting them\n",
                     forgotten);
      }
    }
    std::map<int, ProducerCounts> totals;
    std::map<WindowKey, ProducerCounts> windows;
    std::optional<int64_t> window_floor;
    const int64_t size = std::chrono::duration_cast<std::chrono::microseconds>(options_.window).count();
    for (const store::StreamState& s : states) {
      for (const ProducerCounts& c : s.counts) {
        ProducerCounts& t = totals[c.producer_id];
        t.producer_id = c.producer_id;
        t += c;
      }
      if (s.windows.empty()) continue;
      // Windows older than a partition's kept range may have been dropped from its state:
      // only windows every partition still holds are summed and written.
      const int64_t floor = s.windows.back().start_us - (options_.window_keep - 1) * size;
      window_floor = std::max(window_floor.value_or(floor), floor);
      for (const store::WindowCounts& w : s.windows) {
        ProducerCounts& t = windows[{w.start_us, w.counts.producer_id}];
        t.producer_id = w.counts.producer_id;
        t += w.counts;
      }
    }
    const int64_t now = store::NowMillisAsMicros();
    std::vector<store::ProducerResult> results;
    for (const auto& [producer, c] : totals) results.push_back(store::ToResult(c, now));
    TRY(store_->ReplaceResults(results));
    written_totals_ = std::move(totals);
    std::vector<store::WindowResult> changed;
    for (const auto& [key, c] : windows) {
      if (key.first < *window_floor) continue;
      auto it = written_windows_.find(key);
      if (it != written_windows_.end() && it->second == c) continue;
      changed.push_back({key.first, key.first + size, store::ToResult(c, now)});
    }
    if (!changed.empty()) {
      TRY(store_->UpsertWindowResults(changed));
      for (const store::WindowResult& w : changed) {
        written_windows_[{w.window_start_us, w.result.producer_id}] = windows[{w.window_start_us, w.result.producer_id}];
      }
      written_windows_.erase(written_windows_.begin(), written_windows_.lower_bound({*window_floor, 0}));
    }
    written_version_ = std::move(version);
    return true;
  }

  static bool SameCounts(const store::ProducerResult& stored, const ProducerCounts& written) {
    return stored.total == written.total && stored.incorrect_count == written.incorrect_count &&
           stored.unlabelled == written.unlabelled;
  }

  // Whether the stored totals are an earlier stage of what this instance last wrote: every
  // producer's total at most its own, and something differs. Counts only grow with the
  // offsets, so that is a stale write of this group. Results that are ahead or unrelated
  // (another group or a batch run writing the same collection) are not this instance's to
  // overwrite while nothing changed.
  Result<bool> StoredResultsBehind() {
    ASSIGN_OR_RETURN(const std::vector<store::ProducerResult> stored, store_->ReadResults());
    bool differs = stored.size() != written_totals_.size();
    for (const store::ProducerResult& r : stored) {
      auto it = written_totals_.find(r.producer_id);
      if (it == written_totals_.end() || r.total > it->second.total) return false;
      differs |= !SameCounts(r, it->second);
    }
    return differs;
  }

  // The windows this instance wrote whose stored documents are an earlier stage of what it
  // wrote (at most its counts, and different), or are missing: they are forgotten as written,
  // so that the next write puts them back. Windows that are ahead, or that it never wrote,
  // are another writer's. Returns how many.
  Result<size_t> ForgetWindowsStoredBehind() {
    ASSIGN_OR_RETURN(const std::vector<store::WindowResult> stored, store_->ReadWindowResults());
    std::set<WindowKey> present;
    std::vector<WindowKey> behind;
    for (const store::WindowResult& w : stored) {
      const WindowKey key{w.window_start_us, w.result.producer_id};
      present.insert(key);
      auto it = written_windows_.find(key);
      if (it == written_windows_.end()) continue;
      if (w.result.total <= it->second.total && !SameCounts(w.result, it->second)) behind.push_back(key);
    }
    for (const auto& [key, counts] : written_windows_) {
      if (!present.contains(key)) behind.push_back(key);
    }
    for (const WindowKey& key : behind) written_windows_.erase(key);
    return behind.size();
  }

  void Report() {
    if (consumer_) stats_.lag = consumer_->lag();
    on_progress_(stats_);
  }

  const StreamOptions& options_;
  const std::atomic<bool>& stop_;
  std::unique_ptr<store::Store> store_;
  const std::function<void(const StreamStats&)>& on_progress_;
  std::function<void()> beat_;
  std::unique_ptr<kafka::ExternalOffsetConsumer> consumer_;
  std::map<PartitionId, PartitionCounts> owned_;
  std::map<WindowKey, ProducerCounts> written_windows_;  // what this instance last wrote
  std::map<PartitionId, int64_t> written_version_;       // the states it last wrote them from
  std::map<int, ProducerCounts> written_totals_;         // and the totals it wrote
  static constexpr std::chrono::milliseconds kIdleCheck{250};
  static constexpr std::chrono::seconds kWindowCheck{2};
  Clock::time_point next_idle_check_;
  Clock::time_point next_window_check_;
  StreamStats stats_;
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
  };
  return counters;
}

std::vector<ops::MetricSpec> StreamMetrics() {
  using Kind = ops::MetricSpec::Kind;
  return ops::WithCounters(
      Counters(), {
                      {Kind::kHistogram, "iotinfer_stream_update_seconds",
                       "one update: the states saved and results rewritten", ops::SecondsBuckets()},
                      {Kind::kGauge, "iotinfer_stream_lag", "records in the assigned partitions not read yet", {}},
                      {Kind::kGauge, "iotinfer_stream_partitions", "partitions assigned to this instance", {}},
                  });
}

// Publishes what changed since `last` to the endpoints.
void Publish(ops::Endpoints& endpoints, const StreamStats& s, StreamStats& last) {
  ops::AddGrowth(endpoints, Counters(), s, last);
  if (s.updates > last.updates) endpoints.Observe("iotinfer_stream_update_seconds", s.last_update_ms / 1000);
  endpoints.Set("iotinfer_stream_lag", static_cast<double>(s.lag));
  endpoints.Set("iotinfer_stream_partitions", s.partitions);
  ops::SetConsumerReadiness(endpoints, s.partitions, s.store_available);
  last = s;
}

}  // namespace

std::string FormatStats(const StreamStats& s) {
  return fmt::format(
      "consumed {}, invalid {}, late {}, updates {} (last {:.1f} ms), superseded {}, store retries {}, lag {}, "
      "partitions {}",
      s.consumed, s.invalid, s.late, s.updates, s.last_update_ms, s.superseded, s.store_retries, s.lag, s.partitions);
}

Result<StreamStats> RunStream(const StreamOptions& options, const std::atomic<bool>& stop,
                              const std::function<void(const StreamStats&)>& on_progress) {
  if (options.update_interval.count() < 0) return std::unexpected(Error::InvalidInput("update interval must be >= 0"));
  if (options.window.count() < 0) return std::unexpected(Error::InvalidInput("window must not be negative"));
  if (options.window_keep < 1) return std::unexpected(Error::InvalidInput("windows kept must be at least 1"));
  ASSIGN_OR_RETURN(std::unique_ptr<ops::Endpoints> endpoints,
                   ops::StartIfAsked("stream", options.endpoints, StreamMetrics()));
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
  Stream stream(options, stop, std::move(store), report, beat);
  TRY(stream.Run());
  return stream.stats();
}

}  // namespace iotinfer::analytics
