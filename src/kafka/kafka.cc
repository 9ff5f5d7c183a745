#include "kafka/kafka.h"

#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <thread>

#include "core/text.h"
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

namespace {

// librdkafka's own lines ("%3|1764118800.123|FAIL|rdkafka#producer-1| [thrd:...]: ...") in
// the "who: what" form of the services' other lines, with a level word for syslog's number.
void LogLine(const rd_kafka_t* rk, int level, const char* facility, const char* line) {
  static constexpr std::array<const char*, 8> kLevels = {"emergency", "alert",  "critical", "error",
                                                         "warning",   "notice", "info",     "debug"};
  const char* name = level >= 0 && level < static_cast<int>(kLevels.size()) ? kLevels[level] : "log";
  std::fprintf(stderr, "kafka %s: %s %s: %s\n", rk ? rd_kafka_name(rk) : "client", name, facility, line);
}

}  // namespace

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

Error Refused(std::string_view reason) {
  return Error::FailedPrecondition(fmt::format(
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
}

Result<Conf> MakeConf(const KafkaConfig& config, ClientRole role) {
  Conf conf(rd_kafka_conf_new());
  rd_kafka_conf_set_log_cb(conf.get(), LogLine);
  std::array<char, 512> error{};
  auto set = [&](const std::string& key, const std::string& value) -> Status {
    if (rd_kafka_conf_set(conf.get(), key.c_str(), value.c_str(), error.data(), error.size()) != RD_KAFKA_CONF_OK) {
      // librdkafka's message names the property, never the value: safe for secrets.
      return std::unexpected(Error::InvalidInput(fmt::format("kafka property {}: {}", key, error.data())));
    }
    return Ok();
  };
  TRY(set("bootstrap.servers", config.brokers));
  const std::string_view mine = role == ClientRole::kConsumer ? kConsumerPrefix : kProducerPrefix;
  const std::string_view theirs = role == ClientRole::kConsumer ? kProducerPrefix : kConsumerPrefix;
  // Prefixed ones last: they win over the same property given to every client.
  for (const auto& [key, value] : config.properties) {
    if (!key.starts_with(mine) && !key.starts_with(theirs)) TRY(set(key, value));
  }
  for (const auto& [key, value] : config.properties) {
    if (key.starts_with(mine)) TRY(set(key.substr(mine.size()), value));
  }
  return conf;
}

InputMessage Convert(const rd_kafka_message_t* m) {
  InputMessage in;
  in.topic = rd_kafka_topic_name(m->rkt);
  in.partition = m->partition;
  in.offset = m->offset;
  if (m->key) in.message.key.assign(static_cast<const char*>(m->key), m->key_len);
  if (m->payload) in.message.value.assign(static_cast<const char*>(m->payload), m->len);
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name;
    const void* value;
    size_t size;
    for (size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
      in.message.headers.push_back({name, value ? std::string(static_cast<const char*>(value), size) : std::string()});
    }
  }
  return in;
}

std::optional<InputMessage> Unreadable(const rd_kafka_message_t* m) {
  if (!m->rkt || (m->err != RD_KAFKA_RESP_ERR__BAD_MSG && m->err != RD_KAFKA_RESP_ERR__BAD_COMPRESSION)) {
    return std::nullopt;
  }
  InputMessage in{.topic = rd_kafka_topic_name(m->rkt), .partition = m->partition, .offset = m->offset};
  in.unreadable = fmt::format("the Kafka client could not read the record at {}[{}] offset {}: {}: {}", in.topic,
                              in.partition, in.offset, rd_kafka_err2str(m->err), rd_kafka_message_errstr(m));
  return in;
}

void LookUpTopics(rd_kafka_t* rk, const std::vector<std::string>& topics) {
  for (const auto& topic : topics) {
    const Topic rkt(rd_kafka_topic_new(rk, topic.c_str(), nullptr));
    const rd_kafka_metadata_t* answer = nullptr;
    const rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt.get(), &answer, 10000);
    // Asked only so that librdkafka learns where the topic lives; the answer is not needed.
    const Metadata metadata(err == RD_KAFKA_RESP_ERR_NO_ERROR ? answer : nullptr);
  }
}

