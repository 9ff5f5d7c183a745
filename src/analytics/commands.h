#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "analytics/batch.h"
#include "analytics/latency.h"
#include "core/error.h"
#include "store/store.h"

namespace iotinfer::analytics {

/// `iotinfer batch` as its command line gives it.
struct BatchCommand {
  BatchOptions options;
  std::string engine = "native";  // ParseBatchEngine's names
};

/// RunBatch as `iotinfer batch` runs it: while stderr is a terminal, a progress bar for a
/// native scan, or the time taken so far while the store or Spark aggregates (they tell
/// nothing until done, minutes on FerretDB); then the results table, a summary and the files
/// written, on stdout. `stop_on_signals` is called for the Spark engine only: the flag it
/// returns, set by SIGINT/SIGTERM, cancels the job on the cluster rather than leaving it
/// running there.
Status RunBatchCommand(BatchCommand command, const std::function<const std::atomic<bool>&()>& stop_on_signals);

/// `iotinfer report results`: incorrect_inference_results, or with `windows`
/// incorrect_inference_windows, as a table.
Result<std::string> ReportResults(const store::StoreOptions& store, bool windows);

/// `iotinfer report latency`: ReportLatency or ReportLatencyStages, formatted.
Result<std::string> ReportLatencyText(const LatencyOptions& options);

}  // namespace iotinfer::analytics
