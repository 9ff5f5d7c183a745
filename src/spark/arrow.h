#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/error.h"

namespace iotinfer::spark {

/// One cell of a result: null, an integer (any width; timestamps as microseconds), a
/// floating-point number, a boolean or a string.
using Value = std::variant<std::monostate, int64_t, double, bool, std::string>;

/// Rows a query returned, decoded from the Arrow batches they arrived in.
struct Table {
  std::vector<std::string> columns;
  std::vector<std::vector<Value>> rows;

  /// The position of `column`, or nullopt.
  std::optional<size_t> Index(std::string_view column) const;
};

/// Decodes Arrow IPC streams (each one a schema and its record batches, as Spark Connect
/// sends them) into one table; every stream must have the same columns. InvalidInput for a
/// corrupt stream or a column type the table cannot hold (decimals, nested types, ...).
Result<Table> DecodeArrowStreams(std::span<const std::string> streams);

/// The Arrow library's version, for diagnostics.
std::string ArrowVersion();

}  // namespace iotinfer::spark
