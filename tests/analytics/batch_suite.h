#pragma once

// `iotinfer batch`'s library half against each store: SQLite in analytics_test, the real
// MongoDB-protocol server in analytics_mongo_test.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <random>
#include <sstream>

#include "analytics/batch.h"
#include "core/labels.h"
#include "test_util.h"

namespace iotinfer::analytics {

/// Options of a fresh, empty store for one test; `name` is what test names show.
struct BatchStore {
  std::string name;
  std::function<store::StoreOptions()> fresh;
  friend void PrintTo(const BatchStore& s, std::ostream* os) { *os << s.name; }
};

class BatchSuite : public ::testing::TestWithParam<BatchStore> {
 protected:
  void SetUp() override {
    options_ = GetParam().fresh();
    auto opened = store::Store::Open(options_);
    ASSERT_TRUE(opened) << opened.error().message();
    store_ = std::move(*opened);
    ASSERT_TRUE(store_->Clear());
  }

  // Random records over `producers` devices, every tenth unlabelled, with the expected
  // per-producer counts computed here from the records themselves.
  std::map<int, ProducerResult> Seed(int n, int producers) {
    std::mt19937 rng(42);
    std::vector<InferenceRecord> records;
    std::map<int, ProducerResult> expected;
    for (int i = 0; i < n; ++i) {
      InferenceRecord r{.id = "b-" + std::to_string(i),
                        .image_prediction = std::string(kFashionMnistClasses[rng() % 10]),
                        .actual_value = std::nullopt,
                        .producer_id = static_cast<int>(rng() % producers),
                        .confidence = 0.5,
                        .model = "m",
                        .produced_at_us = std::nullopt,
                        .inferred_at_us = 1'700'000'000'000'000};
      // Mostly right, as a model is: a third of the labels differ from the prediction.
      if (i % 10 != 0) r.actual_value = rng() % 3 ? r.image_prediction : std::string(kFashionMnistClasses[rng() % 10]);
      ProducerResult& e = expected[r.producer_id];
      e.producer_id = r.producer_id;
      e.total++;
      if (!r.actual_value) e.unlabelled++;
      if (r.actual_value && *r.actual_value != r.image_prediction) e.incorrect_count++;
      records.push_back(std::move(r));
    }
    for (auto& [id, e] : expected) e.error_rate = static_cast<double>(e.incorrect_count) / (e.total - e.unlabelled);
    for (size_t begin = 0; begin < records.size(); begin += 2000) {
      const size_t size = std::min<size_t>(2000, records.size() - begin);
      auto upserted = store_->Upsert(std::span(records).subspan(begin, size));
      EXPECT_TRUE(upserted) << upserted.error().message();
    }
    return expected;
  }

  static void ExpectCounts(const std::vector<ProducerResult>& got, const std::map<int, ProducerResult>& expected) {
    ASSERT_EQ(got.size(), expected.size());
    for (const ProducerResult& r : got) {
      const ProducerResult& e = expected.at(r.producer_id);
      EXPECT_EQ(r.incorrect_count, e.incorrect_count) << r.producer_id;
      EXPECT_EQ(r.total, e.total) << r.producer_id;
      EXPECT_EQ(r.unlabelled, e.unlabelled) << r.producer_id;
      EXPECT_DOUBLE_EQ(r.error_rate, e.error_rate) << r.producer_id;
    }
  }

  static std::string ReadAll(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  store::StoreOptions options_;
  std::unique_ptr<store::Store> store_;
  iotinfer::testing::TempDir dir_;
};

TEST_P(BatchSuite, BothEnginesCountLikeTheRecordsSay) {
  const auto expected = Seed(5000, 7);
  std::vector<ConfusionCell> first_cells;
  for (BatchEngine engine : {BatchEngine::kNative, BatchEngine::kPushdown}) {
    BatchOptions options{.store = options_, .engine = engine, .out_dir = ""};
    int64_t last_done = -1, last_total = -1;
    auto report = RunBatch(options, [&](int64_t done, int64_t total) {
      EXPECT_GE(done, last_done);
      last_done = done, last_total = total;
    });
    ASSERT_TRUE(report) << report.error().message();
    EXPECT_EQ(report->documents, 5000);
    ExpectCounts(report->results, expected);
    // What the engine wrote is what it reported.
    auto stored = store_->ReadResults();
    ASSERT_TRUE(stored) << stored.error().message();
    EXPECT_EQ(*stored, report->results);
    if (engine == BatchEngine::kNative) {
      EXPECT_EQ(last_done, 5000);
      EXPECT_EQ(last_total, 5000);
      first_cells = report->cells;
    } else {
      EXPECT_EQ(last_done, -1);  // the server aggregates: nothing to count here
      EXPECT_EQ(report->cells, first_cells);
    }
  }
}

TEST_P(BatchSuite, WritesCsvFilesAndCharts) {
  const auto expected = Seed(3000, 5);
  BatchOptions options{.store = options_, .engine = BatchEngine::kPushdown, .out_dir = dir_.file("out")};
  auto report = RunBatch(options);
  ASSERT_TRUE(report) << report.error().message();
  const std::vector<std::string> names{"results.csv",  "confusion.csv", "confusion_by_producer.csv",
                                       "results.png",  "confusion.png", "results.svg",
                                       "confusion.svg"};
  std::vector<std::string> paths;
  for (const auto& name : names) paths.push_back(dir_.file("out/" + name));
  EXPECT_THAT(report->files, ::testing::UnorderedElementsAreArray(paths));

  std::string csv = "producer_id,incorrect_count,total,error_rate\n";
  for (const auto& [id, e] : expected) {
    csv += fmt::format("{},{},{},{:.6f}\n", id, e.incorrect_count, e.total, e.error_rate);
  }
  EXPECT_EQ(ReadAll(dir_.file("out/results.csv")), csv);

  // The matrix holds every labelled record once; its header is the dataset's class order.
  std::istringstream confusion(ReadAll(dir_.file("out/confusion.csv")));
  std::string line;
  std::getline(confusion, line);
  EXPECT_EQ(line, "actual\\predicted,T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot");
  int64_t labelled = 0, rows = 0;
  while (std::getline(confusion, line)) {
    ++rows;
    std::istringstream fields(line);
    std::string field;
    std::getline(fields, field, ',');
    while (std::getline(fields, field, ',')) labelled += std::stoll(field);
  }
  EXPECT_EQ(rows, 10);
  EXPECT_EQ(labelled, 2700);  // every tenth of 3000 is unlabelled

  const cv::Mat results = cv::imread(dir_.file("out/results.png"));
  EXPECT_EQ(results.cols, 900);
  EXPECT_EQ(results.rows, 540);
  const cv::Mat heatmap = cv::imread(dir_.file("out/confusion.png"));
  EXPECT_EQ(heatmap.cols, 900);
  EXPECT_EQ(heatmap.rows, 760);
  for (const char* svg : {"out/results.svg", "out/confusion.svg"}) {
    const std::string text = ReadAll(dir_.file(svg));
    EXPECT_THAT(text, ::testing::StartsWith("<?xml")) << svg;
    EXPECT_THAT(text, ::testing::HasSubstr("</svg>")) << svg;
  }
}

TEST_P(BatchSuite, AnEmptyStoreGivesNoResultsAndNoCharts) {
  std::vector<ProducerResult> stale{{9, 1, 1, 0, 1.0, 0}};
  ASSERT_TRUE(store_->ReplaceResults(stale));
  BatchOptions options{.store = options_, .engine = BatchEngine::kNative, .out_dir = dir_.file("empty")};
  auto report = RunBatch(options);
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_TRUE(report->results.empty());
  EXPECT_TRUE(store_->ReadResults().value().empty());  // the stale producer is gone
  EXPECT_EQ(ReadAll(dir_.file("empty/results.csv")), "producer_id,incorrect_count,total,error_rate\n");
  EXPECT_FALSE(std::filesystem::exists(dir_.file("empty/results.png")));
  EXPECT_THAT(FormatResults(report->results), ::testing::HasSubstr("no results"));
}

}  // namespace iotinfer::analytics
