// Changing infer's model while images stream through the real broker that the `kafka` ctest
// fixture starts: the swap is exactly once, and the shadow model is too.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "core/inference_record.h"
#include "infer/infer.h"
#include "infer_test_util.h"
#include "kafka_test_util.h"
#include "models/control.h"
#include "produce/produce.h"
#include "test_util.h"

namespace iotinfer::infer {
namespace {

namespace fs = std::filesystem;
using iotinfer::testing::TempDir;
using iotinfer::testing::UniqueTopic;
using iotinfer::testing::WriteModelVariant;

// Every committed record of `topic`.
std::vector<InferenceRecord> Records(const std::string& topic) {
  std::vector<InferenceRecord> records;
  const Status scanned = kafka::ScanTopic({.brokers = iotinfer::testing::kTestBrokers}, topic,
                                          [&](const kafka::InputMessage& m) -> Status {
                                            ASSIGN_OR_RETURN(InferenceRecord r, DecodeInferenceRecord(m.message.value));
                                            records.push_back(std::move(r));
                                            return Ok();
                                          });
  EXPECT_TRUE(scanned) << scanned.error().message();
  return records;
}

std::string VersionOf(const std::string& path) { return model::ModelId(path).value_or("?"); }

// The service between topics of its own (`prefix`-images, -inferences, -dlq), in a group of
// its own, with no periodic log line, on float32.
InferOptions OwnTopics(const std::string& prefix) {
  InferOptions options;
  options.kafka.brokers = iotinfer::testing::kTestBrokers;
  options.group = UniqueTopic((prefix + "-group").c_str());
  options.input_topic = UniqueTopic((prefix + "-images").c_str());
  options.output_topic = UniqueTopic((prefix + "-inferences").c_str());
  options.dlq_topic = UniqueTopic((prefix + "-dlq").c_str());
  options.log_every = std::chrono::milliseconds(0);
  options.classifier.engine = model::Engine::kOneDnn;
  return options;
}

produce::ProduceOptions Devices(const std::string& topic, int64_t images, double rate) {
  produce::ProduceOptions options;
  options.kafka.brokers = iotinfer::testing::kTestBrokers;
  options.topic = topic;
  options.images = images;
  options.rate = rate;
  options.producers = 16;
  return options;
}

// 50,000 images at 2,000/s; the model directory changes three times while they stream: a new
// model, a broken file (a copy cut short), another new model.
TEST(ModelSwapTest, SwapsAreExactlyOnceAndDoNotStallTheStream) {
  constexpr int64_t kImages = 50'000;
  TempDir dir;
  WriteModelVariant(dir.file("a.onnx"), "a");
  InferOptions options = OwnTopics("swap");
  const std::string& images = options.input_topic;
  const std::string& inferences = options.output_topic;
  options.model_dir = dir.path();
  options.model_poll = std::chrono::milliseconds(200);

  std::atomic<bool> stop{false};
  std::atomic<int64_t> consumed{0};
  InferStats last;
  Result<InferStats> result = std::unexpected(Error::Internal("did not run"));
  std::thread service([&] {
    result = RunInfer(options, stop, [&](const InferStats& s) {
      consumed = s.consumed;
      last = s;
    });
  });
  Result<produce::ProduceProgress> sent = std::unexpected(Error::Internal("did not run"));
  std::thread devices([&] { sent = produce::Produce(Devices(images, kImages, 2000)); });

  // Each change once infer is past a quarter more of the images.
  auto after = [&](int64_t count) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (consumed < count && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  };
  after(kImages / 4);
  WriteModelVariant(dir.file("b.onnx"), "b");
  fs::last_write_time(dir.file("b.onnx"), fs::file_time_type::clock::now() + std::chrono::seconds(1));
  after(kImages / 2);
  {
    std::ifstream in(dir.file("b.onnx"), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(dir.file("c.onnx"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  fs::last_write_time(dir.file("c.onnx"), fs::file_time_type::clock::now() + std::chrono::seconds(2));
  after(kImages * 3 / 4);
  WriteModelVariant(dir.file("d.onnx"), "d");
  fs::last_write_time(dir.file("d.onnx"), fs::file_time_type::clock::now() + std::chrono::seconds(3));
  after(kImages);
  devices.join();
  stop = true;
  service.join();
  ASSERT_OK(sent);
  ASSERT_EQ(sent->acknowledged, kImages);
  ASSERT_OK(result);
  EXPECT_EQ(result->inferred, kImages);
  EXPECT_EQ(result->model_swaps, 2);
  EXPECT_EQ(result->models_refused[static_cast<size_t>(ModelRefusal::kUnreadable)], 1);
  EXPECT_EQ(result->model, VersionOf(dir.file("d.onnx")));

  const std::vector<std::string> order{VersionOf(dir.file("a.onnx")), VersionOf(dir.file("b.onnx")),
                                       VersionOf(dir.file("d.onnx"))};
  std::map<std::string, int> per_id;
  std::map<int64_t, std::set<std::string>> per_batch;  // a batch's records share their inferred_at
  std::map<std::string, int64_t> per_model;
  for (const InferenceRecord& r : Records(inferences)) {
    per_id[r.id]++;
    per_batch[r.inferred_at_us].insert(r.model);
    per_model[r.model]++;
  }
  EXPECT_EQ(per_id.size(), static_cast<size_t>(kImages)) << "images lost";
  EXPECT_EQ(std::ranges::count_if(per_id, [](const auto& kv) { return kv.second != 1; }), 0) << "images doubled";
  for (const std::string& version : order) EXPECT_GT(per_model[version], 0) << version << " never served";
  EXPECT_EQ(per_model.size(), order.size()) << "a record names a model that never served";

  // In commit order, batch by batch: one model each, a, then b, then d, never back.
  size_t position = 0;
  int64_t previous_at = per_batch.begin()->first;
  int64_t longest_gap_us = 0;
  for (const auto& [at, models] : per_batch) {
    ASSERT_EQ(models.size(), 1u) << "a batch mixed models at " << at;
    const auto found = std::ranges::find(order, *models.begin()) - order.begin();
    ASSERT_GE(static_cast<size_t>(found), position) << "went back to " << *models.begin();
    position = static_cast<size_t>(found);
    longest_gap_us = std::max(longest_gap_us, at - previous_at);
    previous_at = at;
  }
  EXPECT_LT(longest_gap_us, 1'000'000) << "the stream stalled between two batches";
  std::printf("%zu batches; records per model: a %ld, b %ld, d %ld; longest gap between batches %.0f ms\n",
              per_batch.size(), per_model[order[0]], per_model[order[1]], per_model[order[2]],
              static_cast<double>(longest_gap_us) / 1e3);
}

// The shadow classifies its sample of every batch, exactly once, beside unchanged records.
TEST(ModelSwapTest, TheShadowModelsRecordsArePairedExactlyOnce) {
  constexpr int64_t kImages = 3'000;
  TempDir dir;
  WriteModelVariant(dir.file("candidate.onnx"), "candidate");
  InferOptions options = OwnTopics("shadow");
  const std::string& images = options.input_topic;
  const std::string& inferences = options.output_topic;
  options.shadow_model = dir.file("candidate.onnx");
  options.shadow_topic = UniqueTopic("shadow-records");
  options.shadow_sample = 0.5;
  ASSERT_OK(produce::Produce(Devices(images, kImages, 0)));
  auto stats = iotinfer::testing::RunInferUntil(options, kImages, std::chrono::seconds(120));
  ASSERT_OK(stats);
  EXPECT_EQ(stats->shadow, VersionOf(dir.file("candidate.onnx")));

  std::map<std::string, InferenceRecord> active;
  for (InferenceRecord& r : Records(inferences)) active.emplace(r.id, std::move(r));
  ASSERT_EQ(active.size(), static_cast<size_t>(kImages));
  const std::vector<InferenceRecord> shadow = Records(options.shadow_topic);
  EXPECT_EQ(static_cast<int64_t>(shadow.size()), stats->shadowed);
  // About half, by id: 3,000 fair coins land within 1,400..1,600 but once in 10^4.
  EXPECT_GT(shadow.size(), 1400u);
  EXPECT_LT(shadow.size(), 1600u);
  std::set<std::string> seen;
  for (const InferenceRecord& s : shadow) {
    EXPECT_TRUE(seen.insert(s.id).second) << s.id << " shadowed twice";
    ASSERT_TRUE(active.contains(s.id)) << s.id;
    const InferenceRecord& a = active.at(s.id);
    EXPECT_EQ(s.model, stats->shadow);
    EXPECT_EQ(a.model, stats->model);
    EXPECT_EQ(s.producer_id, a.producer_id);
    EXPECT_EQ(s.actual_value, a.actual_value);
    // The same network in another file: the same answer, so the pairing is image by image.
    EXPECT_EQ(s.image_prediction, a.image_prediction) << s.id;
  }
}

// `models activate` promotes the shadow through the control topic, and rolls it back: the
// running service follows, between two batches, and refuses a version it has no file for.
TEST(ModelSwapTest, TheControlTopicPromotesAndRollsBack) {
  TempDir dir;
  WriteModelVariant(dir.file("candidate.onnx"), "candidate");
  InferOptions options = OwnTopics("control");
  const std::string& images = options.input_topic;
  const std::string& inferences = options.output_topic;
  options.shadow_model = dir.file("candidate.onnx");
  options.shadow_topic = UniqueTopic("control-shadow");
  options.model_control_topic = UniqueTopic("control");
  const std::string active = VersionOf(iotinfer::testing::ModelPath());
  const std::string candidate = VersionOf(dir.file("candidate.onnx"));

  std::atomic<bool> stop{false};
  std::mutex mutex;
  InferStats last;
  Result<InferStats> result = std::unexpected(Error::Internal("did not run"));
  std::thread service([&] {
    result = RunInfer(options, stop, [&](const InferStats& s) {
      std::lock_guard lock(mutex);
      last = s;
    });
  });
  std::atomic<bool> sending{true};
  std::thread devices([&] {
    for (int round = 0; sending; ++round) {
      auto batch = Devices(images, 500, 1000);
      batch.run_id = fmt::format("r{}", round);
      EXPECT_TRUE(produce::Produce(batch));
    }
  });
  auto choose = [&](const std::string& version) {
    ASSERT_OK(models::WriteChoice({.brokers = iotinfer::testing::kTestBrokers}, options.model_control_topic,
                                  {.group = options.group, .model = version, .by = "model_swap_test"}));
  };
  // Until `version` has classified images: the stats name the serving model from the start,
  // before the first image, and a choice made then would leave the active model no batch.
  auto serving = [&](const std::string& version) {
    std::optional<int64_t> named_at;  // images classified when the stats first named it
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard lock(mutex);
        if (last.model != version) {
          named_at.reset();
        } else if (!named_at) {
          named_at = last.inferred;
        } else if (last.inferred > *named_at) {
          return true;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  };
  ASSERT_TRUE(serving(active));
  choose(candidate);
  EXPECT_TRUE(serving(candidate)) << "not promoted";
  choose("nowhere-0badc0de");
  auto refused = [&] {
    std::lock_guard lock(mutex);
    return last.models_refused[static_cast<size_t>(ModelRefusal::kUnknownVersion)] == 1;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!refused() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(refused()) << "a version no file has was not refused";
  choose(active);
  EXPECT_TRUE(serving(active)) << "not rolled back";
  sending = false;
  devices.join();
  stop = true;
  service.join();
  ASSERT_OK(result);
  EXPECT_EQ(result->model_swaps, 2);
  EXPECT_EQ(result->models_refused[static_cast<size_t>(ModelRefusal::kUnknownVersion)], 1);

  // Batch by batch: the active model, the candidate, the active model again.
  std::map<int64_t, std::set<std::string>> per_batch;
  for (const InferenceRecord& r : Records(inferences)) per_batch[r.inferred_at_us].insert(r.model);
  std::vector<std::string> runs;
  for (const auto& [at, models] : per_batch) {
    ASSERT_EQ(models.size(), 1u) << "a batch mixed models at " << at;
    if (runs.empty() || runs.back() != *models.begin()) runs.push_back(*models.begin());
  }
  EXPECT_EQ(runs, (std::vector<std::string>{active, candidate, active}));
  // While the candidate served, it was not also run as its own shadow.
  for (const InferenceRecord& r : Records(options.shadow_topic)) {
    EXPECT_NE(per_batch[r.inferred_at_us], std::set<std::string>{candidate}) << r.id;
  }
}

}  // namespace
}  // namespace iotinfer::infer
