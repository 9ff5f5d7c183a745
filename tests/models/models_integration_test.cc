// Model choices, comparison, promotion and rollback against the real broker that the `kafka`
// ctest fixture starts: inference records written as infer writes them, to topics of each test's
// own.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/inference_record.h"
#include "kafka_test_util.h"
#include "models/models.h"
#include "process_util.h"
#include "test_util.h"

namespace iotinfer::models {
namespace {

using iotinfer::testing::Iotinfer;
using iotinfer::testing::UniqueTopic;
using iotinfer::testing::WriteAll;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kActive = "fmnist-cnn-1a2b3c4d";
constexpr const char* kCandidate = "fmnist-aug-5e6f7a8b";
constexpr const char* kOlder = "fmnist-old-00c0ffee";

// The record a model writes for image `id` of `producer`: right or wrong about its label (a Bag).
kafka::OutputMessage Record(const std::string& topic, const std::string& id, int producer, const std::string& model,
                            bool right, bool labelled = true) {
  const InferenceRecord record{.id = id,
                               .image_prediction = right ? "Bag" : "Coat",
                               .actual_value = labelled ? std::optional<std::string>("Bag") : std::nullopt,
                               .producer_id = producer,
                               .confidence = 0.9,
                               .model = model,
                               .produced_at_us = 1764151200'000000,
                               .inferred_at_us = 1764151200'100000};
  return {topic, {std::to_string(producer), EncodeInferenceRecord(record), {}}};
}

// Topics of a test's own, each with a fleet's records in them.
struct Fleet {
  std::string active = UniqueTopic("models-active"), shadow = UniqueTopic("models-shadow");
  std::string control = UniqueTopic("models-control"), group = UniqueTopic("models-group");
  std::vector<kafka::OutputMessage> messages;

  // `images` labelled images of `producer`, classified by both models: the active model right
  // on `active_right` of them, the candidate on `candidate_right`, both right on the first
  // min(...) of them.
  void Device(int producer, int images, int active_right, int candidate_right,
              const std::string& active_model = kActive) {
    for (int i = 0; i < images; ++i) {
      const std::string id = fmt::format("{}-{}-{}", active_model, producer, i);
      messages.push_back(Record(active, id, producer, active_model, i < active_right));
      messages.push_back(Record(shadow, id, producer, kCandidate, i < candidate_right));
    }
  }

  // Creates the topics (unless a test made them already) and writes the records.
  void Write() const {
    ASSERT_OK(kafka::EnsureTopics({}, {{active, 2}, {shadow, 2}}));
    ASSERT_NO_FATAL_FAILURE(WriteAll(messages));
  }

  CompareCommandOptions Options() const {
    CompareCommandOptions o;
    o.compare.inferences = active;
    o.compare.shadow = shadow;
    o.group = group;
    o.control_topic = control;
    return o;
  }

  std::string Flags() const {
    return fmt::format("--inferences {} --shadow {} --group {} --control-topic {}", active, shadow, group, control);
  }
};

// Seven devices on which the candidate is right on 20 more of 200 images, and one on which the
// two are alike.
void BetterOnMostDevices(Fleet& fleet) {
  for (int d = 0; d < 7; ++d) fleet.Device(d, 200, 160, 180);
  fleet.Device(7, 200, 170, 170);
}

TEST(ModelsCompareTest, PromotesACandidateBetterOnMostDevicesAndCountsOnlyWhatPairs) {
  Fleet fleet;
  ASSERT_OK(kafka::EnsureTopics({}, {{fleet.active, 3}, {fleet.shadow, 2}}));
  BetterOnMostDevices(fleet);
  // Before a swap the older model served some images, also shadowed.
  fleet.Device(3, 10, 10, 10, kOlder);
  for (int i = 0; i < 30; ++i)
    fleet.messages.push_back(Record(fleet.active, fmt::format("active-only-{}", i), 1, kActive, true));
  for (int i = 0; i < 10; ++i)
    fleet.messages.push_back(Record(fleet.shadow, fmt::format("shadow-only-{}", i), 1, kCandidate, true));
  for (int i = 0; i < 15; ++i) {
    const std::string id = fmt::format("unlabelled-{}", i);
    fleet.messages.push_back(Record(fleet.active, id, 2, kActive, true, false));
    fleet.messages.push_back(Record(fleet.shadow, id, 2, kCandidate, true, false));
  }
  fleet.messages.push_back({fleet.active, {"1", "not json", {}}});
  fleet.messages.push_back({fleet.shadow, {"1", "{}", {}}});
  fleet.messages.push_back(Record(fleet.active, "a-path", 1, "model/fmnist-cnn.onnx", true));
  ASSERT_NO_FATAL_FAILURE(fleet.Write());
  // Shadow records of an aborted transaction would pair with the active-only images, all wrong.
  std::vector<std::pair<int32_t, WireMessage>> aborted;
  for (int i = 0; i < 30; ++i) {
    aborted.push_back({i % 2, Record(fleet.shadow, fmt::format("active-only-{}", i), 1, kCandidate, false).message});
  }
  ASSERT_NO_FATAL_FAILURE(testing::ProduceAbortedTransaction(fleet.shadow, aborted));

  CompareCommandOptions options = fleet.Options();
  auto comparison = Compare(options.compare);
  ASSERT_OK(comparison);
  EXPECT_EQ(comparison->active, kActive);
  EXPECT_EQ(comparison->candidate, kCandidate);
  ASSERT_EQ(comparison->pairs.size(), 2u);
  EXPECT_EQ(comparison->pairs[0].labelled, 1600);
  EXPECT_EQ(comparison->pairs[0].unlabelled, 15);
  EXPECT_EQ(comparison->pairs[1].active, kOlder);
  EXPECT_EQ(comparison->pairs[1].labelled, 10);
  EXPECT_EQ(comparison->active_records, 1600 + 10 + 30 + 15);
  EXPECT_EQ(comparison->shadow_records, 1600 + 10 + 10 + 15);
  EXPECT_EQ(comparison->active_unpaired, 30) << "the aborted shadow records were counted";
  EXPECT_EQ(comparison->shadow_unpaired, 10);
  EXPECT_EQ(comparison->undecodable, 3);
  const Judgement& j = comparison->judgement;
  EXPECT_EQ(
      j.overall,
      (PairedCounts{
          .images = 1600, .active_correct = 7 * 160 + 170, .candidate_correct = 7 * 180 + 170, .b = 0, .c = 140}));
  EXPECT_EQ(j.devices_tested, 7);
  ASSERT_EQ(j.devices.size(), 8u);
  EXPECT_EQ(j.devices[0].difference, Difference::kBetter);
  EXPECT_EQ(j.devices[7].difference, Difference::kNone);
  EXPECT_EQ(j.decision, Decision::kBetter);

  options.promote = true;
  auto text = CompareText(options);
  ASSERT_OK(text);
  EXPECT_THAT(*text, HasSubstr(fmt::format("active     {}  ({})", kActive, fleet.active)));
  EXPECT_THAT(*text, HasSubstr(fmt::format("{} -> {}  10 labelled images", kOlder, kCandidate)));
  EXPECT_THAT(*text, HasSubstr("decision   better: "));
  EXPECT_THAT(*text, HasSubstr(fmt::format("promoted: group {} now serves {}", fleet.group, kCandidate)));
  EXPECT_THAT(*text, HasSubstr(fmt::format("to roll back: iotinfer models activate {} --group {} --control-topic {}",
                                           kActive, fleet.group, fleet.control)));
  auto choices = ReadChoices({}, fleet.control);
  ASSERT_OK(choices);
  ASSERT_EQ(choices->size(), 1u);
  const ModelChoice choice = choices->at(fleet.group);
  EXPECT_EQ(choice.model, kCandidate);
  EXPECT_EQ(choice.by, "models compare --promote-if better");
  EXPECT_THAT(choice.reason, HasSubstr(fmt::format("better than {}: the candidate is significantly better", kActive)));
  EXPECT_GT(choice.at_us, 1764151200'000000);

  // Once promoted, a second run writes nothing.
  text = CompareText(options);
  ASSERT_OK(text);
  EXPECT_THAT(*text, HasSubstr(fmt::format("not promoted: group {} already serves {}", fleet.group, kCandidate)));
  int skipped = -1;
  choices = ReadChoices({}, fleet.control, &skipped);
  ASSERT_OK(choices);
  EXPECT_EQ(choices->at(fleet.group), choice);
  EXPECT_EQ(skipped, 0);

  // The older pair, chosen; a pair that is not there, named.
  options.compare.active = kOlder;
  comparison = Compare(options.compare);
  ASSERT_OK(comparison);
  EXPECT_EQ(comparison->judgement.overall.images, 10);
  EXPECT_EQ(comparison->judgement.decision, Decision::kNoDifference);
  options.compare.candidate = "fmnist-new-0000beef";
  comparison = Compare(options.compare);
  ASSERT_FALSE(comparison);
  EXPECT_EQ(comparison.error().code(), Error::Code::kNotFound);
  EXPECT_THAT(comparison.error().message(), HasSubstr(fmt::format("{} holds records of {}, {}; {} of {}", fleet.active,
                                                                  kActive, kOlder, fleet.shadow, kCandidate)));
}

TEST(ModelsCompareTest, ACandidateMuchWorseOnOneDeviceIsNotPromoted) {
  Fleet fleet;
  for (int d = 0; d < 7; ++d) fleet.Device(d, 200, 160, 180);
  fleet.Device(7, 200, 180, 120);  // b = 60 on device 7
  ASSERT_NO_FATAL_FAILURE(fleet.Write());

  const auto run = Iotinfer("models compare --promote-if better --devices 3 " + fleet.Flags(), 300);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("decision   worse-on-devices: the candidate is significantly better overall"));
  EXPECT_THAT(run.output, HasSubstr("significantly worse on 1 of the 8 devices tested (Holm): device 7 (b 60, c 0"));
  EXPECT_THAT(run.output, HasSubstr("not promoted: the decision is worse-on-devices, not better"));
  // The worse device first, then the largest |c - b|; five devices left out.
  EXPECT_THAT(run.output, ::testing::ContainsRegex("\nall +1600 .*\n7 +200 +90.00% +60.00% +60 +0 .* worse\n0 +200"));
  EXPECT_THAT(run.output, HasSubstr("8 devices, 8 tested (b + c > 0; Holm's correction is over those); 5 more not "
                                    "shown, 5 of them significant"));
  auto choices = ReadChoices({}, fleet.control);
  ASSERT_OK(choices);
  EXPECT_TRUE(choices->empty());

  const auto json_run = Iotinfer("models compare --json " + fleet.Flags(), 300);
  ASSERT_EQ(json_run.exit_code, 0) << json_run.output;
  const auto json = nlohmann::json::parse(json_run.output);
  EXPECT_EQ(json["decision"], "worse-on-devices");
  EXPECT_EQ(json["overall"]["b"], 60);
  EXPECT_EQ(json["overall"]["c"], 140);
  ASSERT_EQ(json["devices"].size(), 8u) << "--json lists every device";
  EXPECT_EQ(json["devices"][7]["producer_id"], 7);
  EXPECT_EQ(json["devices"][7]["difference"], "worse");
  EXPECT_LT(json["devices"][7]["holm_p"].get<double>(), 0.05);
  EXPECT_FALSE(json.contains("promotion"));
}

TEST(ModelsActivateTest, ARollbackActivatesThePreviousVersionAndStatusShowsIt) {
  Fleet fleet;
  BetterOnMostDevices(fleet);
  ASSERT_NO_FATAL_FAILURE(fleet.Write());
  const std::string other = UniqueTopic("models-other-group");
  auto run = Iotinfer(fmt::format("models activate {} --group {} --control-topic {}", kActive, other, fleet.control));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("before: no choice"));

  run = Iotinfer("models compare --promote-if better " + fleet.Flags(), 300);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  ASSERT_THAT(run.output, HasSubstr("promoted: group " + fleet.group));

  run = Iotinfer(fmt::format("models activate {} --group {} --control-topic {} --reason 'device 3 complains'", kActive,
                             fleet.group, fleet.control));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr(fmt::format("group {} now serves {}", fleet.group, kActive)));
  EXPECT_THAT(run.output, HasSubstr(fmt::format("before: {}, since ", kCandidate)));
  EXPECT_THAT(run.output,
              HasSubstr(fmt::format("to go back: iotinfer models activate {} --group {}", kCandidate, fleet.group)));
  auto choices = ReadChoices({}, fleet.control);
  ASSERT_OK(choices);
  ASSERT_EQ(choices->size(), 2u);
  EXPECT_EQ(choices->at(fleet.group).model, kActive);
  EXPECT_EQ(choices->at(fleet.group).by, "models activate");
  EXPECT_EQ(choices->at(fleet.group).reason, "device 3 complains");
  EXPECT_EQ(choices->at(other).model, kActive);

