#include "kafka/transactional_pipe.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <librdkafka/rdkafka.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <utility>

#include "kafka/kafka_internal.h"

namespace iotinfer::kafka {
namespace {

// Fatal errors after which a new producer must not be made: another instance has taken this
// one's transactional id (a restarted replica of the same instance id, or a zombie's
// successor), and a new producer would fence the live instance in turn; or the cluster
// refuses this client, and would refuse the new one too.
bool MustStop(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
    case RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID:
      return true;
    default:
      return IsRefusal(err);
  }
}

// How long asking a failed transaction for its cause may take; it answers from its own state.
constexpr std::chrono::milliseconds kCauseTimeout{1000};

// What fits in a message under the size limit `limit_bytes`.
size_t RoomUnder(int64_t limit_bytes) {
  return static_cast<size_t>(std::max<int64_t>(limit_bytes - static_cast<int64_t>(kRecordOverheadBytes), 0));
}

}  // namespace

std::string TransactionalId(const std::string& group, const std::string& instance_id) {
  if (!instance_id.empty()) return fmt::format("{}-{}", group, instance_id);
  char host[256] = "host";
  gethostname(host, sizeof host - 1);
  return fmt::format("{}-{}-{}-{:08x}", group, host, getpid(), std::random_device{}());
}

struct TransactionalPipe::Impl {
  PipeOptions options;
  // Per output topic: the producer's limit at first, lowered to the topic's own once the
  // cluster has answered the DescribeConfigs sent at creation (into `limits`).
  mutable std::map<std::string, size_t> max_message_bytes;
  size_t producer_room = RoomUnder(1'000'000);  // librdkafka's default message.max.bytes
  Handle consumer;
  // A transactional producer, and the state of its open transaction.
  struct Producer {
    std::string transactional_id;
    Handle handle;  // none after a fatal error until a new one is made
    // Numbers the transactions, so that reports on an aborted one's messages, which may come
    // during the next, are told apart.
    uintptr_t transaction = 0;
    // The first output of the open transaction that the cluster refused, and why.
    rd_kafka_resp_err_t delivery_error = RD_KAFKA_RESP_ERR_NO_ERROR;
    std::string delivery_failure;
  };
  // One, or two taking turns (PipeOptions::alternate_producers); held by pointer, which their
  // delivery reports carry.
  std::vector<std::unique_ptr<Producer>> producers;
  size_t turn = 0;  // the producer of the next transaction
  std::set<TopicPartition> assigned;
  mutable Queue limits;                          // of producers[0], declared after it: destroyed first
  std::vector<InputMessage>* filling = nullptr;  // the batch PollBatch is filling, if any
  ErrorListener errors;                          // of the consumer

  // Creates `p`'s transactional producer and initialises its transactions: this aborts
  // whatever transaction an earlier producer of the same transactional id left open.
  Status StartProducer(Producer& p, std::chrono::milliseconds init_timeout) {
    KafkaConfig producer_config = options.kafka;
    producer_config.properties["transactional.id"] = p.transactional_id;
    // A batch's records are all queued before commit_transaction flushes them, so lingering
    // only delays the commit (by ~3 ms of ~14 ms on a local broker).
    producer_config.properties.try_emplace("linger.ms", "0");
    // A crashed instance's open transaction holds back read_committed readers until it times
    // out; Kafka's 60 s default is long for batches that take milliseconds.
    producer_config.properties.try_emplace("transaction.timeout.ms", "10000");
    producer_config.properties.try_emplace("partitioner", kJavaCompatiblePartitioner);
    // Until the markers of the last commit are written, the coordinator answers the next
    // transaction's offsets with CONCURRENT_TRANSACTIONS, which librdkafka retries after
    // retry.backoff.ms. Its 100 ms default held one commit in ten back that long at 50 images/s
    // (docs/latency.md). Retries still back off exponentially, to retry.backoff.max.ms.
    producer_config.properties.try_emplace("retry.backoff.ms", "5");
    ASSIGN_OR_RETURN(Conf producer_conf, MakeConf(producer_config, ClientRole::kProducer));
    rd_kafka_conf_set_dr_msg_cb(producer_conf.get(), &Impl::OnDelivery);
    rd_kafka_conf_set_opaque(producer_conf.get(), &p);
    ASSIGN_OR_RETURN(Handle created, MakeHandle(RD_KAFKA_PRODUCER, std::move(producer_conf)));
    if (KafkaError e{rd_kafka_init_transactions(created.get(), static_cast<int>(init_timeout.count()))}) {
      const std::string what =
          fmt::format("initialising transactions as {}: {}", p.transactional_id, rd_kafka_error_string(e.get()));
      if (IsRefusal(rd_kafka_error_code(e.get()))) return std::unexpected(Refused(what));
      return std::unexpected(Error::Unavailable(what));
    }
    p.handle = std::move(created);
    return Ok();
  }

