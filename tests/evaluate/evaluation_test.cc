#include "evaluate/evaluation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "test_util.h"

namespace iotinfer::evaluate {
namespace {

using ::testing::HasSubstr;

TEST(EvaluationTest, FaultyProducersScoreWorse) {
  EvaluationOptions options;
  options.faults = "1:noise=0.5,2:rotate=60";
  options.producers = 3;
  options.limit = 3000;
  options.classifier.threads = 2;
  auto report = Evaluate(options);
  ASSERT_OK(report);
  ASSERT_EQ(report->producers.size(), 3u);
  auto accuracy = [&](int p) { return double(report->producers[p].correct) / report->producers[p].total; };
  EXPECT_EQ(report->images, 3000);
  EXPECT_GT(accuracy(0), 0.88);
  EXPECT_LT(accuracy(1), accuracy(0) - 0.15);
  EXPECT_LT(accuracy(2), accuracy(0) - 0.05);
  EXPECT_EQ(report->producers[1].faults, "noise=0.5");

  int64_t confusion_total = 0, diagonal = 0;
  for (size_t t = 0; t < 10; ++t) {
    for (size_t p = 0; p < 10; ++p) confusion_total += report->confusion[t][p];
    diagonal += report->confusion[t][t];
  }
  EXPECT_EQ(confusion_total, 3000);
  EXPECT_EQ(diagonal, report->correct);

  std::string text = FormatReport(*report);
  EXPECT_THAT(text, HasSubstr("accuracy "));
  EXPECT_THAT(text, HasSubstr("Ankle boot"));
  EXPECT_THAT(text, HasSubstr("noise=0.5"));
}

TEST(EvaluationTest, RejectsBadSpecsBeforeLoadingAnything) {
  EvaluationOptions options;
  options.faults = "1:fog=1";
  auto report = Evaluate(options);
  ASSERT_FALSE(report);
  EXPECT_THAT(report.error().message(), HasSubstr("unknown fault 'fog'"));
}

TEST(EvaluationTest, RejectsADatasetWhoseClassesTheModelDoesNotKnow) {
  iotinfer::testing::TempDir dir;
  std::ofstream out(dir.file("test_batch.bin"), std::ios::binary);
  out << std::string(3073, '\1');
  out.close();
  EvaluationOptions options;
  options.dataset = {.name = "cifar10", .dir = dir.path().string()};
  auto report = Evaluate(options);
  ASSERT_FALSE(report);
  EXPECT_THAT(report.error().message(), HasSubstr("classes"));
}

}  // namespace
}  // namespace iotinfer::evaluate
