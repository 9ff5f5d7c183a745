#include "infer/model_source.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "model/calibration.h"
#include "test_util.h"

namespace iotinfer::infer {
namespace {

namespace fs = std::filesystem;
using iotinfer::testing::TempDir;
using iotinfer::testing::WriteModelVariant;
using ::testing::HasSubstr;

constexpr auto kPoll = std::chrono::milliseconds(20);

std::string VersionOf(const std::string& path) {
  Result<std::string> version = model::ModelId(path);
  EXPECT_TRUE(version) << version.error().message();
  return version ? *version : "";
}

// Makes a file's modification time later than any before, whatever the file system's clock
// granularity: "the newest model" must not depend on how fast a test writes.
void Touch(const std::string& path, int seconds_ahead) {
  fs::last_write_time(path, fs::file_time_type::clock::now() + std::chrono::seconds(seconds_ahead));
}

// Collects the source's log lines for assertions.
struct Log {
  std::mutex mutex;
  std::vector<std::string> lines;
  std::function<void(const std::string&)> Sink() {
    return [this](const std::string& line) {
      std::lock_guard lock(mutex);
      lines.push_back(line);
    };
  }
  std::string All() {
    std::lock_guard lock(mutex);
    std::string all;
    for (const auto& l : lines) all += l + "\n";
    return all;
  }
};

ModelSourceOptions Options(const std::string& dir, Log& log) {
  return {.classifier = {.engine = model::Engine::kOneDnn, .threads = 1},
          .model_dir = dir,
          .poll = kPoll,
          .log = log.Sink()};
}

// The next model the source hands over within a few seconds, or null.
std::unique_ptr<model::Classifier> Next(ModelSource& source) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto next = source.TakeNext()) return next;
    std::this_thread::sleep_for(kPoll);
  }
  return nullptr;
}

// Waits until the source has refused `count` models for `why`; false if it has not in time.
bool RefusedWithin(const ModelSource& source, ModelRefusal why, int64_t count) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (source.refused()[static_cast<size_t>(why)] >= count) return true;
    std::this_thread::sleep_for(kPoll);
  }
  return false;
}

TEST(ModelSourceTest, ServesTheNewestModelAndTakesANewerOne) {
  TempDir dir;
  Log log;
  WriteModelVariant(dir.file("a.onnx"), "a");
  auto source = ModelSource::Start(Options(dir.path(), log));
  ASSERT_OK(source);
  auto first = (*source)->TakeNext();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->model_id(), VersionOf(dir.file("a.onnx")));
  EXPECT_THAT(first->model_id(), ::testing::MatchesRegex("a-[0-9a-f]{8}"));
  EXPECT_FALSE((*source)->TakeNext()) << "handed over twice";

  WriteModelVariant(dir.file("b.onnx"), "b");
  Touch(dir.file("b.onnx"), 5);
  auto next = Next(**source);
  ASSERT_TRUE(next) << log.All();
  EXPECT_EQ(next->model_id(), VersionOf(dir.file("b.onnx")));
  EXPECT_THAT(log.All(), HasSubstr(fmt::format("model {} ({}) loaded", next->model_id(), dir.file("b.onnx"))));
  std::this_thread::sleep_for(kPoll * 10);
  EXPECT_FALSE((*source)->TakeNext()) << "the same model handed over again";
}

TEST(ModelSourceTest, TheActiveFileNamesTheModelByFileOrVersion) {
  TempDir dir;
  Log log;
  WriteModelVariant(dir.file("a.onnx"), "a");
  WriteModelVariant(dir.file("b.onnx"), "b");
  Touch(dir.file("b.onnx"), 5);
  std::ofstream(dir.file("active")) << "a.onnx\n";
  auto source = ModelSource::Start(Options(dir.path(), log));
  ASSERT_OK(source);
  EXPECT_EQ((*source)->TakeNext()->model_id(), VersionOf(dir.file("a.onnx"))) << "the newest, not the active one";

  std::ofstream(dir.file("active"), std::ios::trunc) << VersionOf(dir.file("b.onnx"));
  auto next = Next(**source);
  ASSERT_TRUE(next) << log.All();
  EXPECT_EQ(next->model_id(), VersionOf(dir.file("b.onnx")));

  std::ofstream(dir.file("active"), std::ios::trunc) << "c.onnx";
  ASSERT_TRUE(RefusedWithin(**source, ModelRefusal::kUnknownVersion, 1)) << log.All();
  EXPECT_THAT(log.All(), HasSubstr(fmt::format("c.onnx is named, but no model file here is it; still serving {}",
                                               VersionOf(dir.file("b.onnx")))));
}

