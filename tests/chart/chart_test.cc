#include "chart/chart.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <random>
#include <sstream>

#include "test_util.h"

namespace iotinfer::chart {
namespace {

using iotinfer::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Set IOTINFER_CHART_SAMPLES=/some/dir to keep the sample charts these tests draw, for
// looking at them.
void KeepSample(const std::string& path) {
  const char* dir = std::getenv("IOTINFER_CHART_SAMPLES");
  if (dir == nullptr) return;
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(path, std::filesystem::path(dir) / std::filesystem::path(path).filename(),
                             std::filesystem::copy_options::overwrite_existing);
}

// Deterministic log-normal latencies, sorted, as a CDF, with p50/p90/p99 markers.
LineChart LatencyCdf() {
  std::mt19937 rng(7);
  std::lognormal_distribution<double> latency(std::log(12.0), 0.6);
  std::vector<double> ms(5000);
  for (double& v : ms) v = latency(rng);
  std::sort(ms.begin(), ms.end());
  LineChart chart{.title = "Produce-to-inference latency (5,000 images)",
                  .x_label = "latency (ms, log scale)",
                  .y_label = "fraction of images",
                  .log_x = true,
                  .y_min = 0,
                  .y_max = 1};
  Series cdf{.name = "end to end"};
  for (size_t i = 0; i < ms.size(); ++i) {
    cdf.x.push_back(ms[i]);
    cdf.y.push_back(double(i + 1) / ms.size());
  }
  chart.series.push_back(cdf);
  for (double q : {0.50, 0.90, 0.99}) {
    double x = ms[size_t(q * ms.size()) - 1];
    chart.markers.push_back({x, fmt::format("p{:.0f} {:.0f} ms", q * 100, x)});
  }
  return chart;
}

BarChart ProducerErrors(int producers) {
  BarChart chart{.title = fmt::format("Misclassified images per producer ({} producers)", producers),
                 .x_label = "producer",
                 .y_label = "misclassified images",
                 .line_axis_label = "error rate",
                 .line_axis_percent = true};
  Series incorrect{.name = "misclassified"};
  Series rate{.name = "error rate"};
  for (int p = 0; p < producers; ++p) {
    // Every 7th producer is faulty and gets far more wrong.
    double total = 1250, wrong = (p % 7 == 1) ? 380 + 13 * (p % 5) : 40 + (p * 37) % 23;
    chart.categories.push_back(std::to_string(p));
    incorrect.y.push_back(wrong);
    rate.y.push_back(wrong / total);
  }
  chart.bars.push_back(incorrect);
  chart.line = rate;
  return chart;
}

Heatmap ConfusionMatrix() {
  Heatmap chart{.title = "Fashion-MNIST confusion matrix (10,000 test images)",
                .x_label = "predicted class",
                .y_label = "true class",
                .row_labels = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                               "Bag", "Ankle boot"}};
  chart.col_labels = chart.row_labels;
  chart.values = {{862, 0, 17, 21, 4, 1, 88, 0, 7, 0},   {2, 975, 1, 16, 3, 0, 2, 0, 1, 0},
                  {16, 1, 856, 9, 63, 0, 54, 0, 1, 0},   {19, 5, 11, 910, 29, 0, 24, 0, 2, 0},
                  {1, 1, 72, 31, 848, 0, 46, 0, 1, 0},   {0, 0, 0, 0, 0, 973, 0, 19, 1, 7},
                  {128, 1, 74, 27, 78, 0, 684, 0, 8, 0}, {0, 0, 0, 0, 0, 9, 0, 970, 0, 21},
                  {4, 1, 3, 4, 2, 2, 4, 3, 977, 0},      {1, 0, 0, 0, 0, 6, 0, 36, 0, 957}};
  return chart;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Pixels within `tolerance` of the colour 0xRRGGBB.
int CountColor(const cv::Mat& image, uint32_t rgb, int tolerance = 2) {
  cv::Scalar bgr(rgb & 0xff, (rgb >> 8) & 0xff, (rgb >> 16) & 0xff);
  cv::Mat mask;
  cv::inRange(image, bgr - cv::Scalar::all(tolerance), bgr + cv::Scalar::all(tolerance), mask);
  return cv::countNonZero(mask);
}

// Decodes to the requested size on a white background, with a real share of it drawn on.
cv::Mat ExpectPng(const std::string& path, ChartSize size) {
  cv::Mat image = cv::imread(path, cv::IMREAD_COLOR);
  EXPECT_FALSE(image.empty()) << path << " does not decode";
  if (image.empty()) return image;
  EXPECT_EQ(image.cols, size.width);
  EXPECT_EQ(image.rows, size.height);
  EXPECT_EQ(image.at<cv::Vec3b>(0, 0), cv::Vec3b(255, 255, 255)) << "background is not white";
  double drawn = 1 - double(CountColor(image, 0xffffff, 0)) / image.total();
  EXPECT_GT(drawn, 0.02) << path << " is nearly blank";
  KeepSample(path);
  return image;
}

// Cairo writes text as glyph outlines, so the title cannot be searched for; check the
// document's frame, its size in pixels and that it has real content.
void ExpectSvg(const std::string& path, ChartSize size) {
  std::string svg = ReadAll(path);
  EXPECT_THAT(svg, StartsWith("<?xml"));
  EXPECT_THAT(svg, HasSubstr("<svg"));
  EXPECT_THAT(svg, HasSubstr(fmt::format("width=\"{}px\" height=\"{}px\"", size.width, size.height)));
  EXPECT_THAT(svg, HasSubstr("</svg>"));
  EXPECT_GT(svg.size(), 5000u);
  KeepSample(path);
}

TEST(ChartTest, LineChartRendersPngAndSvg) {
  TempDir dir;
  LineChart chart = LatencyCdf();
  ASSERT_OK(WriteChart(chart, dir.file("latency-cdf.png")));
  cv::Mat image = ExpectPng(dir.file("latency-cdf.png"), chart.size);
  EXPECT_GT(CountColor(image, 0x1f77b4, 40), 300) << "the first series is drawn in the first palette colour";
  ASSERT_OK(WriteChart(chart, dir.file("latency-cdf.svg")));
  ExpectSvg(dir.file("latency-cdf.svg"), chart.size);
}

TEST(ChartTest, LineChartWithSeveralSeriesOnLinearAxes) {
  TempDir dir;
  LineChart chart{.title = "Throughput", .x_label = "seconds", .y_label = "images/s", .size = {640, 400}};
  for (int s = 0; s < 3; ++s) {
    Series series{.name = fmt::format("{} instance{}", s + 1, s ? "s" : "")};
    for (int t = 0; t <= 60; ++t) {
      series.x.push_back(t);
      series.y.push_back(900 * (s + 1) * (1 - std::exp(-t / 8.0)) + 40 * std::sin(t + s));
    }
    chart.series.push_back(series);
  }
  chart.series.push_back({.name = "one point", .x = {30}, .y = {1200}});
  ASSERT_OK(WriteChart(chart, dir.file("throughput.png")));
  cv::Mat image = ExpectPng(dir.file("throughput.png"), chart.size);
  for (uint32_t color : {0x1f77b4u, 0xff7f0eu, 0x2ca02cu, 0xd62728u}) {
    EXPECT_GT(CountColor(image, color, 40), 10) << fmt::format("colour {:06x} missing", color);
  }
  ASSERT_OK(WriteChart(chart, dir.file("throughput.svg")));
  ExpectSvg(dir.file("throughput.svg"), chart.size);
}

TEST(ChartTest, FlatAndOutOfRangeDataStillRender) {
  TempDir dir;
  LineChart flat{.series = {{.x = {5, 5}, .y = {3, 3}}}};
  ASSERT_OK(WriteChart(flat, dir.file("flat.png")));
  ExpectPng(dir.file("flat.png"), flat.size);
  LineChart clipped{.series = {{.x = {1, 2, 3}, .y = {-5, 0.5, 7}}}, .y_min = 0, .y_max = 1};
  ASSERT_OK(WriteChart(clipped, dir.file("clipped.png")));
  ExpectPng(dir.file("clipped.png"), clipped.size);
}

TEST(ChartTest, BarChartRendersPngAndSvg) {
  TempDir dir;
  BarChart chart = ProducerErrors(8);
  ASSERT_OK(WriteChart(chart, dir.file("producer-errors.png")));
  cv::Mat image = ExpectPng(dir.file("producer-errors.png"), chart.size);
  EXPECT_GT(CountColor(image, 0x1f77b4), 2000) << "bars are solid first-palette colour";
  EXPECT_GT(CountColor(image, 0xff7f0e, 40), 100) << "the error-rate line is the next palette colour";
  ASSERT_OK(WriteChart(chart, dir.file("producer-errors.svg")));
  ExpectSvg(dir.file("producer-errors.svg"), chart.size);
}

TEST(ChartTest, BarChartWithManyCategoriesAndGroups) {
  TempDir dir;
  BarChart chart = ProducerErrors(50);
  ASSERT_OK(WriteChart(chart, dir.file("producer-errors-50.png")));
  ExpectPng(dir.file("producer-errors-50.png"), chart.size);

  BarChart grouped{.title = "Images per class", .y_label = "images"};
  grouped.categories = ConfusionMatrix().row_labels;
  for (const char* name : {"correct", "misclassified", "dead-lettered"}) {
    Series s{.name = name};
    for (size_t i = 0; i < grouped.categories.size(); ++i) s.y.push_back(name[0] == 'c' ? 900 + 9 * i : 10 + 7 * i);
    grouped.bars.push_back(s);
  }
  ASSERT_OK(WriteChart(grouped, dir.file("class-counts.png")));
  cv::Mat image = ExpectPng(dir.file("class-counts.png"), grouped.size);
  for (uint32_t color : {0x1f77b4u, 0xff7f0eu, 0x2ca02cu}) EXPECT_GT(CountColor(image, color), 100);
  ASSERT_OK(WriteChart(grouped, dir.file("class-counts.svg")));
  ExpectSvg(dir.file("class-counts.svg"), grouped.size);
}

TEST(ChartTest, HeatmapRendersPngAndSvg) {
  TempDir dir;
  Heatmap chart = ConfusionMatrix();
  ASSERT_OK(WriteChart(chart, dir.file("confusion.png")));
  cv::Mat image = ExpectPng(dir.file("confusion.png"), chart.size);
  EXPECT_GT(CountColor(image, 0x08306b), 500) << "the largest cells take the darkest colour";
  EXPECT_GT(CountColor(image, 0xf7fbff), 500) << "zero cells take the lightest colour";
  ASSERT_OK(WriteChart(chart, dir.file("confusion.svg")));
  ExpectSvg(dir.file("confusion.svg"), chart.size);

  Heatmap unlabelled{.values = {{0.5, -0.25}, {1.75, 0}}, .annotate = false, .size = {300, 240}};
  ASSERT_OK(WriteChart(unlabelled, dir.file("small.png")));
  ExpectPng(dir.file("small.png"), unlabelled.size);
}

TEST(ChartTest, HonoursTheRequestedSizeAndUpperCaseExtensions) {
  TempDir dir;
  LineChart chart = LatencyCdf();
  chart.size = {1600, 1000};
  ASSERT_OK(WriteChart(chart, dir.file("large.PNG")));
  ExpectPng(dir.file("large.PNG"), chart.size);
  chart.size = {320, 200};
  ASSERT_OK(WriteChart(chart, dir.file("small.Svg")));
  ExpectSvg(dir.file("small.Svg"), chart.size);
}

// Each case must fail with InvalidInput naming `reason`, and leave no file behind.
void ExpectInvalid(const std::function<Status(const std::string&)>& write, const std::string& reason) {
  TempDir dir;
  std::string path = dir.file("chart.png");
  Status status = write(path);
  ASSERT_FALSE(status) << "accepted: " << reason;
  EXPECT_EQ(status.error().code(), Error::Code::kInvalidInput) << status.error().message();
  EXPECT_THAT(status.error().message(), HasSubstr(reason));
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(ChartTest, RejectsUnknownFormats) {
  for (const char* name : {"chart.jpg", "chart", "chart.png.txt", "chart.pdf"}) {
    TempDir dir;
    Status status = WriteChart(LatencyCdf(), dir.file(name));
    ASSERT_FALSE(status) << name;
    EXPECT_EQ(status.error().code(), Error::Code::kInvalidInput);
    EXPECT_THAT(status.error().message(), HasSubstr("use .png or .svg"));
  }
}

TEST(ChartTest, RejectsInconsistentLineCharts) {
  auto with = [](const std::function<void(LineChart&)>& change) {
    return [change](const std::string& path) {
      LineChart chart = LatencyCdf();
      change(chart);
      return WriteChart(chart, path);
    };
  };
  ExpectInvalid(with([](LineChart& c) { c.series.clear(); }), "no series");
  ExpectInvalid(with([](LineChart& c) { c.series[0].y.pop_back(); }), "5000 x values but 4999 y values");
  ExpectInvalid(with([](LineChart& c) { c.series.push_back({.name = "empty"}); }), "series 'empty' has no points");
  ExpectInvalid(with([](LineChart& c) { c.series[0].y[3] = NAN; }), "non-finite value at index 3");
  ExpectInvalid(with([](LineChart& c) { c.series[0].x[9] = INFINITY; }), "non-finite value at index 9");
  ExpectInvalid(with([](LineChart& c) { c.series[0].x[0] = 0; }), "log x axis needs values > 0");
  ExpectInvalid(with([](LineChart& c) { c.series[0].x[0] = -1; }), "log x axis needs values > 0");
  ExpectInvalid(with([](LineChart& c) { c.markers.push_back({0, "zero"}); }), "marker 'zero'");
  ExpectInvalid(with([](LineChart& c) {
                  c.log_x = false;
                  c.markers.push_back({NAN, "nan"});
                }),
                "marker 'nan'");
  ExpectInvalid(with([](LineChart& c) { c.y_max = 0; }), "y_min 0 must be less than y_max 0");
  ExpectInvalid(with([](LineChart& c) { c.y_min = NAN; }), "finite");
  ExpectInvalid(with([](LineChart& c) { c.size = {0, 540}; }), "chart size 0x540");
  ExpectInvalid(with([](LineChart& c) { c.size = {900, 20000}; }), "chart size 900x20000");
}

TEST(ChartTest, StackedBarsReachTheirSum) {
  TempDir dir;
  BarChart chart{.title = "Stages", .y_label = "ms", .categories = {"p50", "p99"}, .stacked = true};
  chart.bars = {{.name = "a", .y = {10, 40}}, {.name = "b", .y = {5, 60}}};
  ASSERT_OK(WriteChart(chart, dir.file("stacked.png")));
  cv::Mat stacked = ExpectPng(dir.file("stacked.png"), chart.size);
  ASSERT_OK(WriteChart(chart, dir.file("stacked.svg")));
  ExpectSvg(dir.file("stacked.svg"), chart.size);
  // Side by side the bars are half as wide and the axis ends at 60, not 100: the second
  // colour covers a different area.
  chart.stacked = false;
  ASSERT_OK(WriteChart(chart, dir.file("side.png")));
  cv::Mat side = ExpectPng(dir.file("side.png"), chart.size);
  EXPECT_GT(CountColor(stacked, 0x1f77b4), 2000);
  EXPECT_GT(CountColor(stacked, 0xff7f0e), 2000);
  EXPECT_NE(CountColor(stacked, 0xff7f0e), CountColor(side, 0xff7f0e));

  chart.stacked = true;
  chart.bars[1].y[0] = -1;
  auto refused = WriteChart(chart, dir.file("negative.png"));
  ASSERT_FALSE(refused.has_value());
  EXPECT_NE(refused.error().message().find("stacked bar series 'b' has a negative value"), std::string::npos)
      << refused.error().message();
}

TEST(ChartTest, RejectsInconsistentBarCharts) {
  auto with = [](const std::function<void(BarChart&)>& change) {
    return [change](const std::string& path) {
      BarChart chart = ProducerErrors(8);
      change(chart);
      return WriteChart(chart, path);
    };
  };
  ExpectInvalid(with([](BarChart& c) { c.categories.clear(); }), "no categories");
  ExpectInvalid(with([](BarChart& c) { c.bars.clear(); }), "no bars");
  ExpectInvalid(with([](BarChart& c) { c.bars[0].y.pop_back(); }), "7 values for 8 categories");
  ExpectInvalid(with([](BarChart& c) { c.categories.push_back("8"); }), "8 values for 9 categories");
  ExpectInvalid(with([](BarChart& c) { c.line->y.push_back(0.5); }), "line series 'error rate' has 9 values");
  ExpectInvalid(with([](BarChart& c) { c.bars[0].y[2] = NAN; }), "non-finite value at index 2");
  ExpectInvalid(with([](BarChart& c) { c.line->y[5] = -INFINITY; }), "non-finite value at index 5");
  ExpectInvalid(with([](BarChart& c) { c.size = {99, 540}; }), "chart size 99x540");
}

TEST(ChartTest, RejectsInconsistentHeatmaps) {
  auto with = [](const std::function<void(Heatmap&)>& change) {
    return [change](const std::string& path) {
      Heatmap chart = ConfusionMatrix();
      change(chart);
      return WriteChart(chart, path);
    };
  };
  ExpectInvalid(with([](Heatmap& c) { c.values.clear(); }), "no cells");
  ExpectInvalid(with([](Heatmap& c) { c.values = {{}}; }), "no cells");
  ExpectInvalid(with([](Heatmap& c) { c.values[4].pop_back(); }), "row 4 has 9 values but row 0 has 10");
  ExpectInvalid(with([](Heatmap& c) { c.row_labels.pop_back(); }), "9 row labels for 10 rows");
  ExpectInvalid(with([](Heatmap& c) { c.col_labels.push_back("Boot"); }), "11 column labels for 10 columns");
  ExpectInvalid(with([](Heatmap& c) { c.values[2][7] = NAN; }), "row 2 has a non-finite value at index 7");
  ExpectInvalid(with([](Heatmap& c) { c.size = {900, 0}; }), "chart size 900x0");
}

TEST(ChartTest, UnwritablePathsAreIoErrorsNamingThePath) {
  TempDir dir;
  std::filesystem::create_directory(dir.path() / "taken.png");  // a directory where the file should go
  for (const std::string& path :
       {dir.file("missing/chart.png"), dir.file("missing/chart.svg"), dir.file("taken.png")}) {
    Status status = WriteChart(ConfusionMatrix(), path);
    ASSERT_FALSE(status) << path;
    EXPECT_EQ(status.error().code(), Error::Code::kIo) << status.error().message();
    EXPECT_THAT(status.error().message(), HasSubstr(path));
  }
}

}  // namespace
}  // namespace iotinfer::chart
