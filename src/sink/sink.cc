#include "sink/sink.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <thread>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "core/inference_record.h"
#include "kafka/service_loop.h"
#include "kafka/transactional_pipe.h"
#include "store/retry.h"

namespace iotinfer::sink {
namespace {

using Clock = std::chrono::steady_clock;

// The store and what the writes of one run have in common.
class Writer {
 public:
  Writer(store::Store& store, const SinkOptions& options, const std::atomic<bool>& stop, SinkStats& stats,
         std::function<void(const SinkStats&)> on_retry)
      : store_(store), options_(options), stop_(stop), stats_(stats), on_retry_(std::move(on_retry)) {}

  // Writes `records` (first write wins), waiting out store outages with backoff. Unavailable
  // when a stop was requested before the store came back; other errors are the store's, not
  // retried.
  Result<std::vector<store::Insertion>> Write(std::span<const InferenceRecord> records,
                                              std::span<const std::string> sources) {
    std::optional<Clock::time_point> outage_since;
    Clock::time_point started;
    Result<std::vector<store::Insertion>> written = store::WriteWithRetries(
        [&] {
          started = Clock::now();
          return store_.InsertFirst(records, sources);
        },
        {.initial = options_.retry_initial, .max = options_.retry_max}, stop_,
        [&](const Error& error, std::chrono::milliseconds wait) {
          if (!outage_since) {
            outage_since = Clock::now();
            stats_.store_available = false;
          }
          stats_.store_retries++;
          on_retry_(stats_);
          std::fprintf(stderr, "sink: store unavailable (%s); holding %zu records, not consuming; retry in %.1f s\n",
                       error.message().c_str(), records.size(), std::chrono::duration<double>(wait).count());
        });
    if (written) {
      stats_.last_write_ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
      stats_.store_available = true;
      if (outage_since) {
        std::fprintf(stderr, "sink: store is back after %.1f s; wrote the %zu held records\n",
                     std::chrono::duration<double>(Clock::now() - *outage_since).count(), records.size());
      }
    }
    return written;
  }

 private:
  store::Store& store_;
  const SinkOptions& options_;
  const std::atomic<bool>& stop_;
  SinkStats& stats_;
  std::function<void(const SinkStats&)> on_retry_;
};

// Each counter of the service with the total it follows.
const std::vector<ops::TotalCounter<SinkStats>>& Counters() {
  static const std::vector<ops::TotalCounter<SinkStats>> counters{
      {"iotinfer_sink_consumed_total", "inference records read from Kafka",
       [](const SinkStats& s) { return s.consumed; }},
      {"iotinfer_sink_stored_total", "records that became documents (new ids)",
       [](const SinkStats& s) { return s.inserted; }},
      {"iotinfer_sink_replayed_total", "records found stored from their own offset (a batch read again)",
       [](const SinkStats& s) { return s.replayed; }},
      {"iotinfer_sink_duplicates_total", "records whose id was stored from elsewhere with the same device fields",
       [](const SinkStats& s) { return s.duplicates; }},
      {"iotinfer_sink_conflicts_total", "records whose id was stored with other device fields (dead-lettered)",
       [](const SinkStats& s) { return s.conflicts; }},
      {"iotinfer_sink_store_retries_total", "store writes that failed because it was unavailable",
       [](const SinkStats& s) { return s.store_retries; }},
      {"iotinfer_sink_aborted_total", "Kafka transactions aborted (their batch read again)",
       [](const SinkStats& s) { return s.aborted; }},
      {"iotinfer_sink_isolated_total",
       "records that failed every batch holding them, found by splitting and dead-lettered alone",
       [](const SinkStats& s) { return s.isolated; }},
  };
  return counters;
}

std::vector<ops::MetricSpec> SinkMetrics() {
  using Kind = ops::MetricSpec::Kind;
  return ops::WithCounters(
      Counters(), {
                      {Kind::kHistogram, "iotinfer_sink_batch_size", "records per committed batch", ops::SizeBuckets()},
                      {Kind::kHistogram, "iotinfer_sink_store_write_seconds", "time of one batch's store write",
                       ops::SecondsBuckets()},
                      {Kind::kGauge, "iotinfer_sink_lag", "records in the assigned partitions not read yet", {}},
                      {Kind::kGauge, "iotinfer_sink_partitions", "partitions assigned to this instance", {}},
                      {Kind::kGauge, "iotinfer_sink_stuck_seconds", "how long commits have failed in a row", {}},
                      {Kind::kCounter,
                       "iotinfer_sink_dead_lettered_total",
                       "records sent to the dead-letter topic, by reason",
                       {},
                       {"reason"}},
                  });
}

// Publishes what changed since `last` to the endpoints.
void Publish(ops::Endpoints& endpoints, const SinkStats& s, SinkStats& last) {
  ops::AddGrowth(endpoints, Counters(), s, last);
  ops::AddGrowth(endpoints, "iotinfer_sink_dead_lettered_total", kafka::ReasonCodes(), s.dead_lettered_by_reason,
                 last.dead_lettered_by_reason);
  if (s.batches > last.batches) {
    endpoints.Observe("iotinfer_sink_batch_size", s.last_batch);
    endpoints.Observe("iotinfer_sink_store_write_seconds", s.last_write_ms / 1000);
  }
  endpoints.Set("iotinfer_sink_lag", static_cast<double>(s.lag));
  endpoints.Set("iotinfer_sink_partitions", s.partitions);
  endpoints.Set("iotinfer_sink_stuck_seconds", s.stuck_seconds);
  ops::SetConsumerReadiness(endpoints, s.partitions, s.store_available, s.stuck);
  last = s;
}

SinkTimes TimesOf(const kafka::InputMessage& in, int64_t write_sent_at, int64_t stored_at) {
  return {.appended_at_us = in.appended_at_us(),
          .polled_at_us = in.received_at_us,
          .write_sent_at_us = write_sent_at,
          .stored_at_us = stored_at};
}

// What a stored batch (or several, once stored ahead of their commit) comes to: its messages,
// its outputs (dead letters, accepted records) and what its commit adds to the counters.
struct Stored {
  std::vector<kafka::InputMessage> batch;
  std::vector<kafka::OutputMessage> out;
  int64_t inserted = 0, replayed = 0, duplicates = 0, conflicts = 0;
  kafka::ReasonCounts dead{};

