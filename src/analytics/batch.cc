#include "analytics/batch.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include "chart/chart.h"
#include "core/labels.h"
#include "spark/client.h"

namespace iotinfer::analytics {
namespace {

// The dataset's own class order when every name is one of its classes (a confusion matrix
// reads best that way), else the names sorted.
std::vector<std::string> ClassOrder(std::span<const ConfusionCell> cells) {
  std::set<std::string> names;
  for (const ConfusionCell& c : cells) {
    names.insert(c.image_prediction);
    if (c.actual_value) names.insert(*c.actual_value);
  }
  for (std::span<const std::string_view> known :
       {std::span<const std::string_view>(kFashionMnistClasses), std::span<const std::string_view>(kCifar10Classes)}) {
    if (std::all_of(names.begin(), names.end(),
                    [&](const std::string& n) { return std::find(known.begin(), known.end(), n) != known.end(); })) {
      return ClassNames(known);
    }
  }
  return {names.begin(), names.end()};
}

// Written next to its destination and renamed over it, so a reader never sees half a file.
Status WriteFile(const std::filesystem::path& path, const std::string& text) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) return std::unexpected(Error::Io(fmt::format("writing {}: {}", tmp.string(), std::strerror(errno))));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec)
    return std::unexpected(Error::Io(fmt::format("renaming {} to {}: {}", tmp.string(), path.string(), ec.message())));
  return Ok();
}

// RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled.
std::string CsvField(std::string_view field) {
  if (field.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(field);
  std::string quoted(1, '"');
  for (char c : field) {
    if (c == '"') quoted.push_back('"');
    quoted.push_back(c);
  }
  quoted.push_back('"');
  return quoted;
}

// Every producer's counts added up, as one result (its producer_id means nothing).
ProducerResult Sum(std::span<const ProducerResult> results) {
  ProducerCounts sum;
  for (const ProducerResult& r : results) {
    sum += {.producer_id = 0, .incorrect_count = r.incorrect_count, .total = r.total, .unlabelled = r.unlabelled};
  }
  return ToResult(sum, 0);
}

std::string ResultsCsv(std::span<const ProducerResult> results) {
  std::string csv = "producer_id,incorrect_count,total,error_rate\n";
  for (const ProducerResult& r : results) {
    csv += fmt::format("{},{},{},{:.6f}\n", r.producer_id, r.incorrect_count, r.total, r.error_rate);
  }
  return csv;
}

chart::BarChart ResultsChart(std::span<const ProducerResult> results, const std::string& note) {
  const ProducerResult all = Sum(results);
  chart::BarChart bars{
      .title = fmt::format("Incorrect inferences per producer: {} of {} labelled ({:.1f}%){}{}", all.incorrect_count,
                           all.total - all.unlabelled, 100 * all.error_rate, note.empty() ? "" : ", ", note),
      .x_label = "producer_id",
      .y_label = "incorrect inferences",
      .categories = {},
      .bars = {chart::Series{.name = "incorrect_count", .x = {}, .y = {}}},
      .line = chart::Series{.name = "error rate", .x = {}, .y = {}},
      .line_axis_label = "error rate",
      .line_axis_percent = true,
  };
  for (const ProducerResult& r : results) {
    bars.categories.push_back(std::to_string(r.producer_id));
    bars.bars[0].y.push_back(static_cast<double>(r.incorrect_count));
    bars.line->y.push_back(r.error_rate);
  }
  return bars;
}

// [actual][predicted] over all producers, labelled records only.
std::vector<std::vector<double>> ConfusionMatrix(std::span<const ConfusionCell> cells,
                                                 const std::vector<std::string>& classes) {
  std::vector<std::vector<double>> m(classes.size(), std::vector<double>(classes.size(), 0.0));
  auto index = [&](const std::string& name) { return *ClassIndex(classes, name); };
  for (const ConfusionCell& c : cells) {
    if (c.actual_value) m[index(*c.actual_value)][index(c.image_prediction)] += static_cast<double>(c.count);
  }
  return m;
}

std::string ConfusionCsv(const std::vector<std::vector<double>>& m, const std::vector<std::string>& classes) {
  std::string csv = "actual\\predicted";
  for (const auto& name : classes) csv += fmt::format(",{}", CsvField(name));
  csv += "\n";
  for (size_t row = 0; row < classes.size(); ++row) {
    csv += CsvField(classes[row]);
    for (double v : m[row]) csv += fmt::format(",{}", static_cast<int64_t>(v));
    csv += "\n";
  }
  return csv;
}

std::string ConfusionByProducerCsv(std::span<const ConfusionCell> cells) {
  std::string csv = "producer_id,actual_value,image_prediction,count\n";
  for (const ConfusionCell& c : cells) {
    csv += fmt::format("{},{},{},{}\n", c.producer_id, c.actual_value ? CsvField(*c.actual_value) : "",
                       CsvField(c.image_prediction), c.count);
  }
  return csv;
}

void SortCells(std::vector<ConfusionCell>& cells) {
  std::sort(cells.begin(), cells.end(), [](const ConfusionCell& a, const ConfusionCell& b) {
    return std::tie(a.producer_id, a.actual_value, a.image_prediction) <
           std::tie(b.producer_id, b.actual_value, b.image_prediction);
  });
}

}  // namespace

