#include "model/classifier.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "dataset/dataset.h"
#include "model/calibration.h"
#include "model/onednn_net.h"
#include "test_util.h"

namespace iotinfer::model {
namespace {

using iotinfer::testing::TempDir;
using ::testing::HasSubstr;

const dataset::Dataset& TestSet() {
  static const dataset::Dataset data =
      *dataset::LoadFashionMnist(dataset::kFashionMnistDefaultDir, dataset::Split::kTest);
  return data;
}

std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::unique_ptr<Classifier> Make(std::string path = iotinfer::testing::ModelPath(), int threads = 2) {
  auto classifier = Classifier::Create({.model_path = std::move(path), .threads = threads});
  EXPECT_TRUE(classifier) << classifier.error().message();
  return classifier ? std::move(*classifier) : nullptr;
}

std::vector<Prediction> ClassifyAll(Classifier& classifier, size_t n, size_t batch) {
  std::vector<ImageView> views;
  for (size_t i = 0; i < n; ++i) views.push_back(TestSet().image(i));
  std::vector<Prediction> out(n);
  for (size_t begin = 0; begin < n; begin += batch) {
    size_t count = std::min(batch, n - begin);
    auto status = classifier.Classify({views.data() + begin, count}, {out.data() + begin, count});
    EXPECT_TRUE(status) << status.error().message();
  }
  return out;
}

// How many of the 10,000 test predictions of `classifier` differ from the ones train.py
// computed in PyTorch for its model, stored in `reference`.
int ChangedFromPyTorch(Classifier& classifier, const std::string& reference, double min_accuracy) {
  std::vector<uint8_t> expected = ReadBytes(reference);
  EXPECT_EQ(expected.size(), TestSet().size()) << reference;
  if (expected.size() != TestSet().size()) return -1;
  auto predictions = ClassifyAll(classifier, TestSet().size(), 256);
  int agree = 0, correct = 0;
  for (size_t i = 0; i < predictions.size(); ++i) {
    agree += predictions[i].label == expected[i];
    correct += predictions[i].label == TestSet().labels[i];
  }
  EXPECT_GE(correct / 10000.0, min_accuracy);
  return 10000 - agree;
}

// The issue's bar: at most 10 of the 10,000 (99.9%) may differ.
void ExpectAgreesWithPyTorch(const std::string& model, const std::string& reference, double min_accuracy) {
  auto classifier = Classifier::Create({.model_path = model, .engine = Engine::kOneDnn});
  ASSERT_TRUE(classifier) << classifier.error().message();
  EXPECT_LE(ChangedFromPyTorch(**classifier, reference, min_accuracy), 10)
      << "C++ and PyTorch disagree on too many of 10000 test images";
}

TEST(ClassifierTest, CommittedModelAgreesWithTrainPyAndIsAccurate) {
  ExpectAgreesWithPyTorch(iotinfer::testing::ModelPath(), iotinfer::testing::ReferencePredictionsPath(), 0.91);
}

// The model trained on faulty images too may lose at most a point of clean accuracy
// (issue 24) against the first model's 92.37%.
TEST(ClassifierTest, CommittedAugmentedModelAgreesWithTrainPyAndIsAccurate) {
  ExpectAgreesWithPyTorch(iotinfer::testing::AugmentedModelPath(),
                          iotinfer::testing::AugmentedReferencePredictionsPath(), 0.9137);
}

// Each committed model runs in int8 with the calibration beside it, which names it, and
// refuses the other's.
TEST(ClassifierTest, CommittedAugmentedModelHasItsOwnCalibration) {
  const std::string augmented = iotinfer::testing::AugmentedModelPath();
  auto int8 = Classifier::Create({.model_path = augmented});
  ASSERT_TRUE(int8) << int8.error().message();
  EXPECT_EQ((*int8)->engine(), Engine::kOneDnnInt8);
  EXPECT_THAT((*int8)->model_id(), ::testing::MatchesRegex("fmnist-cnn-aug-[0-9a-f]{8}"));
  auto calibration = ReadCalibration(DefaultCalibrationPath(augmented));
  ASSERT_TRUE(calibration) << calibration.error().message();
  EXPECT_EQ(calibration->model_id, (*int8)->model_id());
  EXPECT_LE(ChangedFromPyTorch(**int8, iotinfer::testing::AugmentedReferencePredictionsPath(), 0.9137), 10);

  const std::string first = iotinfer::testing::ModelPath();
  for (const auto& [model, other] : {std::pair{augmented, first}, std::pair{first, augmented}}) {
    auto crossed = Classifier::Create({.model_path = model, .calibration_path = DefaultCalibrationPath(other)});
    ASSERT_FALSE(crossed) << model;
    auto other_classifier = Make(other);
    ASSERT_TRUE(other_classifier);
    EXPECT_THAT(crossed.error().message(), HasSubstr("was made for model " + other_classifier->model_id()));
  }
}

// int8 alone changes some predictions (18 of 10,000 when this was written); classifying the
// close calls again in float32 brings it to float32's agreement, for a few percent of the
// images (5.9% then).
TEST(ClassifierTest, Int8AgreesWithTrainPyByRecheckingCloseCalls) {
  const std::string reference = iotinfer::testing::ReferencePredictionsPath();
  auto int8 = Classifier::Create({.model_path = iotinfer::testing::ModelPath(), .engine = Engine::kOneDnnInt8});
  ASSERT_TRUE(int8) << int8.error().message();
  const int changed = ChangedFromPyTorch(**int8, reference, 0.91);
  EXPECT_LE(changed, 10);
  EXPECT_GT((*int8)->rechecked(), 0u);
  EXPECT_LT((*int8)->rechecked(), 1500u);

  TempDir dir;
  auto calibration = ReadCalibration(DefaultCalibrationPath(iotinfer::testing::ModelPath()));
  ASSERT_TRUE(calibration) << calibration.error().message();
  calibration->recheck_margins = {{7, 0.f}, {8, 0.f}};
  ASSERT_TRUE(WriteCalibration(dir.file("never.json"), *calibration));
  auto unchecked =
      Classifier::Create({.model_path = iotinfer::testing::ModelPath(), .calibration_path = dir.file("never.json")});
  ASSERT_TRUE(unchecked) << unchecked.error().message();
  EXPECT_EQ((*unchecked)->engine(), Engine::kOneDnnInt8);
  EXPECT_GT(ChangedFromPyTorch(**unchecked, reference, 0.91), changed);
  EXPECT_EQ((*unchecked)->rechecked(), 0u);
}

// A committed calibration is what `iotinfer calibrate` computes for its model on the whole
// training set. Where this CPU has no VNNI, 8-bit weights could saturate, so only the 7-bit
// margin can be reproduced.
void ExpectCalibrationIsReproducedFromTheTrainingSet(const std::string& model) {
  auto committed = ReadCalibration(DefaultCalibrationPath(model));
  ASSERT_TRUE(committed) << committed.error().message();
  auto classifier = Classifier::Create({.model_path = model, .engine = Engine::kOneDnn, .threads = 1});
  ASSERT_TRUE(classifier) << classifier.error().message();
  EXPECT_EQ(committed->model_id, (*classifier)->model_id());
  const dataset::Dataset train = *dataset::LoadFashionMnist(dataset::kFashionMnistDefaultDir, dataset::Split::kTrain);
  std::vector<ImageView> images;
  for (size_t i = 0; i < train.size(); ++i) images.push_back(train.image(i));
  auto computed = (*classifier)->Calibrate(images);
  ASSERT_TRUE(computed) << computed.error().message();
  EXPECT_EQ(computed->model_id, committed->model_id);
  ASSERT_EQ(computed->activation_ranges.size(), committed->activation_ranges.size());
  for (size_t i = 0; i < computed->activation_ranges.size(); ++i) {
    EXPECT_NEAR(computed->activation_ranges[i], committed->activation_ranges[i], 1e-4 * committed->activation_ranges[i])
        << i;
  }
  ASSERT_EQ(computed->recheck_margins.size(), 2u);
  for (const auto& [bits, margin] : computed->recheck_margins) {
    EXPECT_GT(margin, 0.f) << bits;
    if (bits <= OnednnNet::NativeWeightBits()) {
      EXPECT_NEAR(margin, committed->recheck_margins[bits], 0.01f) << bits;
    }
  }
}

TEST(ClassifierTest, CommittedCalibrationIsReproducedFromTheTrainingSet) {
  ExpectCalibrationIsReproducedFromTheTrainingSet(iotinfer::testing::ModelPath());
}

TEST(ClassifierTest, CommittedAugmentedModelsCalibrationIsReproducedFromTheTrainingSet) {
  ExpectCalibrationIsReproducedFromTheTrainingSet(iotinfer::testing::AugmentedModelPath());
}

TEST(ClassifierTest, Int8NeedsACalibrationForItsModel) {
  TempDir dir;
  const std::string model = dir.file("copy.onnx");
  std::filesystem::copy_file(iotinfer::testing::ModelPath(), model);
  auto missing = Classifier::Create({.model_path = model, .engine = Engine::kOneDnnInt8});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Error::Code::kNotFound);
  EXPECT_THAT(missing.error().message(), HasSubstr(dir.file("copy.int8.json")));
  EXPECT_THAT(missing.error().message(), HasSubstr("iotinfer calibrate --model " + model));
  // Without one, the default engine is float32.
  auto uncalibrated = Classifier::Create({.model_path = model});
  ASSERT_TRUE(uncalibrated) << uncalibrated.error().message();
  EXPECT_EQ((*uncalibrated)->engine(), Engine::kOneDnn);

