#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <fstream>

#include "core/text.h"
#include "kafka/kafka.h"
#include "kafka/kafka_internal.h"

namespace iotinfer::kafka {

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

Status KafkaConfig::AddProperties(const std::string& file, std::span<const std::string> overrides) {
  if (!file.empty()) TRY(AddPropertiesFile(file));
  for (const std::string& property : overrides) TRY(AddProperty(property));
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
  if (role == ClientRole::kProducer) {
    // librdkafka (2.12 as 2.0) counts a batch whose request failed as delivered once a later
    // batch of the same partition, already in flight behind it, succeeds ("implicitly acked");
    // a broker that has no state yet for this producer on the partition (its first writes to a
    // new topic, or just after a leader moved) takes that later batch without the failed one.
    // The first images of a partition were lost so although reported delivered (1 to 3 per
    // fresh-check; confluent-kafka-go#921, open). With one request in flight per broker, no
    // later batch is on its way when one fails. `--kafka` may set it back.
    TRY(set("max.in.flight.requests.per.connection", "1"));
  }
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

Result<Handle> MakeHandle(rd_kafka_type_t type, Conf conf) {
  std::array<char, 512> error{};
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), error.data(), error.size());
  if (!rk) return std::unexpected(Error::InvalidInput(fmt::format("kafka client: {}", error.data())));
  conf.release();  // rd_kafka_new took ownership
  return Handle(rk);
}

}  // namespace iotinfer::kafka
