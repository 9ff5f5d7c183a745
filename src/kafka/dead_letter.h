#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kafka/kafka.h"

namespace iotinfer::kafka {

/// Why a message was dead-lettered. A bounded set, written as the dead letter's `reason`
/// header by its code: fit to be a metric label and to filter on, it never holds anything from
/// the input (the `error` header has the full message). The services dead-letter:
enum class DeadLetterReason {
  kUnreadableRecord,  // "unreadable-record": the Kafka client could not read the record (infer, sink)
  kInvalidImage,      // "invalid-image": an image message's headers or key break the wire format (infer)
  kUndecodableImage,  // "undecodable-image": a payload that is not the image its headers say (infer)
  kTooLarge,          // "too-large": a payload over infer's --max-payload-bytes, or sides over 4096 (infer)
  kInvalidRecord,     // "invalid-record": a value that is not an inference record (sink)
  kStoreRefused,      // "store-refused": a record the store refused (sink)
  kIdConflict,        // "id-conflict": an id stored already with other device fields (sink)
  kCommitFailed,      // "commit-failed": a message no transaction holding it could commit (infer, sink)
};

inline constexpr size_t kDeadLetterReasonCount = 8;

/// Every reason, in the enum's order: the labels a per-reason metric has.
inline constexpr std::array<DeadLetterReason, kDeadLetterReasonCount> kDeadLetterReasons = {
    DeadLetterReason::kUnreadableRecord, DeadLetterReason::kInvalidImage,  DeadLetterReason::kUndecodableImage,
    DeadLetterReason::kTooLarge,         DeadLetterReason::kInvalidRecord, DeadLetterReason::kStoreRefused,
    DeadLetterReason::kIdConflict,       DeadLetterReason::kCommitFailed,
};

/// The reason's code, as the `reason` header holds it: "unreadable-record", "invalid-image", ...
std::string_view ReasonCode(DeadLetterReason reason);

/// Every reason's code, in the enum's order: the labels of a per-reason metric.
const std::array<std::string_view, kDeadLetterReasonCount>& ReasonCodes();

/// The reason whose code is `code` exactly, or nullopt.
std::optional<DeadLetterReason> ParseReasonCode(std::string_view code);

/// Dead letters counted per reason, indexed by the reason's value (ReasonIndex): every reason
/// has its counter, zero or not, so a labelled metric made of it has a fixed set of series.
using ReasonCounts = std::array<int64_t, kDeadLetterReasonCount>;

inline constexpr size_t ReasonIndex(DeadLetterReason reason) { return static_cast<size_t>(reason); }

/// The headers a dead letter adds to the original's, and the one `iotinfer dlq replay` adds to
/// a message it sends back (docs/design.md#dead-letters).
namespace dead_letter_headers {
inline constexpr std::string_view kError = "error";
inline constexpr std::string_view kReason = "reason";
inline constexpr std::string_view kFailedAt = "failed-at";
inline constexpr std::string_view kSource = "source";
inline constexpr std::string_view kPayloadDropped = "payload-dropped";
inline constexpr std::string_view kKeyAndHeadersDropped = "key-and-headers-dropped";
inline constexpr std::string_view kReplayedFrom = "replayed-from";
}  // namespace dead_letter_headers

/// `in` for the dead-letter topic `topic`: the original key, value and headers, plus headers
/// `error` (`error`, cut to 1 KiB), `reason` (ReasonCode), `failed-at` (microseconds since the
/// epoch) and `source` (topic/partition/offset), in that order after the original's. A dead
/// letter must always fit, or the message it stands for could never be committed past: when it
/// would be larger than `max_bytes` (the smaller of the producer's and the topic's limits), the
/// original value is left out and header `payload-dropped` says how large it was; if it is
/// still too large, the original key and headers go too (`key-and-headers-dropped`).
OutputMessage DeadLetter(const std::string& topic, const InputMessage& in, DeadLetterReason reason,
                         const std::string& error, size_t max_bytes = 1'000'000);

}  // namespace iotinfer::kafka
