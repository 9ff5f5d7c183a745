#pragma once

#include <chrono>
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

}  // namespace iotinfer
