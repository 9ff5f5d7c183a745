#include "store/store.h"

#include <fmt/format.h>

#include <map>

#include "store/store_internal.h"

namespace iotinfer::store {

Result<std::unique_ptr<Store>> Store::Open(const StoreOptions& options) {
  const std::string_view uri = options.uri;
  if (uri.starts_with("sqlite:")) {
    std::string path(uri.substr(7));
    if (path.empty()) return std::unexpected(Error::InvalidInput("store URI 'sqlite:' names no file"));
    return OpenSqlite(options, path);
  }
  if (uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) return OpenMongo(options);
  return std::unexpected(Error::InvalidInput(
      fmt::format("store URI '{}' is neither sqlite:PATH nor mongodb://...", RedactUri(options.uri))));
}

std::vector<ProducerResult> PerProducer(std::span<const ConfusionCell> cells, int64_t computed_at_us) {
  std::map<int, ProducerResult> by_producer;
  for (const ConfusionCell& cell : cells) {
    ProducerResult& r = by_producer[cell.producer_id];
    r.producer_id = cell.producer_id;
    r.total += cell.count;
    if (!cell.actual_value) {
      r.unlabelled += cell.count;
    } else if (*cell.actual_value != cell.image_prediction) {
      r.incorrect_count += cell.count;
    }
  }
  std::vector<ProducerResult> results;
  for (auto& [id, r] : by_producer) {
    const int64_t labelled = r.total - r.unlabelled;
    r.error_rate = labelled ? static_cast<double>(r.incorrect_count) / static_cast<double>(labelled) : 0.0;
    r.computed_at_us = computed_at_us;
    results.push_back(r);
  }
  return results;
}

std::string RedactUri(std::string_view uri) {
  const size_t scheme = uri.find("://");
  if (scheme == std::string_view::npos) return std::string(uri);
  const size_t authority = scheme + 3;
  const size_t end = uri.find_first_of("/?", authority);
  const size_t at = uri.rfind('@', end == std::string_view::npos ? uri.size() : end);
  if (at == std::string_view::npos || at < authority) return std::string(uri);
  const size_t colon = uri.find(':', authority);
  if (colon == std::string_view::npos || colon > at) return std::string(uri);
  return fmt::format("{}***{}", uri.substr(0, colon + 1), uri.substr(at));
}

int64_t NowMillisAsMicros() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return std::chrono::duration_cast<std::chrono::milliseconds>(now).count() * 1000;
}

}  // namespace iotinfer::store
