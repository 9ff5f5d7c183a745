// The embedded demo's in-process cluster must carry the whole exactly-once path, so it is
// checked here end to end: produce, transactional infer, read_committed reads.
#include "kafka/mock_cluster.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "infer_test_util.h"
#include "kafka_test_util.h"
#include "produce/produce.h"
#include "test_util.h"

namespace iotinfer::kafka {
namespace {

TEST(MockClusterTest, CarriesProduceAndTransactionalInfer) {
  auto cluster = MockCluster::Create();
  ASSERT_OK(cluster);
  const std::string brokers = (*cluster)->bootstrap_servers();
  EXPECT_TRUE(brokers.starts_with("127.0.0.1:")) << brokers;

  for (const char* topic : {"images", "inferences", "images.dlq"}) ASSERT_OK((*cluster)->CreateTopic({topic, 3}));

  constexpr int kImages = 200;
  produce::ProduceOptions produce_options;
  produce_options.kafka.brokers = brokers;
  produce_options.images = kImages;
  produce_options.producers = 4;
  auto produced = produce::Produce(produce_options);
  ASSERT_OK(produced);
  EXPECT_EQ(produced->acknowledged, kImages);

  infer::InferOptions options;
  options.kafka.brokers = brokers;
  options.log_every = std::chrono::milliseconds(0);
  auto result = testing::RunInferUntil(options, kImages, std::chrono::seconds(60));
  ASSERT_OK(result);
  EXPECT_EQ(result->inferred, kImages);

  auto records = testing::ReadAll(options.output_topic, kImages, std::chrono::seconds(1), brokers);
  ASSERT_EQ(records.size(), static_cast<size_t>(kImages));
  std::set<std::string> ids;
  for (const auto& m : records) ids.insert(nlohmann::json::parse(m.value)["id"].get<std::string>());
  EXPECT_EQ(ids.size(), static_cast<size_t>(kImages));
}

}  // namespace
}  // namespace iotinfer::kafka
