#include "spark/plan.h"

#include <utility>

#include "spark/connect/base.pb.h"
#include "spark/connect/commands.pb.h"
#include "spark/connect/expressions.pb.h"
#include "spark/connect/relations.pb.h"

namespace iotinfer::spark {
namespace {

namespace pb = ::spark::connect;

template <typename Build>
Column MakeColumn(Build&& build) {
  auto expression = std::make_shared<pb::Expression>();
  build(*expression);
  return Column(std::move(expression));
}

template <typename Build>
DataFrame MakeFrame(Build&& build) {
  auto relation = std::make_shared<pb::Relation>();
  build(*relation);
  return DataFrame(std::move(relation));
}

template <typename Build>
Plan MakePlan(Build&& build) {
  auto plan = std::make_shared<pb::Plan>();
  build(*plan);
  return Plan(std::move(plan));
}

DataFrame ReadSource(std::string_view format, std::string_view schema, const Options& options, bool streaming) {
  return MakeFrame([&](pb::Relation& r) {
    auto* read = r.mutable_read();
    read->set_is_streaming(streaming);
    auto* source = read->mutable_data_source();
    source->set_format(std::string(format));
    if (!schema.empty()) source->set_schema(std::string(schema));
    for (const auto& [key, value] : options) (*source->mutable_options())[key] = value;
  });
}

pb::WriteOperation::SaveMode ToProto(SaveMode mode) {
  switch (mode) {
    case SaveMode::kAppend:
      return pb::WriteOperation::SAVE_MODE_APPEND;
    case SaveMode::kOverwrite:
      return pb::WriteOperation::SAVE_MODE_OVERWRITE;
    case SaveMode::kErrorIfExists:
      return pb::WriteOperation::SAVE_MODE_ERROR_IF_EXISTS;
    case SaveMode::kIgnore:
      return pb::WriteOperation::SAVE_MODE_IGNORE;
  }
  return pb::WriteOperation::SAVE_MODE_UNSPECIFIED;
}

}  // namespace

Column::Column(std::shared_ptr<const pb::Expression> expression) : expression_(std::move(expression)) {}

Column Column::Cast(std::string_view type) const {
  return MakeColumn([&](pb::Expression& e) {
    auto* cast = e.mutable_cast();
    *cast->mutable_expr() = proto();
    cast->set_type_str(std::string(type));
  });
}

Column Column::Alias(std::string_view name) const {
  return MakeColumn([&](pb::Expression& e) {
    auto* alias = e.mutable_alias();
    *alias->mutable_expr() = proto();
    alias->add_name(std::string(name));
  });
}

Column Column::IsNull() const { return Fn("isnull", {*this}); }
Column Column::IsNotNull() const { return Fn("isnotnull", {*this}); }

Column Col(std::string_view name) {
  return MakeColumn(
      [&](pb::Expression& e) { e.mutable_unresolved_attribute()->set_unparsed_identifier(std::string(name)); });
}

Column Lit(int64_t value) {
  return MakeColumn([&](pb::Expression& e) { e.mutable_literal()->set_long_(value); });
}

Column Lit(double value) {
  return MakeColumn([&](pb::Expression& e) { e.mutable_literal()->set_double_(value); });
}

Column Lit(std::string_view value) {
  return MakeColumn([&](pb::Expression& e) { e.mutable_literal()->set_string(std::string(value)); });
}

Column Lit(const char* value) { return Lit(std::string_view(value)); }

Column Lit(bool value) {
  return MakeColumn([&](pb::Expression& e) { e.mutable_literal()->set_boolean(value); });
}

Column Fn(std::string_view name, std::vector<Column> arguments) {
  return MakeColumn([&](pb::Expression& e) {
    auto* f = e.mutable_unresolved_function();
    f->set_function_name(std::string(name));
    for (const Column& argument : arguments) *f->add_arguments() = argument.proto();
  });
}

// Spark's own names for the operators, as pyspark sends them.
Column operator==(const Column& a, const Column& b) { return Fn("==", {a, b}); }
// Spark has no "!=" function; pyspark sends not(a == b) too.
Column operator!=(const Column& a, const Column& b) { return Fn("not", {a == b}); }
Column operator&&(const Column& a, const Column& b) { return Fn("and", {a, b}); }
Column operator+(const Column& a, const Column& b) { return Fn("+", {a, b}); }
Column operator-(const Column& a, const Column& b) { return Fn("-", {a, b}); }
Column operator/(const Column& a, const Column& b) { return Fn("/", {a, b}); }
Column operator>(const Column& a, const Column& b) { return Fn(">", {a, b}); }

Column Sum(const Column& c) { return Fn("sum", {c}); }
Column Count(const Column& c) { return Fn("count", {c}); }
Column When(const Column& condition, const Column& value, const Column& otherwise) {
  return Fn("when", {condition, value, otherwise});
}

DataFrame::DataFrame(std::shared_ptr<const pb::Relation> relation) : relation_(std::move(relation)) {}

DataFrame DataFrame::Read(std::string_view format, std::string_view schema, const Options& options) {
  return ReadSource(format, schema, options, false);
}

DataFrame DataFrame::ReadStream(std::string_view format, std::string_view schema, const Options& options) {
  return ReadSource(format, schema, options, true);
}

DataFrame DataFrame::Range(int64_t start, int64_t end) {
  return MakeFrame([&](pb::Relation& r) {
    auto* range = r.mutable_range();
    range->set_start(start);
    range->set_end(end);
    range->set_step(1);
  });
}

DataFrame DataFrame::Filter(const Column& condition) const {
  return MakeFrame([&](pb::Relation& r) {
    auto* filter = r.mutable_filter();
    *filter->mutable_input() = proto();
    *filter->mutable_condition() = condition.proto();
  });
}

DataFrame DataFrame::WithColumn(std::string_view name, const Column& value) const {
  return MakeFrame([&](pb::Relation& r) {
    auto* with = r.mutable_with_columns();
    *with->mutable_input() = proto();
    auto* alias = with->add_aliases();
    *alias->mutable_expr() = value.proto();
    alias->add_name(std::string(name));
  });
}

DataFrame DataFrame::Select(const std::vector<Column>& columns) const {
  return MakeFrame([&](pb::Relation& r) {
    auto* project = r.mutable_project();
    *project->mutable_input() = proto();
    for (const Column& c : columns) *project->add_expressions() = c.proto();
  });
}

GroupedData DataFrame::GroupBy(const std::vector<Column>& keys) const { return GroupedData(*this, keys); }

DataFrame GroupedData::Agg(const std::vector<Column>& aggregates) const {
  return MakeFrame([&](pb::Relation& r) {
    auto* aggregate = r.mutable_aggregate();
    *aggregate->mutable_input() = input_.proto();
    aggregate->set_group_type(pb::Aggregate::GROUP_TYPE_GROUPBY);
    for (const Column& key : keys_) *aggregate->add_grouping_expressions() = key.proto();
    for (const Column& a : aggregates) *aggregate->add_aggregate_expressions() = a.proto();
  });
}

Plan DataFrame::ToPlan() const {
  return MakePlan([&](pb::Plan& p) { *p.mutable_root() = proto(); });
}

Plan DataFrame::Write(std::string_view format, SaveMode mode, const Options& options) const {
  return MakePlan([&](pb::Plan& p) {
    auto* write = p.mutable_command()->mutable_write_operation();
    *write->mutable_input() = proto();
    write->set_source(std::string(format));
    write->set_mode(ToProto(mode));
    for (const auto& [key, value] : options) (*write->mutable_options())[key] = value;
  });
}

Plan DataFrame::WriteStream(const StreamWrite& spec) const {
  return MakePlan([&](pb::Plan& p) {
    auto* write = p.mutable_command()->mutable_write_stream_operation_start();
    *write->mutable_input() = proto();
    write->set_format(spec.format);
    for (const auto& [key, value] : spec.options) (*write->mutable_options())[key] = value;
    if (!spec.checkpoint.empty()) (*write->mutable_options())["checkpointLocation"] = spec.checkpoint;
    write->set_output_mode(spec.output_mode);
    if (!spec.query_name.empty()) write->set_query_name(spec.query_name);
    if (!spec.processing_time.empty()) write->set_processing_time_interval(spec.processing_time);
  });
}

}  // namespace iotinfer::spark