  // A producer in a fatal state can never be used again (librdkafka's rule). Unless the
  // error says to stop (MustStop), one under the same transactional id takes its place, so
  // that the loss of the transaction coordinator in the middle of a commit (a broker killed)
  // costs a retry and not the process. Till one is made, commits fail as Unavailable.
  Status Renew(Producer& p, const std::string& what) {
    if (options.log) options.log(fmt::format("{}; starting a new transactional producer", what));
    const bool asks_limits = &p == producers.front().get();
    if (asks_limits) limits.reset();
    p.handle.reset();
    TRY(StartProducer(p, kRenewTimeout));
    if (asks_limits) AskTopicLimits();
    if (options.log) options.log("the new transactional producer is ready");
    return Ok();
  }
  // Short, so that the main loop turns (and /healthz beats) while the cluster is away.
  static constexpr std::chrono::milliseconds kRenewTimeout{10000};

  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* p = static_cast<Producer*>(opaque);
    if (!m->err || p->delivery_error || reinterpret_cast<uintptr_t>(m->_private) != p->transaction) return;
    p->delivery_error = m->err;
    p->delivery_failure =
        fmt::format("producing to {}[{}]: {}", rd_kafka_topic_name(m->rkt), m->partition, rd_kafka_err2str(m->err));
  }

  // Waits until every output of the open transaction is delivered, or one has failed: the
  // transaction is lost then, and the messages queued behind the failed one would only
  // time out (transaction.timeout.ms) before commit_transaction reported it.
  // With a `limit`, gives up waiting then (the outputs still in flight may never be answered).
  static rd_kafka_resp_err_t AwaitDeliveries(Producer& p,
                                             std::optional<std::chrono::milliseconds> limit = std::nullopt) {
    const auto deadline = std::chrono::steady_clock::now() + limit.value_or(std::chrono::milliseconds(0));
    while (rd_kafka_outq_len(p.handle.get()) > 0 && !p.delivery_error) {
      if (limit && std::chrono::steady_clock::now() >= deadline) break;
      rd_kafka_poll(p.handle.get(), 5);
    }
    return p.delivery_error;
  }

  // Asks the cluster for the output topics' max.message.bytes without waiting for the answer:
  // a cluster that never answers (librdkafka's mock) must not hold up the start.
  void AskTopicLimits() {
    std::vector<ConfigResource> resources;  // the request holds copies
    for (const auto& topic : options.output_topics) {
      resources.emplace_back(rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str()));
    }
    std::vector<rd_kafka_ConfigResource_t*> pointers = Pointers(resources);
    rd_kafka_t* rk = producers.front()->handle.get();
    limits.reset(rd_kafka_queue_new(rk));
    rd_kafka_DescribeConfigs(rk, pointers.data(), pointers.size(), nullptr, limits.get());
  }

  // Takes the answer to AskTopicLimits if it has come.
  void TakeTopicLimits() const {
    if (!limits) return;
    Event event(rd_kafka_queue_poll(limits.get(), 0));
    if (!event) return;
    std::vector<std::string> problems;
    if (auto err = rd_kafka_event_error(event.get()); err) {
      problems.push_back(fmt::format("describing the output topics: {}", rd_kafka_err2str(err)));
    } else {
      size_t count = 0;
      const rd_kafka_ConfigResource_t** described =
          rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(event.get()), &count);
      for (size_t i = 0; i < count; ++i) {
        const std::string topic = rd_kafka_ConfigResource_name(described[i]);
        if (auto topic_err = rd_kafka_ConfigResource_error(described[i]); topic_err) {
          problems.push_back(fmt::format("describing topic {}: {}", topic, rd_kafka_err2str(topic_err)));
          continue;
        }
        size_t entries = 0;
        const rd_kafka_ConfigEntry_t** configs = rd_kafka_ConfigResource_configs(described[i], &entries);
        for (size_t j = 0; j < entries; ++j) {
          const char* value = rd_kafka_ConfigEntry_value(configs[j]);
          if (value && std::string_view(rd_kafka_ConfigEntry_name(configs[j])) == "max.message.bytes") {
            size_t& limit = max_message_bytes[topic];
            limit = std::min(limit, RoomUnder(std::strtoll(value, nullptr, 10)));
          }
        }
      }
    }
    event.reset();  // before the queue it came from
    limits.reset();
    // Describing needs a permission of its own (DescribeConfigs), which a service may lack.
    for (const auto& problem : problems) {
      if (options.log) options.log(problem + "; dead letters are sized by the producer's limit alone");
    }
  }

  struct Failure {
    KafkaError error;
    std::string step;
  };

  struct Settled {
    Status status;
    bool rewind = false;
  };
  Settled Transact(std::span<const InputMessage> consumed, std::span<const OutputMessage> outputs,
                   const rd_kafka_consumer_group_metadata_t* group);
  // `settled`, once the consumer is back where `consumed` and `polled_since` began if it must be.
  Status Settle(Settled settled, std::span<const InputMessage> consumed, std::span<const InputMessage> polled_since);

  // A commit StartCommit began, on a thread of its own.
  struct InFlight {
    std::thread thread;
    std::atomic<bool> done{false};
    Settled settled;
    std::span<const InputMessage> consumed;
    Queue wake;  // the consumer's, yielded when done
  };
  std::unique_ptr<InFlight> in_flight;

  // One try at the transaction of `outputs` and the offsets past `consumed`: none when it
  // committed, else how it failed, with the transaction left to abort.
  static std::optional<Failure> TryTransaction(Producer& p, std::span<const InputMessage> consumed,
                                               std::span<const OutputMessage> outputs,
                                               const rd_kafka_consumer_group_metadata_t* group) {
    rd_kafka_t* rk = p.handle.get();
    p.delivery_error = RD_KAFKA_RESP_ERR_NO_ERROR;
    p.transaction++;
    if (KafkaError e{rd_kafka_begin_transaction(rk)}) return Failure{std::move(e), "begin transaction"};
    for (const OutputMessage& out : outputs) {
      if (auto err = Produce(rk, out.topic, out.message, reinterpret_cast<void*>(p.transaction))) {
        return Failure{KafkaError(rd_kafka_error_new(err, "%s", rd_kafka_err2str(err))), "producing " + out.topic};
      }
    }
    std::map<TopicPartition, int64_t> next;
    for (const InputMessage& in : consumed) {
      auto& offset = next[{in.topic, in.partition}];
      offset = std::max(offset, in.offset + 1);
    }
    PartitionList offsets(rd_kafka_topic_partition_list_new(static_cast<int>(next.size())));
    for (const auto& [tp, offset] : next) {
      rd_kafka_topic_partition_list_add(offsets.get(), tp.first.c_str(), tp.second)->offset = offset;
    }
    KafkaError sent{rd_kafka_send_offsets_to_transaction(rk, offsets.get(), group, -1)};
    if (sent) {
      // When an output partition could not join the transaction (the cluster refused to add it:
      // no right to write its topic, say), the transaction fails in the background, and this
      // call, racing with that, may report only "Erroneous state". Committing a transaction that
      // must abort reports why it must, and commits nothing.
      if (rd_kafka_error_code(sent.get()) == RD_KAFKA_RESP_ERR__STATE &&
          rd_kafka_error_txn_requires_abort(sent.get())) {
        KafkaError cause{rd_kafka_commit_transaction(rk, static_cast<int>(kCauseTimeout.count()))};
        if (cause && rd_kafka_error_code(cause.get()) != RD_KAFKA_RESP_ERR__STATE) sent = std::move(cause);
      }
      // An output the broker refused (too large, say) breaks the producer's sequence, and this
      // call may report only that ("skipped sequence numbers"): the refusal is the reason, and
      // it decides whether the batch is isolated. Only such a refusal: the outputs of a
      // transaction that failed otherwise (no right to a topic, a fatal error) fail for that,
      // which stays the reason.
      if (!rd_kafka_error_is_fatal(sent.get()) && !IsRefusal(rd_kafka_error_code(sent.get())) &&
          IsRefusedContent(AwaitDeliveries(p, kCauseTimeout))) {
        return Failure{KafkaError(rd_kafka_error_new(p.delivery_error, "%s", p.delivery_failure.c_str())),
                       "committing the transaction"};
      }
      return Failure{std::move(sent), "sending offsets to the transaction"};
    }
    if (auto err = AwaitDeliveries(p)) {
      // Those not sent yet would only wait out their timeout before the abort could finish.
      rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE);
      return Failure{KafkaError(rd_kafka_error_new(err, "%s", p.delivery_failure.c_str())),
                     "committing the transaction"};
    }
    for (int attempt = 0;; ++attempt) {
      KafkaError e{rd_kafka_commit_transaction(rk, -1)};
      if (!e) return std::nullopt;
      if (!rd_kafka_error_is_retriable(e.get()) || attempt == 5) {
        return Failure{std::move(e), "committing the transaction"};
      }
    }
  }

  static void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
                          void* opaque) {
    auto* impl = static_cast<Impl*>(opaque);
    const bool assigning = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
    if (!assigning && impl->filling) {
      // Dropped even when the partition comes straight back: a new assignment starts again
      // at the committed offset, so keeping them would put them in the batch twice.
      std::set<TopicPartition> revoked;
      for (int i = 0; i < partitions->cnt; ++i) {
        revoked.insert({partitions->elems[i].topic, partitions->elems[i].partition});
      }
      std::erase_if(*impl->filling, [&](const InputMessage& in) { return revoked.contains({in.topic, in.partition}); });
    }
    ApplyRebalance(rk, err, partitions, impl->assigned, impl->options.log);
  }

  // Back to where `batch` began in each of its partitions: those offsets follow the last
  // committed batch, so the aborted batch is read again and nothing after it is skipped.
  // With `past`, to just after where it ends instead.
  Status Rewind(std::initializer_list<std::span<const InputMessage>> batches, bool past = false) {
    std::map<TopicPartition, int64_t> first;
    for (std::span<const InputMessage> batch : batches) {
      for (const InputMessage& in : batch) {
        const int64_t offset = past ? in.offset + 1 : in.offset;
        auto [it, inserted] = first.try_emplace({in.topic, in.partition}, offset);
        if (!inserted) it->second = past ? std::max(it->second, offset) : std::min(it->second, offset);
      }
    }
    for (const auto& [tp, offset] : first) {
      if (!assigned.contains(tp)) continue;  // its new owner starts at the committed offset
      if (const rd_kafka_resp_err_t err = SeekAndWait(consumer.get(), tp.first, tp.second, offset)) {
        return std::unexpected(Error::FailedPrecondition(
            fmt::format("seeking {}[{}] to {} after a transaction: {}; stopping, so that a restart "
                        "resumes from the committed offsets",
                        tp.first, tp.second, offset, rd_kafka_err2str(err))));
      }
    }
    return Ok();
  }
};

