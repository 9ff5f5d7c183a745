#include "demo/demo.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <thread>
#include <tuple>

#include "core/stop.h"
#include "core/topics.h"
#include "dataset/faults.h"
#include "kafka/mock_cluster.h"
#include "models/models.h"

namespace iotinfer::demo {
namespace {

using Clock = std::chrono::steady_clock;

// A service (infer, sink or stream) in a thread, stopped when the caller says how much to
// expect. `Stats` has consumed, partitions and lag.
template <typename Stats>
class ServiceThread {
 public:
  using Run = std::function<Result<Stats>(const std::atomic<bool>& stop, const std::function<void(const Stats&)>&)>;

  ServiceThread(std::string name, Run run, std::function<void(const Stats&)> on_progress = {})
      : name_(std::move(name)), thread_([this, run = std::move(run), on_progress = std::move(on_progress)] {
          result_ = run(stop_, [this, &on_progress](const Stats& s) {
            consumed_ = s.consumed;
            partitions_ = s.partitions;
            lag_ = s.lag;
            if (on_progress) on_progress(s);
          });
          finished_ = true;
        }) {}
  ~ServiceThread() { Stop(); }

  /// Waits until the service has joined its group and holds partitions; false when it ended
  /// or `timeout` passed first.
  bool WaitReady(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (partitions_ == 0 && !finished_ && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return partitions_ > 0;
  }

  /// The service's own error when it ended early, else why it is not ready.
  Error NotReady() {
    Result<Stats> ended = Finish(0, std::chrono::milliseconds(0));
    return ended ? Error::Unavailable(fmt::format("the {} service got no partitions assigned", name_)) : ended.error();
  }

  /// Waits until `target` records are consumed with no lag left, the service ends, or it
  /// stalls.
  void WaitFor(int64_t target, std::chrono::milliseconds stall_timeout) {
    int64_t last = -1;
    auto last_progress = Clock::now();
    // A topic shared with earlier runs may have held a backlog, so the count alone does not
    // say this run's records are done; no lag once the run was sent does.
    while (target > 0 && !finished_ && !(consumed_ >= target && lag_ == 0)) {
      if (consumed_ != last) last = consumed_, last_progress = Clock::now();
      if (Clock::now() - last_progress > stall_timeout) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  /// WaitFor, then stops the service (which finishes its batch) and returns its counters.
  Result<Stats> Finish(int64_t target, std::chrono::milliseconds stall_timeout) {
    WaitFor(target, stall_timeout);
    Stop();
    if (!result_) return result_;
    if (result_->consumed < target) {
      return std::unexpected(Error::Unavailable(
          fmt::format("{} stalled: {} of {} records consumed after {} s without progress", name_, result_->consumed,
                      target, std::chrono::duration_cast<std::chrono::seconds>(stall_timeout).count())));
    }
    return result_;
  }

 private:
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  std::string name_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> finished_{false};
  std::atomic<int64_t> consumed_{0};
  std::atomic<int> partitions_{0};
  std::atomic<int64_t> lag_{-1};
  Result<Stats> result_ = std::unexpected(Error::Internal("the service did not run"));
  std::thread thread_;  // last: starts after the members it uses exist
};

std::vector<std::tuple<int, int64_t, int64_t, int64_t>> Counts(std::span<const ProducerResult> results) {
  std::vector<std::tuple<int, int64_t, int64_t, int64_t>> counts;
  for (const auto& r : results) counts.emplace_back(r.producer_id, r.incorrect_count, r.total, r.unlabelled);
  return counts;
}

// The candidate's accuracy against the active model's, over the devices with faults and over
// those without: what a model trained on the faults should gain, and not lose.
std::string FormatGains(const models::Comparison& comparison, std::span<const int> healthy) {
  models::PairedCounts faulty_counts, healthy_counts;
  for (const models::DeviceComparison& d : comparison.judgement.devices) {
    (std::ranges::find(healthy, d.producer_id) != healthy.end() ? healthy_counts : faulty_counts) += d.counts;
  }
  auto line = [](std::string_view what, const models::PairedCounts& c) {
    if (c.images == 0) return std::string();
    const double active = 100.0 * static_cast<double>(c.active_correct) / static_cast<double>(c.images);
    const double candidate = 100.0 * static_cast<double>(c.candidate_correct) / static_cast<double>(c.images);
    return fmt::format("on the devices {}: {:.2f}% -> {:.2f}% ({:+.2f} points, McNemar p = {:.3g})\n", what, active,
                       candidate, candidate - active, models::McNemarP(c.b, c.c));
  };
  return line("with faults", faulty_counts) + line("without faults", healthy_counts);
}

}  // namespace

Result<DemoReport> RunDemo(const DemoOptions& options, const std::function<void(const std::string&)>& on_log,
                           const std::atomic<bool>* linger_stop) {
  auto log = [&](const std::string& line) {
    if (on_log) on_log(line);
  };
  const auto start = Clock::now();
  DemoReport report;
  kafka::KafkaConfig kafka = options.kafka;
  std::unique_ptr<kafka::MockCluster> cluster;
  // Fresh groups: sink and stream read the topic from its beginning, so stream, store and
  // batch see the same records even on a cluster that holds earlier runs; and a topic of
  // accepted records per run, since each run's sink stores (and publishes) them all again.
  const std::string run_suffix = fmt::format("{:x}", std::chrono::system_clock::now().time_since_epoch().count());
  const bool embedded = kafka.brokers.empty();
  const std::string accepted = embedded ? std::string(topics::kInferencesAccepted)
                                        : fmt::format("{}.demo-{}", topics::kInferencesAccepted, run_suffix);
  const std::string health =
      embedded ? std::string(topics::kProducerHealth) : fmt::format("{}.demo-{}", topics::kProducerHealth, run_suffix);
  // The shadow's records of this run alone, so that the comparison pairs this run's images.
  const std::string shadow = embedded ? std::string(topics::kInferencesShadow)
                                      : fmt::format("{}.demo-{}", topics::kInferencesShadow, run_suffix);
  std::vector<std::string> run_topics = {
      topics::kImages, topics::kInferences, topics::kImagesDeadLetters, topics::kInferencesDeadLetters, accepted,
      health};
  if (!options.shadow_model.empty()) run_topics.push_back(shadow);
  if (embedded) {
    ASSIGN_OR_RETURN(cluster, kafka::MockCluster::Create());
    for (const auto& topic : run_topics) TRY(cluster->CreateTopic({topic, options.partitions}));
    kafka.brokers = cluster->bootstrap_servers();
    report.embedded = true;
  }
  report.brokers = kafka.brokers;
  log(fmt::format("kafka: {}{}", kafka.brokers, report.embedded ? " (in-process mock cluster)" : ""));

  store::StoreOptions store_options = options.store;
  if (store_options.uri.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options.out_dir, ec);
    store_options.uri = "sqlite:" + (std::filesystem::path(options.out_dir) / "iotinfer.db").string();
  }
  {
    ASSIGN_OR_RETURN(std::unique_ptr<store::Store> store, store::Store::Open(store_options));
    TRY(store->Clear());
    log(fmt::format("store: {} (emptied), database {}", store->Describe(), store_options.database));
  }

  infer::InferOptions infer_options;
  infer_options.kafka = kafka;
  infer_options.group = "iotinfer-demo";
  infer_options.partitions = options.partitions;
  infer_options.classifier = options.classifier;
  infer_options.shadow_model = options.shadow_model;
  infer_options.shadow_topic = shadow;
  infer_options.model_control_topic.clear();  // a demo serves the model it is given
  infer_options.log_every = std::chrono::milliseconds(0);
  sink::SinkOptions sink_options;
  sink_options.kafka = kafka;
  sink_options.store = store_options;
  sink_options.group = "iotinfer-demo-sink-" + run_suffix;
  sink_options.partitions = options.partitions;
  sink_options.accepted_topic = accepted;
  sink_options.log_every = std::chrono::milliseconds(0);
  stream::StreamOptions stream_options;
  stream_options.kafka = kafka;
  stream_options.store = store_options;
  stream_options.group = "iotinfer-demo-stream-" + run_suffix;
  stream_options.topic = accepted;
  stream_options.log_every = std::chrono::milliseconds(0);
  stream_options.health_topic = health;
  if (options.http_port >= 0) stream_options.endpoints = ops::EndpointOptions{.port = options.http_port};
  // Topics first, so that the services' consumers and the devices agree on them.
  if (!report.embedded) {
    std::vector<kafka::TopicSpec> specs;
    for (const auto& topic : run_topics) specs.push_back({topic, options.partitions});
    TRY(kafka::EnsureTopics(kafka, specs));
  }
  ServiceThread<infer::InferStats> infer_service(
      "inference", [&](const std::atomic<bool>& stop, const std::function<void(const infer::InferStats&)>& progress) {
        return infer::RunInfer(infer_options, stop, progress);
      });
  ServiceThread<sink::SinkStats> sink_service(
      "sink", [&](const std::atomic<bool>& stop, const std::function<void(const sink::SinkStats&)>& progress) {
        return sink::RunSink(sink_options, stop, progress);
      });
  std::atomic<int> http_port{0};  // the stream's dashboard, once it listens
  ServiceThread<stream::StreamStats> stream_service(
      "stream",
      [&](const std::atomic<bool>& stop, const std::function<void(const stream::StreamStats&)>& progress) {
        return stream::RunStream(stream_options, stop, progress);
      },
      [&](const stream::StreamStats& s) {
        if (s.http_port > 0 && !http_port.exchange(s.http_port)) {
          log(fmt::format("dashboard: http://127.0.0.1:{}/ (while the demo runs; --linger keeps it after)",
                          s.http_port));
        }
      });
  // Devices start once the services are ready, so that latency measures the pipeline rather
  // than the group joins.
  if (!infer_service.WaitReady(options.stall_timeout)) return std::unexpected(infer_service.NotReady());
  if (!sink_service.WaitReady(options.stall_timeout)) return std::unexpected(sink_service.NotReady());
  if (!stream_service.WaitReady(options.stall_timeout)) return std::unexpected(stream_service.NotReady());

  produce::ProduceOptions produce_options;
  produce_options.kafka = kafka;
  produce_options.partitions = options.partitions;
  produce_options.producers = options.producers;
  produce_options.images = options.images;
  produce_options.rate = options.rate;
  produce_options.faults = options.faults;
  produce_options.seed = options.seed;
  log(fmt::format("producing {} images from {} devices (faults {})", options.images, options.producers,
                  options.faults.empty() ? "none" : options.faults));
  ASSIGN_OR_RETURN(report.produced, produce::Produce(produce_options));
  if (report.produced.failed > 0) {
    return std::unexpected(Error::Unavailable(fmt::format("{} images were not delivered (last error: {})",
                                                          report.produced.failed, report.produced.last_error)));
  }
  log(fmt::format("run {}: {} images sent in {:.1f} s; waiting for inference", report.produced.run_id,
                  report.produced.acknowledged, report.produced.seconds));
  ASSIGN_OR_RETURN(report.inferred, infer_service.Finish(report.produced.acknowledged, options.stall_timeout));
  log(fmt::format("{} images inferred; waiting for the sink and the live count", report.inferred.inferred));
  ASSIGN_OR_RETURN(report.sunk, sink_service.Finish(report.inferred.inferred, options.stall_timeout));
  if (http_port) report.dashboard = fmt::format("http://127.0.0.1:{}/", http_port.load());
  if (options.linger.count() > 0 && http_port) {
    stream_service.WaitFor(report.inferred.inferred, options.stall_timeout);
    log(fmt::format("everything is counted; the dashboard stays at {} for {} s (Ctrl-C ends it sooner)",
                    report.dashboard, std::chrono::duration_cast<std::chrono::seconds>(options.linger).count()));
    const std::atomic<bool> never{false};
    SleepUnlessStopped(options.linger, linger_stop ? *linger_stop : never);
  }
  ASSIGN_OR_RETURN(report.streamed, stream_service.Finish(report.inferred.inferred, options.stall_timeout));
  {
    ASSIGN_OR_RETURN(std::unique_ptr<store::Store> store, store::Store::Open(store_options));
    ASSIGN_OR_RETURN(report.stream_results, store->ReadResults());
  }
  ASSIGN_OR_RETURN(report.batch, analytics::RunBatch({.store = store_options,
                                                      .engine = analytics::BatchEngine::kNative,
                                                      .out_dir = options.out_dir}));
  if (Counts(report.batch.results) != Counts(report.stream_results)) {
    return std::unexpected(Error::Internal(
        fmt::format("the live count and the batch count disagree:\nstream:\n{}batch:\n{}",
                    analytics::FormatResults(report.stream_results), analytics::FormatResults(report.batch.results))));
  }

  // The stream's verdicts on the devices, as the topic holds them: the latest of each device.
  std::map<int, DeviceHealth> verdicts;
  TRY(kafka::ScanTopic(kafka, health, [&](const kafka::InputMessage& in) {
    if (std::optional<DeviceHealth> a = health::FromJson(in.message.value)) verdicts[a->producer_id] = *a;
    return Ok();
  }));
  for (const auto& [producer, a] : verdicts) report.verdicts.push_back(a);

  ASSIGN_OR_RETURN(const dataset::FaultPlan plan, dataset::FaultPlan::Parse(options.faults));
  for (int p = 0; p < options.producers; ++p) {
    if (plan.For(p).empty()) report.healthy_producers.push_back(p);
  }

  if (!options.shadow_model.empty()) {
    report.compared = {.kafka = kafka, .inferences = topics::kInferences, .shadow = shadow};
    ASSIGN_OR_RETURN(report.comparison, models::Compare(report.compared));
  }

  analytics::LatencyOptions latency;
  latency.kafka = kafka;
  latency.run_id = report.produced.run_id;
  latency.out_dir = options.out_dir;
  ASSIGN_OR_RETURN(report.latency, analytics::ReportLatency(latency));
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return report;
}

std::string FormatDemo(const DemoReport& r) {
  std::string out = fmt::format(
      "\nproduced {} images in {:.2f} s; inferred {} and dead-lettered {} in {} transactions ({} aborted)\n"
      "stored {} documents in {} ({} replayed, {} duplicates, {} dead-lettered)\n"
      "live count (stream): {} records in {} updates; batch recount ({} engine): {} documents in {:.2f} s: they "
      "agree\n\nincorrect inferences per producer:\n",
      r.produced.acknowledged, r.produced.seconds, r.inferred.inferred, r.inferred.dead_lettered, r.inferred.batches,
      r.inferred.aborted, r.sunk.inserted, r.batch.store, r.sunk.replayed, r.sunk.duplicates, r.sunk.dead_lettered,
      r.streamed.consumed, r.streamed.updates, analytics::EngineName(r.batch.engine), r.batch.documents,
      r.batch.seconds);
  out += analytics::FormatResults(r.batch.results);
  // Accuracy over the labelled records of the producers `keep` accepts.
  auto accuracy = [&](auto keep) {
    int64_t labelled = 0, incorrect = 0;
    for (const auto& p : r.batch.results) {
      if (!keep(p.producer_id)) continue;
      labelled += p.total - p.unlabelled;
      incorrect += p.incorrect_count;
    }
    return labelled > 0 ? fmt::format("{:.2f}%", 100.0 * static_cast<double>(labelled - incorrect) / labelled)
                        : std::string("-");
  };
  out += fmt::format("accuracy: {} over all devices", accuracy([](int) { return true; }));
  if (!r.healthy_producers.empty()) {
    out += fmt::format(", {} over the devices without faults ({})", accuracy([&](int id) {
                         return std::ranges::find(r.healthy_producers, id) != r.healthy_producers.end();
                       }),
                       fmt::join(r.healthy_producers, ", "));
  }
  out += "\n\n";
  if (!r.verdicts.empty()) {
    out += "device health, as the stream judged it (docs/health.md):\n" + health::FormatVerdicts(r.verdicts) + "\n";
  }
  if (r.comparison) {
    out += "the shadow model against the active one, on the same images (iotinfer models compare):\n" +
           models::FormatComparison(*r.comparison, r.compared, 0) + FormatGains(*r.comparison, r.healthy_producers) +
           "\n";
  }
  for (const auto& file : r.batch.files) out += fmt::format("wrote {}\n", file);
  out += analytics::FormatLatency(r.latency);
  out += fmt::format("demo finished in {:.1f} s\n", r.seconds);
  return out;
}

Status RunCommand(const DemoOptions& options, const std::atomic<bool>& stop) {
  ASSIGN_OR_RETURN(
      const DemoReport report,
      RunDemo(
          options, [](const std::string& line) { std::fprintf(stderr, "demo: %s\n", line.c_str()); }, &stop));
  std::fputs(FormatDemo(report).c_str(), stdout);
  return Ok();
}

}  // namespace iotinfer::demo