Result<Handle> MakeHandle(rd_kafka_type_t type, Conf conf) {
  std::array<char, 512> error{};
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), error.data(), error.size());
  if (!rk) return std::unexpected(Error::InvalidInput(fmt::format("kafka client: {}", error.data())));
  conf.release();  // rd_kafka_new took ownership
  return Handle(rk);
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

void ApplyRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
                    std::set<TopicPartition>& assigned, const std::function<void(const std::string&)>& log) {
  const bool cooperative = std::string_view(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
  const bool assigning = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
  for (int i = 0; i < partitions->cnt; ++i) {
    const TopicPartition tp{partitions->elems[i].topic, partitions->elems[i].partition};
    if (assigning) {
      assigned.insert(tp);
    } else {
      assigned.erase(tp);
    }
  }
  if (cooperative) {
    const KafkaError ignored(assigning ? rd_kafka_incremental_assign(rk, partitions)
                                       : rd_kafka_incremental_unassign(rk, partitions));
  } else {
    rd_kafka_assign(rk, assigning ? partitions : nullptr);
  }
  if (log) {
    std::string line = fmt::format("{} {} partition(s):", assigning ? "assigned" : "revoked", partitions->cnt);
    for (int i = 0; i < partitions->cnt; ++i) {
      line += fmt::format(" {}[{}]", partitions->elems[i].topic, partitions->elems[i].partition);
    }
    log(line);
  }
}

rd_kafka_resp_err_t SeekAndWait(rd_kafka_t* consumer, const std::string& topic, int32_t partition, int64_t offset) {
  const Topic handle(rd_kafka_topic_new(consumer, topic.c_str(), nullptr));
  if (!handle) return rd_kafka_last_error();
  return rd_kafka_seek(handle.get(), partition, offset, 10000);
}

Result<Handle> SubscribeGroupMember(const KafkaConfig& config, const std::string& group,
                                    const std::vector<std::string>& topics, RebalanceCallback on_rebalance,
                                    ErrorCallback on_error, void* opaque) {
  if (topics.empty()) return std::unexpected(Error::InvalidInput("no topics to consume"));
  KafkaConfig member = config;
  for (auto [key, value] : {std::pair{"group.id", group},
                            {"enable.auto.commit", "false"},
                            {"auto.offset.reset", "earliest"},
                            {"isolation.level", "read_committed"},
                            // A crashed member's partitions wait this long for a new owner; the
                            // 45 s default is long, and heartbeats run on librdkafka's own thread.
                            {"session.timeout.ms", "10000"},
                            // Prefetch bounded in bytes: librdkafka's 64 MiB queue plus 50 MiB
                            // fetches would be most of a service's memory with large messages.
                            {"queued.max.messages.kbytes", "16384"},
                            {"fetch.max.bytes", "16777216"}}) {
    member.properties.try_emplace(key, value);
  }
  ASSIGN_OR_RETURN(Conf conf, MakeConf(member, ClientRole::kConsumer));
  rd_kafka_conf_set_rebalance_cb(conf.get(), on_rebalance);
  rd_kafka_conf_set_error_cb(conf.get(), on_error);
  rd_kafka_conf_set_opaque(conf.get(), opaque);
  ASSIGN_OR_RETURN(Handle consumer, MakeHandle(RD_KAFKA_CONSUMER, std::move(conf)));
  rd_kafka_poll_set_consumer(consumer.get());
  PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(topics.size())));
  for (const auto& topic : topics) rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  if (auto err = rd_kafka_subscribe(consumer.get(), list.get())) return std::unexpected(FromKafka(err, "subscribing"));
  return consumer;
}

