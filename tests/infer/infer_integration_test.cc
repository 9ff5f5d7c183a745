// The inference service against the real broker that the `kafka` ctest fixture starts.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "infer/infer.h"
#include "kafka_test_util.h"
#include "produce/produce.h"
#include "test_util.h"

namespace iotinfer::infer {
namespace {

using iotinfer::testing::ReadAll;
using iotinfer::testing::UniqueTopic;

// Messages that must each be dead-lettered, and why.
std::vector<WireMessage> Malformed() {
  WireMessage good = *EncodeImageMessage({"bad-x", 1, std::string("Bag"), 1, Image{2, 2, 1, {1, 2, 3, 4}}},
                                         {.encoding = ImageEncoding::kRaw});
  auto with = [&](std::string_view header, std::string value) {
    WireMessage m = good;
    for (auto& h : m.headers) {
      if (h.name == header) h.value = value;
    }
    return m;
  };
  WireMessage empty = good;
  empty.value.clear();
  WireMessage no_id = good;
  std::erase_if(no_id.headers, [](const auto& h) { return h.name == "id"; });
  return {with("producer_id", "abc"),
          with("content-type", "image/gif"),
          with("shape", "3x3x1"),
          with("content-type", "image/png"),
          empty,
          no_id};
}

TEST(InferIntegrationTest, EveryImageYieldsExactlyOneRecordAndBadOnesAreDeadLettered) {
  const std::string images = UniqueTopic("infer-images"), inferences = UniqueTopic("infer-out"),
                    dlq = UniqueTopic("infer-dlq");
  constexpr int kImages = 240;
  produce::ProduceOptions produce_options;
  produce_options.topic = images;
  produce_options.images = kImages;
  produce_options.producers = 4;
  produce_options.run_id = "e2e";
  ASSERT_OK(produce::Produce(produce_options));
  auto producer = kafka::Producer::Create({});
  ASSERT_OK(producer);
  const auto bad = Malformed();
  for (const auto& m : bad) ASSERT_OK((*producer)->Send(images, m));
  ASSERT_OK((*producer)->Flush());

  InferOptions options;
  options.group = UniqueTopic("infer-group");
  options.input_topic = images;
  options.output_topic = inferences;
  options.dlq_topic = dlq;
  options.batch_max = 32;
  options.log_every = std::chrono::milliseconds(0);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> consumed{0};
  Result<InferStats> result = std::unexpected(Error::Internal("did not run"));
  std::thread service([&] {
    result = RunInfer(options, stop, [&](const InferStats& s) {
      consumed = s.consumed;
      if (s.consumed >= kImages + static_cast<int64_t>(bad.size())) stop = true;
    });
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  while (!stop && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  stop = true;
  service.join();
  ASSERT_OK(result);
  EXPECT_EQ(result->inferred, kImages);
  EXPECT_EQ(result->dead_lettered, static_cast<int64_t>(bad.size()));

  // The images as produced, to check labels and to classify independently.
  std::map<std::string, ImageRecord> sent;
  for (const auto& m : ReadAll(images, kImages + bad.size())) {
    if (auto record = DecodeImageMessage(m)) sent[record->id] = *record;
  }
  ASSERT_EQ(sent.size(), static_cast<size_t>(kImages));
  auto classifier = model::Classifier::Create({.threads = 1});
  ASSERT_OK(classifier);

  auto records = ReadAll(inferences, kImages, std::chrono::seconds(2));  // a duplicate would show up
  ASSERT_EQ(records.size(), static_cast<size_t>(kImages));
  std::set<std::string> seen;
  for (const auto& m : records) {
    auto json = nlohmann::json::parse(m.value);
    const std::string id = json["id"];
    ASSERT_TRUE(sent.contains(id)) << id;
    EXPECT_TRUE(seen.insert(id).second) << "duplicate " << id;
    const ImageRecord& image = sent[id];
    EXPECT_EQ(json["actual_value"], *image.label);
    EXPECT_EQ(json["producer_id"], image.producer_id);
    EXPECT_EQ(m.key, std::to_string(image.producer_id));
    EXPECT_EQ(json["model"], (*classifier)->model_id());
    EXPECT_EQ(json["produced_at"], *image.produced_at_us);
    EXPECT_GE(json["inferred_at"].get<int64_t>(), *image.produced_at_us);
    ImageView view = image.image.view();
    model::Prediction expected;
    ASSERT_OK((*classifier)->Classify({&view, 1}, {&expected, 1}));
    EXPECT_EQ(json["image_prediction"], (*classifier)->class_names()[expected.label]) << id;
    // The record's fields start in the order of the original schema.
    EXPECT_EQ(m.value.rfind("{\"id\":", 0), 0u);
  }

  auto dead = ReadAll(dlq, bad.size(), std::chrono::seconds(1));
  ASSERT_EQ(dead.size(), bad.size());
  std::set<std::string> reasons;
  for (const auto& m : dead) {
    ASSERT_NE(m.FindHeader("error"), nullptr);
    ASSERT_NE(m.FindHeader("failed-at"), nullptr);
    reasons.insert(*m.FindHeader("error"));
  }
  EXPECT_EQ(reasons.size(), bad.size()) << "each malformed message has its own reason";
}

}  // namespace
}  // namespace iotinfer::infer
