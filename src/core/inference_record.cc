#include "core/inference_record.h"

#include <fmt/format.h>

#include <array>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <type_traits>
#include <utility>

namespace iotinfer {
namespace {

using Json = nlohmann::json;

// Names the field and what was wrong with it; `value` is shown cut short, since a
// dead-letter reason is one line.
Error BadField(std::string_view field, std::string_view expected, const Json* value) {
  if (value == nullptr) return Error::InvalidInput(fmt::format("missing field '{}'", field));
  std::string shown = value->dump();
  if (shown.size() > 40) shown = shown.substr(0, 37) + "...";
  return Error::InvalidInput(fmt::format("field '{}' must be {}, got {}", field, expected, shown));
}

const Json* Field(const Json& object, const char* name) {
  auto it = object.find(name);
  return it == object.end() ? nullptr : &*it;
}

Result<std::string> RequiredString(const Json& object, const char* name, bool non_empty) {
  const Json* v = Field(object, name);
  if (v == nullptr || !v->is_string() || (non_empty && v->get_ref<const std::string&>().empty())) {
    return std::unexpected(BadField(name, non_empty ? "a non-empty string" : "a string", v));
  }
  return v->get<std::string>();
}

Result<std::optional<int64_t>> OptionalMicros(const Json& object, const char* name) {
  const Json* v = Field(object, name);
  if (v == nullptr || v->is_null()) return std::nullopt;
  // get<int64_t>() would wrap an unsigned value above INT64_MAX round to a negative one.
  if (!v->is_number_integer() ||
      (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))) {
    return std::unexpected(BadField(name, "an integer (microseconds) or null", v));
  }
  return v->get<int64_t>();
}

// The stage times' fields, in the order they happen. Absent rather than null when unknown:
// they are many, and a reader of the original schema has no use for them.
template <typename Record>
auto StageFields(Record& r) {
  using Field = std::conditional_t<std::is_const_v<Record>, const std::optional<int64_t>*, std::optional<int64_t>*>;
  return std::array<std::pair<const char*, Field>, 7>{{{"appended_at", &r.appended_at_us},
                                                       {"polled_at", &r.polled_at_us},
                                                       {"batch_at", &r.batch_at_us},
                                                       {"inference_appended_at", &r.sink.appended_at_us},
                                                       {"sink_polled_at", &r.sink.polled_at_us},
                                                       {"write_sent_at", &r.sink.write_sent_at_us},
                                                       {"stored_at", &r.sink.stored_at_us}}};
}

}  // namespace

std::string EncodeInferenceRecord(const InferenceRecord& r) {
  nlohmann::ordered_json json;
  json["id"] = r.id;
  json["image_prediction"] = r.image_prediction;
  json["actual_value"] = r.actual_value ? nlohmann::ordered_json(*r.actual_value) : nlohmann::ordered_json(nullptr);
  json["producer_id"] = r.producer_id;
  json["confidence"] = r.confidence;
  json["model"] = r.model;
  json["produced_at"] = r.produced_at_us ? nlohmann::ordered_json(*r.produced_at_us) : nlohmann::ordered_json(nullptr);
  json["inferred_at"] = r.inferred_at_us;
  // Absent rather than null: the stage times are many, and a reader of the original schema
  // has no use for them.
  for (const auto& [name, value] : StageFields(r)) {
    if (*value) json[name] = **value;
  }
  return json.dump();
}

Result<InferenceRecord> DecodeInferenceRecord(std::string_view text) {
  Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return std::unexpected(Error::InvalidInput("value is not valid JSON"));
  if (!json.is_object()) return std::unexpected(Error::InvalidInput("value is not a JSON object"));
  InferenceRecord r;
  ASSIGN_OR_RETURN(r.id, RequiredString(json, "id", true));
  ASSIGN_OR_RETURN(r.image_prediction, RequiredString(json, "image_prediction", true));
  const Json* actual = Field(json, "actual_value");
  if (actual == nullptr || !(actual->is_string() || actual->is_null())) {
    return std::unexpected(BadField("actual_value", "a string or null", actual));
  }
  if (actual->is_string()) r.actual_value = actual->get<std::string>();
  const Json* producer = Field(json, "producer_id");
  if (producer == nullptr || !producer->is_number_integer() || producer->get<int64_t>() < 0 ||
      producer->get<int64_t>() > std::numeric_limits<int>::max()) {
    return std::unexpected(BadField("producer_id", "an integer in [0, 2^31)", producer));
  }
  r.producer_id = producer->get<int>();
  if (const Json* c = Field(json, "confidence"); c != nullptr && !c->is_null()) {
    if (!c->is_number()) return std::unexpected(BadField("confidence", "a number", c));
    r.confidence = c->get<double>();
  }
  if (const Json* m = Field(json, "model"); m != nullptr && !m->is_null()) {
    if (!m->is_string()) return std::unexpected(BadField("model", "a string", m));
    r.model = m->get<std::string>();
  }
  ASSIGN_OR_RETURN(r.produced_at_us, OptionalMicros(json, "produced_at"));
  ASSIGN_OR_RETURN(std::optional<int64_t> inferred_at, OptionalMicros(json, "inferred_at"));
  r.inferred_at_us = inferred_at.value_or(0);
  for (const auto& [name, value] : StageFields(r)) {
    ASSIGN_OR_RETURN(*value, OptionalMicros(json, name));
  }
  return r;
}

std::string WithSinkTimes(std::string_view json, const SinkTimes& times) {
  // The object's closing brace; only whitespace may follow it in a value that was accepted.
  std::string out(json.substr(0, json.rfind('}')));
  const std::pair<const char*, const std::optional<int64_t>*> fields[] = {
      {"inference_appended_at", &times.appended_at_us},
      {"sink_polled_at", &times.polled_at_us},
      {"write_sent_at", &times.write_sent_at_us},
      {"stored_at", &times.stored_at_us}};
  for (const auto& [name, value] : fields) {
    if (*value) fmt::format_to(std::back_inserter(out), R"(,"{}":{})", name, **value);
  }
  out += '}';
  return out;
}

}  // namespace iotinfer
