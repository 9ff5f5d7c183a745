#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/image_message.h"
#include "kafka/dead_letter.h"
#include "kafka/kafka.h"

namespace iotinfer::dlq {

/// Where a record sits, as the `source` and `replayed-from` headers write it:
/// "topic/partition/offset".
struct Position {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  auto operator<=>(const Position&) const = default;
};

std::string FormatPosition(const Position& position);

/// InvalidInput unless `text` is a Kafka topic name (1 to 249 of [a-zA-Z0-9._-]), '/', a
/// partition and an offset, both non-negative decimals.
Result<Position> ParsePosition(std::string_view text);

/// What a record of a dead-letter topic says about itself. Its headers are read as DeadLetter
/// writes them: a run of `error`, `reason`, `failed-at`, `source`, then `payload-dropped` and
/// `key-and-headers-dropped` when present, at the end (a device's own header of one of those
/// names, before them, stays the device's). Nothing is trusted: values are checked, and what
/// is wrong is said in `problems`.
struct Letter {
  Position at;                                    // where the letter itself sits
  std::optional<kafka::DeadLetterReason> reason;  // none: no `reason` header, or not a known code
  std::string error;                              // the `error` header as written (escape it to print)
  // `failed-at`, or the record's own timestamp when that header is missing or malformed.
  std::optional<int64_t> failed_at_us;
  std::optional<Position> source;
  // From the original's `producer_id` header, else its key, else an inference record's
  // `producer_id`: a decimal in [0, 2^31), never free text.
  std::optional<int64_t> producer;
  bool payload_dropped = false;  // `payload-dropped` or `key-and-headers-dropped`
  size_t payload_bytes = 0;
  std::vector<WireMessage::Header> dead_letter_headers;  // the run at the end
  std::vector<WireMessage::Header> original_headers;     // the others, in order
  std::vector<std::string> problems;                     // e.g. "no 'source' header"

  /// Whether a replay can send back what it stands for: a payload kept, a source known, and an
  /// original the client could read.
  bool Replayable() const;
};

/// Reads `in`, a record of a dead-letter topic.
Letter ReadLetter(const kafka::InputMessage& in);

/// The code reports show for a letter's reason: its code, or "unknown".
std::string_view ReasonLabel(const Letter& letter);

/// "3", or "unknown".
std::string ProducerLabel(const Letter& letter);

/// What replay sends back for the dead letter `in`: its key and value, its original headers
/// (the device's, without DeadLetter's run and without any earlier `replayed-from`), then
/// `replayed-from` naming where `in` sits.
WireMessage ReplayMessage(const kafka::InputMessage& in);

/// A time as `--since` and `--until` take it, in microseconds since the epoch: "2026-11-26",
/// "2026-11-26T10:00", "2026-11-26T10:00:30" (UTC; a trailing 'Z' and a space for the 'T' are
/// fine), or a duration (core/text.h: "2h", "30m") for that long before `now_us`. InvalidInput
/// otherwise.
Result<int64_t> ParseTime(std::string_view text, int64_t now_us);

/// "2026-11-26T10:00:30Z", with ".123456" before the Z when `micros` and the time has them.
std::string FormatTime(int64_t us, bool micros = false);

/// `text` safe to print on a terminal or in a page: printable ASCII as it is, except `\`, `"`,
/// `<`, `>` and `&`; every other byte (control characters, escape sequences, UTF-8) as \xNN.
/// Over `max_bytes` of `text`, the rest is left out and "...(N bytes)" says how much it held.
std::string Escape(std::string_view text, size_t max_bytes = std::numeric_limits<size_t>::max());

}  // namespace iotinfer::dlq
