#include "analytics/commands.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

namespace iotinfer::analytics {
namespace {

// "[#########.........]  45%  450000/1000000 documents" on one rewritten line.
void DrawProgress(int64_t done, int64_t total) {
  constexpr int kWidth = 30;
  const double fraction = total > 0 ? std::min(1.0, static_cast<double>(done) / static_cast<double>(total)) : 0.0;
  const int filled = static_cast<int>(fraction * kWidth);
  std::fprintf(stderr, "\r\033[Kscanning [%s%s] %3.0f%%  %lld/%lld documents", std::string(filled, '#').c_str(),
               std::string(kWidth - filled, '.').c_str(), 100 * fraction, static_cast<long long>(done),
               static_cast<long long>(total));
}

}  // namespace

Status RunBatchCommand(BatchCommand command, const std::function<const std::atomic<bool>&()>& stop_on_signals) {
  BatchOptions& o = command.options;
  ASSIGN_OR_RETURN(o.engine, ParseBatchEngine(command.engine));
  const bool live = isatty(STDERR_FILENO);
  const bool native = o.engine == BatchEngine::kNative;
  if (o.engine == BatchEngine::kSpark) o.cancel = &stop_on_signals();
  const char* waiting_for = o.engine == BatchEngine::kSpark ? "Spark is running the job" : "the store is aggregating";
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
  Result<BatchReport> ran = RunBatch(o, live && native ? ScanProgress(DrawProgress) : ScanProgress());
  done = true;
  if (clock.joinable()) clock.join();
  if (live) std::fputs("\n", stderr);
  ASSIGN_OR_RETURN(const BatchReport report, std::move(ran));
  std::printf("%s", FormatResults(report.results).c_str());
  const std::string engine = report.spark_version.empty() ? std::string(EngineName(report.engine))
                                                          : fmt::format("spark (Spark {})", report.spark_version);
  std::printf("%lld documents of %s aggregated by the %s engine in %.2f s; incorrect_inference_results replaced\n",
              static_cast<long long>(report.documents), report.store.c_str(), engine.c_str(), report.seconds);
  for (const auto& file : report.files) std::printf("wrote %s\n", file.c_str());
  return Ok();
}

Result<std::string> ReportResults(const store::StoreOptions& options, bool windows) {
  ASSIGN_OR_RETURN(std::unique_ptr<store::Store> store, store::Store::Open(options));
  if (!windows) {
    ASSIGN_OR_RETURN(const std::vector<ProducerResult> results, store->ReadResults());
    return FormatResults(results);
  }
  ASSIGN_OR_RETURN(const std::vector<WindowResult> window_results, store->ReadWindowResults());
  return FormatWindows(window_results);
}

Result<std::string> ReportLatencyText(const LatencyOptions& options) {
  if (options.stages) {
    ASSIGN_OR_RETURN(const StagesReport report, ReportLatencyStages(options));
    return options.json ? LatencyStagesJson(report) : FormatLatencyStages(report);
  }
  ASSIGN_OR_RETURN(const LatencyReport report, ReportLatency(options));
  return FormatLatency(report);
}

}  // namespace iotinfer::analytics
