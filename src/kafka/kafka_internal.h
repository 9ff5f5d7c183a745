#pragma once

// Shared by the kafka module's sources; not part of its public interface.
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/image_message.h"
#include "kafka/kafka.h"

namespace iotinfer::kafka {

// Owners of librdkafka objects, each freed by its own destroy function, so that no path
// (an early return, a TRY) frees one by hand or forgets to.
template <auto Destroy>
struct Deleter {
  template <typename T>
  void operator()(T* object) const {
    Destroy(object);
  }
};
using Handle = std::unique_ptr<rd_kafka_t, Deleter<rd_kafka_destroy>>;
using Conf = std::unique_ptr<rd_kafka_conf_t, Deleter<rd_kafka_conf_destroy>>;
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, Deleter<rd_kafka_topic_partition_list_destroy>>;
using Message = std::unique_ptr<rd_kafka_message_t, Deleter<rd_kafka_message_destroy>>;
using Headers = std::unique_ptr<rd_kafka_headers_t, Deleter<rd_kafka_headers_destroy>>;
using Topic = std::unique_ptr<rd_kafka_topic_t, Deleter<rd_kafka_topic_destroy>>;
using Metadata = std::unique_ptr<const rd_kafka_metadata_t, Deleter<rd_kafka_metadata_destroy>>;
using KafkaError = std::unique_ptr<rd_kafka_error_t, Deleter<rd_kafka_error_destroy>>;
using GroupMetadata =
    std::unique_ptr<rd_kafka_consumer_group_metadata_t, Deleter<rd_kafka_consumer_group_metadata_destroy>>;
using Queue = std::unique_ptr<rd_kafka_queue_t, Deleter<rd_kafka_queue_destroy>>;
using Event = std::unique_ptr<rd_kafka_event_t, Deleter<rd_kafka_event_destroy>>;
using AdminOptions = std::unique_ptr<rd_kafka_AdminOptions_t, Deleter<rd_kafka_AdminOptions_destroy>>;
using NewTopic = std::unique_ptr<rd_kafka_NewTopic_t, Deleter<rd_kafka_NewTopic_destroy>>;
using ConfigResource = std::unique_ptr<rd_kafka_ConfigResource_t, Deleter<rd_kafka_ConfigResource_destroy>>;

/// The raw pointers of `owners`, for librdkafka's calls that take an array (CreateTopics,
/// DescribeConfigs); the owners keep them.
template <typename T, typename D>
std::vector<T*> Pointers(const std::vector<std::unique_ptr<T, D>>& owners) {
  std::vector<T*> pointers;
  pointers.reserve(owners.size());
  for (const auto& owner : owners) pointers.push_back(owner.get());
  return pointers;
}

// Errors (errors.cc).

/// The one place librdkafka errors become ours: what a caller may retry is decided here.
Error FromKafka(rd_kafka_resp_err_t err, std::string_view context);

/// Whether `err` says the cluster refuses this client: credentials it does not take, or an
/// operation it does not allow. No retry mends that, so clients stop on it with a clear
/// message rather than retry until some timeout.
bool IsRefusal(rd_kafka_resp_err_t err);

/// Whether `err` says the cluster refused what was written, not that it is unwell: the same
/// messages fail again however long one waits.
bool IsRefusedContent(rd_kafka_resp_err_t err);

/// FailedPrecondition for a refusal, with librdkafka's reason (which never holds a secret).
Error Refused(std::string_view reason);

/// The error a consumer stops on for the error event `m` of `rk`: a fatal error (with its
/// cause) or a refusal. Nullopt for the rest, which librdkafka retries by itself.
std::optional<Error> StopError(rd_kafka_t* rk, const rd_kafka_message_t* m);

/// Writes one of librdkafka's own lines ("%3|1764118800.123|FAIL|rdkafka#producer-1|
/// [thrd:...]: ...") in the "who: what" form of the services' other lines, with a level word
/// for syslog's number: the log callback of every client MakeConf configures.
void LogLine(const rd_kafka_t* rk, int level, const char* facility, const char* line);

/// What a client's error callback heard (rd_kafka_poll and rd_kafka_consumer_poll serve
/// it): the first error it must stop on, a refusal or a fatal error, which its caller
/// returns instead of retrying until some timeout.
struct ErrorListener {
  std::optional<Error> stop;
  /// Sets `conf`'s error callback to record into `*listener`, which becomes its opaque.
  static void Attach(rd_kafka_conf_t* conf, ErrorListener* listener);
  /// Logs the error (an error callback silences librdkafka's own error lines) and keeps it
  /// if it is the first to stop on.
  static void Record(ErrorListener& listener, rd_kafka_t* rk, int err, const char* reason);
};

/// An error callback for a client whose opaque is a T with an ErrorListener `errors`.
template <typename T>
void RecordErrorsOf(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
  ErrorListener::Record(static_cast<T*>(opaque)->errors, rk, err, reason);
}

// Configurations and clients (config.cc).

/// Which kind of client a configuration is for: properties prefixed "consumer." or
/// "producer." go to that kind only, without the prefix (see KafkaConfig).
enum class ClientRole { kConsumer, kProducer };

/// bootstrap.servers plus the properties of `config` for `role`; InvalidInput naming a bad
/// property.
Result<Conf> MakeConf(const KafkaConfig& config, ClientRole role);

/// A client of `type`; takes ownership of `conf`.
Result<Handle> MakeHandle(rd_kafka_type_t type, Conf conf);

// Producing (producer.cc).

/// The `partitioner` every producer here uses unless told otherwise: the key -> partition
/// mapping of Kafka's Java clients (and so of Kafka Streams, Spark and most other clients),
/// so a device's records land on the same partition whichever client sent them. librdkafka's
/// own default (CRC32) differs, and with devices 0-7 it also leaves partitions 2 and 3 of 6
/// empty, where this one uses all six.
inline constexpr const char* kJavaCompatiblePartitioner = "murmur2_random";

/// What `message` takes against a size limit, as librdkafka and the broker count it, near
/// enough (kRecordOverheadBytes covers the rest).
inline size_t WireSize(const WireMessage& message) {
  size_t size = message.key.size() + message.value.size();
  for (const auto& h : message.headers) size += h.name.size() + h.value.size() + 8;
  return size;
}

/// Queues `message` on `topic` (key, value and headers copied), serving delivery reports
/// and retrying while the local queue is full. Returns producev's final error code.
rd_kafka_resp_err_t Produce(rd_kafka_t* rk, const std::string& topic, const WireMessage& message,
                            void* opaque = nullptr);

/// Looks up where `topics` live, so that the first message to each does not wait about a
/// second for librdkafka 2.0's lazy metadata refresh. Best effort: failures only cost time.
void LookUpTopics(rd_kafka_t* rk, const std::vector<std::string>& topics);

// Consuming (consumer.cc).

/// Copies a consumed message (key, value, headers) and where it came from.
InputMessage Convert(const rd_kafka_message_t* m);

/// For a consumer error saying a record could not be read (a corrupt batch, unknown
/// compression): a message that stands for it, with `unreadable` saying why and where.
/// librdkafka moves past such a record; the caller must account for it.
std::optional<InputMessage> Unreadable(const rd_kafka_message_t* m);

using TopicPartition = std::pair<std::string, int32_t>;

/// Applies a rebalance event to `rk` and to `assigned` (the member's partitions), eagerly or
/// incrementally as the group's protocol is. `partitions` may carry start offsets. `log`, when
/// set, gets one line saying what changed ("assigned 3 partition(s): images[0] ...").
void ApplyRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
                    std::set<TopicPartition>& assigned, const std::function<void(const std::string&)>& log = {});