TransactionalPipe::TransactionalPipe(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TransactionalPipe::~TransactionalPipe() { Close(); }

Result<std::unique_ptr<TransactionalPipe>> TransactionalPipe::Create(const PipeOptions& options) {
  if (options.input_topics.empty()) return std::unexpected(Error::InvalidInput("no input topics"));
  if (options.transactional_id.empty()) return std::unexpected(Error::InvalidInput("no transactional id"));
  if (options.max_batch < 1) return std::unexpected(Error::InvalidInput("batch size must be at least 1"));
  auto impl = std::make_unique<Impl>();
  impl->options = options;

  for (int i = 0; i < (options.alternate_producers ? 2 : 1); ++i) {
    auto p = std::make_unique<Impl::Producer>();
    p->transactional_id = i == 0 ? options.transactional_id : options.transactional_id + "#2";
    TRY(impl->StartProducer(*p, std::chrono::seconds(30)));
    impl->producers.push_back(std::move(p));
  }

  rd_kafka_t* first = impl->producers.front()->handle.get();
  LookUpTopics(first, options.output_topics);
  std::array<char, 32> value{};
  size_t value_size = value.size();
  if (rd_kafka_conf_get(rd_kafka_conf(first), "message.max.bytes", value.data(), &value_size) == RD_KAFKA_CONF_OK) {
    impl->producer_room = RoomUnder(std::strtoll(value.data(), nullptr, 10));
  }
  for (const std::string& topic : options.output_topics) impl->max_message_bytes[topic] = impl->producer_room;
  impl->AskTopicLimits();

  // Subscribed last: a member joins its group only once it can commit what it consumes.
  ASSIGN_OR_RETURN(impl->consumer, SubscribeGroupMember(options.kafka, options.group, options.input_topics,
                                                        &Impl::OnRebalance, &RecordErrorsOf<Impl>, impl.get()));
  return std::unique_ptr<TransactionalPipe>(new TransactionalPipe(std::move(impl)));
}

namespace {
size_t WireSizeOf(std::span<const InputMessage> messages) {
  size_t bytes = 0;
  for (const InputMessage& m : messages) bytes += WireSize(m.message);
  return bytes;
}
}  // namespace

Result<std::vector<InputMessage>> TransactionalPipe::PollBatch(std::chrono::milliseconds idle,
                                                               std::span<const InputMessage> held) {
  Impl& impl = *impl_;
  std::vector<InputMessage> batch;
  impl.filling = &batch;
  struct Done {
    Impl& impl;
    ~Done() { impl.filling = nullptr; }
  } done{impl};
  const size_t held_bytes = WireSizeOf(held);
  const FillBatchOptions fill{
      .max_batch = std::max(impl.options.max_batch - static_cast<int>(held.size()), 1),
      .max_batch_bytes = held_bytes < impl.options.max_batch_bytes ? impl.options.max_batch_bytes - held_bytes : 1,
      .max_wait = impl.options.max_wait,
      .fill_wait = FillWait::kFromFirst,
      .log = impl.options.log,
      .interrupted = [this] { return commit_finished(); }};
  TRY(FillBatch(impl.consumer.get(), impl.errors, idle, fill, batch));
  return batch;
}

// What a commit came to on the producer's side: what to return, and whether the consumer must
// go back to where the batch began (it is read again). Runs on StartCommit's thread too: it
// touches the producer alone, never the consumer.
TransactionalPipe::Impl::Settled TransactionalPipe::Impl::Transact(std::span<const InputMessage> consumed,
                                                                   std::span<const OutputMessage> outputs,
                                                                   const rd_kafka_consumer_group_metadata_t* group) {
  Producer& p = *producers[turn];
  // After a fatal error, or with no producer since one: a new producer, and the batch read again.
  auto renew = [&](const std::string& what, const rd_kafka_error_t* fatal) -> Settled {
    if (fatal) {
      // The error that made the producer fatal, which a later call may only echo as a state error.
      std::array<char, 256> reason{};
      rd_kafka_resp_err_t cause = rd_kafka_fatal_error(p.handle.get(), reason.data(), reason.size());
      if (IsRefusal(rd_kafka_error_code(fatal)) || IsRefusal(cause)) return {std::unexpected(Refused(what)), false};
      if (MustStop(rd_kafka_error_code(fatal)) || MustStop(cause)) {
        return {std::unexpected(Error::FailedPrecondition(what)), false};
      }
    }
    Status renewed = Renew(p, what);
    if (!renewed) {
      return {std::unexpected(Error::Unavailable(fmt::format("{}; {}", what, renewed.error().message()))), true};
    }
    return {std::unexpected(Error::Unavailable(what + " (a new producer will commit the batch, read again)")), true};
  };
  if (!p.handle) return renew("no transactional producer since a fatal error", nullptr);
  for (int attempt = 0;; ++attempt) {
    std::optional<Failure> failed = TryTransaction(p, consumed, outputs, group);
    if (!failed) {
      turn = (turn + 1) % producers.size();
      return {Ok(), false};
    }
    std::string what = fmt::format("{}: {}", failed->step, rd_kafka_error_string(failed->error.get()));
    if (rd_kafka_error_is_fatal(failed->error.get())) return renew(what, failed->error.get());
    if (KafkaError abort{rd_kafka_abort_transaction(p.handle.get(), 30000)}) {
      what += fmt::format("; abort failed: {}", rd_kafka_error_string(abort.get()));
      // Outputs that timed out mean the transaction outlived transaction.timeout.ms (a broker
      // was away that long), and the coordinator aborted it itself, bumping the epoch: the
      // abort then finds this producer fenced, though no other instance took its id (the
      // chaos run met it). A new producer under the same id goes on, the batch read again.
      // Decided from the outputs' own reports: the timeout may surface first through another
      // call (send_offsets_to_transaction's "message(s) timed out"), with another code.
      rd_kafka_poll(p.handle.get(), 0);
      const bool outlived = rd_kafka_error_code(failed->error.get()) == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT ||
                            p.delivery_error == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT;
      if (rd_kafka_error_is_fatal(abort.get())) return renew(what, outlived ? nullptr : abort.get());
      return {std::unexpected(Error::FailedPrecondition(what)), false};
    }
    // Purged by the client itself, or refused for its state, while it finished the epoch bump
    // of the previous abort: that says nothing of these outputs, so they are tried again at once.
    const rd_kafka_resp_err_t code = rd_kafka_error_code(failed->error.get());
    if (attempt == 0 && (code == RD_KAFKA_RESP_ERR__PURGE_QUEUE || code == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT ||
                         code == RD_KAFKA_RESP_ERR__STATE)) {
      continue;
    }
    // No right to write an output topic (the dead letters', say) comes by retrying: the service
    // stops and says where it wrote, rather than stalling every partition behind a batch that
    // cannot commit. The broker's answer does not name the topic.
    if (IsRefusal(code)) {
      std::set<std::string> topics;
      for (const OutputMessage& out : outputs) topics.insert(out.topic);
      return {std::unexpected(Refused(fmt::format("{} (the transaction wrote to {}, and read from {})", what,
                                                  fmt::join(topics, ", "), fmt::join(options.input_topics, ", ")))),
              true};
    }
    what += " (aborted; the batch will be read again)";
    if (IsRefusedContent(code)) return {std::unexpected(Error::InvalidInput(what)), true};
    return {std::unexpected(Error::Unavailable(what)), true};
  }
}

Status TransactionalPipe::Impl::Settle(Settled settled, std::span<const InputMessage> consumed,
                                       std::span<const InputMessage> polled_since) {
  if (settled.rewind) TRY(Rewind({consumed, polled_since}));
  return settled.status;
}

Status TransactionalPipe::Commit(std::span<const InputMessage> consumed, std::span<const OutputMessage> outputs) {
  Impl& impl = *impl_;
  if (impl.in_flight) return std::unexpected(Error::FailedPrecondition("Commit while a commit is in flight"));
  const GroupMetadata group(rd_kafka_consumer_group_metadata(impl.consumer.get()));
  return impl.Settle(impl.Transact(consumed, outputs, group.get()), consumed, {});
}

Status TransactionalPipe::StartCommit(std::span<const InputMessage> consumed, std::span<const OutputMessage> outputs) {
  Impl& impl = *impl_;
  if (impl.in_flight) return std::unexpected(Error::FailedPrecondition("StartCommit while a commit is in flight"));
  auto flight = std::make_unique<Impl::InFlight>();
  flight->consumed = consumed;
  flight->wake.reset(rd_kafka_queue_get_consumer(impl.consumer.get()));
  // Taken here: the consumer is the caller's thread's.
  flight->thread = std::thread(
      [&impl, f = flight.get(), outputs, group = GroupMetadata(rd_kafka_consumer_group_metadata(impl.consumer.get()))] {
        f->settled = impl.Transact(f->consumed, outputs, group.get());
        f->done.store(true);
        rd_kafka_queue_yield(f->wake.get());  // a PollBatch waiting for messages returns
      });
  impl.in_flight = std::move(flight);
  return Ok();
}

bool TransactionalPipe::commit_in_flight() const { return impl_->in_flight != nullptr; }

bool TransactionalPipe::commit_finished() const { return impl_->in_flight && impl_->in_flight->done.load(); }

Status TransactionalPipe::AwaitCommit(std::span<const InputMessage> polled_since) {
  Impl& impl = *impl_;
  if (!impl.in_flight) return std::unexpected(Error::FailedPrecondition("AwaitCommit with no commit in flight"));
  impl.in_flight->thread.join();
  std::unique_ptr<Impl::InFlight> flight = std::move(impl.in_flight);
  return impl.Settle(std::move(flight->settled), flight->consumed, polled_since);
}

Status TransactionalPipe::CommitInstead(std::span<const InputMessage> consumed,
                                        std::span<const OutputMessage> outputs) {
  TRY(Commit(consumed, outputs));
  return impl_->Rewind({consumed}, /*past=*/true);
}

size_t TransactionalPipe::max_message_bytes(const std::string& topic) const {
  impl_->TakeTopicLimits();
  auto it = impl_->max_message_bytes.find(topic);
  return it == impl_->max_message_bytes.end() ? impl_->producer_room : it->second;
}

bool TransactionalPipe::Fills(std::span<const InputMessage> held) const {
  return static_cast<int>(held.size()) >= impl_->options.max_batch ||
         WireSizeOf(held) >= impl_->options.max_batch_bytes;
}

void TransactionalPipe::set_max_batch(int max_batch) { impl_->options.max_batch = std::max(max_batch, 1); }

int TransactionalPipe::max_batch() const { return impl_->options.max_batch; }

int TransactionalPipe::assigned_partitions() const { return static_cast<int>(impl_->assigned.size()); }

int64_t TransactionalPipe::lag() const { return Lag(impl_->consumer.get(), impl_->assigned); }

void TransactionalPipe::Close() {
  // A commit in flight finishes first: its thread uses the producer.
  if (impl_ && impl_->in_flight) {
    impl_->in_flight->thread.join();
    impl_->in_flight.reset();
  }
  if (impl_ && impl_->consumer) {
    rd_kafka_consumer_close(impl_->consumer.get());
    impl_->consumer.reset();
    impl_->limits.reset();
    impl_->producers.clear();
  }
}

}  // namespace iotinfer::kafka