  ASSERT_TRUE(
      WriteCalibration(dir.file("copy.int8.json"), {.model_id = "other-12345678", .activation_ranges = {1, 2, 3}}));
  auto other = Classifier::Create({.model_path = model});
  ASSERT_FALSE(other);
  EXPECT_THAT(other.error().message(), HasSubstr("was made for model other-12345678, not copy-"));

  // The copy's own id, but no ranges; then no margin for this CPU.
  const std::string hash = Make()->model_id().substr(std::string("fmnist-cnn-").size());
  ASSERT_TRUE(WriteCalibration(dir.file("copy.int8.json"), {.model_id = "copy-" + hash}));
  auto empty = Classifier::Create({.model_path = model, .engine = Engine::kOneDnnInt8});
  ASSERT_FALSE(empty);
  EXPECT_THAT(empty.error().message(), HasSubstr("no activation ranges"));
  ASSERT_TRUE(
      WriteCalibration(dir.file("copy.int8.json"),
                       {.model_id = "copy-" + hash, .activation_ranges = {3, 2, 4}, .recheck_margins = {{6, 0.5f}}}));
  auto no_margin = Classifier::Create({.model_path = model, .engine = Engine::kOneDnnInt8});
  ASSERT_FALSE(no_margin);
  EXPECT_THAT(no_margin.error().message(),
              HasSubstr(fmt::format("no recheck margin for {}-bit weights", OnednnNet::NativeWeightBits())));