  run = Iotinfer("models status --control-topic " + fleet.control);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr(fleet.control + ": 2 groups"));
  EXPECT_THAT(run.output, HasSubstr(fmt::format("{}\n  model   {}\n  since   ", fleet.group, kActive)));
  EXPECT_THAT(run.output, HasSubstr("  by      models activate\n  reason  device 3 complains\n"));
}

TEST(ModelsControlTest, TheLatestValidChoicePerGroupWinsAndTombstonesRemove) {
  const std::string topic = UniqueTopic("models-control");
  auto missing = ReadChoices({}, topic);
  ASSERT_OK(missing);
  EXPECT_TRUE(missing->empty()) << "a topic that does not exist holds no choice";

  const ModelChoice first{.group = "a", .model = kActive, .at_us = 1, .by = "test", .reason = "first"};
  ASSERT_OK(WriteChoice({}, topic, first));
  auto partitions = kafka::PartitionCount({}, topic);
  ASSERT_OK(partitions);
  EXPECT_EQ(*partitions, 1);
  ASSERT_NO_FATAL_FAILURE(WriteAll({
      {topic, {"a", "garbage", {}}},                               // skipped: a keeps its choice
      {topic, {"a", R"({"model":"model/fmnist-cnn.onnx"})", {}}},  // skipped: no version
      {topic, {"b", EncodeChoice({.group = "b", .model = kCandidate}), {}}},
      {topic, {"c", EncodeChoice({.group = "c", .model = kCandidate}), {}}},
      {topic, {"c", "", {}}},  // a tombstone: c has no choice any more
  }));
  ASSERT_NO_FATAL_FAILURE(
      testing::ProduceAbortedTransaction(topic, {{0, {"a", EncodeChoice({.group = "a", .model = kOlder}), {}}}}));
  int skipped = -1;
  auto choices = ReadChoices({}, topic, &skipped);
  ASSERT_OK(choices);
  EXPECT_EQ(skipped, 2);
  ASSERT_EQ(choices->size(), 2u);
  EXPECT_EQ(choices->at("a"), first);
  EXPECT_EQ(choices->at("b").model, kCandidate);

  const ModelChoice second{.group = "a", .model = kOlder, .at_us = 2, .by = "test", .reason = "second"};
  ASSERT_OK(WriteChoice({}, topic, second));
  choices = ReadChoices({}, topic);
  ASSERT_OK(choices);
  EXPECT_EQ(choices->at("a"), second);
}

