#include "models/control.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_util.h"

namespace iotinfer::models {
namespace {

using ::testing::HasSubstr;

TEST(ModelIdTest, IsTheClassifiersStemAndEightHexDigits) {
  for (const char* id : {"fmnist-cnn-1a2b3c4d", "a-00000000", "fmnist_cnn.v2+aug-deadbeef", "x--12345678"}) {
    EXPECT_TRUE(IsModelId(id)) << id;
    EXPECT_TRUE(CheckModelId(id)) << id;
  }
  for (const char* id : {"", "fmnist-cnn", "fmnist-cnn-1A2B3C4D", "fmnist-cnn-1a2b3c4", "fmnist-cnn-1a2b3c4d5",
                         "-1a2b3c4d", "fmnist cnn-1a2b3c4d", "../x-1a2b3c4d", "fmnist-cnn_1a2b3c4d",
                         "model/fmnist-cnn.onnx", "fmnist-cnn-1a2b3c4g"}) {
    EXPECT_FALSE(IsModelId(id)) << id;
  }
  EXPECT_FALSE(IsModelId(std::string(201, 'a') + "-1a2b3c4d"));
  EXPECT_TRUE(IsModelId(std::string(200, 'a') + "-1a2b3c4d"));
  const Status bad = CheckModelId("fmnist.onnx");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), Error::Code::kInvalidInput);
  EXPECT_THAT(bad.error().message(), HasSubstr("'fmnist.onnx' is no model version"));
  EXPECT_THAT(CheckModelId("x\x1b[2J").error().message(), HasSubstr("(not shown)"));
}

TEST(ChoiceTest, EncodeDecodeRoundTrip) {
  const ModelChoice choice{.group = "iotinfer-infer",
                           .model = "fmnist-aug-5e6f7a8b",
                           .at_us = 1764151200'123456,
                           .by = "models compare --promote-if better",
                           .reason = "better than fmnist-cnn-1a2b3c4d: \"quoted\", ünïcode"};
  const std::string value = EncodeChoice(choice);
  EXPECT_THAT(value, HasSubstr(R"("model":"fmnist-aug-5e6f7a8b")"));
  EXPECT_THAT(value, HasSubstr(R"("at":1764151200123456)"));
  auto decoded = DecodeChoice("iotinfer-infer", value);
  ASSERT_OK(decoded);
  EXPECT_EQ(*decoded, choice);
  // The key is the group, whatever the value repeats.
  decoded = DecodeChoice("canary", value);
  ASSERT_OK(decoded);
  EXPECT_EQ(decoded->group, "canary");
}

TEST(ChoiceTest, OnlyTheModelIsRequired) {
  auto decoded = DecodeChoice("g", R"({"model":"m-0badc0de","future":[1,2]})");
  ASSERT_OK(decoded);
  EXPECT_EQ(*decoded, (ModelChoice{.group = "g", .model = "m-0badc0de"}));
  decoded = DecodeChoice("g", R"({"model":"m-0badc0de","at":null,"by":null,"reason":null})");
  ASSERT_OK(decoded);
  EXPECT_EQ(decoded->at_us, 0);
}

TEST(ChoiceTest, BadRecordsAreInvalidInputWithTheReason) {
  struct Case {
    std::string key, value, says;
  };
  for (const Case& c : std::vector<Case>{
           {"g", "", "not valid JSON"},
           {"g", "{\"model\":", "not valid JSON"},
           {"g", "[\"m-0badc0de\"]", "not a JSON object"},
           {"g", "{}", "'model' is missing"},
           {"g", R"({"model":7})", "'model' is missing or not a string"},
           {"g", R"({"model":"fmnist-cnn.onnx"})", "is no model version"},
           {"g", R"({"model":"m-0badc0de","at":"yesterday"})", "'at' must be an integer"},
           {"g", R"({"model":"m-0badc0de","at":1.5})", "'at' must be an integer"},
           {"g", R"({"model":"m-0badc0de","at":18446744073709551615})", "'at' must be an integer"},
           {"g", R"({"model":"m-0badc0de","by":3})", "'by' must be a string"},
           {"g", R"({"model":"m-0badc0de","reason":{}})", "'reason' must be a string"},
           {"g", R"({"model":"m-0badc0de","reason":"\u001b[2J"})", "reason holds a control character"},
           {"g", R"({"model":"m-0badc0de","by":"\u0085"})", "by holds a control character"},
           {"g\n", R"({"model":"m-0badc0de"})", "group holds a control character"},
           {"", R"({"model":"m-0badc0de"})", "no group"},
       }) {
    const Result<ModelChoice> decoded = DecodeChoice(c.key, c.value);
    ASSERT_FALSE(decoded) << c.value;
    EXPECT_EQ(decoded.error().code(), Error::Code::kInvalidInput) << c.value;
    EXPECT_THAT(decoded.error().message(), HasSubstr(c.says)) << c.value;
  }
}

TEST(ChoiceTest, WriteRefusesWhatDecodeWouldBeforeReachingTheCluster) {
  const kafka::KafkaConfig nowhere{.brokers = "127.0.0.1:1"};
  for (const ModelChoice& choice :
       {ModelChoice{.group = "g", .model = "fmnist"}, ModelChoice{.group = "", .model = "m-0badc0de"},
        ModelChoice{.group = "g", .model = "m-0badc0de", .reason = "two\nlines"}}) {
    const Status written = WriteChoice(nowhere, "model-control", choice);
    ASSERT_FALSE(written);
    EXPECT_EQ(written.error().code(), Error::Code::kInvalidInput) << written.error().message();
  }
}

}  // namespace
}  // namespace iotinfer::models