// A flipped link is a new model, named after the file it leads to.
TEST(ModelSourceTest, AFlippedLinkIsANewModel) {
  TempDir dir;
  Log log;
  fs::create_directories(dir.path() / "models");
  WriteModelVariant(dir.file("models/shirts-v1.onnx"), "1");
  WriteModelVariant(dir.file("models/shirts-v2.onnx"), "2");
  fs::create_directories(dir.path() / "serving");
  fs::create_symlink(dir.path() / "models/shirts-v1.onnx", dir.path() / "serving/model.onnx");
  auto source = ModelSource::Start(Options(dir.file("serving"), log));
  ASSERT_OK(source);
  EXPECT_EQ((*source)->TakeNext()->model_id(), VersionOf(dir.file("models/shirts-v1.onnx")));

  fs::create_symlink(dir.path() / "models/shirts-v2.onnx", dir.path() / "serving/.model.onnx.new");
  fs::rename(dir.path() / "serving/.model.onnx.new", dir.path() / "serving/model.onnx");  // atomic, as `ln -sfT` is not
  auto next = Next(**source);
  ASSERT_TRUE(next) << log.All();
  EXPECT_THAT(next->model_id(), ::testing::MatchesRegex("shirts-v2-[0-9a-f]{8}"));
}

// How the kubelet updates a ConfigMap volume: each entry links through `..data` into a
// timestamped directory, and an update writes a new directory and flips `..data`.
TEST(ModelSourceTest, AConfigMapUpdateIsANewModel) {
  TempDir dir;
  Log log;
  auto publish = [&](const std::string& generation, const std::string& tag) {
    fs::create_directories(dir.path() / generation);
    WriteModelVariant(dir.file(generation + "/fmnist-cnn.onnx"), tag);
    fs::create_symlink(generation, dir.path() / "..data_tmp");
    fs::rename(dir.path() / "..data_tmp", dir.path() / "..data");
  };
  publish("..2026_12_04_10_00_00.1", "1");
  fs::create_symlink("..data/fmnist-cnn.onnx", dir.path() / "fmnist-cnn.onnx");
  auto source = ModelSource::Start(Options(dir.path(), log));
  ASSERT_OK(source);
  const std::string first = (*source)->TakeNext()->model_id();
  EXPECT_EQ(first, VersionOf(dir.file("fmnist-cnn.onnx")));

  publish("..2026_12_04_10_05_00.2", "2");
  auto next = Next(**source);
  ASSERT_TRUE(next) << log.All();
  EXPECT_NE(next->model_id(), first);
  EXPECT_EQ(next->model_id(), VersionOf(dir.file("fmnist-cnn.onnx")));
  EXPECT_THAT(next->model_id(), ::testing::StartsWith("fmnist-cnn-"));
}

// A broken model is refused with its reason, once, and tried again only when its file
// changes; the model serving goes on serving.
TEST(ModelSourceTest, BrokenModelsAreRefusedAndTheCurrentOneServes) {
  TempDir dir;
  Log log;
  WriteModelVariant(dir.file("a.onnx"), "a");
  auto source = ModelSource::Start(Options(dir.path(), log));
  ASSERT_OK(source);
  const std::string serving = (*source)->TakeNext()->model_id();

  std::ofstream(dir.file("b.onnx")) << "half a model";
  Touch(dir.file("b.onnx"), 5);
  ASSERT_TRUE(RefusedWithin(**source, ModelRefusal::kUnreadable, 1)) << log.All();
  EXPECT_THAT(log.All(), HasSubstr(fmt::format("model refused (unreadable): model {}: not a loadable ONNX network",
                                               dir.file("b.onnx"))));
  EXPECT_THAT(log.All(), HasSubstr("still serving " + serving));

  const std::string other = dir.file("c.onnx");
  const std::string script = fmt::format("{}/tests/infer/other_shape_model.py", IOTINFER_SOURCE_DIR);
  ASSERT_EQ(std::system(fmt::format("/usr/bin/python3 {} {}", script, other).c_str()), 0);
  Touch(other, 10);
  ASSERT_TRUE(RefusedWithin(**source, ModelRefusal::kIncompatible, 1)) << log.All();
  EXPECT_THAT(log.All(), HasSubstr("does not accept the input [1, 1, 28, 28]"));

  std::this_thread::sleep_for(kPoll * 10);
  EXPECT_FALSE((*source)->TakeNext()) << log.All();
  const RefusalCounts refused = (*source)->refused();
  EXPECT_EQ(refused[static_cast<size_t>(ModelRefusal::kUnreadable)], 1) << "a refused file is not tried again";
  EXPECT_EQ(refused[static_cast<size_t>(ModelRefusal::kIncompatible)], 1);

  WriteModelVariant(dir.file("b.onnx"), "b");  // the copy finished
  Touch(dir.file("b.onnx"), 20);
  auto next = Next(**source);
  ASSERT_TRUE(next) << log.All();
  EXPECT_EQ(next->model_id(), VersionOf(dir.file("b.onnx")));
}

