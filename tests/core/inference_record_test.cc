#include "core/inference_record.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace iotinfer {
namespace {

InferenceRecord Sample() {
  return {.id = "run-3-17",
          .image_prediction = "Shirt",
          .actual_value = "T-shirt/top",
          .producer_id = 3,
          .confidence = 0.91,
          .model = "fmnist-cnn-f717b7aa",
          .produced_at_us = 1700000000000000,
          .inferred_at_us = 1700000000004000};
}

TEST(InferenceRecordTest, RoundTripsWithTheOriginalFieldOrder) {
  const std::string json = EncodeInferenceRecord(Sample());
  EXPECT_EQ(
      json.rfind(R"({"id":"run-3-17","image_prediction":"Shirt","actual_value":"T-shirt/top","producer_id":3,)", 0), 0u)
      << json;
  auto decoded = DecodeInferenceRecord(json);
  ASSERT_OK(decoded);
  EXPECT_EQ(*decoded, Sample());
  EXPECT_TRUE(decoded->incorrect());
}

TEST(InferenceRecordTest, StageTimesRoundTripAndAreAbsentWhenUnknown) {
  EXPECT_EQ(EncodeInferenceRecord(Sample()).find("_at\":null"), std::string::npos) << "no stage time is null";
  EXPECT_EQ(EncodeInferenceRecord(Sample()).find("polled_at"), std::string::npos);
  InferenceRecord r = Sample();
  r.appended_at_us = 1700000000001000;
  r.polled_at_us = 1700000000001500;
  r.batch_at_us = 1700000000002000;
  const std::string json = EncodeInferenceRecord(r);
  auto decoded = DecodeInferenceRecord(json);
  ASSERT_OK(decoded);
  EXPECT_EQ(*decoded, r);
  EXPECT_FALSE(decoded->sink.polled_at_us.has_value());

  // What sink publishes to inferences.accepted: the record as it came, then its own times.
  const std::string accepted = WithSinkTimes(json + "  ", {.appended_at_us = std::nullopt,
                                                           .polled_at_us = 1700000000009000,
                                                           .write_sent_at_us = 1700000000009100,
                                                           .stored_at_us = 1700000000012000});
  EXPECT_EQ(accepted.rfind(json.substr(0, json.size() - 1), 0), 0u) << accepted;
  EXPECT_EQ(accepted.find("inference_appended_at"), std::string::npos) << "unknown times are left out";
  auto stored = DecodeInferenceRecord(accepted);
  ASSERT_OK(stored);
  EXPECT_EQ(stored->batch_at_us, r.batch_at_us);
  EXPECT_EQ(stored->sink.polled_at_us, 1700000000009000);
  EXPECT_EQ(stored->sink.write_sent_at_us, 1700000000009100);
  EXPECT_EQ(stored->sink.stored_at_us, 1700000000012000);

  auto bad = DecodeInferenceRecord(R"({"id":"a","image_prediction":"Bag","actual_value":null,"producer_id":1,)"
                                   R"("stored_at":"yesterday"})");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message().find("field 'stored_at' must be an integer"), std::string::npos)
      << bad.error().message();
}

TEST(InferenceRecordTest, UnlabelledRecordsAreNeverIncorrect) {
  InferenceRecord r = Sample();
  r.actual_value.reset();
  r.produced_at_us.reset();
  const std::string json = EncodeInferenceRecord(r);
  EXPECT_NE(json.find(R"("actual_value":null)"), std::string::npos);
  auto decoded = DecodeInferenceRecord(json);
  ASSERT_OK(decoded);
  EXPECT_EQ(*decoded, r);
  EXPECT_FALSE(decoded->incorrect());
}

TEST(InferenceRecordTest, AcceptsTheOriginalFourFieldsAloneAndIgnoresUnknownOnes) {
  auto decoded = DecodeInferenceRecord(
      R"({"id":"a","image_prediction":"Bag","actual_value":"Bag","producer_id":0,"future":[1,2]})");
  ASSERT_OK(decoded);
  EXPECT_EQ(decoded->producer_id, 0);
  EXPECT_FALSE(decoded->incorrect());
  EXPECT_EQ(decoded->inferred_at_us, 0);
}

TEST(InferenceRecordTest, RejectsEachMalformedValueWithItsReason) {
  const std::string ok_tail = R"("image_prediction":"Bag","actual_value":"Bag")";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "not valid JSON"},
      {"{\"id\":", "not valid JSON"},
      {R"({"id":"a",)" + ok_tail + R"(,"producer_id":1,"produced_at":18446744073709551615})", "produced_at"},
      {"[1,2]", "not a JSON object"},
      {R"({"image_prediction":"Bag","actual_value":"Bag","producer_id":1})", "missing field 'id'"},
      {R"({"id":"","image_prediction":"Bag","actual_value":"Bag","producer_id":1})", "field 'id' must be"},
      {R"({"id":7,"image_prediction":"Bag","actual_value":"Bag","producer_id":1})", "field 'id' must be"},
      {R"({"id":"a","actual_value":"Bag","producer_id":1})", "missing field 'image_prediction'"},
      {R"({"id":"a","image_prediction":null,"actual_value":"Bag","producer_id":1})", "'image_prediction' must be"},
      {R"({"id":"a","image_prediction":"Bag","producer_id":1})", "missing field 'actual_value'"},
      {R"({"id":"a","image_prediction":"Bag","actual_value":5,"producer_id":1})", "'actual_value' must be"},
      {R"({"id":"a",)" + ok_tail + "}", "missing field 'producer_id'"},
      {R"({"id":"a",)" + ok_tail + R"(,"producer_id":"3"})", "'producer_id' must be an integer"},
      {R"({"id":"a",)" + ok_tail + R"(,"producer_id":-1})", "'producer_id' must be an integer"},
      {R"({"id":"a",)" + ok_tail + R"(,"producer_id":3.5})", "'producer_id' must be an integer"},
      {R"({"id":"a",)" + ok_tail + R"(,"producer_id":4294967296})", "'producer_id' must be an integer"},
      {R"({"id":"a",)" + ok_tail + R"(,"producer_id":1,"confidence":"high"})", "'confidence' must be a number"},
      {R"({"id":"a",)" + ok_tail + R"(,"producer_id":1,"model":1})", "'model' must be a string"},
      {R"({"id":"a",)" + ok_tail + R"(,"producer_id":1,"produced_at":"now"})", "'produced_at' must be an integer"},
      {R"({"id":"a",)" + ok_tail + R"(,"producer_id":1,"inferred_at":1.5})", "'inferred_at' must be an integer"},
  };
  for (const auto& [json, reason] : cases) {
    auto decoded = DecodeInferenceRecord(json);
    ASSERT_FALSE(decoded.has_value()) << json;
    EXPECT_EQ(decoded.error().code(), Error::Code::kInvalidInput);
    EXPECT_NE(decoded.error().message().find(reason), std::string::npos) << json << " -> " << decoded.error().message();
    EXPECT_EQ(decoded.error().message().find('\n'), std::string::npos);
  }
}

TEST(InferenceRecordTest, ReasonsCutLongValuesShort) {
  auto decoded = DecodeInferenceRecord(R"({"id":")" + std::string(500, 'x') + R"(","image_prediction":1})");
  ASSERT_FALSE(decoded.has_value());
  EXPECT_LT(decoded.error().message().size(), 120u) << decoded.error().message();
}

}  // namespace
}  // namespace iotinfer
