#include "sink/sink.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <thread>
#include <vector>

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
         std::function<void(const SinkStats&)> on_outage)
      : store_(store), options_(options), stop_(stop), stats_(stats), on_outage_(std::move(on_outage)) {}

  // Upserts `records`, waiting out store outages with backoff. Unavailable when a stop was
  // requested before the store came back; other errors are the store's, not retried.
  Result<store::UpsertStats> Write(std::span<const InferenceRecord> records) {
    std::optional<Clock::time_point> outage_since;
    Clock::time_point started;
    Result<store::UpsertStats> written = store::WriteWithRetries(
        [&] {
          started = Clock::now();
          return store_.Upsert(records);
        },
        {.initial = options_.retry_initial, .max = options_.retry_max}, stop_,
        [&](const Error& error, std::chrono::milliseconds wait) {
          if (!outage_since) {
            outage_since = Clock::now();
            stats_.store_available = false;
            on_outage_(stats_);
          }
          stats_.store_retries++;
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
  std::function<void(const SinkStats&)> on_outage_;
};

// Each counter of the service with the total it follows.
const std::vector<ops::TotalCounter<SinkStats>>& Counters() {
  static const std::vector<ops::TotalCounter<SinkStats>> counters{
      {"iotinfer_sink_consumed_total", "inference records read from Kafka",
       [](const SinkStats& s) { return s.consumed; }},
      {"iotinfer_sink_stored_total", "records written to the store (inserted or replaced)",
       [](const SinkStats& s) { return s.inserted + s.replaced; }},
      {"iotinfer_sink_dead_lettered_total", "invalid records sent to the dead-letter topic",
       [](const SinkStats& s) { return s.dead_lettered; }},
      {"iotinfer_sink_store_retries_total", "store writes that failed because it was unavailable",
       [](const SinkStats& s) { return s.store_retries; }},
      {"iotinfer_sink_aborted_total", "Kafka transactions aborted (their batch read again)",
       [](const SinkStats& s) { return s.aborted; }},
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
                  });
}

// Publishes what changed since `last` to the endpoints.
void Publish(ops::Endpoints& endpoints, const SinkStats& s, SinkStats& last) {
  ops::AddGrowth(endpoints, Counters(), s, last);
  if (s.batches > last.batches) {
    endpoints.Observe("iotinfer_sink_batch_size", s.last_batch);
    endpoints.Observe("iotinfer_sink_store_write_seconds", s.last_write_ms / 1000);
  }
  endpoints.Set("iotinfer_sink_lag", static_cast<double>(s.lag));
  endpoints.Set("iotinfer_sink_partitions", s.partitions);
  ops::SetConsumerReadiness(endpoints, s.partitions, s.store_available);
  last = s;
}

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
  ASSIGN_OR_RETURN(std::unique_ptr<ops::Endpoints> endpoints,
                   ops::StartIfAsked("sink", options.endpoints, SinkMetrics()));
  SinkStats published;
  auto report = [&](const SinkStats& s) {
    if (endpoints) Publish(*endpoints, s, published);
    if (on_progress) on_progress(s);
  };
  ASSIGN_OR_RETURN(std::unique_ptr<store::Store> store, store::Store::Open(options.store));
  TRY(kafka::EnsureTopics(options.kafka,
                          {{options.input_topic, options.partitions}, {options.dlq_topic, options.partitions}}));
  const std::string log_name = kafka::ServiceLogName("sink", options.instance_id);
  ASSIGN_OR_RETURN(auto pipe, kafka::TransactionalPipe::Create(
                                  {.kafka = options.kafka,
                                   .group = options.group,
                                   .input_topics = {options.input_topic},
                                   .output_topics = {options.dlq_topic},
                                   .transactional_id = kafka::TransactionalId(options.group, options.instance_id),
                                   .max_batch = options.batch_max,
                                   .max_wait = options.flush_interval,
                                   .log = kafka::StderrLog(log_name)}));
  const size_t dlq_max_bytes = pipe->max_message_bytes(options.dlq_topic);
  SinkStats stats;
  kafka::ServiceLoop<SinkStats> loop(*pipe, stats, log_name, options.log_every, report);
  Writer writer(*store, options, stop, stats, report);
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
        dead.push_back(kafka::DeadLetter(options.dlq_topic, in, record.error().message(), dlq_max_bytes));
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
          dead.push_back(kafka::DeadLetter(options.dlq_topic, *sources[i], "store refused: " + one.error().message(),
                                           dlq_max_bytes));
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
