#pragma once

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/stop.h"
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

/// Adds the dead letters of a committed batch, by reason, to a service's counters (`Stats` as
/// ServiceLoop's).
template <typename Stats>
void CountDeadLetters(Stats& stats, const ReasonCounts& dead) {
  for (size_t r = 0; r < dead.size(); ++r) {
    stats.dead_lettered += dead[r];
    stats.dead_lettered_by_reason[r] += dead[r];
  }
}

/// How a ServiceLoop names itself and deals with batches that fail to commit.
struct LoopOptions {
  std::string name;                        // prefixes log lines
  std::chrono::milliseconds log_every{0};  // 0: no periodic counters line
  std::string dlq_topic;                   // where a message isolated as a batch's culprit goes
  // A batch that fails to commit the same way this many times in a row is split to find the
  // message responsible; the service also counts as stuck from then until a commit succeeds.
  int split_after = 3;
  // Waits between retries of a failing batch: doubled from the first up to the longest.
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{5000};
};

/// What became of a batch handed to ServiceLoop::Commit.
enum class Outcome {
  kCommitted,  // its outputs are written and its offsets committed
  kAborted,    // the transaction aborted and the consumer was rewound: the batch comes again
  kIsolated,   // a batch of one message that failed alone was dead-lettered in its place
};

/// The mechanics that every consume-process-commit service (infer, sink) shares around its
/// own processing: polling, reporting partition changes, the periodic counters log line,
/// committing with abort, backoff and retry, isolating a message that no batch holding it
/// can commit, and the batch counters. `Stats` has the members consumed, dead_lettered,
/// dead_lettered_by_reason (a ReasonCounts), isolated, batches, last_batch, aborted,
/// stuck_seconds, stuck, lag and partitions, and a `FormatStats(stats)` found by
/// argument-dependent lookup. Not thread-safe.
///
/// A batch that fails to commit the same way `split_after` times in a row is split: the next
/// polls return half as many messages, halved again each time they fail the same way, until
/// the culprit is found or as many messages as the failing batch held have passed. A batch of
/// one message that still fails that way is the culprit, and is dead-lettered with the
/// failure as its reason, once the failure is known to follow the message and not the
/// cluster: the cluster refused the content itself (too large, invalid), other batches
/// committed since the split began, or it failed alone split_after times more. A cluster that
/// is down fails the dead letter too, so a good message is not dead-lettered for an outage.
/// Other failures are retried after a growing wait.
template <typename Stats>
class ServiceLoop {
 public:
  /// `on_progress` is optional; `stop` ends the waits between retries.
  ServiceLoop(TransactionalPipe& pipe, Stats& stats, LoopOptions options, const std::atomic<bool>& stop,
              std::function<void(const Stats&)> on_progress)
      : pipe_(pipe),
        stats_(stats),
        options_(std::move(options)),
        stop_(stop),
        on_progress_(std::move(on_progress)),
        next_log_(Clock::now() + options_.log_every),
        initial_limit_(pipe.max_batch()),
        limit_(initial_limit_) {}

  // A commit still in flight reads this loop's batch: it ends first (a service that returns
  // with an error leaves one so).
  ~ServiceLoop() {
    if (pipe_.commit_in_flight()) (void)pipe_.AwaitCommit({});
  }
  ServiceLoop(const ServiceLoop&) = delete;
  ServiceLoop& operator=(const ServiceLoop&) = delete;

  /// The next batch (possibly empty); `held` and `idle` as PollBatch's. Reports a change in
  /// assigned partitions to on_progress (so a caller can tell when the service is ready) and
  /// logs the counters when due.
  Result<std::vector<InputMessage>> Poll(std::span<const InputMessage> held = {},
                                         std::chrono::milliseconds idle = std::chrono::milliseconds(200)) {
    ASSIGN_OR_RETURN(std::vector<InputMessage> batch, pipe_.PollBatch(idle, held));
    if (const int partitions = pipe_.assigned_partitions(); partitions != stats_.partitions) {
      stats_.partitions = partitions;
      if (on_progress_) on_progress_(stats_);
    }
    if (options_.log_every.count() && Clock::now() >= next_log_) {
      stats_.lag = pipe_.lag();
      Log(FormatStats(stats_));
      next_log_ = Clock::now() + options_.log_every;
    }
    return batch;
  }

