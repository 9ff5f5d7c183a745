// The inference service against the real broker that the `kafka` ctest fixture starts.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <map>
#include <nlohmann/json.hpp>

#include "infer/infer.h"
#include "infer_test_util.h"
#include "kafka_test_util.h"
#include "produce/produce.h"
#include "test_util.h"

namespace iotinfer::infer {
namespace {

using iotinfer::testing::ReadAll;
using iotinfer::testing::UniqueTopic;

struct BadMessage {
  WireMessage message;
  std::string reason;  // a substring of the dead letter's `error` header
  std::string code;    // its `reason` header
};

// Messages that must each be dead-lettered, and why: a corpus of what devices get wrong.
std::vector<BadMessage> Malformed() {
  const WireMessage raw = *EncodeImageMessage({"bad-raw", 1, std::string("Bag"), 1, Image{2, 2, 1, {1, 2, 3, 4}}},
                                              {.encoding = ImageEncoding::kRaw});
  const WireMessage png =
      *EncodeImageMessage({"bad-png", 1, std::string("Bag"), 1, Image{8, 8, 1, std::vector<uint8_t>(64, 7)}},
                          {.encoding = ImageEncoding::kPng});
  auto with = [](WireMessage m, std::string_view header, std::optional<std::string> value) {
    std::erase_if(m.headers, [&](const auto& h) { return h.name == header; });
    if (value) m.headers.push_back({std::string(header), *value});
    return m;
  };
  auto value = [](WireMessage m, std::string v) {
    m.value = std::move(v);
    return m;
  };
  WireMessage mismatched_key = raw;
  mismatched_key.key = "2";
  WireMessage bomb = png;
  bomb.value.replace(16, 8, std::string("\x00\x01\x86\xa0\x00\x01\x86\xa0", 8));
  return {
      {with(raw, "id", std::nullopt), "missing header 'id'", "invalid-image"},
      {with(raw, "producer_id", std::nullopt), "missing header 'producer_id'", "invalid-image"},
      {with(with(raw, "producer_id", "abc"), "id", "bad-1"), "'abc' is not", "invalid-image"},
      {with(raw, "producer_id", "-4"), "'-4' is not", "invalid-image"},
      {mismatched_key, "does not match header 'producer_id'", "invalid-image"},
      {with(raw, "content-type", std::nullopt), "missing header 'content-type'", "invalid-image"},
      {with(raw, "content-type", "image/gif"), "unsupported content-type", "invalid-image"},
      {value(raw, ""), "empty payload", "undecodable-image"},
      {value(with(raw, "shape", "1x3000x1"), std::string(3000, 'x')), "exceeds the limit of 2000", "too-large"},
      {with(raw, "shape", std::nullopt), "raw image without header 'shape'", "invalid-image"},
      {with(raw, "shape", "3x3x1"), "needs 9 bytes, payload has 4", "undecodable-image"},
      {with(raw, "shape", "2by2"), "is not HxWxC", "invalid-image"},
      {with(raw, "content-type", "image/png"), "not a PNG", "undecodable-image"},
      {value(png, png.value.substr(0, png.value.size() / 2)), "corrupt PNG", "undecodable-image"},
      {bomb, "exceeds the side limit", "too-large"},
      {with(png, "shape", "9x9x1"), "disagrees with the decoded image", "undecodable-image"},
      {with(png, "content-type", "image/jpeg"), "not a JPEG", "undecodable-image"},
      {with(raw, "label", "bad\tlabel"), "header 'label'", "invalid-image"},
      {with(raw, "produced-at", "soon"), "header 'produced-at'", "invalid-image"},
  };
}

// The service between the given topics, in a group of its own, with no periodic log line.
InferOptions Between(const std::string& images, const std::string& inferences, const std::string& dlq) {
  InferOptions options;
  options.group = UniqueTopic("infer-group");
  options.input_topic = images;
  options.output_topic = inferences;
  options.dlq_topic = dlq;
  options.log_every = std::chrono::milliseconds(0);
  return options;
}

// `good` images from 4 devices into `images`: half of them, then `bad` (sent with `config`),
// then the other half, so that good images come before and after the bad ones, on their
// partition and on the others.
void ProduceAround(const std::string& images, int good, const kafka::KafkaConfig& config,
                   const std::vector<WireMessage>& bad) {
  produce::ProduceOptions produce_options;
  produce_options.topic = images;
  produce_options.images = good / 2;
  produce_options.producers = 4;
  produce_options.run_id = "before";
  ASSERT_OK(produce::Produce(produce_options));
  auto producer = kafka::Producer::Create(config);
  ASSERT_OK(producer);
  for (const WireMessage& message : bad) ASSERT_OK((*producer)->Send(images, message));
  ASSERT_OK((*producer)->Flush());
  ASSERT_EQ((*producer)->stats().acknowledged, static_cast<int64_t>(bad.size()));
  produce_options.run_id = "after";
  ASSERT_OK(produce::Produce(produce_options));
}

// The ids of `inferences` (read committed), expecting `count` records each of its own id.
std::set<std::string> ExpectEachInferredOnce(const std::string& inferences, int count) {
  auto records = ReadAll(inferences, count, std::chrono::seconds(1));
  std::set<std::string> ids;
  for (const auto& m : records) ids.insert(nlohmann::json::parse(m.value)["id"].get<std::string>());
  EXPECT_EQ(records.size(), static_cast<size_t>(count));
  EXPECT_EQ(ids.size(), static_cast<size_t>(count));
  return ids;
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
  for (const auto& m : bad) ASSERT_OK((*producer)->Send(images, m.message));
  ASSERT_OK((*producer)->Flush());

  InferOptions options = Between(images, inferences, dlq);
  // Batches of up to 256 decode on both threads, the malformed messages among the good ones
  // (infer_processes_test runs many small batches).
  options.batch_max = 256;
  options.classifier.threads = 2;
  options.limits.max_payload_bytes = 2000;
  const int http_port = iotinfer::testing::FreePort();
  options.endpoints = ops::EndpointOptions{.port = http_port};
  int ready_status = 0;
  std::string metrics;
  auto result = iotinfer::testing::RunInferUntil(options, kImages + static_cast<int64_t>(bad.size()),
                                                 std::chrono::seconds(90), [&](const InferStats&) {
                                                   httplib::Client client("127.0.0.1", http_port);
                                                   if (auto ready = client.Get("/readyz")) ready_status = ready->status;
                                                   if (auto scraped = client.Get("/metrics")) metrics = scraped->body;
                                                 });
  ASSERT_OK(result);
  EXPECT_EQ(result->inferred, kImages);
  EXPECT_EQ(result->dead_lettered, static_cast<int64_t>(bad.size()));
  // Counted by reason as their dead letters say.
  kafka::ReasonCounts by_reason{};
  for (const BadMessage& b : bad) by_reason[kafka::ReasonIndex(*kafka::ParseReasonCode(b.code))]++;
  EXPECT_EQ(result->dead_lettered_by_reason, by_reason);
  // What /metrics said at the end agrees with the counters; every image has a latency.
  EXPECT_EQ(ready_status, 200);
  EXPECT_THAT(metrics, ::testing::HasSubstr(fmt::format("iotinfer_infer_inferred_total {}\n", kImages)));
  // One series per reason, each there from the start (at 0 for those that did not happen).
  for (kafka::DeadLetterReason reason : kafka::kDeadLetterReasons) {
    EXPECT_THAT(metrics,
                ::testing::HasSubstr(fmt::format("iotinfer_infer_dead_lettered_total{{reason=\"{}\"}} {}\n",
                                                 kafka::ReasonCode(reason), by_reason[kafka::ReasonIndex(reason)])));
  }
  EXPECT_THAT(metrics, ::testing::HasSubstr(fmt::format("iotinfer_infer_latency_seconds_count {}\n", kImages)));
  EXPECT_THAT(metrics, ::testing::HasSubstr("iotinfer_infer_classify_seconds_count"));
  // The default engine is int8, which classified a few percent again in float32.
  EXPECT_GT(result->rechecked, 0);
  EXPECT_LT(result->rechecked, kImages / 4);
  EXPECT_THAT(metrics, ::testing::HasSubstr(fmt::format("iotinfer_infer_rechecked_total {}\n", result->rechecked)));

  // The images as produced, to check labels and to classify independently.
  std::map<std::string, ImageRecord> sent;
  for (const auto& m : ReadAll(images, kImages + bad.size())) {
    if (auto record = DecodeImageMessage(m, options.limits)) sent[record->id] = *record;
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
  std::vector<std::string> reasons;
  for (const auto& m : dead) {
    ASSERT_NE(m.FindHeader("error"), nullptr);
    ASSERT_NE(m.FindHeader("failed-at"), nullptr);
    reasons.push_back(*m.FindHeader("error"));
    // Its reason is that of the message it carries, whichever thread decoded it.
    auto same_message = [&](const BadMessage& b) {
      return b.message.value == m.value && std::ranges::all_of(b.message.headers, [&](const auto& h) {
               const std::string* kept = m.FindHeader(h.name);
               return kept && *kept == h.value;
             });
    };
    EXPECT_TRUE(std::ranges::any_of(bad,
                                    [&](const BadMessage& b) {
                                      return same_message(b) && reasons.back().find(b.reason) != std::string::npos &&
                                             m.FindHeader("reason") && *m.FindHeader("reason") == b.code;
                                    }))
        << "dead letter with error '" << reasons.back() << "' carries another message or another reason code";
  }
  for (const auto& b : bad) {
    EXPECT_THAT(reasons, ::testing::Contains(::testing::HasSubstr(b.reason))) << "no dead letter says: " << b.reason;
  }
}

// A message the broker took on `images` must end as a record or a dead letter, whatever its size:
// a 1,000,000-byte raw image whose shape header disagrees with it, and a corrupt PNG of about a
// megabyte, with good images before and after them on the same partition. Their dead letters
// would be over the producer's limit with the payload kept; infer used to abort its batch on
// them for ever, and so stop every partition.
TEST(InferIntegrationTest, MessagesTooLargeToDeadLetterWholeAreDeadLetteredWithoutTheirPayload) {
  const std::string images = UniqueTopic("big-images"), inferences = UniqueTopic("big-out"),
                    dlq = UniqueTopic("big-dlq");
  ASSERT_OK(kafka::EnsureTopics({}, {{images, 2}, {inferences, 2}, {dlq, 2}}));
  constexpr int kGood = 200;
  kafka::KafkaConfig big_messages;
  big_messages.properties["message.max.bytes"] = "1040000";
  const WireMessage raw = *EncodeImageMessage({"big-raw", 1, std::string("Bag"), 1, Image{2, 2, 1, {1, 2, 3, 4}}},
                                              {.encoding = ImageEncoding::kRaw});
  WireMessage huge_raw = raw;
  huge_raw.value = std::string(1'000'000, '\x7f');
  WireMessage corrupt_png =
      *EncodeImageMessage({"big-png", 1, std::string("Bag"), 1, Image{8, 8, 1, std::vector<uint8_t>(64, 7)}},
                          {.encoding = ImageEncoding::kPng});
  corrupt_png.value.resize(1'000'000, '\x42');          // garbage after IEND: more than a PNG holds
  corrupt_png.value.replace(8, 4, "\xff\xff\xff\xff");  // and a broken IHDR length
  ASSERT_NO_FATAL_FAILURE(ProduceAround(images, kGood, big_messages, {huge_raw, corrupt_png}));

  InferOptions options = Between(images, inferences, dlq);
  options.partitions = 2;
  options.limits.max_payload_bytes = 2'000'000;
  auto result = iotinfer::testing::RunInferUntil(options, kGood + 2, std::chrono::seconds(60));
  ASSERT_OK(result);
  EXPECT_EQ(result->inferred, kGood);
  EXPECT_EQ(result->dead_lettered, 2);
  EXPECT_EQ(result->aborted, 0);

  ExpectEachInferredOnce(inferences, kGood);

  auto dead = ReadAll(dlq, 2, std::chrono::seconds(1));
  ASSERT_EQ(dead.size(), 2u);
  std::set<std::string> dead_ids;
  for (const auto& m : dead) {
    ASSERT_NE(m.FindHeader("id"), nullptr);
    dead_ids.insert(*m.FindHeader("id"));
    EXPECT_TRUE(m.value.empty());
    ASSERT_NE(m.FindHeader("payload-dropped"), nullptr);
    EXPECT_THAT(*m.FindHeader("payload-dropped"), ::testing::HasSubstr("1000000 bytes"));
    ASSERT_NE(m.FindHeader("source"), nullptr);
    EXPECT_THAT(*m.FindHeader("source"), ::testing::StartsWith(images + "/"));
    ASSERT_NE(m.FindHeader("error"), nullptr);
  }
  EXPECT_EQ(dead_ids, (std::set<std::string>{"big-raw", "big-png"}));
}

// A topic configured to take messages of 2 MB, and a device that sends a valid 1.5 MiB image:
// over infer's default payload limit (1 MiB), so it is dead-lettered with that reason, and, the
// dead-letter topic taking 1 MB, without its payload. The images around it are inferred once.
TEST(InferIntegrationTest, AnImageOverTheLimitOnATopicThatAcceptsItIsDeadLetteredAndTheRestGoOn) {
  const std::string images = UniqueTopic("huge-images"), inferences = UniqueTopic("huge-out"),
                    dlq = UniqueTopic("huge-dlq");
  ASSERT_OK(kafka::EnsureTopics(
      {},
      {{.name = images, .partitions = 2, .configs = {{"max.message.bytes", "2000000"}}}, {inferences, 2}, {dlq, 2}}));
  constexpr int kGood = 200;
  kafka::KafkaConfig big_messages;
  big_messages.properties["message.max.bytes"] = "2000000";
  constexpr int kSide = 724;  // 724 x 724 x 3 = 1,572,528 bytes: 1.5 MiB
  std::vector<uint8_t> pixels(kSide * kSide * 3);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 2654435761u >> 24);
  ASSERT_NO_FATAL_FAILURE(
      ProduceAround(images, kGood, big_messages,
                    {*EncodeImageMessage({"huge", 1, std::string("Bag"), 1, Image{kSide, kSide, 3, pixels}},
                                         {.encoding = ImageEncoding::kRaw})}));

  InferOptions options = Between(images, inferences, dlq);
  options.partitions = 2;
  auto result = iotinfer::testing::RunInferUntil(options, kGood + 1, std::chrono::seconds(60));
  ASSERT_OK(result);
  EXPECT_EQ(result->inferred, kGood);
  EXPECT_EQ(result->dead_lettered, 1);
  EXPECT_EQ(result->aborted, 0);

  ExpectEachInferredOnce(inferences, kGood);
  auto dead = ReadAll(dlq, 1, std::chrono::seconds(1));
  ASSERT_EQ(dead.size(), 1u);
  ASSERT_NE(dead[0].FindHeader("id"), nullptr);
  EXPECT_EQ(*dead[0].FindHeader("id"), "huge");
  EXPECT_TRUE(dead[0].value.empty());
  ASSERT_NE(dead[0].FindHeader("payload-dropped"), nullptr);
  EXPECT_THAT(*dead[0].FindHeader("payload-dropped"), ::testing::HasSubstr("1572528 bytes"));
  ASSERT_NE(dead[0].FindHeader("error"), nullptr);
  EXPECT_THAT(*dead[0].FindHeader("error"), ::testing::HasSubstr("exceeds the limit"));
}

// The cluster refuses one message's output and nothing else: an `inferences` topic that takes
// records of at most 600 bytes, one record per produce request, and an image with a 256-byte
// id (valid) whose record is over it. Every batch holding that image fails to commit; the
// batch is split until the image is alone, which is then dead-lettered with the failure, and
// every other image, before and after it on its partition and on the others, is inferred once.
// Meanwhile /readyz says the service is stuck, and why.
TEST(InferIntegrationTest, AMessageNoBatchCanCommitIsIsolatedAndDeadLetteredAndTheRestGoThrough) {
  const std::string images = UniqueTopic("split-images"), inferences = UniqueTopic("split-out"),
                    dlq = UniqueTopic("split-dlq");
  ASSERT_OK(kafka::EnsureTopics(
      {}, {{images, 2}, {.name = inferences, .partitions = 2, .configs = {{"max.message.bytes", "600"}}}, {dlq, 2}}));
  constexpr int kGood = 200;
  const std::string long_id(256, 'L');
  ASSERT_NO_FATAL_FAILURE(ProduceAround(
      images, kGood, {},
      {*EncodeImageMessage({long_id, 1, std::string("Bag"), 1, Image{28, 28, 1, std::vector<uint8_t>(784, 9)}},
                           {.encoding = ImageEncoding::kRaw})}));

  InferOptions options = Between(images, inferences, dlq);
  options.partitions = 2;
  // The topic's limit applies to a record batch: one record each makes it the record's. One
  // batch in flight at a time, so that none follows the refused one: those would wait out their
  // timeout (librdkafka's idempotent producer) before the abort could finish.
  options.kafka.properties["producer.batch.num.messages"] = "1";
  options.kafka.properties["producer.max.in.flight.requests.per.connection"] = "1";
  const int port = iotinfer::testing::FreePort();
  options.endpoints = ops::EndpointOptions{.port = port};
  // Asked from the service's own thread, right after it published that it is stuck, and once
  // it has consumed everything.
  auto ask = [port](const std::string& path) {
    httplib::Client client("127.0.0.1", port);
    auto response = client.Get(path);
    return response ? std::to_string(response->status) + " " + response->body : std::string("no answer");
  };
  std::string ready_while_stuck, metrics_while_stuck, ready_at_end, metrics_at_end;
  auto result = iotinfer::testing::RunInferUntil(
      options, kGood + 1, std::chrono::seconds(90),
      [&](const InferStats&) {
        ready_at_end = ask("/readyz");
        metrics_at_end = ask("/metrics");
      },
      [&](const InferStats& s) {
        if (s.stuck.empty() || !ready_while_stuck.empty()) return;
        ready_while_stuck = ask("/readyz");
        metrics_while_stuck = ask("/metrics");
      });
  ASSERT_OK(result);
  EXPECT_THAT(ready_while_stuck, ::testing::StartsWith("503 "));
  EXPECT_THAT(ready_while_stuck, ::testing::HasSubstr("commits in a row failed"));
  EXPECT_THAT(ready_while_stuck, ::testing::HasSubstr("Message size too large"));
  EXPECT_GT(iotinfer::testing::MetricValue(metrics_while_stuck, "iotinfer_infer_stuck_seconds"), 0);
  EXPECT_THAT(ready_at_end, ::testing::StartsWith("200 "));
  EXPECT_EQ(iotinfer::testing::MetricValue(metrics_at_end, "iotinfer_infer_stuck_seconds"), 0);
  EXPECT_EQ(iotinfer::testing::MetricValue(metrics_at_end, "iotinfer_infer_isolated_total"), 1);
  EXPECT_EQ(result->inferred, kGood);
  EXPECT_EQ(result->dead_lettered, 1);
  EXPECT_EQ(result->dead_lettered_by_reason[kafka::ReasonIndex(kafka::DeadLetterReason::kCommitFailed)], 1);
  EXPECT_EQ(result->isolated, 1);
  EXPECT_GE(result->aborted, 3) << "split only after failing the same way three times";
  EXPECT_TRUE(result->stuck.empty());

  EXPECT_FALSE(ExpectEachInferredOnce(inferences, kGood).contains(long_id));

  auto dead = ReadAll(dlq, 1, std::chrono::seconds(1));
  ASSERT_EQ(dead.size(), 1u);
  ASSERT_NE(dead[0].FindHeader("id"), nullptr);
  EXPECT_EQ(*dead[0].FindHeader("id"), long_id);
  ASSERT_NE(dead[0].FindHeader("error"), nullptr);
  EXPECT_THAT(*dead[0].FindHeader("error"), ::testing::HasSubstr("could not be committed"));
  EXPECT_THAT(*dead[0].FindHeader("error"), ::testing::HasSubstr("too large"));
  ASSERT_NE(dead[0].FindHeader("reason"), nullptr);
  EXPECT_EQ(*dead[0].FindHeader("reason"), "commit-failed");
  EXPECT_EQ(dead[0].value.size(), 784u) << "the payload fits, so it is kept for a replay";
}

// Each image is brought to the network's size as it is decoded. 128 flat 2048x2048 RGB PNGs
// (12 MiB each decoded, 1.5 GiB as one batch) pass through infer while its peak memory grows
// by a fraction of that; held at full size until the batch was classified, they took it all.
TEST(InferIntegrationTest, ABatchOfLargeImagesIsNeverHeldAtFullSize) {
  const std::string images = UniqueTopic("big-images"), inferences = UniqueTopic("big-out"),
                    dlq = UniqueTopic("big-dlq");
  constexpr int kImages = 128;
  ASSERT_OK(kafka::EnsureTopics({}, {{images}, {inferences}, {dlq}}));
  auto big = EncodeImageMessage(
      {"big", 1, std::string("Bag"), 1, Image{2048, 2048, 3, std::vector<uint8_t>(2048 * 2048 * 3, 90)}},
      {.encoding = ImageEncoding::kPng});
  ASSERT_OK(big);
  ASSERT_LT(big->value.size(), DecodeLimits{}.max_payload_bytes);
  auto producer = kafka::Producer::Create({});
  ASSERT_OK(producer);
  for (int i = 0; i < kImages; ++i) {
    WireMessage m = *big;
    for (auto& header : m.headers) {
      if (header.name == "id") header.value = "big-" + std::to_string(i);
    }
    ASSERT_OK((*producer)->Send(images, m));
  }
  ASSERT_OK((*producer)->Flush());

  InferOptions options = Between(images, inferences, dlq);
  options.batch_max = kImages;
  options.batch_wait = std::chrono::milliseconds(500);
  options.classifier.threads = 2;
  const long before = iotinfer::testing::MaxRssMiB();
  auto result = iotinfer::testing::RunInferUntil(options, kImages, std::chrono::seconds(90));
  ASSERT_OK(result);
  EXPECT_EQ(result->inferred, kImages);
  EXPECT_EQ(result->dead_lettered, 0);
  EXPECT_LT(iotinfer::testing::MaxRssMiB() - before, 512) << "MiB";
  EXPECT_EQ(ReadAll(inferences, kImages, std::chrono::seconds(1)).size(), static_cast<size_t>(kImages));
}

}  // namespace
}  // namespace iotinfer::infer
