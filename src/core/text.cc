#include "core/text.h"

#include <fmt/format.h>

#include <charconv>

namespace iotinfer {

Result<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  const std::string_view unit(end, text.data() + text.size());
  double ms_per_unit = 0;
  if (unit.empty() || unit == "s") ms_per_unit = 1000;
  if (unit == "ms") ms_per_unit = 1;
  if (unit == "m" || unit == "min") ms_per_unit = 60'000;
  if (unit == "h") ms_per_unit = 3'600'000;
  if (ec != std::errc() || ms_per_unit == 0 || value < 0) {
    return std::unexpected(
        Error::InvalidInput(fmt::format("'{}' is not a duration such as 10s, 500ms, 5m or 1h", text)));
  }
  return std::chrono::milliseconds(static_cast<int64_t>(value * ms_per_unit));
}

Result<std::pair<std::string, std::string>> ParseKeyValue(std::string_view text, std::string_view what) {
  const size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return std::unexpected(Error::InvalidInput(fmt::format("{} '{}': expected KEY=VALUE", what, text)));
  }
  return std::pair{std::string(text.substr(0, eq)), std::string(text.substr(eq + 1))};
}

}  // namespace iotinfer
