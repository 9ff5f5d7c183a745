#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/image_message.h"
#include "kafka/dead_letter.h"
#include "kafka/kafka.h"

namespace iotinfer::kafka {

struct PipeOptions {
  KafkaConfig kafka;
  std::string group = "iotinfer-infer";
  std::vector<std::string> input_topics;
  // Looked up when the pipe is created, so the first commit does not wait for them.
  std::vector<std::string> output_topics;
  // Unique per running instance; zombies are fenced through the consumer group (KIP-447).
  std::string transactional_id;
  // Two transactional producers taking turns, the second as "<transactional_id>#2". Kafka's
  // coordinator answers a commit before it has written the commit's markers, and refuses the
  // same producer's next transaction until it has (CONCURRENT_TRANSACTIONS, which librdkafka
  // retries 5-20 ms later); a service that commits back to back then often waits that long.
  // With two, a producer's next transaction comes a whole transaction after its last commit.
  bool alternate_producers = false;
  int max_batch = 512;
  // A batch also ends once its messages hold this many bytes (keys, values, headers), so that
  // a backlog of large messages is not held max_batch at a time. It holds at least one.
  size_t max_batch_bytes = 64 << 20;
  std::chrono::milliseconds max_wait{20};  // how long a batch may wait to fill up
  // Optional: one line per rebalance ("assigned 3 partition(s): images[0] ..."), for the log.
  std::function<void(const std::string&)> log;
};

/// A transactional id for one running instance of `group`'s service: "<group>-<instance_id>"
/// when an instance id is given (give each replica a stable one, a pod name say: a restarted
/// instance then aborts its crashed predecessor's open transaction at once), else unique per
/// process (host name, pid, random). Zombies are fenced through the group either way (KIP-447).
std::string TransactionalId(const std::string& group, const std::string& instance_id);

/// Room left under a message size limit for what a record adds around its key, value and
/// headers (lengths, attributes, the record batch's own header).
inline constexpr size_t kRecordOverheadBytes = 1024;

/// Exactly-once consume-transform-produce: a consumer group member reading committed
/// messages, and a transactional producer that writes a batch's outputs together with the
/// batch's input offsets in one Kafka transaction (send_offsets_to_transaction). After a
/// crash the group resumes from the last committed batch, whose outputs are visible to
/// read_committed readers exactly once. Not thread-safe.
class TransactionalPipe {
 public:
  static Result<std::unique_ptr<TransactionalPipe>> Create(const PipeOptions& options);
  ~TransactionalPipe();
  TransactionalPipe(const TransactionalPipe&) = delete;
  TransactionalPipe& operator=(const TransactionalPipe&) = delete;

  /// Up to max_batch messages (and max_batch_bytes), waiting at most max_wait once the first one arrived (and at
  /// most `idle` for the first). Empty when nothing came. Messages of partitions revoked by a
  /// rebalance while the batch filled are dropped: their new owner reads them again. A record
  /// the client could not read (a corrupt batch) comes as a message with `unreadable` set: the
  /// caller dead-letters it like any bad input, so that the partition goes on.
  /// `held`: messages the caller holds toward its next commit (polled while one was in
  /// flight); the batch fills to the limits less these, at least one message.
  Result<std::vector<InputMessage>> PollBatch(std::chrono::milliseconds idle = std::chrono::milliseconds(200),
                                              std::span<const InputMessage> held = {});
  /// Whether `held` reaches max_batch messages or max_batch_bytes.
  bool Fills(std::span<const InputMessage> held) const;

  /// Writes `outputs` and commits the offsets past `consumed` (the last batch PollBatch
  /// returned), atomically. On an abortable failure the transaction is aborted and the
  /// consumer rewound to where `consumed` began, so the same input is processed again:
  /// Unavailable is returned, or InvalidInput when the cluster or the client refused the
  /// outputs themselves (a message too large for the topic, an invalid record), which then
  /// fail again. A producer in a fatal state is replaced by a new one under the same
  /// transactional id (Unavailable, the batch read again), unless another instance fenced it
  /// or the cluster refuses this client: that, and a rewind that fails, return
  /// FailedPrecondition: the process must stop. A fencing met after outputs timed out is the
  /// coordinator's own abort of a transaction that outlived its timeout: renewed.
  Status Commit(std::span<const InputMessage> consumed, std::span<const OutputMessage> outputs);

  /// Commit, on a thread of its own: returns at once, so that the caller can poll and work on
  /// the next batch while the transaction completes. `consumed` and `outputs` must live until
  /// AwaitCommit, and until then only PollBatch, commit_in_flight, commit_finished,
  /// assigned_partitions and lag may be called (FailedPrecondition for a second StartCommit). A
  /// PollBatch waiting for messages returns when the commit finishes.
  Status StartCommit(std::span<const InputMessage> consumed, std::span<const OutputMessage> outputs);
  bool commit_in_flight() const;
  bool commit_finished() const;  // AwaitCommit would not wait

  /// Waits for the commit StartCommit began and returns what Commit would have. Where Commit
  /// would rewind, the consumer also goes back to where `polled_since` began: what PollBatch
  /// returned meanwhile, which the caller then drops (it is read again).
  Status AwaitCommit(std::span<const InputMessage> polled_since);

  /// Commits `outputs` in place of `consumed`'s own (e.g. a dead letter for a message that no
  /// transaction holding it could commit), then moves the consumer past `consumed`: a failed
  /// Commit rewound it to where they began. Errors as Commit's.
  Status CommitInstead(std::span<const InputMessage> consumed, std::span<const OutputMessage> outputs);

  /// The largest message the pipe can write to `topic` (one of its output topics): the
  /// producer's message.max.bytes or the topic's max.message.bytes, whichever is smaller, less
  /// kRecordOverheadBytes. The topic's is asked for at creation without waiting, and counts
  /// once the cluster has answered. Pass it to DeadLetter.
  size_t max_message_bytes(const std::string& topic) const;

  /// Changes how many messages PollBatch returns at most (at least 1), e.g. to split a batch
  /// that fails; PipeOptions::max_batch is where it started.
  void set_max_batch(int max_batch);
  int max_batch() const;

  /// Partitions currently assigned to this member.
  int assigned_partitions() const;

  /// Messages behind the high watermark over the assigned partitions that have a position,
  /// from cached watermarks: an estimate for logs and metrics.
  int64_t lag() const;

  /// Leaves the group cleanly (the rest of the group rebalances at once).
  void Close();

 private:
  struct Impl;
  explicit TransactionalPipe(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace iotinfer::kafka