  for (const char* text : {R"({"model": "copy", "activation_ranges": "wide", "recheck_margins": {}})",
                           R"({"model": "copy", "activation_ranges": [1, 2, 3]})",
                           R"({"model": "copy", "activation_ranges": [1, 2, 3], "recheck_margins": {"8": -1}})",
                           R"({"model": "copy", "activation_ranges": [1, 2, 3], "recheck_margins": {"eight": 1}})"}) {
    std::ofstream(dir.file("broken.json")) << text;
    auto broken = Classifier::Create(
        {.model_path = model, .engine = Engine::kOneDnnInt8, .calibration_path = dir.file("broken.json")});
    ASSERT_FALSE(broken) << text;
    EXPECT_EQ(broken.error().code(), Error::Code::kInvalidInput) << text;
    EXPECT_THAT(broken.error().message(), HasSubstr("broken.json")) << text;
  }

  auto int8 = Classifier::Create({.model_path = iotinfer::testing::ModelPath()});
  ASSERT_TRUE(int8) << int8.error().message();
  EXPECT_EQ((*int8)->engine(), Engine::kOneDnnInt8);
  const ImageView image = TestSet().image(0);
  EXPECT_FALSE((*int8)->Calibrate({&image, 1}));
}

// Runs the real training script briefly and checks that what it exports is what it evaluated.
TEST(ClassifierTest, FreshlyTrainedExportAgreesWithPyTorch) {
  TempDir dir;
  std::string command = fmt::format("/usr/bin/python3 {}/model/train.py --out {} --epochs 2 --limit 4096 > {} 2>&1",
                                    IOTINFER_SOURCE_DIR, dir.path().string(), dir.file("train.log"));
  ASSERT_EQ(std::system(command.c_str()), 0) << "train.py failed; see its log: " << command;
  // Two short epochs reach about 72%; 40% is far above the 10% of chance, which a degenerate
  // constant predictor (that would agree trivially) gets.
  ExpectAgreesWithPyTorch(dir.file("fmnist-cnn.onnx"), dir.file("test-predictions.u8"), 0.4);
}

// --augment and --name: the faulty copies that `iotinfer augment` wrote go into training, and
// the new model's files carry its name, beside the first model's rather than over them.
TEST(ClassifierTest, AugmentedTrainingWritesAModelOfItsOwnName) {
  TempDir dir;
  std::string command = fmt::format(
      "{} augment --copies 1 --seed 3 --out {} > {} 2>&1 && /usr/bin/python3 {}/model/train.py --out {} --epochs 2 "
      "--limit 4096 --augment {} --name fmnist-x >> {} 2>&1",
      IOTINFER_BINARY, dir.file("aug"), dir.file("log"), IOTINFER_SOURCE_DIR, dir.file("out"), dir.file("aug"),
      dir.file("log"));
  ASSERT_EQ(std::system(command.c_str()), 0) << "augment or train.py failed; see its log: " << command;
  ExpectAgreesWithPyTorch(dir.file("out/fmnist-x.onnx"), dir.file("out/fmnist-x.test-predictions.u8"), 0.4);
  std::ifstream in(dir.file("out/fmnist-x.metrics.json"));
  const std::string metrics{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  EXPECT_THAT(metrics, HasSubstr(R"("name": "fmnist-x")"));
  EXPECT_THAT(metrics, HasSubstr(R"("copies": 1)"));  // from the copies' augment.json
  EXPECT_THAT(metrics, HasSubstr(R"("seed": 3)"));
  EXPECT_FALSE(std::filesystem::exists(dir.file("out/metrics.json")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("out/test-predictions.u8")));
  EXPECT_TRUE(std::filesystem::exists(dir.file("out/MODEL.md")));
}

// oneDNN (the default) and OpenCV run the same network: the same class for every image,
// and the same confidence up to float rounding.
TEST(ClassifierTest, BothEnginesGiveTheSamePredictions) {
  auto onednn = Classifier::Create({.model_path = iotinfer::testing::ModelPath(), .engine = Engine::kOneDnn});
  auto opencv = Classifier::Create({.model_path = iotinfer::testing::ModelPath(), .engine = Engine::kOpenCv});
  ASSERT_TRUE(onednn && opencv);
  EXPECT_EQ((*onednn)->engine(), Engine::kOneDnn);
  const auto a = ClassifyAll(**onednn, 2000, 100), b = ClassifyAll(**opencv, 2000, 100);
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].label, b[i].label) << "image " << i;
    ASSERT_NEAR(a[i].confidence, b[i].confidence, 1e-4) << "image " << i;
  }
}