int64_t Lag(rd_kafka_t* consumer, const std::set<TopicPartition>& assigned) {
  int64_t lag = 0;
  for (const auto& [topic, partition] : assigned) {
    int64_t low = 0, high = 0;
    if (rd_kafka_get_watermark_offsets(consumer, topic.c_str(), partition, &low, &high)) continue;
    PartitionList position(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(position.get(), topic.c_str(), partition);
    rd_kafka_position(consumer, position.get());
    if (position->elems[0].offset < 0) continue;
    lag += std::max<int64_t>(0, high - position->elems[0].offset);
  }
  return lag;
}

namespace {

// An admin client and the errors it must stop on.
struct Admin {
  ErrorListener errors;  // the client's opaque: it must outlive the client
  Handle rk;
};

Result<std::unique_ptr<Admin>> MakeAdmin(const KafkaConfig& config) {
  ASSIGN_OR_RETURN(Conf conf, MakeConf(config, ClientRole::kProducer));  // an admin client is a producer handle
  auto admin = std::make_unique<Admin>();
  ErrorListener::Attach(conf.get(), &admin->errors);
  ASSIGN_OR_RETURN(admin->rk, MakeHandle(RD_KAFKA_PRODUCER, std::move(conf)));
  return admin;
}

// Partition counts of the cluster's topics that answer without error. Asked in short slices
// of `timeout`, so that a cluster refusing the client's credentials says so at once, rather
// than as a timeout.
Result<std::map<std::string, int>> TopicPartitions(Admin& admin, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const rd_kafka_metadata_t* answer = nullptr;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    const auto slice = std::clamp(left, std::chrono::milliseconds(1), std::chrono::milliseconds(500));
    const rd_kafka_resp_err_t err =
        rd_kafka_metadata(admin.rk.get(), 1, nullptr, &answer, static_cast<int>(slice.count()));
    if (!err) break;
    // Serves the error callback, and paces the retries of an error that came at once.
    rd_kafka_poll(admin.rk.get(), err == RD_KAFKA_RESP_ERR__TIMED_OUT ? 0 : 100);
    if (admin.errors.stop) return std::unexpected(*admin.errors.stop);
    // Anything else is asked again until the deadline: a broker of the bootstrap list that is
    // down fails the request at once (__TRANSPORT) while the others could answer it.
    if (left <= slice) return std::unexpected(FromKafka(err, "reading topic metadata"));
  }
  const Metadata metadata(answer);
  std::map<std::string, int> partitions;
  for (int i = 0; i < metadata->topic_cnt; ++i) {
    if (!metadata->topics[i].err) partitions[metadata->topics[i].topic] = metadata->topics[i].partition_cnt;
  }
  return partitions;
}

// Asks the cluster to create `topics` and waits for its answer.
Status CreateTopics(rd_kafka_t* rk, const std::vector<TopicSpec>& topics, std::chrono::milliseconds timeout) {
  std::vector<NewTopic> requests;
  std::array<char, 512> error{};
  for (const auto& spec : topics) {
    NewTopic topic(
        rd_kafka_NewTopic_new(spec.name.c_str(), spec.partitions, spec.replication_factor, error.data(), error.size()));
    if (!topic) return std::unexpected(Error::InvalidInput(fmt::format("topic {}: {}", spec.name, error.data())));
    for (const auto& [name, value] : spec.configs) {
      if (rd_kafka_NewTopic_set_config(topic.get(), name.c_str(), value.c_str())) {
        return std::unexpected(Error::InvalidInput(fmt::format("topic {}: config {}={}", spec.name, name, value)));
      }
    }
    requests.push_back(std::move(topic));
  }
  const Queue queue(rd_kafka_queue_new(rk));
  const AdminOptions options(rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS));
  rd_kafka_AdminOptions_set_operation_timeout(options.get(), static_cast<int>(timeout.count()), error.data(),
                                              error.size());
  std::vector<rd_kafka_NewTopic_t*> pointers = Pointers(requests);
  rd_kafka_CreateTopics(rk, pointers.data(), pointers.size(), options.get(), queue.get());
  const Event event(rd_kafka_queue_poll(queue.get(), static_cast<int>(timeout.count()) + 1000));
  if (!event) return std::unexpected(Error::Unavailable("creating topics: no answer from the cluster"));
  if (auto request_err = rd_kafka_event_error(event.get()); request_err) {
    return std::unexpected(FromKafka(request_err, "creating topics"));
  }
  size_t count = 0;
  const rd_kafka_topic_result_t** results =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event.get()), &count);
  for (size_t i = 0; i < count; ++i) {
    auto err = rd_kafka_topic_result_error(results[i]);
    // Another process may have created it between our look and our request: that is fine.
    if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      return std::unexpected(FromKafka(err, fmt::format("creating topic {}", rd_kafka_topic_result_name(results[i]))));
    }
  }
  return Ok();
}

}  // namespace

