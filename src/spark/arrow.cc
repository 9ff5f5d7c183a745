#include "spark/arrow.h"

#include <arrow/api.h>
#include <arrow/io/memory.h>
#include <arrow/ipc/reader.h>
#include <fmt/format.h>

#include <algorithm>

namespace iotinfer::spark {
namespace {

// More rows than a result of per-producer counts (one per producer, or per producer and
// class) would ever have, and few enough to allocate.
constexpr int64_t kMaxRows = int64_t{1} << 26;

// Appends column `c` of `batch` to the rows starting at `first_row`.
Status AppendColumn(const arrow::Array& array, const std::string& name, size_t column, size_t first_row,
                    std::vector<std::vector<Value>>& rows) {
  const auto type = array.type_id();
  for (int64_t i = 0; i < array.length(); ++i) {
    Value& cell = rows[first_row + static_cast<size_t>(i)][column];
    if (array.IsNull(i)) continue;
    switch (type) {
      case arrow::Type::INT8:
        cell = int64_t{static_cast<const arrow::Int8Array&>(array).Value(i)};
        break;
      case arrow::Type::INT16:
        cell = int64_t{static_cast<const arrow::Int16Array&>(array).Value(i)};
        break;
      case arrow::Type::INT32:
        cell = int64_t{static_cast<const arrow::Int32Array&>(array).Value(i)};
        break;
      case arrow::Type::INT64:
        cell = int64_t{static_cast<const arrow::Int64Array&>(array).Value(i)};
        break;
      case arrow::Type::TIMESTAMP:
        cell = int64_t{static_cast<const arrow::TimestampArray&>(array).Value(i)};
        break;
      case arrow::Type::FLOAT:
        cell = double{static_cast<const arrow::FloatArray&>(array).Value(i)};
        break;
      case arrow::Type::DOUBLE:
        cell = static_cast<const arrow::DoubleArray&>(array).Value(i);
        break;
      case arrow::Type::BOOL:
        cell = static_cast<const arrow::BooleanArray&>(array).Value(i);
        break;
      case arrow::Type::STRING:
        cell = std::string(static_cast<const arrow::StringArray&>(array).Value(i));
        break;
      case arrow::Type::LARGE_STRING:
        cell = std::string(static_cast<const arrow::LargeStringArray&>(array).Value(i));
        break;
      default:
        return std::unexpected(Error::InvalidInput(
            fmt::format("column '{}' has Arrow type {}, which results cannot hold", name, array.type()->ToString())));
    }
  }
  return Ok();
}

Status AppendStream(const std::string& data, Table& table, bool first) {
  auto buffer = arrow::Buffer::FromString(data);
  auto input = std::make_shared<arrow::io::BufferReader>(buffer);
  auto options = arrow::ipc::IpcReadOptions::Defaults();
  // A damaged stream can place a buffer at any offset: those not aligned for their type, which
  // are read as typed values below, are copied (a stream Arrow wrote has none).
  options.ensure_alignment = arrow::ipc::Alignment::kDataTypeSpecificAlignment;
  auto reader = arrow::ipc::RecordBatchStreamReader::Open(input, options);
  if (!reader.ok()) return std::unexpected(Error::InvalidInput("Arrow batch: " + reader.status().ToString()));
  const auto schema = (*reader)->schema();
  std::vector<std::string> names;
  for (const auto& field : schema->fields()) names.push_back(field->name());
  if (first) {
    table.columns = names;
  } else if (names != table.columns) {
    return std::unexpected(Error::InvalidInput("Arrow batches of one result disagree on its columns"));
  }
  while (true) {
    std::shared_ptr<arrow::RecordBatch> batch;
    if (auto status = (*reader)->ReadNext(&batch); !status.ok()) {
      return std::unexpected(Error::InvalidInput("Arrow batch: " + status.ToString()));
    }
    if (!batch) return Ok();
    // The reader checks a batch's structure, not its data: string offsets outside the data
    // buffer, say, would be read as they are below.
    if (auto status = batch->ValidateFull(); !status.ok()) {
      return std::unexpected(Error::InvalidInput("Arrow batch: " + status.ToString()));
    }
    // A batch without columns (or of nulls only) passes validation with any row count; what
    // Spark returns here is a few rows per producer, so far more is a corrupt stream.
    if (batch->num_rows() > kMaxRows - static_cast<int64_t>(table.rows.size())) {
      return std::unexpected(
          Error::InvalidInput(fmt::format("Arrow batch: more than {} rows in one result", kMaxRows)));
    }
    const size_t first_row = table.rows.size();
    table.rows.resize(first_row + static_cast<size_t>(batch->num_rows()), std::vector<Value>(names.size()));
    for (int c = 0; c < batch->num_columns(); ++c) {
      TRY(AppendColumn(*batch->column(c), names[static_cast<size_t>(c)], static_cast<size_t>(c), first_row,
                       table.rows));
    }
  }
}

}  // namespace

std::optional<size_t> Table::Index(std::string_view column) const {
  const auto it = std::find(columns.begin(), columns.end(), column);
  if (it == columns.end()) return std::nullopt;
  return static_cast<size_t>(it - columns.begin());
}

Result<Table> DecodeArrowStreams(std::span<const std::string> streams) {
  Table table;
  bool first = true;
  for (const std::string& stream : streams) {
    TRY(AppendStream(stream, table, first));
    first = false;
  }
  return table;
}

std::string ArrowVersion() { return arrow::GetBuildInfo().version_string; }

}  // namespace iotinfer::spark
