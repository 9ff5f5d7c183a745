#include "kafka/mock_cluster.h"

// rdkafka_mock.h needs rdkafka.h first.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "kafka/kafka_internal.h"

namespace iotinfer::kafka {

struct MockCluster::Impl {
  // The cluster runs on the handle's threads, so the handle must outlive it: declared first.
  Handle owner;
  std::unique_ptr<rd_kafka_mock_cluster_t, Deleter<rd_kafka_mock_cluster_destroy>> cluster;
};

Result<std::unique_ptr<MockCluster>> MockCluster::Create(int brokers) {
  if (brokers < 1) return std::unexpected(Error::InvalidInput("a mock cluster needs at least one broker"));
  Conf conf(rd_kafka_conf_new());
  char errstr[256];
  // The owner handle only hosts the cluster's threads and never connects anywhere.
  if (rd_kafka_conf_set(conf.get(), "log_level", "3", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
    return std::unexpected(Error::Internal(errstr));
  }
  ASSIGN_OR_RETURN(Handle owner, MakeHandle(RD_KAFKA_PRODUCER, std::move(conf)));
  auto impl = std::make_unique<Impl>();
  impl->cluster.reset(rd_kafka_mock_cluster_new(owner.get(), brokers));
  if (impl->cluster == nullptr) return std::unexpected(Error::Internal("librdkafka could not start a mock cluster"));
  impl->owner = std::move(owner);
  return std::unique_ptr<MockCluster>(new MockCluster(std::move(impl)));
}

MockCluster::MockCluster(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MockCluster::~MockCluster() = default;

Status MockCluster::CreateTopic(const TopicSpec& topic) {
  const int replicas = topic.replication_factor == TopicSpec::kBrokerDefault ? 1 : topic.replication_factor;
  const rd_kafka_resp_err_t err =
      rd_kafka_mock_topic_create(impl_->cluster.get(), topic.name.c_str(), topic.partitions, replicas);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return std::unexpected(FromKafka(err, "creating topic " + topic.name));
  return Ok();
}

std::string MockCluster::bootstrap_servers() const { return rd_kafka_mock_cluster_bootstraps(impl_->cluster.get()); }

}  // namespace iotinfer::kafka