/// Moves an assigned partition's fetch position to `offset` and waits (up to 10 s) until the
/// fetcher has taken it, so no message from the old position follows. Uses rd_kafka_seek:
/// librdkafka 2.0's rd_kafka_seek_partitions waits a thousandth of its timeout (fixed in 2.1).
rd_kafka_resp_err_t SeekAndWait(rd_kafka_t* consumer, const std::string& topic, int32_t partition, int64_t offset);

using RebalanceCallback = void (*)(rd_kafka_t*, rd_kafka_resp_err_t, rd_kafka_topic_partition_list_t*, void*);
using ErrorCallback = void (*)(rd_kafka_t*, int, const char*, void*);

/// A consumer group member of `group` subscribed to `topics`, its rebalances going to
/// `on_rebalance` and its errors (a consumer's come only there: librdkafka otherwise logs
/// them) to `on_error`, both with `opaque`. Unless `config` says otherwise: read_committed,
/// no automatic commits, new groups from the earliest offset, and a 10 s session timeout.
Result<Handle> SubscribeGroupMember(const KafkaConfig& config, const std::string& group,
                                    const std::vector<std::string>& topics, RebalanceCallback on_rebalance,
                                    ErrorCallback on_error, void* opaque);

/// Messages behind the high watermark over `assigned`, from cached watermarks; partitions
/// without a position yet are left out rather than guessed.
int64_t Lag(rd_kafka_t* consumer, const std::set<TopicPartition>& assigned);

