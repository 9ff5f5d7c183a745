#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "kafka/kafka.h"
#include "kafka/kafka_internal.h"

namespace iotinfer::kafka {

void LookUpTopics(rd_kafka_t* rk, const std::vector<std::string>& topics) {
  for (const auto& topic : topics) {
    const Topic rkt(rd_kafka_topic_new(rk, topic.c_str(), nullptr));
    const rd_kafka_metadata_t* answer = nullptr;
    const rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt.get(), &answer, 10000);
    // Asked only so that librdkafka learns where the topic lives; the answer is not needed.
    const Metadata metadata(err == RD_KAFKA_RESP_ERR_NO_ERROR ? answer : nullptr);
  }
}

rd_kafka_resp_err_t Produce(rd_kafka_t* rk, const std::string& topic, const WireMessage& message, void* opaque) {
  for (;;) {
    Headers headers(rd_kafka_headers_new(message.headers.size()));
    for (const auto& h : message.headers) {
      rd_kafka_header_add(headers.get(), h.name.data(), static_cast<ssize_t>(h.name.size()), h.value.data(),
                          static_cast<ssize_t>(h.value.size()));
    }
    rd_kafka_resp_err_t err =
        rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(message.key.data(), message.key.size()),
                          RD_KAFKA_V_VALUE(const_cast<char*>(message.value.data()), message.value.size()),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers.get()),
                          RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      headers.release();  // they now belong to the message
      return err;
    }
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) return err;
    // Backpressure: let deliveries drain the local queue, then try again.
    rd_kafka_poll(rk, 50);
  }
}

struct Producer::Impl {
  ProducerStats stats;
  ErrorListener errors;
  bool has_producer_id = false;
  Handle rk;  // last: destroyed first, while what its callbacks use still exists

  // librdkafka's statistics are the only place it tells whether it holds a producer id: its
  // "eos" object's producer_id, -1 until then. Not the "Assigned" state: an idle producer
  // reaches that only once its partitions are served, which with nothing to send took 10 s.
  static int OnStatistics(rd_kafka_t*, char* json, size_t, void* opaque) {
    auto* impl = static_cast<Impl*>(opaque);
    if (impl->has_producer_id) return 0;
    constexpr std::string_view kField = "\"producer_id\":";
    if (const char* at = std::strstr(json, kField.data())) {
      impl->has_producer_id = std::strtoll(at + kField.size(), nullptr, 10) >= 0;
    }
    return 0;  // librdkafka frees `json`
  }

  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* message, void* opaque) {
    auto* impl = static_cast<Impl*>(opaque);
    if (message->err) {
      impl->stats.failed++;
      impl->stats.last_error = rd_kafka_err2str(message->err);
    } else {
      impl->stats.acknowledged++;
    }
  }
};

Producer::Producer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Producer::~Producer() {
  // Give queued messages a short chance to leave; Flush() is the way to wait properly.
  if (impl_ && impl_->rk) rd_kafka_flush(impl_->rk.get(), 1000);
}

Result<std::unique_ptr<Producer>> Producer::Create(const KafkaConfig& config, const ProducerOptions& options) {
  KafkaConfig effective = config;
  // Explicit --kafka settings win over our defaults.
  effective.properties.try_emplace("enable.idempotence", options.idempotent ? "true" : "false");
  effective.properties.try_emplace("linger.ms", std::to_string(options.linger.count()));
  effective.properties.try_emplace("partitioner", kJavaCompatiblePartitioner);
  ASSIGN_OR_RETURN(Conf conf, MakeConf(effective, ClientRole::kProducer));
  // As librdkafka resolved them: --kafka may have turned idempotence off (then no id comes) or
  // statistics off (then nothing would say so).
  auto setting = [&](const char* name) {
    char value[32] = "";
    size_t size = sizeof value;
    return rd_kafka_conf_get(conf.get(), name, value, &size) == RD_KAFKA_CONF_OK ? std::string(value) : "";
  };
  if (options.await_producer_id && !effective.properties.contains("statistics.interval.ms") &&
      !effective.properties.contains("producer.statistics.interval.ms")) {
    rd_kafka_conf_set(conf.get(), "statistics.interval.ms", "100", nullptr, 0);
  }
  const bool await_id =
      options.await_producer_id && setting("enable.idempotence") == "true" && setting("statistics.interval.ms") != "0";
  auto impl = std::make_unique<Impl>();
  rd_kafka_conf_set_dr_msg_cb(conf.get(), &Impl::OnDelivery);
  rd_kafka_conf_set_error_cb(conf.get(), &RecordErrorsOf<Impl>);
  if (await_id) rd_kafka_conf_set_stats_cb(conf.get(), &Impl::OnStatistics);
  rd_kafka_conf_set_opaque(conf.get(), impl.get());
  ASSIGN_OR_RETURN(impl->rk, MakeHandle(RD_KAFKA_PRODUCER, std::move(conf)));
  LookUpTopics(impl->rk.get(), options.topics);
  // Not an error when it does not come: the messages then wait for it, as they would anyway.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (await_id && !impl->has_producer_id && !impl->errors.stop && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_poll(impl->rk.get(), 10);
  }
  return std::unique_ptr<Producer>(new Producer(std::move(impl)));
}

Status Producer::Send(const std::string& topic, const WireMessage& message) {
  // Nothing sent after a refusal or a fatal error would be delivered: stop the caller now.
  if (impl_->errors.stop) return std::unexpected(*impl_->errors.stop);
  impl_->stats.sent++;
  rd_kafka_resp_err_t err = Produce(impl_->rk.get(), topic, message);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return Ok();
  impl_->stats.failed++;
  impl_->stats.last_error = rd_kafka_err2str(err);
  return std::unexpected(FromKafka(err, fmt::format("producing to {}", topic)));
}

void Producer::Poll(std::chrono::milliseconds timeout) {
  rd_kafka_poll(impl_->rk.get(), static_cast<int>(timeout.count()));
}

Status Producer::Flush(std::chrono::milliseconds timeout) {
  // In slices, so that a refusal or a fatal error ends the wait: queued messages would only
  // time out.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (impl_->errors.stop) return std::unexpected(*impl_->errors.stop);
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    const auto slice = std::clamp(left, std::chrono::milliseconds(0), std::chrono::milliseconds(200));
    if (rd_kafka_flush(impl_->rk.get(), static_cast<int>(slice.count())) == RD_KAFKA_RESP_ERR_NO_ERROR) return Ok();
    if (left <= slice) break;
  }
  return std::unexpected(Error::Unavailable(
      fmt::format("{} messages still undelivered after {} ms", rd_kafka_outq_len(impl_->rk.get()), timeout.count())));
}

const ProducerStats& Producer::stats() const { return impl_->stats; }

}  // namespace iotinfer::kafka
