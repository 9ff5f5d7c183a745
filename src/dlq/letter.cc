#include "dlq/letter.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/text.h"

namespace iotinfer::dlq {
namespace {

namespace h = kafka::dead_letter_headers;

constexpr int64_t kMaxProducerId = (int64_t{1} << 31) - 1;
constexpr int64_t kLastMicrosecond = 253402300799'999999;  // 9999-12-31T23:59:59.999999Z

// A non-negative decimal, digits only (no sign, no spaces), that fits `Int`.
template <typename Int>
std::optional<Int> ParseDecimal(std::string_view text) {
  if (text.empty() || !std::ranges::all_of(text, [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  Int value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<int64_t> ProducerId(std::string_view text) {
  auto id = ParseDecimal<int64_t>(text);
  if (!id || *id > kMaxProducerId) return std::nullopt;
  return id;
}

bool IsTopicName(std::string_view name) {
  return !name.empty() && name.size() <= 249 && name != "." && name != ".." && std::ranges::all_of(name, [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

// An inference record's producer_id, from a value that may be only half a record: sink
// dead-letters records that fail validation on some other field.
std::optional<int64_t> RecordProducer(std::string_view value) {
  if (value.empty() || value.front() != '{') return std::nullopt;
  const nlohmann::json json = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return std::nullopt;
  const auto it = json.find("producer_id");
  if (it == json.end() || !it->is_number_integer()) return std::nullopt;
  const int64_t id = it->get<int64_t>();
  if (id < 0 || id > kMaxProducerId) return std::nullopt;
  return id;
}

}  // namespace

std::string FormatPosition(const Position& position) {
  return fmt::format("{}/{}/{}", position.topic, position.partition, position.offset);
}

Result<Position> ParsePosition(std::string_view text) {
  auto invalid = [&] {
    return std::unexpected(Error::InvalidInput(fmt::format("'{}' is not topic/partition/offset", Escape(text, 100))));
  };
  const size_t last = text.rfind('/');
  if (last == std::string_view::npos || last == 0) return invalid();
  const size_t middle = text.rfind('/', last - 1);
  if (middle == std::string_view::npos) return invalid();
  Position position{.topic = std::string(text.substr(0, middle))};
  const auto partition = ParseDecimal<int32_t>(text.substr(middle + 1, last - middle - 1));
  const auto offset = ParseDecimal<int64_t>(text.substr(last + 1));
  if (!IsTopicName(position.topic) || !partition || !offset) return invalid();
  position.partition = *partition;
  position.offset = *offset;
  return position;
}

Result<int64_t> ParseTime(std::string_view text, int64_t now_us) {
  using namespace std::chrono;
  auto invalid = [&] {
    return std::unexpected(Error::InvalidInput(
        fmt::format("'{}' is not a time such as 2026-11-26, 2026-11-26T10:00[:00]Z (UTC) or a duration ago such as 2h",
                    Escape(text, 100))));
  };
  if (text.empty() || text.front() < '0' || text.front() > '9') return invalid();
  if (text.find('-') == std::string_view::npos) {
    Result<milliseconds> ago = ParseDuration(text);
    if (!ago) return invalid();
    return now_us - duration_cast<microseconds>(*ago).count();
  }
  std::string copy(text);
  if (!copy.empty() && (copy.back() == 'Z' || copy.back() == 'z')) copy.pop_back();
  int y = 0;
  unsigned mo = 0, d = 0, hh = 0, mm = 0, ss = 0;
  int used = -1;
  char t = 0;
  const int fields =
      std::sscanf(copy.c_str(), "%4d-%2u-%2u%n%c%2u:%2u%n:%2u%n", &y, &mo, &d, &used, &t, &hh, &mm, &used, &ss, &used);
  // %n counts only the fields read so far, and each form must be the whole text.
  const bool date = fields == 3, to_the_minute = fields == 6, to_the_second = fields == 7;
  if (!(date || to_the_minute || to_the_second) || used != static_cast<int>(copy.size())) return invalid();
  if (!date && t != 'T' && t != 't' && t != ' ') return invalid();
  const year_month_day day{year{y}, month{mo}, std::chrono::day{d}};
  if (!day.ok() || hh > 23 || mm > 59 || ss > 59) return invalid();
  const sys_seconds at = sys_days{day} + hours{hh} + minutes{mm} + seconds{ss};
  return duration_cast<microseconds>(at.time_since_epoch()).count();
}

std::string FormatTime(int64_t us, bool micros) {
  using namespace std::chrono;
  const sys_time<microseconds> at{microseconds{us}};
  const sys_days day = floor<days>(at);
  const year_month_day ymd{day};
  const hh_mm_ss<microseconds> time{at - day};
  std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", static_cast<int>(ymd.year()),
                                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                                time.hours().count(), time.minutes().count(), time.seconds().count());
  if (micros && time.subseconds().count() != 0) out += fmt::format(".{:06}", time.subseconds().count());
  return out + "Z";
}

bool Letter::Replayable() const {
  return source && !payload_dropped && reason != kafka::DeadLetterReason::kUnreadableRecord;
}

Letter ReadLetter(const kafka::InputMessage& in) {
  Letter letter;
  letter.at = {in.topic, in.partition, in.offset};
  letter.payload_bytes = in.message.value.size();
  const std::vector<WireMessage::Header>& headers = in.message.headers;
  // DeadLetter's run, taken from the end in reverse order, each one optional.
  size_t end = headers.size();
  std::optional<std::string> error, reason, failed_at, source;
  for (const std::string_view name :
       {h::kKeyAndHeadersDropped, h::kPayloadDropped, h::kSource, h::kFailedAt, h::kReason, h::kError}) {
    if (end == 0 || headers[end - 1].name != name) continue;
    --end;
    const std::string& value = headers[end].value;
    if (name == h::kKeyAndHeadersDropped || name == h::kPayloadDropped) letter.payload_dropped = true;
    if (name == h::kSource) source = value;
    if (name == h::kFailedAt) failed_at = value;
    if (name == h::kReason) reason = value;
    if (name == h::kError) error = value;
  }
  letter.original_headers.assign(headers.begin(), headers.begin() + static_cast<ptrdiff_t>(end));
  letter.dead_letter_headers.assign(headers.begin() + static_cast<ptrdiff_t>(end), headers.end());

  if (letter.dead_letter_headers.empty()) letter.problems.push_back("none of the headers a dead letter ends with");
  if (error) {
    letter.error = *error;
  } else if (!letter.dead_letter_headers.empty()) {
    letter.problems.push_back("no 'error' header");
  }
  if (reason) {
    letter.reason = kafka::ParseReasonCode(*reason);
    if (!letter.reason) letter.problems.push_back(fmt::format("'reason' \"{}\" is no known code", Escape(*reason, 40)));
  }
  if (failed_at) {
    letter.failed_at_us = ParseDecimal<int64_t>(*failed_at);
    // Past the year 9999 no calendar prints it: as wrong as text.
    if (letter.failed_at_us > kLastMicrosecond) letter.failed_at_us.reset();
    if (!letter.failed_at_us) {
      letter.problems.push_back(
          fmt::format("'failed-at' \"{}\" is not microseconds since the epoch", Escape(*failed_at, 40)));
    }
  }
  if (!letter.failed_at_us && in.timestamp_ms >= 0 && in.timestamp_ms <= kLastMicrosecond / 1000) {
    letter.failed_at_us = in.timestamp_ms * 1000;
  }
  if (source) {
    if (Result<Position> parsed = ParsePosition(*source)) {
      letter.source = std::move(*parsed);
    } else {
      letter.problems.push_back("'source' " + parsed.error().message());
    }
  } else {
    letter.problems.push_back("no 'source' header");
  }

  for (const auto& header : letter.original_headers) {
    if (header.name == image_headers::kProducerId) {
      letter.producer = ProducerId(header.value);
      break;
    }
  }
  if (!letter.producer) letter.producer = ProducerId(in.message.key);
  if (!letter.producer) letter.producer = RecordProducer(in.message.value);
  return letter;
}

std::string_view ReasonLabel(const Letter& letter) {
  return letter.reason ? kafka::ReasonCode(*letter.reason) : std::string_view("unknown");
}

std::string ProducerLabel(const Letter& letter) {
  return letter.producer ? std::to_string(*letter.producer) : "unknown";
}

WireMessage ReplayMessage(const kafka::InputMessage& in) {
  const Letter letter = ReadLetter(in);
  WireMessage out{in.message.key, in.message.value, {}};
  for (const auto& header : letter.original_headers) {
    if (header.name != h::kReplayedFrom) out.headers.push_back(header);
  }
  out.headers.push_back({std::string(h::kReplayedFrom), FormatPosition(letter.at)});
  return out;
}

std::string Escape(std::string_view text, size_t max_bytes) {
  std::string out;
  const std::string_view shown = text.substr(0, std::min(text.size(), max_bytes));
  out.reserve(shown.size());
  for (const char c : shown) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f || c == '\\' || c == '"' || c == '<' || c == '>' || c == '&') {
      out += fmt::format("\\x{:02x}", byte);
    } else {
      out += c;
    }
  }
  if (shown.size() < text.size()) out += fmt::format("...({} bytes)", text.size());
  return out;
}

}  // namespace iotinfer::dlq