// A calibration made for another model: the int8 engine must not run with it.
TEST(ModelSourceTest, ACalibrationOfAnotherModelIsRefused) {
  TempDir dir;
  Log log;
  WriteModelVariant(dir.file("d.onnx"), "d");
  fs::copy_file(std::string(IOTINFER_SOURCE_DIR) + "/model/fmnist-cnn.int8.json", dir.file("d.int8.json"));
  auto options = Options(dir.path(), log);
  options.classifier.engine = model::Engine::kOneDnnInt8;
  options.classifier.model_path = iotinfer::testing::ModelPath();
  auto source = ModelSource::Start(options);
  ASSERT_OK(source);
  EXPECT_EQ((*source)->refused()[static_cast<size_t>(ModelRefusal::kCalibration)], 1) << log.All();
  EXPECT_THAT(log.All(), HasSubstr("was made for model fmnist-cnn-"));
  EXPECT_EQ((*source)->TakeNext()->model_id(), VersionOf(iotinfer::testing::ModelPath()));
}

// No model in the directory can serve: the configured one does.
TEST(ModelSourceTest, StartsOnTheConfiguredModelWhenTheDirectoryHasNone) {
  TempDir dir;
  Log log;
  std::ofstream(dir.file("broken.onnx")) << "not a model";
  auto options = Options(dir.path(), log);
  options.classifier.model_path = iotinfer::testing::ModelPath();
  auto source = ModelSource::Start(options);
  ASSERT_OK(source);
  EXPECT_EQ((*source)->TakeNext()->model_id(), VersionOf(iotinfer::testing::ModelPath()));
  EXPECT_EQ((*source)->refused()[static_cast<size_t>(ModelRefusal::kUnreadable)], 1);

  options.classifier.model_path = dir.file("broken.onnx");
  EXPECT_FALSE(ModelSource::Start(options)) << "nothing can serve";
}

// A chosen version outranks the directory, may name a further known file, and stands while
// asking for it fails.
TEST(ModelSourceTest, AChosenVersionOutranksTheDirectory) {
  TempDir dir;
  Log log;
  WriteModelVariant(dir.file("a.onnx"), "a");
  WriteModelVariant(dir.file("candidate.onnx"), "candidate");
  fs::create_directories(dir.path() / "models");
  const std::string a = VersionOf(dir.file("a.onnx"));
  const std::string candidate = VersionOf(dir.file("candidate.onnx"));

  std::mutex mutex;
  Result<std::optional<std::string>> answer = std::optional<std::string>();
  auto choose = [&](Result<std::optional<std::string>> next) {
    std::lock_guard lock(mutex);
    answer = std::move(next);
  };
  auto options = Options(dir.file("models"), log);
  fs::copy_file(dir.file("a.onnx"), dir.file("models/a.onnx"));
  options.known_models = {dir.file("candidate.onnx")};
  options.choice_poll = kPoll;
  options.chosen_version = [&]() -> Result<std::optional<std::string>> {
    std::lock_guard lock(mutex);
    return answer;
  };
  auto source = ModelSource::Start(options);
  ASSERT_OK(source);
  EXPECT_EQ((*source)->TakeNext()->model_id(), a) << "none chosen yet: the directory's";

  choose(std::optional<std::string>(candidate));
  auto next = Next(**source);
  ASSERT_TRUE(next) << log.All();
  EXPECT_EQ(next->model_id(), candidate);

  choose(std::unexpected(Error::Unavailable("broker down")));
  std::this_thread::sleep_for(kPoll * 10);
  EXPECT_FALSE((*source)->TakeNext()) << "a failed answer turned the choice back";
  EXPECT_THAT(log.All(), HasSubstr("broker down"));

  choose(std::optional<std::string>("shirts-0badc0de"));
  ASSERT_TRUE(RefusedWithin(**source, ModelRefusal::kUnknownVersion, 1)) << log.All();

  choose(std::optional<std::string>(a));  // a rollback
  next = Next(**source);
  ASSERT_TRUE(next) << log.All();
  EXPECT_EQ(next->model_id(), a);

  choose(std::optional<std::string>(candidate));
  ASSERT_TRUE(Next(**source));
  choose(std::optional<std::string>());  // the choice withdrawn: the directory decides again
  next = Next(**source);
  ASSERT_TRUE(next) << log.All();
  EXPECT_EQ(next->model_id(), a);
}

}  // namespace
}  // namespace iotinfer::infer