  void Append(Stored&& more) {
    std::ranges::move(more.batch, std::back_inserter(batch));
    std::ranges::move(more.out, std::back_inserter(out));
    inserted += more.inserted;
    replayed += more.replayed;
    duplicates += more.duplicates;
    conflicts += more.conflicts;
    for (size_t r = 0; r < dead.size(); ++r) dead[r] += more.dead[r];
  }

  void AddTo(SinkStats& stats) const {
    stats.inserted += inserted;
    stats.replayed += replayed;
    stats.duplicates += duplicates;
    stats.conflicts += conflicts;
    kafka::CountDeadLetters(stats, dead);
  }
};

// Validates `batch` and writes its valid records to the store, first write wins: what its
// commit is to hold (Stored::batch left empty). An error when the store is unavailable (a
// stop requested during the outage) or fails for the whole batch.
Result<Stored> StoreBatch(const std::vector<kafka::InputMessage>& batch, const SinkOptions& options,
                          size_t dlq_max_bytes, Writer& writer) {
  Stored stored;
  std::vector<InferenceRecord> records;
  std::vector<std::string> offsets;                 // where records[i] came from, as the store keeps it
  std::vector<const kafka::InputMessage*> sources;  // and the message itself
  auto dead_letter = [&](const kafka::InputMessage& in, kafka::DeadLetterReason reason, const std::string& error) {
    stored.out.push_back(kafka::DeadLetter(options.dlq_topic, in, reason, error, dlq_max_bytes));
    stored.dead[kafka::ReasonIndex(reason)]++;
  };
  for (const kafka::InputMessage& in : batch) {
    if (!in.unreadable.empty()) {
      dead_letter(in, kafka::DeadLetterReason::kUnreadableRecord, in.unreadable);
      continue;
    }
    Result<InferenceRecord> record = DecodeInferenceRecord(in.message.value);
    if (record) {
      records.push_back(std::move(*record));
      offsets.push_back(fmt::format("{}/{}/{}", in.topic, in.partition, in.offset));
      sources.push_back(&in);
    } else {
      dead_letter(in, kafka::DeadLetterReason::kInvalidRecord, record.error().message());
    }
  }

  // Per record: what the store did, or nullopt where it refused the record.
  std::vector<std::optional<store::Insertion>> outcomes(records.size());
  const int64_t write_sent_at = NowMicros();
  Result<std::vector<store::Insertion>> written = writer.Write(records, offsets);
  Status status = Ok();
  if (written) {
    std::ranges::copy(*written, outcomes.begin());
  } else if (written.error().code() == Error::Code::kUnavailable) {
    status = std::unexpected(written.error());
  } else {
    // The store refused something in the batch: write record by record, so that only the
    // refused ones are dead-lettered, with the store's reason. A refusal the store calls
    // invalid is the record's; another one is only when other records of the batch were
    // written, or it would dead-letter every record for a fault of the store.
    std::vector<std::pair<size_t, Error>> refused;
    for (size_t i = 0; status && i < records.size(); ++i) {
      Result<std::vector<store::Insertion>> one = writer.Write({&records[i], 1}, {&offsets[i], 1});
      if (one) {
        outcomes[i] = one->at(0);
      } else if (one.error().code() == Error::Code::kUnavailable) {
        status = std::unexpected(one.error());
      } else {
        refused.emplace_back(i, one.error());
      }
    }
    const bool some_written = std::ranges::any_of(outcomes, [](const auto& o) { return o.has_value(); });
    for (const auto& [i, error] : refused) {
      if (!status) break;
      if (error.code() != Error::Code::kInvalidInput && !some_written) {
        status = std::unexpected(error);
        break;
      }
      dead_letter(*sources[i], kafka::DeadLetterReason::kStoreRefused, "store refused: " + error.message());
    }
  }
  TRY(status);

  const int64_t stored_at = NowMicros();
  for (size_t i = 0; i < records.size(); ++i) {
    if (!outcomes[i]) continue;
    switch (outcomes[i]->kind) {
      case store::Insertion::Kind::kInserted:
      case store::Insertion::Kind::kReplayed:
        (outcomes[i]->kind == store::Insertion::Kind::kInserted ? stored.inserted : stored.replayed)++;
        if (!options.accepted_topic.empty()) {
          WireMessage accepted = sources[i]->message;
          accepted.value = WithSinkTimes(accepted.value, TimesOf(*sources[i], write_sent_at, stored_at));
          stored.out.push_back({options.accepted_topic, std::move(accepted)});
        }
        break;
      case store::Insertion::Kind::kDuplicate:
        stored.duplicates++;
        break;
      case store::Insertion::Kind::kConflict:
        stored.conflicts++;
        dead_letter(
            *sources[i], kafka::DeadLetterReason::kIdConflict,
            fmt::format("id '{}' is stored already, from {}, with other device fields (producer_id, actual_value, "
                        "produced_at): the first record of an id wins",
                        records[i].id,
                        outcomes[i]->stored_source.empty() ? "an unknown source" : outcomes[i]->stored_source));
        break;
    }
  }
  return stored;
}

}  // namespace

std::string FormatStats(const SinkStats& s) {
  return fmt::format(
      "consumed {} inserted {} replayed {} duplicates {} conflicts {} dead-lettered {} batches {} (last {}, "
      "written in {:.1f} ms) store retries {} aborted {} isolated {} lag {} partitions {}",
      s.consumed, s.inserted, s.replayed, s.duplicates, s.conflicts, s.dead_lettered, s.batches, s.last_batch,
      s.last_write_ms, s.store_retries, s.aborted, s.isolated, s.lag, s.partitions);
}

Result<SinkStats> RunSink(const SinkOptions& options, const std::atomic<bool>& stop,
                          const std::function<void(const SinkStats&)>& on_progress) {
  ASSIGN_OR_RETURN(std::unique_ptr<ops::Endpoints> endpoints,
                   ops::StartIfAsked("sink", options.endpoints, SinkMetrics()));
  SinkStats published;
  auto report = [&](const SinkStats& s) {
    if (endpoints) {
      endpoints->Beat();  // also called while a store outage is waited out: the loop is alive
      Publish(*endpoints, s, published);
    }
    if (on_progress) on_progress(s);
  };
  ASSIGN_OR_RETURN(std::unique_ptr<store::Store> store, store::Store::Open(options.store));
  std::vector<std::string> outputs{options.dlq_topic};
  if (!options.accepted_topic.empty()) outputs.push_back(options.accepted_topic);
  std::vector<kafka::TopicSpec> topics{{options.input_topic, options.partitions}};
  for (const std::string& topic : outputs) topics.push_back({topic, options.partitions});
  TRY(kafka::EnsureTopics(options.kafka, topics));
  const std::string log_name = kafka::ServiceLogName("sink", options.instance_id);
  ASSIGN_OR_RETURN(auto pipe, kafka::TransactionalPipe::Create(
                                  {.kafka = options.kafka,
                                   .group = options.group,
                                   .input_topics = {options.input_topic},
                                   .output_topics = outputs,
                                   .transactional_id = kafka::TransactionalId(options.group, options.instance_id),
                                   .max_batch = options.batch_max,
                                   .max_batch_bytes = options.batch_max_bytes,
                                   .max_wait = options.flush_interval,
                                   .log = kafka::StderrLog(log_name)}));
  const size_t dlq_max_bytes = pipe->max_message_bytes(options.dlq_topic);
  SinkStats stats;
  kafka::ServiceLoop<SinkStats> loop(
      *pipe, stats, {.name = log_name, .log_every = options.log_every, .dlq_topic = options.dlq_topic}, stop, report);
  Writer writer(*store, options, stop, stats, report);
  // Batches are stored while the commit of those before them is in flight: a record that
  // arrives during a commit does not wait for it to be stored (docs/latency.md). What was
  // stored meanwhile, within one batch's limits in all, is committed once that commit is done;
  // a commit that fails drops it too, to be read again (first write wins: its records find
  // themselves stored).
  Stored stored;      // stored, to be committed next
  Stored committing;  // the counters of the commit in flight (the loop holds its batch)
  auto start = [&]() -> Status {
    committing = std::exchange(stored, {});
    return loop.StartCommit(std::move(committing.batch), std::move(committing.out));
  };
  auto finish = [&]() -> Status {
    ASSIGN_OR_RETURN(kafka::Outcome outcome, loop.FinishCommit(stored.batch));
    if (outcome != kafka::Outcome::kCommitted) {
      stored = {};  // read again; an isolated message the loop has counted
      return Ok();
    }
    committing.AddTo(stats);
    loop.Committed(loop.committing_size());
    return Ok();
  };
  // When the next commit may start (SinkOptions::commit_interval).
  std::chrono::steady_clock::time_point next_commit{};
  while (!stop.load()) {
    if (endpoints) endpoints->Beat();
    // What waits for the next commit is committed on time even when nothing more comes.
    std::chrono::milliseconds idle{200};
    if (!stored.batch.empty() && !loop.commit_in_flight()) {
      idle = std::clamp(std::chrono::ceil<std::chrono::milliseconds>(next_commit - std::chrono::steady_clock::now()),
                        std::chrono::milliseconds(0), idle);
    }
    ASSIGN_OR_RETURN(std::vector<kafka::InputMessage> batch, loop.Poll(stored.batch, idle));
    if (!batch.empty()) {
      Result<Stored> done = StoreBatch(batch, options, dlq_max_bytes, writer);
      if (!done) {
        // Stopped during an outage: this batch is read again on restart.
        if (done.error().code() == Error::Code::kUnavailable && stop.load()) break;
        if (loop.commit_in_flight()) TRY(finish());
        return std::unexpected(done.error());
      }
      done->batch = std::move(batch);
      stored.Append(std::move(*done));
    }
    if (loop.commit_in_flight()) {
      // Stored ahead within one batch's limits (--batch-max, --batch-max-bytes): memory stays
      // within two batches however long a commit takes (unbounded, merged batches held a
      // minute-long outage's backlog twice over: 481 MiB against 384), and a record that comes
      // while a small batch waits is still stored at once (waiting for the commit instead gave
      // a p99 at 1,000 images/s of 45-49 ms, against 38-44: docs/bench-log.md).
      if (!loop.commit_finished() && !loop.Fills(stored.batch)) continue;
      TRY(finish());
    }
    if (stored.batch.empty()) continue;
    if (std::chrono::steady_clock::now() < next_commit && !loop.Fills(stored.batch) && !loop.splitting()) continue;
    next_commit = std::chrono::steady_clock::now() + options.commit_interval;
    TRY(start());
    if (loop.splitting()) TRY(finish());  // one batch at a time while a failing one is split
  }
  if (loop.commit_in_flight()) TRY(finish());
  // Stored when the stop came: committed now, rather than read again after a restart.
  if (!stored.batch.empty()) {
    TRY(start());
    TRY(finish());
  }
  loop.Finish();
  return stats;
}

Status RunCommand(const SinkOptions& options, const std::atomic<bool>& stop) {
  const std::string name = kafka::ServiceLogName("sink", options.instance_id);
  std::fprintf(stderr, "%s: %s, group %s, %s -> %s database %s (dead letters: %s)\n", name.c_str(),
               options.kafka.Describe().c_str(), options.group.c_str(), options.input_topic.c_str(),
               store::RedactUri(options.store.uri).c_str(), options.store.database.c_str(), options.dlq_topic.c_str());
  ASSIGN_OR_RETURN(const SinkStats stats, RunSink(options, stop));
  std::fprintf(stderr, "%s: stopped; %s\n", name.c_str(), FormatStats(stats).c_str());
  return Ok();
}

}  // namespace iotinfer::sink
