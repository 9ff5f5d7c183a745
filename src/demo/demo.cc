#include "demo/demo.h"

#include <fmt/format.h>

#include <atomic>
#include <thread>

#include "kafka/mock_cluster.h"

namespace iotinfer::demo {
namespace {

using Clock = std::chrono::steady_clock;

// The inference service in a thread, stopped when the caller says how much to expect.
class InferThread {
 public:
  explicit InferThread(const infer::InferOptions& options)
      : thread_([this, options] {
          result_ = infer::RunInfer(options, stop_, [this](const infer::InferStats& s) {
            consumed_ = s.consumed;
            partitions_ = s.partitions;
            lag_ = s.lag;
          });
          finished_ = true;
        }) {}
  ~InferThread() { Stop(); }

  /// Waits until the service has joined its group and holds partitions; false when it ended
  /// or `timeout` passed first.
  bool WaitReady(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (partitions_ == 0 && !finished_ && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return partitions_ > 0;
  }

  /// Waits until `target` images are consumed with no lag left, the service ends, or it
  /// stalls; then stops the service.
  Result<infer::InferStats> Finish(int64_t target, std::chrono::milliseconds stall_timeout) {
    int64_t last = -1;
    auto last_progress = Clock::now();
    // A topic shared with earlier runs may have held a backlog, so the count alone does not
    // say this run's images are done; no lag once the run was sent does.
    while (target > 0 && !finished_ && !(consumed_ >= target && lag_ == 0)) {
      if (consumed_ != last) last = consumed_, last_progress = Clock::now();
      if (Clock::now() - last_progress > stall_timeout) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    Stop();
    if (!result_) return result_;
    if (result_->consumed < target) {
      return std::unexpected(Error::Unavailable(
          fmt::format("inference stalled: {} of {} images consumed after {} s without progress", result_->consumed,
                      target, std::chrono::duration_cast<std::chrono::seconds>(stall_timeout).count())));
    }
    return result_;
  }

 private:
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  std::atomic<bool> stop_{false};
  std::atomic<bool> finished_{false};
  std::atomic<int64_t> consumed_{0};
  std::atomic<int> partitions_{0};
  std::atomic<int64_t> lag_{-1};
  Result<infer::InferStats> result_ = std::unexpected(Error::Internal("inference did not run"));
  std::thread thread_;  // last: starts after the members it uses exist
};

}  // namespace

Result<DemoReport> RunDemo(const DemoOptions& options, const std::function<void(const std::string&)>& on_log) {
  auto log = [&](const std::string& line) {
    if (on_log) on_log(line);
  };
  const auto start = Clock::now();
  DemoReport report;
  kafka::KafkaConfig kafka = options.kafka;
  std::unique_ptr<kafka::MockCluster> cluster;
  const std::vector<std::string> topics = {"images", "inferences", "images.dlq"};
  if (kafka.brokers.empty()) {
    ASSIGN_OR_RETURN(cluster, kafka::MockCluster::Create());
    for (const auto& topic : topics) TRY(cluster->CreateTopic({topic, options.partitions}));
    kafka.brokers = cluster->bootstrap_servers();
    report.embedded = true;
  }
  report.brokers = kafka.brokers;
  log(fmt::format("kafka: {}{}", kafka.brokers, report.embedded ? " (in-process mock cluster)" : ""));

  infer::InferOptions infer_options;
  infer_options.kafka = kafka;
  infer_options.group = "iotinfer-demo";
  infer_options.partitions = options.partitions;
  infer_options.classifier = options.classifier;
  infer_options.log_every = std::chrono::milliseconds(0);
  // Topics first, so that the service's consumer and the devices agree on them.
  if (!report.embedded) {
    std::vector<kafka::TopicSpec> specs;
    for (const auto& topic : topics) specs.push_back({topic, options.partitions});
    TRY(kafka::EnsureTopics(kafka, specs));
  }
  InferThread service(infer_options);
  // Devices start once the service is ready, so that latency measures the pipeline rather
  // than the group join.
  if (!service.WaitReady(options.stall_timeout)) {
    Result<infer::InferStats> ended = service.Finish(0, std::chrono::milliseconds(0));
    return std::unexpected(ended ? Error::Unavailable("the inference service got no partitions assigned")
                                 : ended.error());
  }

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
  ASSIGN_OR_RETURN(report.inferred, service.Finish(report.produced.acknowledged, options.stall_timeout));

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
      "\nproduced {} images in {:.2f} s; inferred {} and dead-lettered {} in {} transactions ({} aborted)\n",
      r.produced.acknowledged, r.produced.seconds, r.inferred.inferred, r.inferred.dead_lettered, r.inferred.batches,
      r.inferred.aborted);
  out += analytics::FormatLatency(r.latency);
  out += fmt::format("demo finished in {:.1f} s\n", r.seconds);
  return out;
}

}  // namespace iotinfer::demo