/// How FillBatch waits for more once a batch has begun.
enum class FillWait {
  /// The batch's first message or unreadable record leaves `max_wait` for the rest, even
  /// past `idle` (TransactionalPipe).
  kFromFirst,
  /// The batch's first message cuts what is left of `idle` to `max_wait`, never lengthening
  /// it; an unreadable record leaves it as it is (ExternalOffsetConsumer: its caller's next
  /// deadline, the stream's update, must not slip).
  kWithinIdle,
};

/// How FillBatch fills a batch: the two batch consumers (TransactionalPipe,
/// ExternalOffsetConsumer) share the loop and differ only in these.
struct FillBatchOptions {
  int max_batch = 1;
  size_t max_batch_bytes = 0;
  std::chrono::milliseconds max_wait{0};
  FillWait fill_wait = FillWait::kFromFirst;
  /// Optional: checked after every poll, before the consumer's own errors; an error it
  /// returns (one the caller's rebalance callback left, say) ends the batch.
  std::function<std::optional<Error>()> failed;
  /// Optional: whether a record of this partition joins the batch (a rebalance inside the
  /// poll may have taken the partition away since it was fetched). Unset: every one does.
  std::function<bool(const TopicPartition&)> keep;
  /// Optional: told about each unreadable record and each consumer error librdkafka retries
  /// by itself ("consumer: ..."). Unset: they pass silently.
  std::function<void(const std::string&)> log;
  /// Optional: checked when a poll returned nothing; true ends the wait (the caller has
  /// something else to do, and yielded the consumer's queue to say so).
  std::function<bool()> interrupted;
};

/// Polls `consumer` into `batch` until it holds `max_batch` messages or `max_batch_bytes`, or
/// the wait ends: `idle` for the first message, then as `fill_wait` says. A record the client
/// could not read joins the batch too, as Unreadable makes it: librdkafka has moved past it,
/// so the caller must dead-letter or count it. Partition EOF and errors librdkafka retries by
/// itself are skipped. Stops with the error of `failed`, of `errors` (the consumer's error
/// callback) or of StopError, the batch left as filled so far. `batch` is the caller's so
/// that its rebalance callback can drop revoked partitions' messages from it mid-poll.
Status FillBatch(rd_kafka_t* consumer, const ErrorListener& errors, std::chrono::milliseconds idle,
                 const FillBatchOptions& options, std::vector<InputMessage>& batch);

}  // namespace iotinfer::kafka
