#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "kafka/transactional_pipe.h"

namespace iotinfer::kafka {

/// How a service's log lines start: "infer", or "infer a" when it runs as instance "a", so that
/// the lines of replicas sharing one log can be told apart.
inline std::string ServiceLogName(const std::string& service, const std::string& instance_id) {
  return instance_id.empty() ? service : service + " " + instance_id;
}

/// A PipeOptions::log that writes "<name>: <line>" to stderr, next to the service's other lines.
inline std::function<void(const std::string&)> StderrLog(std::string name) {
  return [name = std::move(name)](const std::string& line) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), line.c_str());
  };
}

/// The mechanics that every consume-process-commit service (infer, sink) shares around its
/// own processing: polling, reporting partition changes, the periodic counters log line,
/// committing with abort-and-retry, and the batch counters. `Stats` has the members
/// consumed, batches, last_batch, aborted, lag and partitions, and a `FormatStats(stats)`
/// found by argument-dependent lookup. Not thread-safe.
template <typename Stats>
class ServiceLoop {
 public:
  /// `name` prefixes log lines; `log_every` 0 means no periodic line; `on_progress` is optional.
  ServiceLoop(TransactionalPipe& pipe, Stats& stats, std::string name, std::chrono::milliseconds log_every,
              std::function<void(const Stats&)> on_progress)
      : pipe_(pipe),
        stats_(stats),
        name_(std::move(name)),
        log_every_(log_every),
        on_progress_(std::move(on_progress)),
        next_log_(Clock::now() + log_every) {}

  /// The next batch (possibly empty). Reports a change in assigned partitions to on_progress
  /// (so a caller can tell when the service is ready) and logs the counters when due.
  Result<std::vector<InputMessage>> Poll() {
    ASSIGN_OR_RETURN(std::vector<InputMessage> batch, pipe_.PollBatch());
    if (const int partitions = pipe_.assigned_partitions(); partitions != stats_.partitions) {
      stats_.partitions = partitions;
      if (on_progress_) on_progress_(stats_);
    }
    if (log_every_.count() && Clock::now() >= next_log_) {
      stats_.lag = pipe_.lag();
      std::fprintf(stderr, "%s: %s\n", name_.c_str(), FormatStats(stats_).c_str());
      next_log_ = Clock::now() + log_every_;
    }
    return batch;
  }

  /// Commits `outputs` with the offsets past `batch`. True when committed; false when the
  /// transaction aborted and the consumer was rewound (logged and counted: the batch comes
  /// again); an error when the pipe cannot go on (fenced, fatal).
  Result<bool> Commit(std::span<const InputMessage> batch, std::span<const OutputMessage> outputs) {
    Status committed = pipe_.Commit(batch, outputs);
    if (committed) return true;
    if (committed.error().code() != Error::Code::kUnavailable) return std::unexpected(committed.error());
    std::fprintf(stderr, "%s: %s\n", name_.c_str(), committed.error().message().c_str());
    stats_.aborted++;
    return false;
  }

  /// Counts a committed batch of `size` messages and reports the counters; call it after the
  /// service's own counters are updated.
  void Committed(size_t size) {
    stats_.consumed += static_cast<int64_t>(size);
    stats_.batches++;
    stats_.last_batch = static_cast<int>(size);
    if (on_progress_) {
      stats_.lag = pipe_.lag();
      on_progress_(stats_);
    }
  }

  /// Takes the final lag and partition counts, then leaves the group.
  void Finish() {
    stats_.lag = pipe_.lag();
    stats_.partitions = pipe_.assigned_partitions();
    pipe_.Close();
  }

 private:
  using Clock = std::chrono::steady_clock;

  TransactionalPipe& pipe_;
  Stats& stats_;
  std::string name_;
  std::chrono::milliseconds log_every_;
  std::function<void(const Stats&)> on_progress_;
  Clock::time_point next_log_;
};

}  // namespace iotinfer::kafka
