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

void ProducerCounts::Add(std::string_view prediction, const std::optional<std::string>& actual, int64_t count) {
  total += count;
  if (!actual) {
    unlabelled += count;
  } else if (*actual != prediction) {
    incorrect_count += count;
  }
}

ProducerCounts& ProducerCounts::operator+=(const ProducerCounts& other) {
  incorrect_count += other.incorrect_count;
  total += other.total;
  unlabelled += other.unlabelled;
  return *this;
}

ProducerResult ToResult(const ProducerCounts& c, int64_t computed_at_us) {
  const int64_t labelled = c.total - c.unlabelled;
  return {.producer_id = c.producer_id,
          .incorrect_count = c.incorrect_count,
          .total = c.total,
          .unlabelled = c.unlabelled,
          .error_rate = labelled ? static_cast<double>(c.incorrect_count) / static_cast<double>(labelled) : 0.0,
          .computed_at_us = computed_at_us};
}

Result<bool> Store::SaveStreamState(const StreamState& state) {
  ASSIGN_OR_RETURN(std::vector<bool> saved, SaveStreamStates({&state, 1}));
  return saved.at(0);
}

std::vector<ProducerResult> PerProducer(std::span<const ConfusionCell> cells, int64_t computed_at_us) {
  std::map<int, ProducerCounts> by_producer;
  for (const ConfusionCell& cell : cells) {
    ProducerCounts& c = by_producer[cell.producer_id];
    c.producer_id = cell.producer_id;
    c.Add(cell.image_prediction, cell.actual_value, cell.count);
  }
  std::vector<ProducerResult> results;
  for (const auto& [id, c] : by_producer) results.push_back(ToResult(c, computed_at_us));
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