Status KafkaConfig::AddProperty(std::string_view key_equals_value) {
  size_t eq = key_equals_value.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return std::unexpected(Error::InvalidInput(fmt::format(
        "--kafka expects KEY=VALUE, got '{}'", IsSecretProperty(key_equals_value) ? "***" : key_equals_value)));
  }
  properties[std::string(key_equals_value.substr(0, eq))] = std::string(key_equals_value.substr(eq + 1));
  return Ok();
}

Status KafkaConfig::AddPropertiesFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::unexpected(Error::NotFound(fmt::format("--kafka-config {}: cannot be read", path)));
  // Files written on Windows keep their '\r' before the newline.
  auto trim = [](std::string_view s) { return Trim(s, " \t\r"); };
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    std::string_view text = trim(line);
    if (text.empty() || text.front() == '#' || text.front() == '!') continue;
    const size_t eq = text.find('=');
    const std::string_view key = eq == std::string_view::npos ? std::string_view{} : trim(text.substr(0, eq));
    // The line itself may be a secret: the message names where it is, not what it says.
    if (key.empty()) {
      return std::unexpected(
          Error::InvalidInput(fmt::format("--kafka-config {} line {}: expected KEY=VALUE", path, number)));
    }
    properties[std::string(key)] = std::string(trim(text.substr(eq + 1)));
  }
  return Ok();
}

bool IsSecretProperty(std::string_view key) {
  static constexpr std::string_view kMarkers[] = {"password", "secret",  "token",     "jaas",
                                                  ".key.pem", "private", "credential"};
  std::string lower(key);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return std::any_of(std::begin(kMarkers), std::end(kMarkers),
                     [&](std::string_view marker) { return lower.find(marker) != std::string::npos; });
}

std::string KafkaConfig::Describe() const {
  std::string out = "bootstrap.servers=" + brokers;
  for (const auto& [key, value] : properties) out += fmt::format(" {}={}", key, IsSecretProperty(key) ? "***" : value);
  return out;
}

Status EnsureTopics(const KafkaConfig& config, const std::vector<TopicSpec>& topics,
                    std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(std::unique_ptr<Admin> admin, MakeAdmin(config));
  // A topic that exists but errs here is asked for again; TOPIC_ALREADY_EXISTS is fine below.
  ASSIGN_OR_RETURN(auto existing, TopicPartitions(*admin, timeout));
  std::vector<TopicSpec> missing;
  std::copy_if(topics.begin(), topics.end(), std::back_inserter(missing),
               [&](const TopicSpec& t) { return !existing.contains(t.name); });
  if (missing.empty()) return Ok();
  TRY(CreateTopics(admin->rk.get(), missing, timeout));
  // The controller has the topics now, but the broker that answers metadata may not yet: a
  // caller's next PartitionCount or subscribe would miss them.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    ASSIGN_OR_RETURN(existing, TopicPartitions(*admin, timeout));
    if (std::all_of(topics.begin(), topics.end(), [&](const TopicSpec& t) { return existing.contains(t.name); })) {
      return Ok();
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return std::unexpected(Error::Unavailable("created topics do not show in the cluster's metadata"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Result<int> PartitionCount(const KafkaConfig& config, const std::string& topic, std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(std::unique_ptr<Admin> admin, MakeAdmin(config));
  ASSIGN_OR_RETURN(auto partitions, TopicPartitions(*admin, timeout));
  auto it = partitions.find(topic);
  if (it == partitions.end()) return std::unexpected(Error::NotFound(fmt::format("topic {} does not exist", topic)));
  return it->second;
}

struct Producer::Impl {
  ProducerStats stats;
  ErrorListener errors;
  Handle rk;  // last: destroyed first, while what its callbacks use still exists

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
  auto impl = std::make_unique<Impl>();
  rd_kafka_conf_set_dr_msg_cb(conf.get(), &Impl::OnDelivery);
  rd_kafka_conf_set_error_cb(conf.get(), &RecordErrorsOf<Impl>);
  rd_kafka_conf_set_opaque(conf.get(), impl.get());
  ASSIGN_OR_RETURN(impl->rk, MakeHandle(RD_KAFKA_PRODUCER, std::move(conf)));
  LookUpTopics(impl->rk.get(), options.topics);
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