  /// Commits `outputs` with the offsets past `batch`. On kCommitted, count the batch with
  /// Committed() after updating the service's own counters; kIsolated is counted here (one
  /// message consumed and dead-lettered). An error when the pipe cannot go on (fenced, fatal).
  Result<Outcome> Commit(std::span<const InputMessage> batch, std::span<const OutputMessage> outputs) {
    return Settle(pipe_.Commit(batch, outputs), batch);
  }

  /// Commit, overlapped with what the caller does next: returns once the commit is under way
  /// (TransactionalPipe::StartCommit). Until FinishCommit, call only Poll and the accessors.
  Status StartCommit(std::vector<InputMessage> batch, std::vector<OutputMessage> outputs) {
    if (pipe_.commit_in_flight()) return std::unexpected(Error::FailedPrecondition("a commit is in flight already"));
    committing_ = std::move(batch);
    committing_outputs_ = std::move(outputs);
    return pipe_.StartCommit(committing_, committing_outputs_);
  }
  bool commit_in_flight() const { return pipe_.commit_in_flight(); }
  bool commit_finished() const { return pipe_.commit_finished(); }
  bool Fills(std::span<const InputMessage> held) const { return pipe_.Fills(held); }

  /// Waits for the commit StartCommit began: Commit's outcome for its batch, whose size
  /// committing_size() gives. On any outcome but kCommitted, `polled_since` (what Poll returned
  /// meanwhile) is read again too, and the caller drops it.
  Result<Outcome> FinishCommit(std::span<const InputMessage> polled_since) {
    Result<Outcome> outcome = Settle(pipe_.AwaitCommit(polled_since), committing_);
    committing_outputs_.clear();
    return outcome;
  }
  size_t committing_size() const { return committing_.size(); }

  /// While a failing batch is split to find its culprit, batches must be committed one at a
  /// time, each as polled.
  bool splitting() const { return splitting_; }

