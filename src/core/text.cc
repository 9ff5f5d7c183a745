#include "core/text.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

namespace iotinfer {

Result<std::string> ReadSecretFile(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::unexpected(Error::InvalidInput(fmt::format("{} file {}: {}", what, path, std::strerror(errno))));
  std::ostringstream content;
  content << in.rdbuf();
  std::string secret = std::move(content).str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty()) return std::unexpected(Error::InvalidInput(fmt::format("{} file {} is empty", what, path)));
  return secret;
}

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

std::string FormatUtc(int64_t time_us) {
  const std::chrono::sys_time<std::chrono::milliseconds> at{
      std::chrono::floor<std::chrono::milliseconds>(std::chrono::microseconds(time_us))};
  const auto seconds = std::chrono::floor<std::chrono::seconds>(at);
  return fmt::format("{:%FT%T}.{:03}Z", seconds, (at - seconds).count());
}

std::optional<int64_t> ParseUtc(std::string_view text) {
  size_t at = 0;
  auto digit = [&](size_t i) { return i < text.size() && text[i] >= '0' && text[i] <= '9'; };
  // Exactly `digits` digits, then `after`: no sign, space or short field slips through.
  auto field = [&](size_t digits, char after) -> std::optional<int> {
    int value = 0;
    for (size_t end = at + digits; at < end; ++at) {
      if (!digit(at)) return std::nullopt;
      value = value * 10 + (text[at] - '0');
    }
    if (after != '\0') {
      if (at >= text.size() || text[at] != after) return std::nullopt;
      ++at;
    }
    return value;
  };
  const auto year = field(4, '-'), month = field(2, '-'), day = field(2, 'T');
  const auto hour = field(2, ':'), minute = field(2, ':'), second = field(2, '\0');
  if (!year || !month || !day || !hour || !minute || !second || *hour > 23 || *minute > 59 || *second > 60) {
    return std::nullopt;
  }
  const std::chrono::year_month_day date{std::chrono::year(*year), std::chrono::month(static_cast<unsigned>(*month)),
                                         std::chrono::day(static_cast<unsigned>(*day))};
  if (!date.ok()) return std::nullopt;
  int64_t fraction_us = 0;
  if (at < text.size() && text[at] == '.') {
    const size_t begin = ++at;
    while (at - begin < 6 && digit(at)) {
      fraction_us = fraction_us * 10 + (text[at++] - '0');
    }
    if (at == begin) return std::nullopt;
    for (size_t i = at - begin; i < 6; ++i) fraction_us *= 10;
  }
  if (at + 1 != text.size() || text[at] != 'Z') return std::nullopt;
  const auto time = std::chrono::sys_days(date) + std::chrono::hours(*hour) + std::chrono::minutes(*minute) +
                    std::chrono::seconds(*second);
  return std::chrono::duration_cast<std::chrono::microseconds>(time.time_since_epoch()).count() + fraction_us;
}

}  // namespace iotinfer