Result<BatchEngine> ParseBatchEngine(std::string_view name) {
  if (name == "native") return BatchEngine::kNative;
  if (name == "mongo" || name == "pushdown") return BatchEngine::kPushdown;
  if (name == "spark") return BatchEngine::kSpark;
  return std::unexpected(
      Error::InvalidInput(fmt::format("unknown engine '{}': expected native, mongo (or pushdown), spark", name)));
}

std::string_view EngineName(BatchEngine engine) {
  switch (engine) {
    case BatchEngine::kNative:
      return "native";
    case BatchEngine::kPushdown:
      return "pushdown";
    case BatchEngine::kSpark:
      return "spark";
  }
  return "?";
}

Result<std::vector<ConfusionCell>> ScanConfusion(store::Store& store, const ScanProgress& on_progress) {
  int64_t total = 0;
  if (on_progress) {
    ASSIGN_OR_RETURN(total, store.Count({}));
    on_progress(0, total);
  }
  // Keyed by the cell, so memory grows with producers x classes^2, never with documents.
  std::map<std::tuple<int, std::optional<std::string>, std::string>, int64_t> counts;
  int64_t seen = 0;
  TRY(store.Scan({}, [&](const store::StoredRecord& stored) {
    const InferenceRecord& r = stored.record;
    ++counts[{r.producer_id, r.actual_value, r.image_prediction}];
    if (on_progress && ++seen % 10000 == 0) on_progress(seen, total);
    return Ok();
  }));
  if (on_progress) on_progress(seen, std::max(total, seen));
  std::vector<ConfusionCell> cells;
  for (const auto& [key, n] : counts) cells.push_back({std::get<0>(key), std::get<2>(key), std::get<1>(key), n});
  return cells;
}

Result<std::vector<std::string>> WriteResultFiles(std::span<const ProducerResult> results,
                                                  std::span<const ConfusionCell> cells, const std::string& out_dir,
                                                  const std::string& title_note) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return std::unexpected(Error::Io(fmt::format("creating {}: {}", out_dir, ec.message())));
  const std::filesystem::path dir(out_dir);
  std::vector<std::string> files;
  auto write = [&](const char* name, const std::string& text) -> Status {
    files.push_back((dir / name).string());
    return WriteFile(files.back(), text);
  };
  TRY(write("results.csv", ResultsCsv(results)));
  const std::vector<std::string> classes = ClassOrder(cells);
  const std::vector<std::vector<double>> matrix = ConfusionMatrix(cells, classes);
  TRY(write("confusion.csv", ConfusionCsv(matrix, classes)));
  TRY(write("confusion_by_producer.csv", ConfusionByProducerCsv(cells)));
  // A chart needs something to draw: no producers, or no labelled record, give none.
  const ProducerResult all = Sum(results);
  const int64_t labelled = all.total - all.unlabelled;
  for (const char* extension : {".png", ".svg"}) {
    if (!results.empty()) {
      files.push_back((dir / (std::string("results") + extension)).string());
      TRY(chart::WriteChart(ResultsChart(results, title_note), files.back()));
    }
    if (labelled > 0) {
      chart::Heatmap heatmap{
          .title = fmt::format("Confusion matrix: {} labelled images, {:.1f}% correct", labelled,
                               100 * (1 - all.error_rate)),
          .x_label = "predicted (image_prediction)",
          .y_label = "true class (actual_value)",
          .row_labels = classes,
          .col_labels = classes,
          .values = matrix,
          .annotate = true,
          .size = {.width = 900, .height = 760},
      };
      files.push_back((dir / (std::string("confusion") + extension)).string());
      TRY(chart::WriteChart(heatmap, files.back()));
    }
  }
  return files;
}

