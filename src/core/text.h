#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "core/error.h"

namespace iotinfer {

/// `s` without the leading and trailing characters that are in `chars`.
inline std::string_view Trim(std::string_view s, std::string_view chars) {
  const size_t first = s.find_first_not_of(chars);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(chars) - first + 1);
}

/// A duration as people write one: "10s", "500ms", "2m" (or "2min"), "1h"; a bare number is
/// seconds, and fractions are allowed ("1.5s"). InvalidInput for anything else, negative
/// durations included.
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);

/// "KEY=VALUE" split at its first '='; InvalidInput naming `what` (a flag, say) when there is
/// no '=' or no key. The value may be empty or hold further '='.
Result<std::pair<std::string, std::string>> ParseKeyValue(std::string_view text, std::string_view what);

/// The secret in file `path` (a mounted Kubernetes Secret, say), without the line breaks that
/// `echo` or an editor leave at its end. InvalidInput naming `what` and the path when the file
/// cannot be read or holds nothing else; the message never holds the content.
Result<std::string> ReadSecretFile(const std::string& path, std::string_view what);

/// `time_us` (µs since the epoch) as ISO 8601 UTC to the millisecond: 2026-12-04T20:37:49.123Z.
std::string FormatUtc(int64_t time_us);

/// A time FormatUtc wrote (the fraction optional, up to microseconds), in µs since the epoch;
/// nullopt for anything else.
std::optional<int64_t> ParseUtc(std::string_view text);

}  // namespace iotinfer
