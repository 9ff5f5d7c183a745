#include "kafka/transactional_producer.h"

#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include <cstdint>
#include <optional>

#include "kafka/kafka_internal.h"

namespace iotinfer::kafka {

struct TransactionalProducer::Impl {
  ErrorListener errors;
  // Numbers the transactions, so that a late report on an aborted one's message is not taken
  // for one of the next.
  uintptr_t transaction = 0;
  // The first message of the open transaction that failed, and why.
  rd_kafka_resp_err_t delivery_error = RD_KAFKA_RESP_ERR_NO_ERROR;
  std::string delivery_failure;
  Handle producer;  // last: destroyed first, while what its callbacks use still exists

  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* impl = static_cast<Impl*>(opaque);
    if (!m->err || impl->delivery_error || reinterpret_cast<uintptr_t>(m->_private) != impl->transaction) return;
    impl->delivery_error = m->err;
    impl->delivery_failure =
        fmt::format("producing to {}[{}]: {}", rd_kafka_topic_name(m->rkt), m->partition, rd_kafka_err2str(m->err));
  }

  struct Failure {
    KafkaError error;
    std::string step;
  };

  // One try at a transaction of `messages`: none when it committed, else how it failed, with
  // the transaction left to abort.
  std::optional<Failure> TryTransaction(std::span<const OutputMessage> messages,
                                        const std::function<void()>& before_commit) {
    rd_kafka_t* rk = producer.get();
    delivery_error = RD_KAFKA_RESP_ERR_NO_ERROR;
    transaction++;
    if (KafkaError e{rd_kafka_begin_transaction(rk)}) return Failure{std::move(e), "beginning a transaction"};
    for (const OutputMessage& out : messages) {
      if (auto err = Produce(rk, out.topic, out.message, reinterpret_cast<void*>(transaction))) {
        return Failure{KafkaError(rd_kafka_error_new(err, "%s", rd_kafka_err2str(err))), "producing to " + out.topic};
      }
    }
    while (rd_kafka_outq_len(rk) > 0 && !delivery_error) rd_kafka_poll(rk, 5);
    if (delivery_error) {
      // Those not sent yet would only wait out their timeout before the abort could finish.
      rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE);
      return Failure{KafkaError(rd_kafka_error_new(delivery_error, "%s", delivery_failure.c_str())),
                     "writing the transaction"};
    }
    if (before_commit) before_commit();
    for (int attempt = 0;; ++attempt) {
      KafkaError e{rd_kafka_commit_transaction(rk, -1)};
      if (!e) return std::nullopt;
      if (rd_kafka_error_txn_requires_abort(e.get()) || !rd_kafka_error_is_retriable(e.get()) || attempt == 5) {
        return Failure{std::move(e), "committing the transaction"};
      }
    }
  }

  // The error Commit returns for `failure`, once the transaction is aborted where it can be.
  Error Abort(const Failure& failure) {
    const rd_kafka_error_t* error = failure.error.get();
    const rd_kafka_resp_err_t code = rd_kafka_error_code(error);
    std::string what = fmt::format("{}: {}", failure.step, rd_kafka_error_string(error));
    if (rd_kafka_error_is_fatal(error) || code == RD_KAFKA_RESP_ERR__FENCED ||
        code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED || code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH) {
      return Error::FailedPrecondition(what);
    }
    if (IsRefusal(code)) return Refused(what);
    if (KafkaError abort{rd_kafka_abort_transaction(producer.get(), 30000)}) {
      what += fmt::format("; aborting it: {}", rd_kafka_error_string(abort.get()));
      return Error::FailedPrecondition(what);
    }
    if (IsRefusedContent(code)) return Error::InvalidInput(what);
    return Error::Unavailable(what);
  }
};

TransactionalProducer::TransactionalProducer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TransactionalProducer::~TransactionalProducer() = default;

Result<std::unique_ptr<TransactionalProducer>> TransactionalProducer::Create(
    const TransactionalProducerOptions& options) {
  if (options.transactional_id.empty()) return std::unexpected(Error::InvalidInput("no transactional id"));
  KafkaConfig config = options.kafka;
  // Fencing works only while every run uses the same id: no property may change it.
  config.properties.erase(std::string(kProducerPrefix) + "transactional.id");
  config.properties["transactional.id"] = options.transactional_id;
  config.properties.try_emplace("partitioner", kJavaCompatiblePartitioner);
  // Every message of a transaction is queued before the commit flushes them: lingering would
  // only delay it.
  config.properties.try_emplace("linger.ms", "0");
  // A run that dies leaves its transaction open, holding back every read_committed reader of
  // the topics it wrote to until the transaction times out (or a new run aborts it); Kafka's
  // 60 s default is long for transactions that take milliseconds.
  config.properties.try_emplace("transaction.timeout.ms", "10000");
  ASSIGN_OR_RETURN(Conf conf, MakeConf(config, ClientRole::kProducer));
  auto impl = std::make_unique<Impl>();
  rd_kafka_conf_set_dr_msg_cb(conf.get(), &Impl::OnDelivery);
  rd_kafka_conf_set_error_cb(conf.get(), &RecordErrorsOf<Impl>);
  rd_kafka_conf_set_opaque(conf.get(), impl.get());
  ASSIGN_OR_RETURN(impl->producer, MakeHandle(RD_KAFKA_PRODUCER, std::move(conf)));
  if (KafkaError e{rd_kafka_init_transactions(impl->producer.get(), static_cast<int>(options.init_timeout.count()))}) {
    const std::string what =
        fmt::format("initialising transactions as {}: {}", options.transactional_id, rd_kafka_error_string(e.get()));
    if (impl->errors.stop) return std::unexpected(*impl->errors.stop);
    if (IsRefusal(rd_kafka_error_code(e.get()))) return std::unexpected(Refused(what));
    if (rd_kafka_error_is_fatal(e.get())) return std::unexpected(Error::FailedPrecondition(what));
    return std::unexpected(Error::Unavailable(what));
  }
  LookUpTopics(impl->producer.get(), options.topics);
  return std::unique_ptr<TransactionalProducer>(new TransactionalProducer(std::move(impl)));
}

Status TransactionalProducer::Commit(std::span<const OutputMessage> messages,
                                     const std::function<void()>& before_commit) {
  Impl& impl = *impl_;
  for (int attempt = 0;; ++attempt) {
    std::optional<Impl::Failure> failed = impl.TryTransaction(messages, before_commit);
    if (!failed) return Ok();
    Error error = impl.Abort(*failed);
    // Purged by the client itself, or refused for its state, while it finished the epoch bump
    // of the previous abort: that says nothing of these messages, so they are tried again.
    const rd_kafka_resp_err_t code = rd_kafka_error_code(failed->error.get());
    if (attempt == 0 && error.code() != Error::Code::kFailedPrecondition &&
        (code == RD_KAFKA_RESP_ERR__PURGE_QUEUE || code == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT ||
         code == RD_KAFKA_RESP_ERR__STATE)) {
      continue;
    }
    return std::unexpected(std::move(error));
  }
}

}  // namespace iotinfer::kafka