// The command line: usage errors exit 2 with a message, a cluster that cannot be reached 1.
TEST(ModelsCommandTest, BadInputSaysWhatIsWrong) {
  Fleet fleet;
  fleet.Device(0, 20, 10, 15);
  ASSERT_NO_FATAL_FAILURE(fleet.Write());
  const std::string missing = UniqueTopic("models-missing");
  struct Case {
    std::string args;
    int exit_code;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {"activate fmnist-cnn.onnx", 2, "'fmnist-cnn.onnx' is no model version"},
           {"activate", 2, "model is required"},
           {fmt::format("activate {} --group ''", kActive), 2, "no group"},
           {fmt::format("activate {} --reason \"$(printf 'two\\nlines')\"", kActive), 2,
            "reason holds a control character"},
           {"compare --active nope " + fleet.Flags(), 2, "--active: 'nope' is no model version"},
           {"compare --alpha 1.5 " + fleet.Flags(), 2, "--alpha must be above 0 and below 1"},
           {"compare --promote-if worse " + fleet.Flags(), 2, "--promote-if: worse not in {better}"},
           {"compare --devices -1 " + fleet.Flags(), 2, "--devices: must not be negative"},
           {fmt::format("compare --inferences {} --shadow {}", fleet.active, missing), 2,
            "topic " + missing + " does not exist"},
           {fmt::format("compare --active {} --candidate {} {}", kOlder, kCandidate, fleet.Flags()), 2,
            "no image was classified by both active model " + std::string(kOlder)},
           {"status --brokers 127.0.0.1:1 --control-topic " + fleet.control, 1, "iotinfer: "},
           {"status --control-topic " + missing, 0, missing + ": no choice"},
           {"compare " + fleet.Flags(), 0, "decision   no-difference"},
       }) {
    const auto run = Iotinfer("models " + c.args, 120);
    EXPECT_EQ(run.exit_code, c.exit_code) << c.args << "\n" << run.output;
    EXPECT_THAT(run.output, HasSubstr(c.says)) << c.args;
  }
}

}  // namespace
}  // namespace iotinfer::models