TEST(ClassifierTest, BatchSizeAndThreadsDoNotChangePredictions) {
  auto one = Make(iotinfer::testing::ModelPath(), 1);
  auto two = Make(iotinfer::testing::ModelPath(), 2);
  ASSERT_TRUE(one && two);
  auto reference = ClassifyAll(*one, 300, 1);
  for (size_t batch : {7, 64, 300}) {
    auto other = ClassifyAll(*two, 300, batch);
    for (size_t i = 0; i < reference.size(); ++i) {
      ASSERT_EQ(other[i].label, reference[i].label) << "batch " << batch << " image " << i;
      ASSERT_NEAR(other[i].confidence, reference[i].confidence, 1e-4);
    }
  }
}

TEST(ClassifierTest, ConfidenceIsTheTopProbability) {
  auto classifier = Make();
  ASSERT_TRUE(classifier);
  for (const Prediction& p : ClassifyAll(*classifier, 200, 50)) {
    EXPECT_GE(p.label, 0);
    EXPECT_LT(p.label, 10);
    EXPECT_GE(p.confidence, 0.1f);
    EXPECT_LE(p.confidence, 1.0f);
  }
}

TEST(ClassifierTest, ConvertsColourAndSizeToTheModelsInput) {
  auto classifier = Make();
  ASSERT_TRUE(classifier);
  // Each grey pixel becomes a 2x2 block of equal RGB values; converting back is exact.
  for (size_t i = 0; i < 20; ++i) {
    ImageView grey = TestSet().image(i);
    Image big{56, 56, 3, std::vector<uint8_t>(56 * 56 * 3)};
    for (int y = 0; y < 56; ++y) {
      for (int x = 0; x < 56; ++x) {
        for (int c = 0; c < 3; ++c) big.pixels[(y * 56 + x) * 3 + c] = grey.pixels[(y / 2) * 28 + x / 2];
      }
    }
    ImageView views[] = {grey, big.view()};
    Prediction out[2];
    ASSERT_OK(classifier->Classify(views, out));
    EXPECT_EQ(out[0].label, out[1].label) << i;
  }
}

