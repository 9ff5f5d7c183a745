#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

// The generated protocol types stay out of this header (src/README.md): plans hold them
// behind shared, immutable pointers, so building a plan copies no subtree.
namespace spark::connect {
class Expression;
class Relation;
class Plan;
}  // namespace spark::connect

namespace iotinfer::spark {

using Options = std::map<std::string, std::string>;

/// A column expression of a Spark plan, as pyspark's Column: built here, resolved by the
/// server (an unknown column is the server's analysis error).
class Column {
 public:
  explicit Column(std::shared_ptr<const ::spark::connect::Expression> expression);

  Column Cast(std::string_view type) const;  // a Spark SQL type: "int", "long", "string", ...
  Column Alias(std::string_view name) const;
  Column IsNull() const;
  Column IsNotNull() const;

  const ::spark::connect::Expression& proto() const { return *expression_; }

 private:
  std::shared_ptr<const ::spark::connect::Expression> expression_;
};

Column Col(std::string_view name);
Column Lit(int64_t value);
Column Lit(double value);
Column Lit(std::string_view value);
Column Lit(const char* value);
Column Lit(bool value);
/// A call of a Spark SQL function by name: Fn("sum", {x}), Fn("from_json", {v, Lit(ddl)}).
Column Fn(std::string_view name, std::vector<Column> arguments);

Column operator==(const Column& a, const Column& b);
Column operator!=(const Column& a, const Column& b);
Column operator&&(const Column& a, const Column& b);
Column operator+(const Column& a, const Column& b);
Column operator-(const Column& a, const Column& b);
Column operator/(const Column& a, const Column& b);
Column operator>(const Column& a, const Column& b);

Column Sum(const Column& c);
Column Count(const Column& c);
/// CASE WHEN condition THEN value ELSE otherwise END.
Column When(const Column& condition, const Column& value, const Column& otherwise);

enum class SaveMode { kAppend, kOverwrite, kErrorIfExists, kIgnore };

/// How a streaming query runs and where its results go.
struct StreamWrite {
  std::string format;                  // the sink: "mongodb", "console", "memory", ...
  Options options;                     // the sink's options
  std::string output_mode = "append";  // "append", "update" or "complete"
  std::string checkpoint;              // checkpointLocation, on the server's file system
  std::string query_name;
  std::string processing_time;  // trigger interval, e.g. "1 second"; empty: as fast as it can
};

/// Something to execute: a relation to return rows of, or a command (write, stream, ...).
class Plan {
 public:
  explicit Plan(std::shared_ptr<const ::spark::connect::Plan> plan) : plan_(std::move(plan)) {}
  const ::spark::connect::Plan& proto() const { return *plan_; }

 private:
  std::shared_ptr<const ::spark::connect::Plan> plan_;
};

class GroupedData;

/// An immutable relation, as pyspark's DataFrame: each call returns a new one.
class DataFrame {
 public:
  explicit DataFrame(std::shared_ptr<const ::spark::connect::Relation> relation);

  /// spark.read.format(format).schema(schema).options(options).load(); schema: a DDL
  /// string, or empty to let the source infer it.
  static DataFrame Read(std::string_view format, std::string_view schema, const Options& options);
  /// spark.readStream...load(): the same for a streaming source.
  static DataFrame ReadStream(std::string_view format, std::string_view schema, const Options& options);

  /// spark.range(start, end): one column `id` of longs.
  static DataFrame Range(int64_t start, int64_t end);

  DataFrame Filter(const Column& condition) const;
  DataFrame WithColumn(std::string_view name, const Column& value) const;
  DataFrame Select(const std::vector<Column>& columns) const;
  GroupedData GroupBy(const std::vector<Column>& keys) const;

  /// The plan that returns this relation's rows (as Arrow batches).
  Plan ToPlan() const;
  /// df.write.format(format).mode(mode).options(options).save()
  Plan Write(std::string_view format, SaveMode mode, const Options& options) const;
  /// df.writeStream...start()
  Plan WriteStream(const StreamWrite& write) const;

  const ::spark::connect::Relation& proto() const { return *relation_; }

 private:
  std::shared_ptr<const ::spark::connect::Relation> relation_;
};

class GroupedData {
 public:
  GroupedData(DataFrame input, std::vector<Column> keys) : input_(std::move(input)), keys_(std::move(keys)) {}
  DataFrame Agg(const std::vector<Column>& aggregates) const;

 private:
  DataFrame input_;
  std::vector<Column> keys_;
};

}  // namespace iotinfer::spark