Result<BatchReport> RunBatch(const BatchOptions& options, const ScanProgress& on_progress) {
  const auto start = std::chrono::steady_clock::now();
  if (options.engine == BatchEngine::kSpark) {
    // Before anything is opened or created: a SQLite store cannot be Spark's.
    TRY(SparkMongoUri(options.spark, options.store));
    TRY(spark::ParseEndpoint(options.spark.url));
  }
  store::StoreOptions store_options = options.store;
  // The server answers a push-down aggregation only when it has read every document: on a
  // large collection (FerretDB reads ~10k documents/s) that is far beyond the driver's 5 min.
  if (options.engine == BatchEngine::kPushdown) store_options.command_timeout = std::chrono::hours(24);
  ASSIGN_OR_RETURN(std::unique_ptr<store::Store> store, store::Store::Open(store_options));
  BatchReport report{.engine = options.engine, .store = store->Describe()};
  TRY(store->Ping());
  if (options.engine == BatchEngine::kSpark) {
    ASSIGN_OR_RETURN(SparkBatchResult spark, RunSparkBatch(options.spark, options.store, options.cancel));
    report.spark_version = spark.spark_version;
    report.cells = std::move(spark.cells);
    // Spark's overwrite dropped the collection, and its unique index with it.
    TRY(store->EnsureIndexes());
    ASSIGN_OR_RETURN(report.results, store->ReadResults());
  } else {
    if (options.engine == BatchEngine::kNative) {
      ASSIGN_OR_RETURN(report.cells, ScanConfusion(*store, on_progress));
    } else {
      ASSIGN_OR_RETURN(report.cells, store->Confusion());
    }
    report.results = PerProducer(report.cells, store::NowMillisAsMicros());
    TRY(store->ReplaceResults(report.results));
  }
  SortCells(report.cells);
  for (const ConfusionCell& c : report.cells) report.documents += c.count;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!options.out_dir.empty()) {
    ASSIGN_OR_RETURN(report.files, WriteResultFiles(report.results, report.cells, options.out_dir,
                                                    fmt::format("{} engine", EngineName(options.engine))));
  }
  return report;
}

std::string FormatResults(std::span<const ProducerResult> results) {
  if (results.empty()) return "no results: the store holds no inference records\n";
  std::string out = fmt::format("{:>11} {:>15} {:>10} {:>10} {:>10}\n", "producer_id", "incorrect_count", "total",
                                "unlabelled", "error_rate");
  for (const ProducerResult& r : results) {
    out += fmt::format("{:>11} {:>15} {:>10} {:>10} {:>9.2f}%\n", r.producer_id, r.incorrect_count, r.total,
                       r.unlabelled, 100 * r.error_rate);
  }
  const ProducerResult all = Sum(results);
  out += fmt::format("{:>11} {:>15} {:>10} {:>10} {:>9.2f}%\n", "all", all.incorrect_count, all.total, all.unlabelled,
                     100 * all.error_rate);
  return out;
}

std::string FormatWindows(std::span<const WindowResult> windows) {
  if (windows.empty()) return "no window results: run `iotinfer stream --window 10s` to keep them\n";
  std::string out = fmt::format("{:<24} {:>8} {:>11} {:>15} {:>10} {:>10}\n", "window_start (UTC)", "seconds",
                                "producer_id", "incorrect_count", "total", "error_rate");
  for (const WindowResult& w : windows) {
    const auto start =
        std::chrono::sys_time<std::chrono::milliseconds>(std::chrono::milliseconds(w.window_start_us / 1000));
    out += fmt::format("{:<24} {:>8} {:>11} {:>15} {:>10} {:>9.2f}%\n", fmt::format("{:%F %T}", start),
                       (w.window_end_us - w.window_start_us) / 1'000'000, w.result.producer_id,
                       w.result.incorrect_count, w.result.total, 100 * w.result.error_rate);
  }
  return out;
}

}  // namespace iotinfer::analytics
