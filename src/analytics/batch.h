#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "analytics/spark_engine.h"
#include "core/error.h"
#include "store/store.h"

namespace iotinfer::analytics {

/// Where the per-producer aggregation runs.
enum class BatchEngine {
  kNative,    // the documents stream through C++ (bounded memory: one map entry per cell)
  kPushdown,  // the store aggregates: a MongoDB $group pipeline, or SQL GROUP BY on SQLite
  kSpark,     // a Spark cluster reads and writes MongoDB through its connector (Spark Connect)
};

/// "native", "mongo" / "pushdown" or "spark"; InvalidInput naming the choices otherwise.
Result<BatchEngine> ParseBatchEngine(std::string_view name);
std::string_view EngineName(BatchEngine engine);

struct BatchOptions {
  store::StoreOptions store;
  BatchEngine engine = BatchEngine::kNative;
  std::string out_dir = "iotinfer-results";   // CSV files and charts; empty: none written
  SparkOptions spark;                         // for BatchEngine::kSpark
  const std::atomic<bool>* cancel = nullptr;  // kSpark: setting it interrupts the Spark job
};

struct BatchReport {
  BatchEngine engine = BatchEngine::kNative;
  std::string store;                    // Describe()d: safe to print
  std::string spark_version;            // kSpark: the server's
  std::vector<ConfusionCell> cells;     // sorted by (producer, actual, predicted)
  std::vector<ProducerResult> results;  // what replaced incorrect_inference_results
  int64_t documents = 0;                // documents aggregated
  double seconds = 0;                   // aggregation and the results write
  std::vector<std::string> files;       // CSV files and charts written
};

/// Progress of a scan: documents seen and the total expected (0 when unknown).
using ScanProgress = std::function<void(int64_t done, int64_t total)>;

/// Reads `images`, counts per producer `is_incorrect = image_prediction != actual_value`
/// (unlabelled records are counted apart and are never incorrect), replaces
/// `incorrect_inference_results` and writes into out_dir: results.csv, results.png/.svg
/// (incorrect count and error rate per producer), confusion.csv, confusion_by_producer.csv
/// and confusion.png/.svg (true class by predicted class). Every engine gives the same results;
/// with kSpark, Spark writes `incorrect_inference_results` and the files show what it wrote.
Result<BatchReport> RunBatch(const BatchOptions& options, const ScanProgress& on_progress = {});

/// Confusion cells of every document, computed here from a scan: the native engine.
Result<std::vector<ConfusionCell>> ScanConfusion(store::Store& store, const ScanProgress& on_progress = {});

/// The CSV files and charts of `results` and `cells` in `out_dir` (created when missing);
/// returns the paths written. `title_note` ends the charts' titles (e.g. the engine).
Result<std::vector<std::string>> WriteResultFiles(std::span<const ProducerResult> results,
                                                  std::span<const ConfusionCell> cells, const std::string& out_dir,
                                                  const std::string& title_note);

/// The per-producer table as people read it, with a totals line.
std::string FormatResults(std::span<const ProducerResult> results);

/// Window results as a table, one row per (window, producer), oldest window first.
std::string FormatWindows(std::span<const WindowResult> windows);

}  // namespace iotinfer::analytics
