#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include <array>
#include <cstdio>
#include <string_view>

#include "kafka/kafka_internal.h"

namespace iotinfer::kafka {

Error FromKafka(rd_kafka_resp_err_t err, std::string_view context) {
  std::string message = fmt::format("{}: {}", context, rd_kafka_err2str(err));
  switch (err) {
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
      return Error::Unavailable(std::move(message));
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
      return Error::NotFound(std::move(message));
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return Error::InvalidInput(std::move(message));
    default:
      return IsRefusal(err) ? Refused(message) : Error::Internal(std::move(message));
  }
}

bool IsRefusal(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
      return true;
    default:
      return false;
  }
}

bool IsRefusedContent(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return true;
    default:
      return false;
  }
}

Error Refused(std::string_view reason) {
  return Error::PermissionDenied(fmt::format(
      "the Kafka cluster refuses this client: {} (check the security properties given with --kafka)", reason));
}

namespace {

Error Fatal(rd_kafka_t* rk) {
  std::array<char, 512> reason{};
  rd_kafka_fatal_error(rk, reason.data(), reason.size());
  return Error::FailedPrecondition(fmt::format("kafka: fatal error: {}", reason.data()));
}

}  // namespace

std::optional<Error> StopError(rd_kafka_t* rk, const rd_kafka_message_t* m) {
  if (m->err == RD_KAFKA_RESP_ERR__FATAL) return Fatal(rk);
  if (IsRefusal(m->err)) return Refused(rd_kafka_message_errstr(m));
  return std::nullopt;
}

void LogLine(const rd_kafka_t* rk, int level, const char* facility, const char* line) {
  static constexpr std::array<const char*, 8> kLevels = {"emergency", "alert",  "critical", "error",
                                                         "warning",   "notice", "info",     "debug"};
  const char* name = level >= 0 && level < static_cast<int>(kLevels.size()) ? kLevels[level] : "log";
  std::fprintf(stderr, "kafka %s: %s %s: %s\n", rk ? rd_kafka_name(rk) : "client", name, facility, line);
}

void ErrorListener::Attach(rd_kafka_conf_t* conf, ErrorListener* listener) {
  rd_kafka_conf_set_error_cb(conf, [](rd_kafka_t* rk, int err, const char* reason, void* opaque) {
    Record(*static_cast<ErrorListener*>(opaque), rk, err, reason);
  });
  rd_kafka_conf_set_opaque(conf, listener);
}

void ErrorListener::Record(ErrorListener& listener, rd_kafka_t* rk, int err, const char* reason) {
  const auto code = static_cast<rd_kafka_resp_err_t>(err);
  constexpr int kError = 3;  // syslog's LOG_ERR, as librdkafka logs errors
  LogLine(rk, kError, rd_kafka_err2name(code), reason);
  if (listener.stop) return;
  if (code == RD_KAFKA_RESP_ERR__FATAL) listener.stop = Fatal(rk);
  if (IsRefusal(code)) listener.stop = Refused(reason);
  // librdkafka reports a certificate it does not trust as a transport error, which it retries
  // for ever; but a CA does not come to trust a certificate by waiting.
  if ((code == RD_KAFKA_RESP_ERR__TRANSPORT || code == RD_KAFKA_RESP_ERR__SSL) &&
      std::string_view(reason).find("certificate verify failed") != std::string_view::npos) {
    listener.stop = Error::PermissionDenied(fmt::format(
        "the Kafka broker's certificate is not trusted: {} (is ssl.ca.location the CA that signed it?)", reason));
  }
}

}  // namespace iotinfer::kafka
