#include "sink/sink.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <thread>
#include <vector>

#include "core/inference_record.h"
#include "kafka/service_loop.h"
#include "kafka/transactional_pipe.h"

namespace iotinfer::sink {
namespace {

using Clock = std::chrono::steady_clock;

// Sleeps `duration` in short steps; false when `stop` became true meanwhile.
bool SleepUnlessStopped(std::chrono::milliseconds duration, const std::atomic<bool>& stop) {
  const auto until = Clock::now() + duration;
  while (Clock::now() < until) {
    if (stop.load()) return false;
    std::this_thread::sleep_for(std::min<Clock::duration>(std::chrono::milliseconds(50), until - Clock::now()));
  }
  return !stop.load();
}

bool Retriable(const Error& error) {
  return error.code() == Error::Code::kUnavailable || error.code() == Error::Code::kIo;
}

// The store and what the writes of one run have in common.
class Writer {
 public:
  Writer(store::Store& store, const SinkOptions& options, const std::atomic<bool>& stop, SinkStats& stats)
      : store_(store), options_(options), stop_(stop), stats_(stats) {}

  // Upserts `records`, waiting out store outages with backoff. Unavailable when a stop was
  // requested before the store came back; other errors are the store's, not retried.
  Result<store::UpsertStats> Write(std::span<const InferenceRecord> records) {
    auto delay = options_.retry_initial;
    std::optional<Clock::time_point> outage_since;
    for (;;) {
      const auto started = Clock::now();
      Result<store::UpsertStats> written = store_.Upsert(records);
      if (written) {
        stats_.last_write_ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
        if (outage_since) {
          std::fprintf(stderr, "sink: store is back after %.1f s; wrote the %zu held records\n",
                       std::chrono::duration<double>(Clock::now() - *outage_since).count(), records.size());
        }
        return written;
      }
      if (!Retriable(written.error())) return written;
      if (!outage_since) outage_since = Clock::now();
      stats_.store_retries++;
      std::fprintf(stderr, "sink: store unavailable (%s); holding %zu records, not consuming; retry in %.1f s\n",
                   written.error().message().c_str(), records.size(), std::chrono::duration<double>(delay).count());
      if (!SleepUnlessStopped(delay, stop_)) {
        return std::unexpected(Error::Unavailable("stopped while the store was unavailable"));
      }
      delay = std::min(delay * 2, options_.retry_max);
    }
  }

 private:
  store::Store& store_;
  const SinkOptions& options_;
  const std::atomic<bool>& stop_;
  SinkStats& stats_;
};

}  // namespace

std::string FormatStats(const SinkStats& s) {
  return fmt::format(
      "consumed {} inserted {} replaced {} dead-lettered {} batches {} (last {}, written in {:.1f} ms) "
      "store retries {} aborted {} lag {} partitions {}",
      s.consumed, s.inserted, s.replaced, s.dead_lettered, s.batches, s.last_batch, s.last_write_ms, s.store_retries,
      s.aborted, s.lag, s.partitions);
}

Result<SinkStats> RunSink(const SinkOptions& options, const std::atomic<bool>& stop,
                          const std::function<void(const SinkStats&)>& on_progress) {
  ASSIGN_OR_RETURN(std::unique_ptr<store::Store> store, store::Store::Open(options.store));
  TRY(kafka::EnsureTopics(options.kafka,
                          {{options.input_topic, options.partitions}, {options.dlq_topic, options.partitions}}));
  ASSIGN_OR_RETURN(auto pipe, kafka::TransactionalPipe::Create(
                                  {.kafka = options.kafka,
                                   .group = options.group,
                                   .input_topics = {options.input_topic},
                                   .output_topics = {options.dlq_topic},
                                   .transactional_id = kafka::TransactionalId(options.group, options.instance_id),
                                   .max_batch = options.batch_max,
                                   .max_wait = options.flush_interval}));
  SinkStats stats;
  kafka::ServiceLoop<SinkStats> loop(*pipe, stats, "sink", options.log_every, on_progress);
  Writer writer(*store, options, stop, stats);
  std::vector<InferenceRecord> records;
  std::vector<const kafka::InputMessage*> sources;  // where records[i] came from
  std::vector<kafka::OutputMessage> dead;
  while (!stop.load()) {
    ASSIGN_OR_RETURN(std::vector<kafka::InputMessage> batch, loop.Poll());
    if (batch.empty()) continue;

    records.clear();
    sources.clear();
    dead.clear();
    for (const kafka::InputMessage& in : batch) {
      Result<InferenceRecord> record = DecodeInferenceRecord(in.message.value);
      if (record) {
        records.push_back(std::move(*record));
        sources.push_back(&in);
      } else {
        dead.push_back(kafka::DeadLetter(options.dlq_topic, in, record.error().message()));
      }
    }

    Result<store::UpsertStats> written = writer.Write(records);
    if (!written && written.error().code() == Error::Code::kInvalidInput) {
      // The store refused something in the batch: write record by record, so that only the
      // refused ones are dead-lettered, with the store's reason.
      written = store::UpsertStats{};
      for (size_t i = 0; written && i < records.size(); ++i) {
        Result<store::UpsertStats> one = writer.Write({&records[i], 1});
        if (one) {
          written->inserted += one->inserted;
          written->replaced += one->replaced;
        } else if (one.error().code() == Error::Code::kInvalidInput) {
          dead.push_back(kafka::DeadLetter(options.dlq_topic, *sources[i], "store refused: " + one.error().message()));
        } else {
          written = std::unexpected(one.error());
        }
      }
    }
    if (!written) {
      // Stopped during an outage: nothing committed, so the batch is read again on restart.
      if (written.error().code() == Error::Code::kUnavailable && stop.load()) break;
      return std::unexpected(written.error());
    }

    ASSIGN_OR_RETURN(bool committed, loop.Commit(batch, dead));
    // Aborted and rewound: the batch comes again and its upserts rewrite the same documents.
    if (!committed) continue;
    stats.inserted += written->inserted;
    stats.replaced += written->replaced;
    stats.dead_lettered += static_cast<int64_t>(dead.size());
    loop.Committed(batch.size());
  }
  loop.Finish();
  return stats;
}

}  // namespace iotinfer::sink
