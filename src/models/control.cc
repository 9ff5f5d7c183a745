#include "models/control.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

namespace iotinfer::models {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxStem = 200;

// C0 controls and DEL, and the C1 controls as UTF-8 writes them (U+0080..U+009F: 0xC2 0x80..0x9F).
bool HasControlCharacter(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte < 0x20 || byte == 0x7f) return true;
    if (byte == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) <= 0x9f &&
        static_cast<unsigned char>(text[i + 1]) >= 0x80) {
      return true;
    }
  }
  return false;
}

Result<std::string> OptionalString(const Json& object, const char* name) {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) return std::string();
  if (!it->is_string()) return std::unexpected(Error::InvalidInput(fmt::format("field '{}' must be a string", name)));
  return it->get<std::string>();
}

}  // namespace

Status CheckChoice(const ModelChoice& choice) {
  if (choice.group.empty()) return std::unexpected(Error::InvalidInput("no group (the record's key)"));
  TRY(CheckModelId(choice.model));
  for (const auto& [name, text] : {std::pair{"group", &choice.group}, {"by", &choice.by}, {"reason", &choice.reason}}) {
    if (HasControlCharacter(*text)) {
      return std::unexpected(Error::InvalidInput(fmt::format("{} holds a control character", name)));
    }
  }
  return Ok();
}

bool IsModelId(std::string_view text) {
  constexpr size_t kHex = 8;
  if (text.size() < kHex + 2 || text.size() > kMaxStem + kHex + 1 || text[text.size() - kHex - 1] != '-') return false;
  const std::string_view stem = text.substr(0, text.size() - kHex - 1), hex = text.substr(text.size() - kHex);
  auto stem_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '+' || c == '-';
  };
  auto hex_digit = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
  return std::ranges::all_of(stem, stem_char) && std::ranges::all_of(hex, hex_digit);
}

Status CheckModelId(std::string_view text) {
  if (IsModelId(text)) return Ok();
  return std::unexpected(Error::InvalidInput(fmt::format(
      "'{}' is no model version: \"<model file stem>-<8 hex digits>\", as records' `model` and `iotinfer models "
      "status` name it (fmnist-cnn-1a2b3c4d)",
      text.size() > 60 || HasControlCharacter(text) ? "(not shown)" : text)));
}

std::string EncodeChoice(const ModelChoice& choice) {
  nlohmann::ordered_json json;
  json["group"] = choice.group;
  json["model"] = choice.model;
  json["at"] = choice.at_us;
  json["by"] = choice.by;
  json["reason"] = choice.reason;
  // Invalid UTF-8 in free text is replaced, not thrown on: the value must always be written.
  return json.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Result<ModelChoice> DecodeChoice(std::string_view key, std::string_view value) {
  const Json json = Json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return std::unexpected(Error::InvalidInput("value is not valid JSON"));
  if (!json.is_object()) return std::unexpected(Error::InvalidInput("value is not a JSON object"));
  ModelChoice choice{.group = std::string(key)};
  const auto model = json.find("model");
  if (model == json.end() || !model->is_string()) {
    return std::unexpected(Error::InvalidInput("field 'model' is missing or not a string"));
  }
  choice.model = model->get<std::string>();
  if (const auto at = json.find("at"); at != json.end() && !at->is_null()) {
    if (!at->is_number_integer() ||
        (at->is_number_unsigned() &&
         at->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))) {
      return std::unexpected(Error::InvalidInput("field 'at' must be an integer (µs since the epoch)"));
    }
    choice.at_us = at->get<int64_t>();
  }
  ASSIGN_OR_RETURN(choice.by, OptionalString(json, "by"));
  ASSIGN_OR_RETURN(choice.reason, OptionalString(json, "reason"));
  TRY(CheckChoice(choice));
  return choice;
}

Status WriteChoice(const kafka::KafkaConfig& config, const std::string& topic, const ModelChoice& choice) {
  TRY(CheckChoice(choice));
  // Compacted: the latest choice of every group is kept for as long as the topic is, whatever its age.
  TRY(kafka::EnsureTopics(config, {{.name = topic, .partitions = 1, .configs = {{"cleanup.policy", "compact"}}}}));
  ASSIGN_OR_RETURN(auto producer,
                   kafka::Producer::Create(config, {.linger = std::chrono::milliseconds(0), .topics = {topic}}));
  TRY(producer->Send(topic, {choice.group, EncodeChoice(choice), {}}));
  TRY(producer->Flush());
  if (producer->stats().acknowledged != 1) {
    return std::unexpected(Error::Unavailable(
        fmt::format("writing the choice of group {} to {}: {}", choice.group, topic, producer->stats().last_error)));
  }
  return Ok();
}

Result<std::map<std::string, ModelChoice>> ReadChoices(const kafka::KafkaConfig& config, const std::string& topic,
                                                       int* skipped, std::chrono::milliseconds timeout) {
  std::map<std::string, ModelChoice> choices;
  int bad = 0;
  Status scanned = kafka::ScanTopic(
      config, topic,
      [&](const kafka::InputMessage& in) -> Status {
        if (!in.unreadable.empty()) {
          bad++;
          return Ok();
        }
        if (in.message.value.empty()) {
          choices.erase(in.message.key);
          return Ok();
        }
        Result<ModelChoice> choice = DecodeChoice(in.message.key, in.message.value);
        if (!choice) {
          bad++;
          return Ok();
        }
        choices.insert_or_assign(choice->group, *std::move(choice));
        return Ok();
      },
      timeout);
  if (!scanned && scanned.error().code() != Error::Code::kNotFound) return std::unexpected(scanned.error());
  if (skipped) *skipped = bad;
  return choices;
}

}  // namespace iotinfer::models
