#pragma once

#include <string_view>

namespace iotinfer {

/// `s` without the leading and trailing characters that are in `chars`.
inline std::string_view Trim(std::string_view s, std::string_view chars) {
  const size_t first = s.find_first_not_of(chars);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(chars) - first + 1);
}

}  // namespace iotinfer