  /// Counts a committed batch of `size` messages and reports the counters; call it after the
  /// service's own counters are updated.
  void Committed(size_t size) {
    stats_.consumed += static_cast<int64_t>(size);
    stats_.batches++;
    stats_.last_batch = static_cast<int>(size);
    if (failed_in_a_row_ >= options_.split_after) {
      Log(fmt::format("committing again after {} failed attempts over {:.1f} s", failed_in_a_row_,
                      stats_.stuck_seconds));
    }
    failed_in_a_row_ = same_in_a_row_ = 0;
    stats_.stuck.clear();
    stats_.stuck_seconds = 0;
    if (splitting_) {
      commits_since_split_++;
      split_remaining_ -= static_cast<int64_t>(size);
      // Past as many messages as the failing batch held without meeting the failure again:
      // it has gone, whatever it was.
      if (split_remaining_ <= 0) {
        splitting_ = false;
        SetLimit(initial_limit_);
      }
    }
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

  // What `committed`, the commit of `batch`, makes of it: retried, split or isolated.
  Result<Outcome> Settle(Status committed, std::span<const InputMessage> batch) {
    if (committed) return Outcome::kCommitted;
    ASSIGN_OR_RETURN(const bool content, Aborted(committed.error()));
    const std::string& failure = last_failure_;  // as Aborted took it
    if (!splitting_ && same_in_a_row_ >= options_.split_after) {
      Log(fmt::format("a batch of {} failed to commit {} times in a row the same way; splitting it", batch.size(),
                      same_in_a_row_));
      splitting_ = true;
      split_on_ = failure;
      split_remaining_ = static_cast<int64_t>(batch.size());
      commits_since_split_ = 0;
      alone_failures_ = 0;
    }
    if (splitting_ && failure == split_on_) {
      if (batch.size() > 1) {
        SetLimit(static_cast<int>(batch.size() / 2));
        return Outcome::kAborted;  // the halves are tried at once: the failure is known
      }
      // Alone and failing: the culprit, once the failure is known to follow the message.
      // Failing alone time after time also makes it one; were the cluster at fault, its dead
      // letter could not commit either (and a dead letter keeps what it can for a replay).
      if (content || commits_since_split_ > 0 || ++alone_failures_ >= options_.split_after) {
        return Isolate(batch.front(), committed.error());
      }
    }
    SleepUnlessStopped(Backoff(), stop_);
    return Outcome::kAborted;
  }

  void Log(const std::string& line) const { std::fprintf(stderr, "%s: %s\n", options_.name.c_str(), line.c_str()); }

  void SetLimit(int limit) {
    limit_ = std::max(limit, 1);
    pipe_.set_max_batch(limit_);
  }

  // Counts and logs an aborted commit, and reports the service stuck when it failed
  // split_after times in a row; whether the cluster refused the content itself. Errors that
  // are not an abort pass through.
  Result<bool> Aborted(const Error& error) {
    const Error::Code code = error.code();
    if (code != Error::Code::kUnavailable && code != Error::Code::kInvalidInput) return std::unexpected(error);
    Log(error.message());
    stats_.aborted++;
    if (failed_in_a_row_++ == 0) failing_since_ = Clock::now();
    std::string way = Way(error);
    same_in_a_row_ = same_in_a_row_ > 0 && way == last_failure_ ? same_in_a_row_ + 1 : 1;
    last_failure_ = std::move(way);
    stats_.stuck_seconds = std::chrono::duration<double>(Clock::now() - failing_since_).count();
    if (failed_in_a_row_ >= options_.split_after) {
      stats_.stuck = fmt::format("{} commits in a row failed over {:.0f} s, the last: {}", failed_in_a_row_,
                                 stats_.stuck_seconds, error.message());
    }
    if (on_progress_) on_progress_(stats_);
    return code == Error::Code::kInvalidInput;
  }

  // Dead-letters `culprit` in its batch's place, with `failure` as the reason.
  Result<Outcome> Isolate(const InputMessage& culprit, const Error& failure) {
    const OutputMessage dead =
        DeadLetter(options_.dlq_topic, culprit, DeadLetterReason::kCommitFailed,
                   "could not be committed: " + failure.message(), pipe_.max_message_bytes(options_.dlq_topic));
    Status committed = pipe_.CommitInstead({&culprit, 1}, {&dead, 1});
    if (!committed) {
      // The dead letter failing too says the cluster, not the message, is at fault: retry both.
      TRY(Aborted(committed.error()));
      SleepUnlessStopped(Backoff(), stop_);
      return Outcome::kAborted;
    }
    Log(fmt::format("isolated {}/{}/{} as the message its batches failed on; dead-lettered to {}", culprit.topic,
                    culprit.partition, culprit.offset, options_.dlq_topic));
    stats_.isolated++;
    stats_.dead_lettered++;
    stats_.dead_lettered_by_reason[ReasonIndex(DeadLetterReason::kCommitFailed)]++;
    splitting_ = false;
    SetLimit(initial_limit_);
    Committed(1);
    return Outcome::kIsolated;
  }

  // How `error` failed, for telling whether failures are alike: its text with every number
  // left out, since the client's messages carry epochs, sequence numbers and counts.
  static std::string Way(const Error& error) {
    std::string way;
    for (const char c : error.message()) {
      const bool digit = c >= '0' && c <= '9';
      if (digit && !way.empty() && way.back() == '#') continue;
      way += digit ? '#' : c;
    }
    return way;
  }

  std::chrono::milliseconds Backoff() const {
    auto wait = options_.backoff_initial;
    for (int i = 1; i < failed_in_a_row_ && wait < options_.backoff_max; ++i) wait *= 2;
    return std::min(wait, options_.backoff_max);
  }

  TransactionalPipe& pipe_;
  Stats& stats_;
  LoopOptions options_;
  const std::atomic<bool>& stop_;
  std::function<void(const Stats&)> on_progress_;
  Clock::time_point next_log_;
  // Failed commits in a row, since when, how many of the last failed the same way, and how.
  int failed_in_a_row_ = 0;
  Clock::time_point failing_since_;
  int same_in_a_row_ = 0;
  std::string last_failure_;
  // While a failing batch is being split: the failure that started it, how many of its
  // messages are still to pass, the commits since it started, and the culprit's failures
  // alone.
  bool splitting_ = false;
  std::string split_on_;
  int64_t split_remaining_ = 0;
  int commits_since_split_ = 0;
  int alone_failures_ = 0;
  // The pipe's batch limit: as configured, and now.
  int initial_limit_;
  int limit_;
  // The batch of the commit StartCommit began, and its outputs: the pipe reads them meanwhile.
  std::vector<InputMessage> committing_;
  std::vector<OutputMessage> committing_outputs_;
};

}  // namespace iotinfer::kafka
