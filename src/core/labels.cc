#include "core/labels.h"

#include <algorithm>

namespace iotinfer {

std::optional<int> ClassIndex(std::span<const std::string> classes, std::string_view name) {
  auto it = std::find(classes.begin(), classes.end(), name);
  if (it == classes.end()) return std::nullopt;
  return static_cast<int>(it - classes.begin());
}

std::vector<std::string> ClassNames(std::span<const std::string_view> names) { return {names.begin(), names.end()}; }

}  // namespace iotinfer
