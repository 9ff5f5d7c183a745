// Two `iotinfer infer` processes in one group, one killed with SIGKILL mid-run and restarted:
// every image still yields exactly one record. Runs the real binary against the real broker.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "kafka_test_util.h"
#include "process_util.h"
#include "produce/produce.h"
#include "test_util.h"

namespace iotinfer {
namespace {

using iotinfer::testing::IotinferProcess;
using iotinfer::testing::ReadAll;
using iotinfer::testing::UniqueTopic;

std::unique_ptr<IotinferProcess> StartInfer(const std::string& instance, const std::string& group,
                                            const std::string& in, const std::string& out, const std::string& dlq) {
  return std::make_unique<IotinferProcess>(std::vector<std::string>{
      "infer", "--group", group, "--instance-id", instance, "--input-topic", in, "--output-topic", out, "--dlq-topic",
      dlq, "--threads", "1", "--batch-max", "16", "--log-every-ms", "0"});
}

TEST(InferProcessesTest, TwoInstancesAndAKillNineStillGiveExactlyOneRecordPerImage) {
  const std::string images = UniqueTopic("procs-images"), out = UniqueTopic("procs-out"),
                    dlq = UniqueTopic("procs-dlq"), group = UniqueTopic("procs-group");
  ASSERT_OK(kafka::EnsureTopics({}, {{images}, {out}, {dlq}}));
  constexpr int kImages = 3000;

  auto a = StartInfer("a", group, images, out, dlq);
  auto b = StartInfer("b", group, images, out, dlq);
  // Paced, so that the kill below lands while both instances are busy.
  std::thread producer([&] {
    produce::ProduceOptions options;
    options.topic = images;
    options.images = kImages;
    options.rate = 1000;
    options.format = ImageEncoding::kRaw;
    options.run_id = "procs";
    auto result = produce::Produce(options);
    EXPECT_TRUE(result && result->acknowledged == kImages);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  int killed = a->Signal(SIGKILL);
  EXPECT_TRUE(WIFSIGNALED(killed));
  a = StartInfer("a", group, images, out, dlq);  // same instance id: fences the zombie
  producer.join();

  auto records = ReadAll(out, kImages, std::chrono::seconds(3));
  std::set<std::string> ids;
  for (const auto& m : records) ids.insert(nlohmann::json::parse(m.value)["id"].get<std::string>());
  EXPECT_EQ(records.size(), static_cast<size_t>(kImages)) << "duplicates or gaps";
  EXPECT_EQ(ids.size(), static_cast<size_t>(kImages));
  EXPECT_EQ(*ids.begin(), "procs-0-0");

  // SIGTERM: each instance commits what it has and exits 0.
  int a_status = a->Signal(SIGTERM), b_status = b->Signal(SIGTERM);
  EXPECT_TRUE(WIFEXITED(a_status) && WEXITSTATUS(a_status) == 0);
  EXPECT_TRUE(WIFEXITED(b_status) && WEXITSTATUS(b_status) == 0);
}

}  // namespace
}  // namespace iotinfer