// infer shrinks each image as it decodes it; the prediction and its confidence must be what
// the full-size image gives.
TEST(ClassifierTest, ToInputShapeKeepsPredictionsExactly) {
  auto classifier = Make();
  ASSERT_TRUE(classifier);
  for (size_t i = 0; i < 50; ++i) {
    // Colour and three times the size, with a tint that the grey conversion has to weigh.
    const ImageView grey = TestSet().image(i);
    Image big{84, 84, 3, std::vector<uint8_t>(84 * 84 * 3)};
    for (size_t p = 0; p < big.pixels.size(); ++p) {
      const size_t y = p / 3 / 84, x = p / 3 % 84, c = p % 3;
      big.pixels[p] = static_cast<uint8_t>(std::min<int>(255, grey.pixels[(y / 3) * 28 + x / 3] + 20 * c + (x % 3)));
    }
    Image shaped = big;
    ASSERT_OK(classifier->ToInputShape(shaped));
    EXPECT_EQ(shaped.rows, 28);
    EXPECT_EQ(shaped.cols, 28);
    EXPECT_EQ(shaped.channels, 1);
    ImageView views[] = {big.view(), shaped.view()};
    Prediction out[2];
    ASSERT_OK(classifier->Classify(views, out));
    EXPECT_EQ(out[0].label, out[1].label) << i;
    EXPECT_EQ(out[0].confidence, out[1].confidence) << i;
  }
  Image already = Image::CopyOf(TestSet().image(0));
  const std::vector<uint8_t> before = already.pixels;
  ASSERT_OK(classifier->ToInputShape(already));
  EXPECT_EQ(already.pixels, before);
}

TEST(ClassifierTest, RejectsImagesItCannotConvert) {
  auto classifier = Make();
  ASSERT_TRUE(classifier);
  std::vector<uint8_t> pixels(28 * 28 * 2);
  ImageView two_channels{28, 28, 2, pixels};
  Prediction out;
  auto status = classifier->Classify({&two_channels, 1}, {&out, 1});
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), Error::Code::kInvalidInput);
  EXPECT_TRUE(classifier->Classify({}, {}));
}

TEST(ClassifierTest, ModelIdIsStemAndHashPrefix) {
  auto classifier = Make();
  ASSERT_TRUE(classifier);
  EXPECT_THAT(classifier->model_id(), ::testing::MatchesRegex("fmnist-cnn-[0-9a-f]{8}"));
}

TEST(ClassifierTest, MissingModelIsNamed) {
  auto classifier = Classifier::Create({.model_path = "/nonexistent/model.onnx"});
  ASSERT_FALSE(classifier);
  EXPECT_EQ(classifier.error().code(), Error::Code::kNotFound);
  EXPECT_THAT(classifier.error().message(), HasSubstr("/nonexistent/model.onnx"));
}

TEST(ClassifierTest, CorruptModelIsRejected) {
  TempDir dir;
  std::ofstream(dir.file("junk.onnx")) << "this is not a protobuf, let alone an ONNX graph";
  auto classifier = Classifier::Create({.model_path = dir.file("junk.onnx")});
  ASSERT_FALSE(classifier);
  EXPECT_THAT(classifier.error().message(), HasSubstr("junk.onnx: not a loadable ONNX network"));
}

TEST(ClassifierTest, WrongInputShapeIsRejected) {
  auto classifier = Classifier::Create(
      {.model_path = iotinfer::testing::ModelPath(), .input_rows = 32, .input_cols = 32, .input_channels = 3});
  ASSERT_FALSE(classifier);
  EXPECT_THAT(classifier.error().message(), HasSubstr("does not accept the input [1, 3, 32, 32]"));
}

TEST(ClassifierTest, WrongClassCountIsRejected) {
  auto classifier = Classifier::Create({.model_path = iotinfer::testing::ModelPath(), .class_names = {"a", "b", "c"}});
  ASSERT_FALSE(classifier);
  EXPECT_THAT(classifier.error().message(), HasSubstr("produced 10 values for one image"));
}

}  // namespace
}  // namespace iotinfer::model
