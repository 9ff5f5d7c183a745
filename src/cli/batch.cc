#include "analytics/batch.h"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "cli/commands.h"

namespace iotinfer::cli {
namespace {

struct BatchFlags {
  analytics::BatchOptions options;
  std::string engine = "native";
};

// "[#########.........]  45%  450000/1000000 documents" on one rewritten line.
void DrawProgress(int64_t done, int64_t total) {
  constexpr int kWidth = 30;
  const double fraction = total > 0 ? std::min(1.0, static_cast<double>(done) / static_cast<double>(total)) : 0.0;
  const int filled = static_cast<int>(fraction * kWidth);
  std::fprintf(stderr, "\r\033[Kscanning [%s%s] %3.0f%%  %lld/%lld documents", std::string(filled, '#').c_str(),
               std::string(kWidth - filled, '.').c_str(), 100 * fraction, static_cast<long long>(done),
               static_cast<long long>(total));
}

Status RunBatchCommand(BatchFlags& flags) {
  analytics::BatchOptions& o = flags.options;
  ASSIGN_OR_RETURN(o.engine, analytics::ParseBatchEngine(flags.engine));
  // On a terminal: a bar for the scan, or, while the server aggregates (it tells nothing
  // until it is done, minutes on FerretDB), the time it has taken so far.
  const bool live = isatty(STDERR_FILENO);
  const bool native = o.engine == analytics::BatchEngine::kNative;
  // Ctrl-C interrupts a Spark job on the cluster rather than leaving it running there.
  if (o.engine == analytics::BatchEngine::kSpark) o.cancel = &StopOnSignals();
  const char* waiting_for =
      o.engine == analytics::BatchEngine::kSpark ? "Spark is running the job" : "the store is aggregating";
  std::atomic<bool> done{false};
  std::thread clock;
  if (live && !native) {
    clock = std::thread([&done, waiting_for] {
      const auto start = std::chrono::steady_clock::now();
      while (!done) {
        const auto seconds =
            std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start).count();
        std::fprintf(stderr, "\r\033[K%s... %lld s", waiting_for, static_cast<long long>(seconds));
        for (int i = 0; i < 10 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  }
  Result<analytics::BatchReport> ran =
      analytics::RunBatch(o, live && native ? analytics::ScanProgress(DrawProgress) : analytics::ScanProgress());
  done = true;
  if (clock.joinable()) clock.join();
  if (live) std::fputs("\n", stderr);
  ASSIGN_OR_RETURN(analytics::BatchReport report, std::move(ran));
  std::printf("%s", analytics::FormatResults(report.results).c_str());
  const std::string engine = report.spark_version.empty()
                                 ? std::string(analytics::EngineName(report.engine))
                                 : fmt::format("spark (Spark {})", report.spark_version);
  std::printf("%lld documents of %s aggregated by the %s engine in %.2f s; incorrect_inference_results replaced\n",
              static_cast<long long>(report.documents), report.store.c_str(), engine.c_str(), report.seconds);
  for (const auto& file : report.files) std::printf("wrote %s\n", file.c_str());
  return Ok();
}

}  // namespace

void AddBatchCommand(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand(
      "batch", "Count incorrect inferences per producer from the store: incorrect_inference_results, CSV and charts");
  auto flags = std::make_shared<BatchFlags>();
  analytics::BatchOptions& o = flags->options;
  AddStoreFlags(*cmd, o.store);
  cmd->add_option("--engine", flags->engine,
                  "native (documents stream through iotinfer), mongo (the store aggregates: a MongoDB pipeline, "
                  "or GROUP BY on SQLite; alias pushdown) or spark (a Spark cluster, through Spark Connect and "
                  "the MongoDB connector)")
      ->capture_default_str();
  AddSparkFlags(*cmd, o.spark);
  cmd->add_option("--out", o.out_dir, "directory for results.csv, confusion.csv and the charts (\"\": none)")
      ->capture_default_str();
  cmd->callback([&action, flags] { action = [flags] { return RunBatchCommand(*flags); }; });
}

}  // namespace iotinfer::cli
